"""The user stack on exec-memory events: eight frames, each resolved to its mapping, tell the
module that asked apart (libffi's closure allocator vs. Python's mmap module)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.support.events import exact_rows
from unbacked.detect.base import DetectionContext
from unbacked.detect.rules.memory import RwxPrivateFromNonJit

PY = r"""
import ctypes, mmap
CB = ctypes.CFUNCTYPE(ctypes.c_int)(lambda: 1)       # libffi closure: RWX from libffi
m = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
m.write(b"\xb8\x2a\x00\x00\x00\xc3")                  # mov eax, 42; ret
addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
assert ctypes.CFUNCTYPE(ctypes.c_int)(addr)() == 42  # called through ctypes
print("ok")
"""


@pytest.mark.live
def test_libffi_closure_vs_mmap_module(live: None, tmp_path: Path) -> None:
    from unbacked.sensor.live import SensorOptions
    from unbacked.sensor.record import record_command

    script = tmp_path / "rwx.py"
    script.write_text(PY)
    out = tmp_path / "rwx.parquet"
    result = record_command(
        [sys.executable, str(script)], out, options=SensorOptions(follow_tree=True),
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, timeout=60,
    )  # fmt: skip
    assert result.exit_code == 0
    table = pq.read_table(out)
    rwx = [
        r
        for r in exact_rows(table)
        if r["kind"] == "memory" and r["protection"] == 7 and r["region_type"] == "anonymous"
    ]
    by_first = {r["call_trace"].split("|", 1)[0].split("+", 1)[0]: r for r in rwx}
    ffi = next(v for k, v in by_first.items() if k.startswith("libffi"))
    mm = next(v for k, v in by_first.items() if k.startswith("mmap."))
    for r in (ffi, mm):
        frames = r["call_trace"].split("|")
        assert len(frames) == 8, frames
        assert all("+0x" in f or f.startswith("UNKNOWN(") for f in frames)
    # shared anonymous memory (the mmap module's default MAP_SHARED) is anonymous, not a file
    assert mm["backing_path"] is None
    ctx = DetectionContext.build(table)
    hit = RwxPrivateFromNonJit().evaluate(ctx)
    assert hit["row"].to_pylist() and all(
        ctx.events["caller_module"][r].as_py().startswith("mmap.") for r in hit["row"].to_pylist()
    )


@pytest.mark.live
def test_ctypes_shellcode_rwx_is_caught(record_control) -> None:
    """ctypes calling libc's mmap for an RWX page reaches mmap through libffi's foreign-call
    trampoline (an indirect call): not libffi's closure allocator, so no JIT allowance."""
    from unbacked.engine.local import detect_events

    table, info, _ = record_control("shellcode_py", "rwx")
    rwx = [
        r
        for r in exact_rows(table)
        if r["kind"] == "memory" and r["protection"] == 7 and r["pid"] == info["pid"]
    ]
    assert any(r["call_trace"].split("|")[0].endswith("(indirect)") for r in rwx), rwx
    alerts = [a for a in detect_events(table).alerts if a.process.pid == info["pid"]]
    assert alerts and "UNB-M-003" in alerts[0].detectors
