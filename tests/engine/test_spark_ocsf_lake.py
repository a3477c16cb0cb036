"""An OCSF Parquet lake (Security Lake layout): Spark reads it directly through the same OCSF
mapping as the embedded engine, and both raise the same alerts."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.support.compare import alert_dicts, differences
from unbacked.engine import local
from unbacked.engine import spark as spark_engine

pytestmark = pytest.mark.spark

T0 = 1_700_000_000_000


def _proc(pid: int, name: str) -> dict:
    return {"pid": pid, "uid": f"U{pid}", "name": name, "file": {"path": f"C:\\x\\{name}"}}


def _host(host: str, attacked: bool, start: int) -> list[dict]:
    rows = []
    for i in range(4):  # four document hosts, their normal executable memory
        pid = start + i
        rows.append({"class_uid": 1007, "activity_id": 1, "category_uid": 1, "type_uid": 100701,
                     "time": T0 + pid, "device": {"hostname": host},
                     "process": _proc(pid, "doc.exe"),
                     "actor": {"process": _proc(1, "explorer.exe")},
                     # every row names every column (a lake's columns are the union)
                     "base_address": None, "size": None, "actual_permissions": None})  # fmt: skip
        rows.append({"class_uid": 1004, "activity_id": 1, "category_uid": 1, "type_uid": 100401,
                     "time": T0 + pid + 1, "device": {"hostname": host},
                     "process": _proc(pid, "doc.exe"), "actor": None,
                     "base_address": 0x10000 * (i + 1),
                     "size": 0x1000, "actual_permissions": 0x20 if not (attacked and i == 0)
                     else 0x40})  # fmt: skip
    return rows


@pytest.fixture(scope="module")
def ocsf_lake(tmp_path_factory) -> Path:
    lake = tmp_path_factory.mktemp("ocsf") / "lake"
    for n, host in enumerate(["ws1", "ws2", "ws3"]):
        part = lake / f"region=eu/accountid=1/eventHour=2024010100/host{n}.parquet"
        part.parent.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pylist(_host(host, attacked=host == "ws2", start=100 * (n + 1)))
        # Security Lake stores the event time as a timestamp
        table = table.set_column(
            table.schema.get_field_index("time"),
            "time",
            table["time"].cast(pa.timestamp("ms", tz="UTC")),
        )
        pq.write_table(table, part)
    return lake.resolve()


def test_spark_reads_ocsf_parquet_like_the_embedded_engine(ocsf_lake, spark):
    expected = local.hunt([ocsf_lake]).alerts
    got = spark_engine.hunt([ocsf_lake], spark=spark).alerts
    assert expected, "the RWX allocation on ws2 alerts"
    assert [a.hostname for a in expected] == ["ws2"]
    assert differences(alert_dicts(expected), alert_dicts(got)) == []
