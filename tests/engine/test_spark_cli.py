"""The commands: ``unbacked export --parquet``, then ``hunt``/``train --engine spark`` write what
the embedded engine writes; without pyspark the CLI says how to install it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.support.compare import saved_baseline
from tests.support.fleet import fleet
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


def test_an_empty_lake_is_an_input_error(tmp_path, capsys):
    (tmp_path / "lake").mkdir()
    assert main(["hunt", "--engine", "spark", str(tmp_path / "lake"), "-q"]) == 1
    assert "no Parquet files" in capsys.readouterr().err
