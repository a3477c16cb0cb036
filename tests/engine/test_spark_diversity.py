"""The Spark engine at fleet diversity: every instance its own program, command line and call
trace, on many hosts (a slice of ``tests/engine/test_diversity.py``'s fleet, kept small: Spark
costs seconds per stage here). Same alerts as the embedded engine, the loader found."""

from __future__ import annotations

import pytest

from tests.support.compare import assert_same_alerts
from tests.support.diverse import VICTIM_UID, diverse_fleet
from unbacked.cli.export import LakeWriter
from unbacked.engine import local
from unbacked.engine import spark as spark_engine

pytestmark = [pytest.mark.spark, pytest.mark.slow]


def test_spark_engine_on_a_diverse_fleet(tmp_path, spark):
    lake = tmp_path / "lake"
    writer = LakeWriter(lake)
    writer.write(diverse_fleet(programs=2_000, hosts=100))
    writer.close()
    got = spark_engine.hunt([lake], spark=spark)
    expected = local.hunt([lake])
    assert got.events == expected.events.num_rows == 8_004
    assert_same_alerts(expected.alerts, got.alerts)
    assert VICTIM_UID in {a.process.uid for a in got.alerts}
