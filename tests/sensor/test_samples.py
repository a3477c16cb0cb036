"""The recorded captures in samples/linux/ (made by this sensor with scripts/record-samples.sh).

Where the live sensor cannot run (no root, no BTF), these are the evidence: they are read back
through the native event sources like any user's capture, and must still show each control's
act — and the benign JIT suite must not show the loader's tell-tales.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from tests.support.events import exact_rows
from unbacked.engine.local import load_events
from unbacked.runreport import RunReport

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "linux"
PROT_X = 4


def _load(pattern: str) -> list[dict[str, Any]]:
    files = sorted(SAMPLES.glob(pattern))
    if not files:
        pytest.skip(f"no captures {pattern} in {SAMPLES} (scripts/record-samples.sh)")
    report = RunReport(strict=True)
    table: pa.Table = load_events(files, report)
    assert report.skipped == 0
    return exact_rows(table.sort_by("time"))


def _protects(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r["activity"] == "protect" and r["protection"] & PROT_X]


def test_samples_are_small() -> None:
    for f in SAMPLES.glob("*"):
        assert f.stat().st_size < 1 << 20, f


@pytest.mark.parametrize(
    "name", ["loader-wx", "loader-syscall", "loader-jit", "loader-py-wx", "loader-wx-connect"]
)
def test_loader_captures_show_elf_in_anonymous_exec_memory(name: str) -> None:
    rows = _load(f"control-{name}.jsonl")
    hits = [r for r in _protects(rows) if r["header_kind"] == "elf"]
    assert len(hits) == 1
    r = hits[0]
    assert r["os"] == "linux" and r["region_type"] == "anonymous" and r["backing_path"] is None
    if name == "loader-syscall":
        assert r["caller_unbacked"] is True and r["syscall_outside_libc"] is True
    else:
        assert r["caller_unbacked"] is False and r["syscall_outside_libc"] is False
    if name == "loader-wx-connect":
        conn = [c for c in rows if c["activity"] == "connect"]
        assert conn and conn[0]["time"] > r["time"] and conn[0]["remote_ip"] == "127.0.0.1"


def test_rwx_captures() -> None:
    for pattern in ("control-loader-rwx.jsonl", "control-shellcode-py-rwx.jsonl"):
        rows = _load(pattern)
        rwx = [r for r in rows if r["activity"] == "allocate" and r["protection"] == 7]
        assert len(rwx) == 1 and rwx[0]["region_type"] == "anonymous", pattern


def test_memfd_exec_capture() -> None:
    rows = _load("control-memfd-exec.jsonl")
    memfd = [r for r in rows if r["activity"] == "memfd"]
    fexec = [r for r in rows if r["event_code"] == "linux:execveat"]
    assert memfd and fexec and fexec[0]["time"] > memfd[0]["time"]
    assert fexec[0]["image"] == memfd[0]["backing_path"] == "/memfd:unbacked-control"


def test_benign_suite_shows_no_loader_tell_tales() -> None:
    """Ordinary JIT runs: no image header in anonymous executable memory, no code from a memfd
    executed, no syscalls from unbacked memory."""
    rows = _load("benign-*.parquet")
    programs = {Path(r["image"]).name for r in rows if r["activity"] == "exec"}
    assert {"node", "java", "luajit"} <= {p.split("-")[0] for p in programs} | programs
    mem = [r for r in rows if r["kind"] == "memory" and r["activity"] != "memfd"]
    assert mem
    assert not [
        r for r in mem if r["header_kind"] in ("elf", "pe") and r["region_type"] == "anonymous"
    ]
    assert not [
        r
        for r in rows
        if r["event_code"] == "linux:execveat" and (r["backing_path"] or "").startswith("/memfd:")
    ]
    assert not [r for r in mem if r["syscall_outside_libc"] and r["caller_unbacked"]]


@pytest.mark.slow
def test_engine_on_captures_controls_alert_benign_gate_quiet() -> None:
    """The captures through the whole engine: a baseline learned from two benign runs of each
    JIT program keeps the third run at 0 alerts, and the loader controls still alert."""
    from unbacked.engine.local import detect_events, learn_baseline

    train = sorted(SAMPLES.glob("benign-*-[12].parquet"))
    fresh = sorted(SAMPLES.glob("benign-*-3.parquet"))
    if not train or not fresh:
        pytest.skip("benign captures missing (scripts/record-samples.sh)")
    baseline = learn_baseline(load_events(train, RunReport()))
    assert detect_events(load_events(fresh, RunReport()), baseline=baseline).alerts == []
    for name in (
        "loader-wx",
        "loader-syscall",
        "loader-jit",
        "loader-py-wx",
        "loader-rwx",
        "memfd-exec",
        "memfd-dlopen",
    ):
        events = load_events([SAMPLES / f"control-{name}.jsonl"], RunReport())
        alerts = detect_events(events, baseline=baseline).alerts
        assert alerts and alerts[0].severity_id >= 4, name
