"""Detection on the live sensor: every positive control raises an alert with the right
explanation, and fresh runs of the benign JIT suite raise none, against a baseline learned
from the sensor's own recordings of that suite (samples/linux/benign-*).

Without root / eBPF the same assertions run on the recorded captures of the controls
(samples/linux/control-*), so the detection half is always tested."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pyarrow as pa
import pytest

from tests.sensor.conftest import RecordFn, live_skip_reason
from unbacked.detect import ProgramBaseline
from unbacked.engine.local import detect_events, learn_baseline, load_events
from unbacked.runreport import RunReport

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "linux"

#: control -> (argv after the control name, detectors of which at least one must explain it)
CONTROLS: dict[str, tuple[tuple[str, ...], set[str], str]] = {
    "loader-wx": (("wx",), {"UNB-M-001"}, "loader"),
    "loader-rwx": (("rwx",), {"UNB-M-003", "UNB-M-001"}, "loader"),
    "loader-syscall": (("syscall",), {"UNB-M-002", "UNB-M-006"}, "loader"),
    "loader-jit": (("jit",), {"UNB-M-001"}, "loader"),
    "loader-py-wx": (("wx",), {"UNB-M-001"}, "loader_py"),
    "shellcode-py-wx": (("wx",), {"UNB-L-001"}, "shellcode_py"),
    "memfd-exec": ((), {"UNB-M-005"}, "memfd_exec"),
    "memfd-dlopen": ((), {"UNB-M-005"}, "memfd_dlopen"),
    "loader-wx-connect": (("wx", "connect"), {"UNB-M-001"}, "loader"),
}


def _load(files: list[Path]) -> pa.Table:
    report = RunReport(strict=True)
    return load_events(files, report)


@pytest.fixture(scope="module")
def baseline() -> ProgramBaseline:
    files = sorted(SAMPLES.glob("benign-*"))
    if not files:
        pytest.skip(f"no benign captures in {SAMPLES} (scripts/record-samples.sh)")
    return learn_baseline(_load(files))


def _alerts_on(events: pa.Table, baseline: ProgramBaseline):
    return detect_events(events, baseline=baseline).alerts


def _check(alerts, pid: int | None, expected: set[str]) -> None:
    assert alerts, "no alert"
    hits = [a for a in alerts if pid is None or a.process.pid == pid]
    assert hits, [(a.process.name, a.process.pid) for a in alerts]
    detectors = set().union(*(set(a.detectors) for a in hits))
    assert detectors & expected, detectors
    a = hits[0]
    assert "T1620" in a.techniques
    assert a.explanation and a.timeline and all(t.provenance.file for t in a.timeline)


@pytest.mark.parametrize("name", sorted(CONTROLS))
def test_recorded_control_alerts(name: str, baseline: ProgramBaseline) -> None:
    path = SAMPLES / f"control-{name}.jsonl"
    if not path.exists():
        pytest.skip(f"no capture {path.name} (scripts/record-samples.sh)")
    _check(_alerts_on(_load([path]), baseline), None, CONTROLS[name][1])


def test_recorded_benign_suite_raises_nothing() -> None:
    files = sorted(SAMPLES.glob("benign-*"))
    if len(files) < 6:
        pytest.skip("benign captures missing (scripts/record-samples.sh)")
    learn = [f for f in files if not f.stem.endswith("-3")]
    fresh = [f for f in files if f.stem.endswith("-3")]
    bl = learn_baseline(_load(learn))
    assert _alerts_on(_load(fresh), bl) == []


@pytest.mark.live
@pytest.mark.parametrize("name", sorted(CONTROLS))
def test_live_control_alerts(name: str, record_control: RecordFn, baseline) -> None:
    args, expected, control = CONTROLS[name]
    table, info, _ = record_control(control, *args)
    _check(_alerts_on(table, baseline), info["pid"], expected)


@pytest.mark.live
def test_live_benign_gate(live: None, baseline: ProgramBaseline, tmp_path: Path) -> None:
    """Fresh runs of python, node, java, luajit, pypy3 and headless chromium under the live
    sensor raise no alert against the baseline learned from earlier recordings."""
    from tests.support.jit_suite import jit_workloads
    from unbacked.sensor.live import SensorOptions
    from unbacked.sensor.record import record_command

    suite = jit_workloads(tmp_path / "jit")
    if not suite.workloads:
        pytest.skip(f"no JIT programs installed: {suite.missing}")
    alerts = []
    for w in suite.workloads:
        out = tmp_path / f"{w.name}.parquet"
        result = record_command(
            list(w.argv), out, options=SensorOptions(follow_tree=True),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, timeout=w.timeout,
        )  # fmt: skip
        assert result.exit_code == 0, w.name
        alerts += [(w.name, a.title) for a in _alerts_on(_load([out]), baseline)]
    assert alerts == []


def test_skip_reason_is_clear() -> None:
    reason = live_skip_reason()
    assert reason is None or "needs" in reason
