"""The commands: ``unbacked export --parquet``, then ``hunt``/``train --engine spark`` write what
the embedded engine writes; without pyspark the CLI says how to install it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from tests.support.compare import saved_baseline
from tests.support.fleet import fleet
from unbacked.cli.export import is_lake
from unbacked.cli.main import main
from unbacked.sources import write_events

SPARK = ["--engine", "spark", "--spark-master", "local[2]",
         "--spark-conf", "spark.sql.shuffle.partitions=4"]  # fmt: skip


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    events = write_events(fleet(hosts=4), root / "fleet.jsonl")
    assert main(["export", "--parquet", str(root / "lake"), str(events), "-q"]) == 0
    hosts = sorted(p.name for p in (root / "lake").iterdir())
    assert hosts == [f"host=ws{i:02d}.corp.example" for i in range(4)]
    return root / "lake"


@pytest.mark.spark
def test_hunt_and_train_on_spark_write_the_same_files(lake, spark, tmp_path):
    rc_local = main(["hunt", str(lake), "-o", str(tmp_path / "local.jsonl"), "-q"])
    rc_spark = main(["hunt", *SPARK, str(lake), "-o", str(tmp_path / "spark.jsonl"), "-q"])
    assert rc_local == rc_spark == 3  # alerts at or above the default --fail-on
    local_text = (tmp_path / "local.jsonl").read_bytes()
    assert local_text and (tmp_path / "spark.jsonl").read_bytes() == local_text

    assert main(["train", str(lake), "-o", str(tmp_path / "bl-local"), "-q"]) == 0
    assert main(["train", *SPARK, str(lake), "-o", str(tmp_path / "bl-spark"), "-q"]) == 0
    assert saved_baseline(tmp_path / "bl-local") == saved_baseline(tmp_path / "bl-spark")

    args = ["--baseline", str(tmp_path / "bl-spark"), str(lake), "-q"]
    main(["detect", *args, "-o", str(tmp_path / "d-local.jsonl")])
    main(["detect", *SPARK, *args, "-o", str(tmp_path / "d-spark.jsonl")])
    assert (tmp_path / "d-spark.jsonl").read_bytes() == (tmp_path / "d-local.jsonl").read_bytes()


def test_export_refuses_a_non_empty_directory(lake, capsys):
    assert main(["export", "--parquet", str(lake), str(lake), "-q"]) == 1
    assert "not empty" in capsys.readouterr().err


def test_without_pyspark_the_cli_says_what_to_install(lake, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "pyspark", None)  # import pyspark -> ImportError
    assert main(["hunt", "--engine", "spark", str(lake), "-q"]) == 1
    err = capsys.readouterr().err
    assert "pip install 'unbacked[spark]'" in err


def test_an_empty_directory_is_no_telemetry_before_a_jvm_starts(tmp_path, capsys):
    (tmp_path / "lake").mkdir()
    assert main(["hunt", "--engine", "spark", str(tmp_path / "lake"), "-q"]) == 4
    assert "no telemetry found" in capsys.readouterr().err
    assert main(["train", "--engine", "spark", str(tmp_path / "lake"), "-o",
                 str(tmp_path / "bl"), "-q"]) == 4  # fmt: skip
    assert not (tmp_path / "bl").exists()


def test_what_is_a_lake(tmp_path, lake):
    assert is_lake(lake) and is_lake("s3://bucket/lake") and is_lake(next(lake.rglob("*.parquet")))
    (tmp_path / "spark-out").mkdir()
    for name in ("part-0.parquet", "_SUCCESS", ".part-0.parquet.crc"):
        (tmp_path / "spark-out" / name).write_bytes(b"x")
    assert is_lake(tmp_path / "spark-out")
    (tmp_path / "spark-out" / "sysmon.jsonl").write_text("{}\n")
    assert not is_lake(tmp_path / "spark-out")  # a Parquet beside telemetry: not read as a lake
    (tmp_path / "empty").mkdir()
    assert not is_lake(tmp_path / "empty")
    assert not is_lake(tmp_path / "spark-out" / "sysmon.jsonl")


@pytest.mark.spark
def test_telemetry_files_are_exported_to_a_lake_first(spark, tmp_path, capsys):
    """`hunt --engine spark logs/` on telemetry that is not a lake reads every input (through a
    temporary lake) and writes what the embedded engine writes; the run report counts the
    files as the embedded run does, not the temporary lake."""
    logs = tmp_path / "logs"
    logs.mkdir()
    events = fleet(hosts=4)
    first = pc.is_in(events["host"], pa.array(["ws00.corp.example", "ws01.corp.example"]))
    write_events(events.filter(first), logs / "fleet.jsonl")
    write_events(events.filter(pc.invert(first)), logs / "more.jsonl")
    rc_local = main(["hunt", str(logs), "-o", str(tmp_path / "local.jsonl"), "-q",
                     "--report", str(tmp_path / "local.json")])  # fmt: skip
    spill = tmp_path / "spill"
    spill.mkdir()
    out = ["-o", str(tmp_path / "spark.jsonl"), "--report", str(tmp_path / "spark.json")]
    rc_spark = main(["hunt", *SPARK, "--spill-dir", str(spill), str(logs), "-q", *out])
    assert rc_local == rc_spark == 3
    assert "converting the inputs to a temporary one" in capsys.readouterr().err
    local_text = (tmp_path / "local.jsonl").read_bytes()
    assert local_text and (tmp_path / "spark.jsonl").read_bytes() == local_text
    local, remote = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("local", "spark"))
    assert remote["files"] == local["files"] == 2
    assert remote["events"] == local["events"] > 0
    assert sorted(f["path"] for f in remote["per_file"]) == sorted(
        f["path"] for f in local["per_file"]
    )
    assert not list(spill.iterdir())  # the temporary lake is removed
