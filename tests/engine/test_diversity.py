"""No crash and no slowdown at fleet diversity: 10,000 distinct programs on 1,000 hosts, each
instance with its own command line, module and call trace (the first real fleet hunted crashed
on more than 256 programs). Every entry point runs on it: hunt, train, detect, eval, the
partitioned embedded engine; the Spark engine on a smaller slice of the same shape."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from tests.support.diverse import LOADER_UID, VICTIM_UID, diverse_fleet, label_file
from unbacked.cli.main import main
from unbacked.engine import local
from unbacked.sources import write_events


@pytest.fixture(scope="module")
def fleet_path(tmp_path_factory):
    return tmp_path_factory.mktemp("diverse") / "diverse.parquet"


@pytest.fixture(scope="module")
def fleet(fleet_path) -> pa.Table:
    table = diverse_fleet(programs=10_000, hosts=1_000, src_file=str(fleet_path))
    assert len(pc.unique(table["image"])) >= 10_000
    assert len(pc.unique(table["host"])) == 1_000
    assert len(pc.unique(table["call_trace"])) >= 10_000
    assert len(pc.unique(table["cmd_line"])) >= 10_000
    return table


@pytest.fixture(scope="module")
def fleet_file(fleet, fleet_path):
    write_events(fleet, fleet_path)
    return fleet_path


def _alerted(path) -> set[str]:
    uids = set()
    for line in path.read_text().splitlines():
        a = json.loads(line)
        uids.add(a["process"]["uid"])
        if a.get("actor"):
            uids.add(a["actor"]["process"]["uid"])
    return uids


def test_hunt_finds_the_loader_and_nothing_else(fleet_file, tmp_path):
    out = tmp_path / "alerts.jsonl"
    report = tmp_path / "run.json"
    rc = main(["hunt", str(fleet_file), "-o", str(out), "--report", str(report), "-q"])
    assert rc == 3  # the loader's alert is at or above --fail-on
    assert _alerted(out) == {VICTIM_UID, LOADER_UID}
    assert json.loads(report.read_text())["events"] == 40_004


def test_train_then_detect(fleet_file, tmp_path):
    bl = tmp_path / "bl"
    assert main(["train", str(fleet_file), "-o", str(bl), "-q"]) == 0
    out = tmp_path / "alerts.jsonl"
    rc = main(["detect", str(fleet_file), "--baseline", str(bl), "-o", str(out), "-q",
               "--fail-on", "none"])  # fmt: skip
    assert rc == 0
    assert VICTIM_UID in _alerted(out)


def test_eval(fleet_file, tmp_path):
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "diverse.json").write_text(json.dumps(label_file("diverse.parquet")))
    out = tmp_path / "eval.json"
    rc = main(["eval", str(fleet_file), "--labels", str(labels), "--data-root",
               str(fleet_file.parent), "-o", str(out), "-q"])  # fmt: skip
    assert rc == 0
    totals = json.loads(out.read_text())["totals"]
    assert totals["required_caught"] == totals["required"] == 2
    assert totals["false_alerts"] == 0
    assert totals["benign_instances"] >= 10_000


def test_partitioned_run_gives_the_same_alerts(fleet_file):
    whole = local.hunt([fleet_file])
    parts = local.hunt([fleet_file], memory_events=10_000, group_events=12_000)
    assert parts.partitions > 1
    assert [a.to_ocsf() for a in parts.alerts] == [a.to_ocsf() for a in whole.alerts]
