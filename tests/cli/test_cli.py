"""The command line: exit codes, formats, errors as "what / where / what to do"."""

from __future__ import annotations

import json

import pytest

from tests.support.events import events, remote_thread
from unbacked.cli.main import main
from unbacked.sources import write_events

PS = r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe"
NP = r"C:\Windows\System32\notepad.exe"


@pytest.fixture()
def recording(tmp_path):
    p = tmp_path / "events.parquet"
    write_events(events([remote_thread("inj", PS, "victim", NP, 0x590000)]), p)
    return p


def test_hunt_exit_codes_and_output(recording, tmp_path, capsys):
    out = tmp_path / "alerts.jsonl"
    assert main(["hunt", str(recording), "-o", str(out), "-q"]) == 3  # high alert >= --fail-on
    d = json.loads(out.read_text().splitlines()[0])
    assert d["class_uid"] == 2004 and d["process"]["uid"] == "victim"
    assert main(["hunt", str(recording), "-o", str(out), "-q", "--fail-on", "none"]) == 0
    assert main(["hunt", str(recording), "-o", str(out), "-q", "--fail-on", "critical"]) == 0


def test_formats(recording, capsys):
    main(["hunt", str(recording), "-q", "--format", "ecs", "--fail-on", "none"])
    assert json.loads(capsys.readouterr().out)["event"]["kind"] == "alert"
    main(["hunt", str(recording), "-q", "--format", "table", "--fail-on", "none"])
    assert "notepad.exe" in capsys.readouterr().out


def test_an_interrupted_command_exits_130(recording, monkeypatch, capsys):
    import unbacked.cli.hunt as hunt_cli

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(hunt_cli, "run_hunt", interrupted)
    assert main(["hunt", str(recording), "-q"]) == 130
    assert capsys.readouterr().err.strip().endswith("interrupted")


def test_usage_errors(tmp_path, capsys):
    assert main(["hunt"]) == 2
    assert main(["hunt", str(tmp_path / "missing.evtx")]) == 2
    assert main(["hunt", str(tmp_path), "--fail-on", "bogus"]) == 2


def test_train_then_detect(recording, tmp_path, capsys):
    bl = tmp_path / "bl"
    assert main(["train", str(recording), "-o", str(bl), "-q"]) == 0
    assert (bl / "manifest.json").is_file()
    rc = main(["detect", str(recording), "--baseline", str(bl), "-q", "--fail-on", "none"])
    assert rc == 0


def test_bad_baseline_is_a_clear_error(recording, tmp_path, capsys):
    (tmp_path / "bl").mkdir()
    rc = main(["detect", str(recording), "--baseline", str(tmp_path / "bl"), "-q"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "no baseline manifest.json" in err and "what to do" in err


def test_report_and_strict(recording, tmp_path):
    junk = tmp_path / "junk.jsonl"
    junk.write_text(
        '{"kind": "process", "activity": "launch", "src_format": "x", "time": 1}\n{bad\n'
    )
    rep = tmp_path / "run.json"
    main(["hunt", str(recording), str(junk), "-q", "--fail-on", "none", "--report", str(rep)])
    data = json.loads(rep.read_text())
    assert data["files"] >= 2
    assert main(["hunt", str(junk), "-q", "--strict", "--fail-on", "none"]) == 1
