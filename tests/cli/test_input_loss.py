"""Exit status 4: an input lost whole, or no telemetry at all, is never a quiet exit 0."""

from __future__ import annotations

import json

from tests.support.events import events, remote_thread
from unbacked.cli._common import EXIT_ALERTS, EXIT_INPUT_LOST, EXIT_OK
from unbacked.cli.main import main
from unbacked.sources import write_events

PS = r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe"
NP = r"C:\Windows\System32\notepad.exe"


def _recording(path):  # type: ignore[no-untyped-def]
    write_events(events([remote_thread("inj", PS, "victim", NP, 0x590000)]), path)


def test_nothing_found_is_exit_4_with_a_message(tmp_path, capsys):  # type: ignore[no-untyped-def]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["hunt", str(empty), "-q"]) == EXIT_INPUT_LOST
    assert "no telemetry found" in capsys.readouterr().err
    (empty / "README").write_text("not telemetry\n")
    (empty / "notes.yaml").write_text("a: 1\n")
    report = tmp_path / "run.json"
    assert main(["hunt", str(empty), "-q", "--report", str(report)]) == EXIT_INPUT_LOST
    assert "no telemetry found" in capsys.readouterr().err
    d = json.loads(report.read_text())
    assert d["no_telemetry"] is True and len(d["unread"]) == 2
    assert main(["hunt", str(empty), "-q", "--strict"]) != EXIT_OK
    # even told to tolerate lost inputs: nothing found is not a result
    assert main(["hunt", str(empty), "-q", "--tolerate-loss"]) == EXIT_INPUT_LOST


def test_a_lost_file_is_exit_4_unless_tolerated(tmp_path, capsys):  # type: ignore[no-untyped-def]
    d = tmp_path / "d"
    d.mkdir()
    _recording(d / "events.parquet")
    (d / "broken.evtx").write_bytes(b"ElfFilX\x00" + b"\x00" * 4096)  # damaged file magic
    args = ["hunt", str(d), "-q", "--fail-on", "none"]
    assert main(args) == EXIT_INPUT_LOST
    err = capsys.readouterr().err
    assert "1 input lost whole" in err and "broken.evtx" in err
    assert main([*args, "--tolerate-loss"]) == EXIT_OK
    # alerts take precedence over the loss (both are on stderr / in the report)
    assert main(["hunt", str(d), "-q"]) == EXIT_ALERTS
    assert main([*args, "--strict"]) == 1
    report = tmp_path / "run.json"
    main([*args, "--report", str(report)])
    data = json.loads(report.read_text())
    assert data["inputs_lost"] == [str(d / "broken.evtx")]
    assert all(f["accounted"] for f in data["per_file"])


def test_summary_lists_what_was_not_read(tmp_path, capsys):  # type: ignore[no-untyped-def]
    d = tmp_path / "d"
    d.mkdir()
    _recording(d / "events.parquet")
    (d / "broken.evtx").write_bytes(b"ElfFilX\x00" + b"\x00" * 4096)
    (d / "empty.json").write_bytes(b"")
    main(["hunt", str(d), "--fail-on", "none", "--tolerate-loss"])
    err = capsys.readouterr().err
    assert "not read" in err and "broken.evtx" in err
    assert "1 empty" in err and "tolerated" in err


def test_train_and_export_exit_4_on_loss(tmp_path, capsys):  # type: ignore[no-untyped-def]
    d = tmp_path / "d"
    d.mkdir()
    _recording(d / "events.parquet")
    (d / "broken.evtx").write_bytes(b"ElfFilX\x00" + b"\x00" * 4096)
    assert main(["train", str(d), "-o", str(tmp_path / "bl"), "-q"]) == EXIT_INPUT_LOST
    bl2 = tmp_path / "bl2"
    assert main(["train", str(d), "-o", str(bl2), "-q", "--tolerate-loss"]) == EXIT_OK
    lake = tmp_path / "lake"
    assert main(["export", str(d), "--parquet", str(lake), "-q"]) == EXIT_INPUT_LOST
    lake2 = tmp_path / "lake2"
    assert main(["export", str(d), "--parquet", str(lake2), "-q", "--tolerate-loss"]) == EXIT_OK


def test_label_files_beside_the_data_are_not_lost(tmp_path, capsys):  # type: ignore[no-untyped-def]
    """`unbacked hunt samples/` (the README's first command): the ground-truth labels kept in
    the same tree are passed over as not telemetry, not reported as lost inputs; unknown JSON
    still is."""
    d = tmp_path / "d"
    (d / "labels").mkdir(parents=True)
    _recording(d / "events.parquet")
    label = {"file": "events.parquet", "format": "unbacked-parquet", "malicious_count": 0,
             "malicious": [], "possible": [], "must_not_label": [], "rationale": "x"}  # fmt: skip
    (d / "labels" / "events.json").write_text(json.dumps(label, indent=1))
    report = tmp_path / "run.json"
    args = ["hunt", str(d), "-q", "--fail-on", "none", "--report", str(report)]
    assert main(args) == EXIT_OK
    data = json.loads(report.read_text())
    assert data["inputs_lost"] == []
    assert [u["reason"] for u in data["unread"]] == [
        "a ground-truth label (unbacked eval --labels), not telemetry"
    ]
    # one line of JSON with those keys is not a label document: still lost
    (d / "labels" / "events.json").write_text(json.dumps(label))
    assert main(args) == EXIT_INPUT_LOST


def test_the_summary_names_ten_unreadable_files_and_counts_the_rest(tmp_path, capsys):  # type: ignore[no-untyped-def]
    """A directory of damaged files (here 13 EVTX files whose header is cut) is not a page of
    stderr: ten are named, the rest counted, every one is in --report."""
    d = tmp_path / "d"
    d.mkdir()
    _recording(d / "events.parquet")
    for i in range(13):
        (d / f"cut-{i:02d}.evtx").write_bytes(b"ElfFile\x00" + b"\x00" * 100)
    report = tmp_path / "run.json"
    main(["hunt", str(d), "--fail-on", "none", "--tolerate-loss", "--report", str(report)])
    err = capsys.readouterr().err
    assert sum(line.startswith("  unreadable file ") for line in err.splitlines()) == 10, err
    assert "… and 3 more unreadable files (see --report)" in err
    data = json.loads(report.read_text())
    assert data["files_failed"] == 13
    assert sum(f["error"] is not None for f in data["per_file"]) == 13
