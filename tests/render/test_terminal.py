"""The terminal: a table that fits and cannot be restyled by telemetry, a progress bar over the
input size, and errors as "what happened / why / what to do" for every kind of failure."""

from __future__ import annotations

import dataclasses
import io
import re

import click
import pytest
from rich.console import Console

from tests.render._alerts import plain_alert, rich_alert
from unbacked.cli._common import Progress
from unbacked.cli.main import main
from unbacked.render import write_ocsf
from unbacked.render.table import build_table, write_table

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _hostile():
    a = rich_alert()
    proc = dataclasses.replace(a.process, name="[/][red]x[link=http://e.example]y")
    return [dataclasses.replace(a, process=proc, hostname="[bold]host"), plain_alert(1)]


def _render(alerts, width: int) -> str:
    buf = io.StringIO()
    console = Console(file=buf, width=width, force_terminal=True, color_system="standard")
    console.print(build_table(alerts, width))
    return buf.getvalue()


@pytest.mark.parametrize("width", [60, 80, 120, 200])
def test_table_fits_the_terminal(width):
    out = _render(_hostile(), width)
    lines = ANSI.sub("", out).splitlines()
    assert max(len(line) for line in lines) <= width
    text = ANSI.sub("", out)
    # telemetry is text: markup in names is shown, not applied (and does not crash rich)
    assert "[/][red]x" in text.replace("\n", "") or "[/][red]x" in text
    assert "[bold]host" in text.replace(" ", "")
    assert "\x1b]8;" not in out  # no hyperlink escape from the [link=...] in the name
    assert ("alert · why" in text) == (width < 160)  # narrow: two lines per alert
    assert "svchost.exe: 0 of 18,422" in " ".join(text.split())  # the strongest reason


def test_table_colours_by_severity_on_a_terminal_only():
    coloured = _render([rich_alert()], 200)
    assert "\x1b[" in coloured and "Critical" in coloured
    buf = io.StringIO()
    write_table([rich_alert(), plain_alert(2)], buf)  # a file: wide, no colour
    assert "\x1b[" not in buf.getvalue()
    assert "2 alerts: 1 critical, 1 medium" in buf.getvalue()
    row = next(line for line in buf.getvalue().splitlines() if "Critical" in line)
    assert "svchost.exe (2288)" in row and "T1055.002" in row


def test_progress_bar_over_input_bytes(tmp_path):
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    files = [d / "a.evtx", d / "b.zip", d / "sub" / "c.json"]  # the sources' (sorted) order
    for i, f in enumerate(files):
        f.write_bytes(b"x" * (1000 * (i + 1)))
    buf = io.StringIO()
    console = Console(file=buf, width=160, force_terminal=True)
    with Progress(True, [str(d)], console=console) as p:
        assert (p.total_bytes, p.total_files) == (6000, 3)
        p(str(files[0]), 10, 10)
        assert p.done_bytes == 0
        p(f"{files[1]}!member.json", 50, 60)  # a member of an archive counts as the archive
        assert p.done_bytes == 1000
        p(str(files[2]), 90, 100)
        assert p.done_bytes == 3000 and len(p.files) == 3
        p._bar.refresh()
    out = ANSI.sub("", buf.getvalue())
    assert "reading" in out and "events/s" in out and "of 3 files" in out
    assert re.search(r"\d+%", out)
    # a large run's passes after reading replace the label and say which host group
    with Progress(True, [str(d)], console=console) as p:
        p(str(files[0]), 10, 10)
        p.stage("detecting", "host group 3 of 46")
        p._bar.refresh()
    out = ANSI.sub("", buf.getvalue())
    assert "detecting" in out and "host group 3 of 46" in out


def test_progress_defaults_to_the_command_paths_and_stays_quiet_off_a_terminal(tmp_path):
    (tmp_path / "x.evtx").write_bytes(b"y" * 10)
    with click.Context(click.Command("hunt")) as ctx:
        ctx.params["paths"] = (str(tmp_path),)
        console = Console(file=io.StringIO(), force_terminal=True)
        assert Progress(True, console=console).total_bytes == 10
    quiet = io.StringIO()
    with Progress(True, [str(tmp_path)], console=Console(file=quiet)) as p:  # not a terminal
        p(str(tmp_path / "x.evtx"), 1, 1)
    assert quiet.getvalue() == "" and p.total_bytes is None


def test_usage_error_reads_what_why_todo(capsys):
    assert main(["hunt", "--no-such-option", "x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: No such option")
    assert "usage: unbacked hunt [OPTIONS] PATHS..." in err
    assert "what to do: see 'unbacked hunt --help'" in err
    assert "Traceback" not in err


def test_unexpected_error_hints_at_vv(tmp_path, capsys, monkeypatch):
    alerts = tmp_path / "alerts.jsonl"
    with alerts.open("w") as fh:
        write_ocsf([plain_alert(1)], fh)

    def broken(*_a, **_k):
        raise TypeError("unsupported operand")

    monkeypatch.setattr("unbacked.render.html.write_html", broken)
    assert main(["report", str(alerts)]) == 1
    err = capsys.readouterr().err
    assert "error: unexpected TypeError: unsupported operand" in err
    assert "why: a bug in unbacked" in err and "rerun with -vv" in err
    assert "Traceback" not in err
    assert main(["report", str(alerts), "-vv"]) == 1
    assert "Traceback (most recent call last)" in capsys.readouterr().err


def test_os_error_names_the_path_and_cause(tmp_path, capsys):
    alerts = tmp_path / "alerts.jsonl"
    with alerts.open("w") as fh:
        write_ocsf([plain_alert(1)], fh)
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["report", str(alerts), "-o", str(blocker / "sub" / "r.html")]) == 1
    err = capsys.readouterr().err
    assert str(blocker) in err and "what to do: check the path" in err
