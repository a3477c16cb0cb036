"""Sysmon EVTX: golden counts against the labels, evidence records, corrupt input."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from unbacked.errors import FormatError, InputError
from unbacked.runreport import RunReport
from unbacked.sources import read_events
from unbacked.sources.base import InputFile
from unbacked.sources.sysmon_evtx import SysmonEvtxSource

from .util import accounted, read_bytes, rows

CORRUPTION_REASONS = ("corrupt EVTX chunk", "corrupt EVTX record")


def _evtx_labels(shared: Path) -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for lab in sorted((shared / "labels" / "windows").rglob("*.json")):
        label = json.loads(lab.read_text())
        if label.get("format") == "evtx":
            out.append((shared / label["file"], label))
    return out


def _read(path: Path) -> tuple[list[dict[str, Any]], Any]:
    report = RunReport()
    table = read_events([path], report)
    rep = report.files[str(path)]
    return rows(table), rep


def test_sniff() -> None:
    assert SysmonEvtxSource.sniff(b"ElfFile\x00" + b"\x00" * 100, "x.bin")
    assert not SysmonEvtxSource.sniff(b"ElfChnk\x00", "x.evtx")
    assert not SysmonEvtxSource.sniff(b'{"EventID": 1}\n', "x.evtx")


@pytest.mark.parametrize(
    "data",
    [
        b"ElfFile\x00",
        b"ElfFile\x00" + b"\x00" * 4096,
        b"ElfFile\x00" + bytes(range(256)) * 64,
    ],
)
def test_garbage_evtx_never_crashes(data: bytes) -> None:
    try:
        table, rep = read_bytes(SysmonEvtxSource, data, "junk.evtx")
    except FormatError:
        return  # the whole file is unusable: a file error, which is allowed
    assert table.num_rows == 0 and accounted(rep)


@pytest.mark.shared_data
def test_every_labelled_evtx_matches_label_counts(shared_data: Path) -> None:
    labels = _evtx_labels(shared_data)
    assert len(labels) >= 17
    for path, label in labels:
        got, rep = _read(path)
        corrupt = sum(rep.skipped.get(r, 0) for r in CORRUPTION_REASONS)
        parsed = rep.records - corrupt
        assert (parsed, corrupt) == (label["events"], label["parse_errors"]), path.name
        assert accounted(rep), path.name
        assert set(rep.skipped) <= set(CORRUPTION_REASONS), (path.name, rep.skipped)
        hosts = {r["host"] for r in got}
        assert hosts <= set(label["hosts"]), path.name
        # src_line is the 1-based position in parser order: unique and within range
        lines = [r["src_line"] for r in got]
        assert len(set(lines)) == len(lines) and all(1 <= n <= parsed for n in lines)


@pytest.mark.shared_data
def test_label_evidence_is_found_at_its_record_index(shared_data: Path) -> None:
    checked = 0
    for path, label in _evtx_labels(shared_data):
        by_index: dict[int, dict[str, Any]] | None = None
        for inst in label["malicious"] + label.get("possible", []):
            for ev in inst["evidence"]:
                if ev.get("event_id") not in (1, 3, 5, 7, 8, 10, 25):
                    continue
                if by_index is None:
                    by_index = {r["src_line"]: r for r in _read(path)[0]}
                r = by_index[ev["file_record_index"]]
                assert r["src_record"] == ev["record_id"], (path.name, ev)
                assert r["event_code"] == f"sysmon:{ev['event_id']}"
                f = ev["fields"]
                pid_key = "SourceProcessId" if ev["event_id"] in (8, 10) else "ProcessId"
                if pid_key in f:
                    assert r["pid"] == int(f[pid_key])
                if "TargetProcessId" in f:
                    assert r["target_pid"] == int(f["TargetProcessId"])
                checked += 1
    assert checked >= 20


@pytest.mark.shared_data
def test_win7_garbage_source_image_is_nulled(shared_data: Path) -> None:
    path = (
        shared_data
        / "windows/sbousseaden_EVTX-ATTACK-SAMPLES/Execution"
        / "Sysmon_meterpreter_ReflectivePEInjection_to_notepad_.evtx"
    )
    got, _ = _read(path)
    first = next(r for r in got if r["src_line"] == 1)
    assert first["event_code"] == "sysmon:10" and "image" not in first  # "\u3100" in the data
    assert first["process_uid"] == "365ABB72-0C16-5D1D-0000-00108B721100" and first["pid"] == 3092
    assert first["time"] == 1_562_186_369_223_000_000  # UtcTime 2019-07-03 20:39:29.223
    threads = [r for r in got if r["event_code"] == "sysmon:8"]
    assert len(threads) == 9 and all("start_module" not in r for r in threads)
    assert {r["start_address"] for r in threads} == {0x560000, 0x540000}
    assert all(r["image"].endswith("powershell.exe") for r in threads)


@pytest.mark.shared_data
def test_truncated_real_evtx_reads_what_is_there(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "windows/omerbenamram_evtx/samples/sysmon.evtx"
    whole, _ = _read(src)
    cut = tmp_path / "cut.evtx"
    cut.write_bytes(src.read_bytes()[: 4096 + 65536 * 3 + 1000])
    report = RunReport()
    part = rows(read_events([cut], report))
    rep = report.files[str(cut)]
    assert 0 < len(part) < len(whole) and accounted(rep)

    def strip(rs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in r.items() if k != "src_file"} for r in rs]

    assert strip(part) == strip(whole[: len(part)])  # the same records, in the same order
    strict = RunReport(strict=True)
    with pytest.raises(InputError):
        read_events([src], strict)  # sysmon.evtx has corrupt chunks


@pytest.mark.shared_data
def test_evtx_read_from_file_object_matches_path(shared_data: Path) -> None:
    src = shared_data / "windows/sbousseaden_EVTX-ATTACK-SAMPLES/Execution"
    src = src / "sysmon_mshta_sharpshooter_stageless_meterpreter.evtx"
    by_path, _ = _read(src)
    table, rep = read_bytes(SysmonEvtxSource, src.read_bytes(), str(src))
    assert rows(table) == by_path and rep.events == 3  # same name: identical rows
    assert InputFile.from_bytes("x", b"").size == 0


@pytest.mark.shared_data
def test_small_files_read_together_equal_files_read_alone(
    shared_data: Path, tmp_path: Path
) -> None:
    files = sorted((shared_data / "windows").rglob("*.evtx"))
    broken = tmp_path / "broken.evtx"
    broken.write_bytes(b"ElfFile\x00" + b"\xff" * 5000)  # claimed by its magic, unreadable
    together = RunReport()
    table = read_events([*files, broken], together)
    alone_rows: list[dict[str, Any]] = []
    for f in files:
        got, rep = _read(f)
        alone_rows.extend(got)
        mine = together.files[str(f)]
        assert (mine.records, mine.events, mine.ignored, mine.skipped) == (
            rep.records,
            rep.events,
            rep.ignored,
            rep.skipped,
        ), f.name
    assert rows(table) == alone_rows  # same rows, same order, same provenance
    rep = together.files[str(broken)]
    assert rep.error is not None and "EVTX" in rep.error  # a file error; the others were read


@pytest.mark.shared_data
def test_evtx_inside_a_zip_is_read_in_place(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "windows/omerbenamram_evtx/samples/sysmon.evtx"
    z = tmp_path / "logs.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(src, "host1/sysmon.evtx")
    report = RunReport()
    inner = rows(read_events([z], report))
    plain, plain_rep = _read(src)
    rep = report.files[f"{z}!host1/sysmon.evtx"]
    assert (rep.records, rep.events, rep.skipped) == (
        plain_rep.records,
        plain_rep.events,
        plain_rep.skipped,
    )
    assert [{k: v for k, v in r.items() if k != "src_file"} for r in inner] == [
        {k: v for k, v in r.items() if k != "src_file"} for r in plain
    ]
    assert {r["src_file"] for r in inner} == {f"{z}!host1/sysmon.evtx"}


PANACHE = (
    "windows/sbousseaden_EVTX-ATTACK-SAMPLES/AutomatedTestingTools/"
    "PanacheSysmon_vs_AtomicRedTeam01.evtx"
)


@pytest.mark.shared_data
def test_a_truncated_chunk_is_counted_not_dropped(shared_data: Path, tmp_path: Path) -> None:
    data = (shared_data / PANACHE).read_bytes()
    whole = RunReport()
    read_events([shared_data / PANACHE], whole)
    two = 4096 + 2 * 65536
    complete = RunReport()
    (tmp_path / "two.evtx").write_bytes(data[:two])
    read_events([tmp_path / "two.evtx"], complete)
    in_two = complete.files[str(tmp_path / "two.evtx")].records
    assert not complete.skipped  # cut at a chunk boundary: nothing to see
    for cut in (4096 + 65536 + 30000, 4096 + 65536 + 600, 4096 + 65536 + 20):
        f = tmp_path / f"cut{cut}.evtx"
        f.write_bytes(data[:cut])
        report = RunReport()
        read_events([f], report)
        rep = report.files[str(f)]
        assert rep.skipped.get("truncated EVTX chunk", 0) >= 1, cut
        assert accounted(rep)
        if cut > 4096 + 65536 + 48:  # the chunk header is there: its record count is used
            assert rep.records == in_two
    # also inside an archive
    z = tmp_path / "cut.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("cut.evtx", data[: 4096 + 65536 + 30000])
    report = RunReport()
    read_events([z], report)
    rep = report.files[f"{z}!cut.evtx"]
    assert rep.records == in_two and rep.skipped.get("truncated EVTX chunk")
