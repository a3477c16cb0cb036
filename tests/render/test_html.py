"""The HTML report as text: self-contained, escaped, CSP-pinned; the report CLI; Alerts.plot."""

from __future__ import annotations

import base64
import builtins
import hashlib
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.render._alerts import HOSTILE_CMD, HOSTILE_NAME, HOSTILE_SUMMARY, plain_alert, rich_alert
from unbacked.cli.main import main
from unbacked.errors import DependencyError
from unbacked.model.alert import Alerts
from unbacked.render import write_ocsf
from unbacked.render.html import render_html, write_html

pytest.importorskip("bokeh", reason="the [report] extra (bokeh) is not installed")


@pytest.fixture(scope="module")
def page() -> str:
    return render_html([plain_alert(1), rich_alert(), plain_alert(2)])


class _LinkParser(HTMLParser):
    """Every attribute that could make a browser fetch something."""

    def __init__(self) -> None:
        super().__init__()
        self.tags = 0
        self.outside: list[tuple[str, str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags += 1
        for name, value in attrs:
            if name in {"src", "href", "action", "srcset", "poster", "data"} and not (
                value or ""
            ).startswith("#"):
                self.outside.append((tag, name, value))


def _scripts(text: str) -> list[tuple[str, str]]:
    return re.findall(r"<script([^>]*)>(.*?)</script>", text, flags=re.S)


def test_self_contained(page):
    # nothing is fetched: no src/href to anything but in-page anchors, no @import, no url()
    links = _LinkParser()
    links.feed(page)
    assert links.tags > 100
    assert links.outside == []
    style = page[page.index("<style>") : page.index("</style>")]
    assert "@import" not in style and "url(" not in style
    assert "cdn.bokeh.org" not in page and "https://" not in page.split("</style>")[0]
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)
    assert csp and "default-src &#x27;none&#x27;" in csp.group(1)
    assert "connect-src &#x27;none&#x27;" in csp.group(1)


def test_every_running_script_is_pinned_by_the_csp(page):
    csp = re.search(r'Content-Security-Policy" content="([^"]+)"', page).group(1)
    allowed = set(re.findall(r"sha256-([A-Za-z0-9+/=]+)", csp))
    running = [body for attrs, body in _scripts(page) if "application/json" not in attrs]
    assert len(running) == 2  # bokeh + the page script
    for body in running:
        assert base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() in allowed


def test_hostile_telemetry_stays_text(page):
    for bad in ("<script>window.__pwned", "<img src=x", "<svg onload", "<b>evil</b>"):
        assert bad not in page, bad
    # the values are all there, escaped, for the analyst to read
    assert "&lt;b&gt;evil&lt;/b&gt;.exe" in page
    assert "&lt;img src=x onerror=window.__pwned=2&gt;" in page
    assert "&lt;/script&gt;&lt;script&gt;window.__pwned=4&lt;/script&gt;" in page
    # plot data: JSON that cannot close its script element, and that decodes to the same text
    blocks = [body for attrs, body in _scripts(page) if "application/json" in attrs]
    assert len(blocks) == 4  # one bokeh figure, then the plot data of each alert
    for body in blocks:
        assert "<" not in body and ">" not in body
    text = json.dumps([json.loads(b) for b in blocks])
    assert json.dumps(HOSTILE_SUMMARY)[1:-1] in text


def test_sections_of_an_alert(page):
    # sorted most severe first: the rich alert is section a0
    a0 = page[page.index('id="a0"') : page.index('id="a1"')]
    for needle in ("Process tree", "injector (actor)", "injected: foreign code ran here",
                   "WINWORD.EXE", "cmd.exe /c whoami", "Why this is unusual",
                   "this program (svchost.exe)</b>: 0 of 18,422 like this",
                   "all programs</b>: 12 of 40,311 like this", "rule: no baseline needed",
                   "RW → RX", "none (unbacked)", '<span class="hdr-bad">PE</span>',
                   "confirmed", "MZ/PE header at 0x1c0000", "203.0.113.7:443",
                   "cdn.example.net", "record 104", "Microsoft-Windows-Sysmon%4Operational.evtx",
                   'id="plot-0"', "T1055.002 Portable Executable Injection"):  # fmt: skip
        assert needle in a0, needle
    # parent chain, then the injector, the injected process, its child: nested in that order
    tree = a0[a0.index("Process tree") : a0.index("Why this is unusual")]
    order = ["explorer.exe", "WINWORD.EXE", "&lt;b&gt;evil", "svchost.exe -k", "cmd.exe /c"]
    assert [tree.index(x) for x in order] == sorted(tree.index(x) for x in order)
    assert HOSTILE_CMD not in page and HOSTILE_NAME not in page


def test_alert_list_carries_sort_keys(page):
    pattern = r'<tr data-idx="(\d+)" data-sev="(\d+)" data-time="(\d+)" data-host="([^"]*)"'
    rows = re.findall(pattern, page)
    assert [r[0] for r in rows] == ["0", "1", "2"]
    sev = [int(r[1]) for r in rows]
    assert sev == sorted(sev, reverse=True)
    assert rows[0][3] == "ws-0042.corp.example"


def test_no_alerts_and_no_bokeh(monkeypatch, tmp_path):
    empty = render_html([])
    assert "no alerts" in empty and "<script>" in empty
    real_import = builtins.__import__

    def no_bokeh(name, *args, **kwargs):
        if name == "bokeh" or name.startswith("bokeh."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_bokeh)
    text = render_html([rich_alert()])
    assert "timeline plot not drawn (bokeh is not installed)" in text
    assert "Process tree" in text and 'id="plot-data-' not in text
    with pytest.raises(DependencyError, match="bokeh") as info:
        Alerts([rich_alert()]).plot(0)
    assert "unbacked[report]" in (info.value.hint or "")


def test_one_figure_for_the_page_and_data_per_alert(page):
    from unbacked.render.html import plot_data

    ids = re.findall(r'<script type="application/json" id="([^"]+)"', page)
    assert ids == ["plot-figure", "plot-data-0", "plot-data-1", "plot-data-2"]
    d = plot_data(rich_alert())
    assert d["lanes"][::-1] == ["open", "allocate", "write", "protect", "thread", "connect",
                                "child"]  # fmt: skip
    assert len(d["events"]["t"]) == 7 and d["events"]["signal"].count("context") == 3
    # the region's lifecycle: the four events naming 0x1c0000, in time order
    assert d["lifecycles"]["ys"] == [["allocate", "write", "protect", "thread"]]
    assert d["reset_start"] < d["start"] < d["end"] <= d["reset_end"]


def test_alerts_plot_is_a_bokeh_figure():
    from bokeh.models import HoverTool
    from bokeh.plotting import figure

    fig = Alerts([rich_alert()]).plot("7f3c2a10")
    assert isinstance(fig, figure)
    assert list(fig.y_range.factors)[::-1][:5] == ["open", "allocate", "write", "protect", "thread"]
    hover = [t for t in fig.tools if isinstance(t, HoverTool)]
    assert hover and not any("{safe}" in str(v) for _, v in hover[0].tooltips)
    # opens on the evidence (allocate .. connect), resets to every event (open .. child)
    xr = fig.x_range
    assert xr.reset_start < xr.start < xr.end <= xr.reset_end


def test_report_command_round_trip(tmp_path, capsys):
    alerts_file = tmp_path / "alerts.jsonl"
    with alerts_file.open("w") as fh:
        write_ocsf([rich_alert(), plain_alert(1)], fh)
    out = tmp_path / "out" / "report.html"
    assert main(["report", str(alerts_file), "-o", str(out), "--title", "<i>case 42</i>"]) == 0
    text = out.read_text()
    assert "<title>&lt;i&gt;case 42&lt;/i&gt;</title>" in text
    assert text.count('<section class="alert"') == 2
    assert "wrote" in capsys.readouterr().err
    # default output: next to the alerts, .html
    assert main(["report", str(alerts_file), "-q"]) == 0
    assert (tmp_path / "alerts.html").is_file()


def test_report_command_rejects_other_files(tmp_path, capsys):
    bad = tmp_path / "events.jsonl"
    bad.write_text('{"class_uid": 1007}\n')
    assert main(["report", str(bad), "-o", str(tmp_path / "r.html")]) == 1
    err = capsys.readouterr().err
    assert "Detection Finding" in err and "what to do" in err
    assert not (tmp_path / "r.html").exists()


def test_write_html_returns_path(tmp_path):
    p = write_html(Alerts([plain_alert(3)]), tmp_path / "a" / "b.html")
    assert isinstance(p, Path) and p.read_text().startswith("<!DOCTYPE html>")


def test_hunt_html_writes_the_same_report_as_report(tmp_path):
    from tests.support.events import events, remote_thread
    from unbacked.sources import write_events

    ps = r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe"
    recording = tmp_path / "events.parquet"
    write_events(events([remote_thread("inj", ps, "victim", r"C:\x\notepad.exe", 0x590000)]),
                 recording)  # fmt: skip
    direct, alerts = tmp_path / "hunt.html", tmp_path / "alerts.jsonl"
    argv = ["hunt", str(recording), "-o", str(alerts), "--html", str(direct), "-q"]
    assert main([*argv, "--fail-on", "none"]) == 0
    assert main(["report", str(alerts), "-o", str(tmp_path / "report.html"), "-q"]) == 0

    def body(p: Path) -> str:  # generation time and bokeh's model ids differ, nothing else
        text = re.sub(r"generated [^<]* by", "", p.read_text())
        return re.sub(r'id="plot-figure">.*?</script>', "", text, flags=re.S)

    assert body(direct) == body(tmp_path / "report.html")
    assert "notepad.exe" in body(direct) and "injector (actor)" in body(direct)
