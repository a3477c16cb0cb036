"""Streaming detection over the sensor's batches (captures replayed as the live batches)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from unbacked.engine.local import learn_baseline, load_events
from unbacked.model.alert import Alert
from unbacked.runreport import RunReport
from unbacked.sensor.stream import StreamingDetector

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "linux"


@pytest.fixture(scope="module")
def baseline():  # type: ignore[no-untyped-def]
    train = sorted(SAMPLES.glob("benign-*-[12].parquet"))
    if not train:
        pytest.skip("benign captures missing (scripts/record-samples.sh)")
    return learn_baseline(load_events(train, RunReport()))


def _batches(name: str, size: int = 7):  # type: ignore[no-untyped-def]
    table = load_events([SAMPLES / name], RunReport()).sort_by("time")
    return [table.slice(i, size) for i in range(0, table.num_rows, size)]


@pytest.mark.slow
def test_alert_once_per_process_and_quiet_on_benign(baseline) -> None:  # type: ignore[no-untyped-def]
    got: list[Alert] = []
    det = StreamingDetector(got.extend, baseline=baseline, interval_s=0.0)
    for name in ("benign-node-3.parquet", "benign-luajit-3.parquet"):
        for batch in _batches(name):
            det(batch)
    det.flush()
    assert got == []
    for batch in _batches("control-loader-wx-connect.jsonl", size=2):
        det(batch)
    det.flush()
    assert len(got) == 1  # one process: reported once, not once per batch
    assert got[0].process.name == "loader"
    assert got[0].severity_id >= 4
    assert det.passes >= 3 and len(det.latencies_s) == 1


def test_affected_keeps_the_new_processes_and_their_parents(baseline) -> None:  # type: ignore[no-untyped-def]
    table = load_events([SAMPLES / "control-memfd-exec.jsonl"], RunReport())
    other = load_events([SAMPLES / "benign-luajit-3.parquet"], RunReport())
    det = StreamingDetector(lambda alerts: None, baseline=baseline, interval_s=1e9)
    det(other)
    det._new_uids.clear()  # as after a pass
    det(table)
    window = det._affected(pa.concat_tables([other, table]))
    assert set(window["process_uid"].to_pylist()) == set(table["process_uid"].to_pylist())
