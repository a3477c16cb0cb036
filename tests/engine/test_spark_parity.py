"""Spark and the embedded engine give the same alerts and the same baselines on the same lake:
the shared real telemetry and a generated multi-host fleet with a reflective loader."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from tests.support.compare import assert_same_alerts, assert_same_baseline, saved_baseline
from tests.support.fleet import INJECTOR_UID, TARGET_UID, fleet
from unbacked.cli.export import LakeWriter, export_lake
from unbacked.detect import ProgramBaseline
from unbacked.engine import local
from unbacked.engine import spark as spark_engine
from unbacked.runreport import RunReport

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def fleet_lake(tmp_path_factory) -> Path:
    lake = tmp_path_factory.mktemp("fleet") / "lake"
    writer = LakeWriter(lake)
    table = fleet()
    for batch in table.to_batches(max_chunksize=37):  # several appends per host file
        writer.write(pa.Table.from_batches([batch]))
    writer.close()
    return lake


@pytest.fixture(scope="module")
def shared_lake(tmp_path_factory, shared_data) -> Path:
    lake = tmp_path_factory.mktemp("shared") / "lake"
    report = RunReport()
    n = export_lake([str(shared_data / "windows")], lake, report)
    assert n == report.events > 40_000
    return lake


@pytest.mark.parametrize(
    ("which", "chunk_rows"),
    [("fleet", 0), ("shared", spark_engine.CHUNK_ROWS)],
    ids=["fleet-one-host-per-call", "shared-hosts-batched"],
)
def test_self_baselined_hunt_is_identical(which, chunk_rows, request, spark):
    lake = request.getfixturevalue(f"{which}_lake")
    expected = local.hunt([lake])
    got = spark_engine.hunt([lake], spark=spark, chunk_rows=chunk_rows)
    assert got.events == expected.events.num_rows
    assert got.baseline is not None and expected.baseline is not None
    assert_same_baseline(expected.baseline, got.baseline)
    assert_same_alerts(expected.alerts, got.alerts)
    assert len(got.alerts) >= 2
    if which == "fleet":
        subjects = {a.process.uid for a in got.alerts}
        assert {TARGET_UID, INJECTOR_UID} <= subjects
        assert got.hosts == 6


@pytest.mark.parametrize("which", ["fleet", "shared"])
def test_trained_baseline_and_detect_are_identical(which, request, spark, tmp_path):
    lake = request.getfixturevalue(f"{which}_lake")
    local.train([lake], tmp_path / "local")
    spark_engine.train([lake], tmp_path / "spark", spark=spark)
    mine, theirs = saved_baseline(tmp_path / "local"), saved_baseline(tmp_path / "spark")
    # the manifest names every table file with its SHA-256: equal manifests, equal bytes
    assert mine == theirs
    trained = ProgramBaseline.load(tmp_path / "local")
    assert trained.thresholds_ is not None and trained.thresholds_.num_rows > 0
    expected = local.hunt([lake], baseline=trained)
    got = spark_engine.hunt([lake], baseline=tmp_path / "spark", spark=spark)
    assert_same_alerts(expected.alerts, got.alerts)
    if which == "shared":
        assert len(got.alerts) > 0


def test_a_process_on_two_hosts_is_refused(spark, tmp_path):
    table = fleet(hosts=2, notepads=1)
    hosts = table.column("host").cast(pa.string()).to_pylist()
    uids = table.column("process_uid").to_pylist()
    # the same uid on both hosts: summed instance counts would no longer be distinct counts
    uids = [u.replace("ws01.corp.example", "ws00.corp.example") if u else u for u in uids]
    assert "ws01.corp.example" in hosts
    table = table.set_column(table.schema.get_field_index("process_uid"), "process_uid",
                             pa.array(uids, pa.string()))  # fmt: skip
    writer = LakeWriter(tmp_path / "lake")
    writer.write(table)
    writer.close()
    from unbacked.errors import InputError

    with pytest.raises(InputError, match="more than one host"):
        spark_engine.hunt([tmp_path / "lake"], spark=spark)
