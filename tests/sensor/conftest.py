"""Fixtures for the sensor tests: a clear skip when the live sensor cannot run here."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from tests.support.controls import control_command, controls_or_skip, parse_ready
from tests.support.events import exact_rows


def live_skip_reason() -> str | None:
    """Why the live sensor cannot run on this machine, or None when it can."""
    if os.uname().sysname != "Linux" or os.uname().machine != "x86_64":
        return "live sensor needs x86-64 Linux"
    if os.geteuid() != 0:
        return "live sensor needs root (eBPF); recorded captures in samples/linux/ are used instead"
    if not Path("/sys/kernel/btf/vmlinux").exists():
        return "live sensor needs a kernel with BTF (/sys/kernel/btf/vmlinux)"
    for tool, pkg in (("clang", "clang"), ("bpftool", "bpftool")):
        if not (shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")):
            return f"live sensor build needs {tool} (scripts/install-sensor-deps.sh: {pkg})"
    if not Path("/usr/include/bpf/bpf_helpers.h").exists():
        return "live sensor build needs libbpf-dev (scripts/install-sensor-deps.sh)"
    return None


@pytest.fixture(scope="session")
def live() -> None:
    """Skip unless the live sensor can run; build its object once per session."""
    reason = live_skip_reason()
    if reason:
        pytest.skip(reason)
    from unbacked.sensor.build import build_object

    build_object()


@pytest.fixture(scope="session")
def controls() -> dict[str, Path]:
    return controls_or_skip()


RecordFn = Callable[..., tuple[pa.Table, dict[str, Any], dict[str, Any]]]


@pytest.fixture
def record_control(live: None, controls: dict[str, Path], tmp_path: Path) -> RecordFn:
    """Run a control under ``record_command``; return (events, READY info, run summary)."""
    from unbacked.sensor.live import SensorOptions
    from unbacked.sensor.record import record_command
    from unbacked.sources.native import NativeParquetSource  # noqa: F401  (reader exists)

    def run(
        name: str,
        *args: str,
        rate_burst: int = 20_000,
        ring_mb: int = 32,
    ) -> tuple[pa.Table, dict[str, Any], dict[str, Any]]:
        out = tmp_path / f"{name}.parquet"
        stdout = tmp_path / f"{name}.out"
        with open(stdout, "w") as fh:
            result = record_command(
                control_command(name, *args),
                out,
                options=SensorOptions(follow_tree=True, rate_burst=rate_burst, ring_mb=ring_mb),
                stdin=subprocess.DEVNULL,
                stdout=fh,
                timeout=60,
            )
        assert result.exit_code == 0, stdout.read_text()
        ready = [ln for ln in stdout.read_text().splitlines() if ln.startswith("READY ")]
        assert ready, f"{name} printed no READY line"
        import pyarrow.parquet as pq

        table = pq.read_table(out)
        return table, parse_ready(ready[-1]), result.summary()

    return run


def rows(table: pa.Table, **eq: Any) -> list[dict[str, Any]]:
    """Rows of ``table`` whose columns equal the given values, as dicts, in time order."""
    mask = None
    for col, value in eq.items():
        c = table[col]
        if pa.types.is_dictionary(c.type):
            c = c.cast(pa.string())
        m = pc.equal(c, value)
        mask = m if mask is None else pc.and_(mask, m)
    sel = table.filter(mask) if mask is not None else table
    return exact_rows(sel.sort_by("time"))  # times as integer nanoseconds
