"""A partitioned run over a lake split by host (``unbacked export --parquet``) reads its groups
from the lake's own files instead of spilling: the same groups as the spill, the same alerts and
baselines as the run holding every event, every file read and accounted for once; any other
input and the run spills as before."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.support.compare import assert_same_alerts, assert_same_baseline, saved_baseline
from tests.support.fleet import INJECTOR_UID, TARGET_UID, fleet
from unbacked.cli.main import main
from unbacked.engine import local, order
from unbacked.engine.lake import HostLake
from unbacked.engine.spill import HostSpill
from unbacked.runreport import RunReport
from unbacked.sources import iter_event_tables, write_events

PARTITIONED = {"memory_events": 100, "group_events": 70}


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lake")
    events = write_events(fleet(hosts=8), root / "fleet.jsonl")
    assert main(["export", "--parquet", str(root / "lake"), str(events), "-q"]) == 0
    assert len(list((root / "lake").iterdir())) == 8
    return root / "lake"


def _copy(lake: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "lake"
    shutil.copytree(lake, copy)
    return copy


def test_a_host_split_lake_is_found_with_every_file_and_host(lake):
    found = HostLake.find([lake], RunReport())
    assert found is not None
    files = sorted(lake.rglob("*.parquet"))
    assert found.files == len(files) == 8
    assert found.rows == sum(pq.ParquetFile(f).metadata.num_rows for f in files)


@pytest.fixture(scope="module")
def mixed_lake(tmp_path_factory) -> Path:
    """A lake exported from one file of every host's events, interleaved line by line (as a
    collector delivers them): in the canonical order, hosts alternate."""
    root = tmp_path_factory.mktemp("mixed")
    events = fleet(hosts=8)
    events = events.set_column(
        events.schema.get_field_index("src_file"),
        "src_file",
        pa.array(["fleet.jsonl"] * len(events)),
    ).set_column(
        events.schema.get_field_index("src_line"), "src_line", pa.array(range(1, len(events) + 1))
    )
    source = write_events(events, root / "fleet.parquet")
    assert main(["export", "--parquet", str(root / "lake"), str(source), "-q"]) == 0
    return root / "lake"


def _by_host(table: pa.Table) -> dict[str | None, pa.Table]:
    hosts = table["host"].to_pylist()
    return {
        h: table.take([i for i, x in enumerate(hosts) if x == h]).drop_columns(["host"])
        for h in dict.fromkeys(hosts)
    }


@pytest.mark.parametrize("name", ["lake", "mixed_lake"])
def test_its_groups_are_the_spills_groups_host_by_host(name, request, tmp_path, monkeypatch):
    """The same events as the spill's groups, each host's in the same order; the hosts one
    after another, so a group of files each in order is laid end to end, not gathered."""
    path = request.getfixturevalue(name)
    found = HostLake.find([path], RunReport())
    assert found is not None
    gathered: list[bool] = []
    gather = order.gather_events
    with HostSpill(tmp_path) as spill:
        for table in iter_event_tables([path], RunReport(), encoded=True):
            spill.add(table)
        assert found.group_plan(70) == spill.group_plan(70)
        assert len(found.group_plan(70)) >= 3
        expected_groups = list(spill.groups(70))
        monkeypatch.setattr(
            order, "gather_events", lambda t, o: gathered.append(o is not None) or gather(t, o)
        )
        for got, expected in zip(found.groups(70), expected_groups, strict=True):
            assert got.schema == expected.schema and got.num_rows == expected.num_rows
            hosts = got["host"].to_pylist()
            assert hosts == sorted(hosts)  # each host's events together
            mine, theirs = _by_host(got), _by_host(expected)
            assert mine.keys() == theirs.keys()
            for host, events in mine.items():
                assert events.equals(theirs[host]), host
    assert gathered and not any(gathered)
    if name == "mixed_lake":  # the spill's groups interleave hosts: the lake's did too before
        assert any(len(set(g["host"].to_pylist()[:8])) > 1 for g in expected_groups)


@pytest.mark.parametrize("baselined", [False, True])
def test_a_lake_of_interleaved_hosts_gives_the_in_memory_alerts(mixed_lake, tmp_path, baselined):
    baseline = None
    if baselined:
        local.train([mixed_lake], tmp_path / "b")
        baseline = tmp_path / "b"
    expected = local.hunt([mixed_lake], baseline=baseline)
    got = local.hunt([mixed_lake], baseline=baseline, **PARTITIONED)
    assert expected.partitions == 0 and got.partitions >= 3
    assert_same_alerts(expected.alerts, got.alerts)
    assert {TARGET_UID, INJECTOR_UID} <= {a.process.uid for a in got.alerts}
    if not baselined:
        assert got.baseline is not None and expected.baseline is not None
        assert_same_baseline(expected.baseline, got.baseline)


def test_hunt_over_the_lake_reads_no_spill_and_equals_the_in_memory_hunt(lake, tmp_path):
    expected = local.hunt([lake])
    assert expected.partitions == 0
    report = RunReport()
    spill_dir = tmp_path / "spill"
    spill_dir.mkdir()
    got = local.hunt([lake], report=report, spill_dir=spill_dir, **PARTITIONED)
    assert got.partitions >= 3
    engine = report.extra["engine"]
    assert engine["lake_files"] == 8 and engine["lake_events"] == expected.report.events
    assert "spilled_events" not in engine
    assert list(spill_dir.iterdir()) == []  # what the passes kept is gone too
    assert got.baseline is not None and expected.baseline is not None
    assert_same_baseline(expected.baseline, got.baseline)
    assert_same_alerts(expected.alerts, got.alerts)
    assert {TARGET_UID, INJECTOR_UID} <= {a.process.uid for a in got.alerts}
    # every file read once: its records and events counted once
    assert report.records == report.events == expected.report.events
    assert sorted(report.files) == sorted(str(f) for f in lake.rglob("*.parquet"))


def test_train_and_detect_over_the_lake_equal_the_in_memory_ones(lake, tmp_path):
    local.train([lake], tmp_path / "mem")
    report = RunReport()
    local.train([lake], tmp_path / "part", report=report, **PARTITIONED)
    assert "lake_events" in report.extra["engine"]
    assert saved_baseline(tmp_path / "mem") == saved_baseline(tmp_path / "part")
    expected = local.hunt([lake], baseline=tmp_path / "mem")
    report = RunReport()
    got = local.hunt([lake], baseline=tmp_path / "mem", report=report, **PARTITIONED)
    assert got.partitions >= 3 and "lake_events" in report.extra["engine"]
    assert_same_alerts(expected.alerts, got.alerts)


def test_the_cli_says_where_the_groups_came_from_and_writes_the_same_file(lake, tmp_path):
    args = ["hunt", str(lake), "--fail-on", "none"]
    assert main([*args, "-q", "-o", str(tmp_path / "mem.jsonl")]) == 0
    part = [*args, "-o", str(tmp_path / "part.jsonl"), "--memory-events", "50"]
    assert main([*part, "-q", "--report", str(tmp_path / "run.json")]) == 0
    mem = (tmp_path / "mem.jsonl").read_text()
    assert mem and (tmp_path / "part.jsonl").read_text() == mem
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["engine"]["lake_files"] == 8 and run["engine"]["partitions"] >= 1


def test_the_summary_names_the_lake(lake, capsys):
    assert main(["hunt", str(lake), "--fail-on", "none", "--memory-events", "50"]) == 0
    err = capsys.readouterr().err
    # groups of 25 events (half the limit): a host each
    assert "read in 8 host groups from 8 lake files of one host each" in err, err


def test_a_file_without_rows_is_accounted_for(lake, tmp_path):
    copy = _copy(lake, tmp_path)
    first = next(iter(sorted(copy.rglob("*.parquet"))))
    empty = first.parent / "events-empty.parquet"
    pq.write_table(pq.read_table(first).slice(0, 0), empty)
    report = RunReport()
    local.hunt([copy], report=report, **PARTITIONED)
    assert "lake_events" in report.extra["engine"]
    assert str(empty) in report.files


@pytest.mark.parametrize(
    "other", ["several hosts", "several hosts, no statistics", "another format"]
)
def test_other_inputs_are_spilled_and_each_group_takes_its_hosts_from_both(lake, tmp_path, other):
    """Inputs that are not a lake file of one host (a file of two hosts, with or without the
    statistics that tell at once; telemetry of another format, here events of a host the lake
    has too) are read first and spilled by host; each group takes its hosts' events from the
    lake files and the spill: the alerts and baseline of the run holding every event."""
    copy = _copy(lake, tmp_path)
    if other.startswith("several hosts"):  # two hosts' files moved into one
        one, two = sorted(copy.rglob("*.parquet"))[:2]
        both = pa.concat_tables([pq.read_table(one), pq.read_table(two)])
        pq.write_table(both, one, write_statistics="statistics" not in other)
        two.unlink()
    else:
        write_events(fleet(hosts=1), copy / "more.jsonl")
    found = HostLake.find([copy], RunReport())
    assert found is not None and len(found.others) == 1
    expected = local.hunt([copy])
    report = RunReport()
    got = local.hunt([copy], report=report, **PARTITIONED)
    engine = report.extra["engine"]
    assert engine["lake_files"] == (6 if other.startswith("several") else 8)
    assert engine["spilled_events"] > 0
    assert engine["lake_events"] + engine["spilled_events"] == report.events
    assert report.events == expected.report.events
    assert got.baseline is not None and expected.baseline is not None
    assert_same_baseline(expected.baseline, got.baseline)
    assert_same_alerts(expected.alerts, got.alerts)


def test_files_no_source_reads_beside_the_lake_are_listed_as_any_run_lists_them(lake, tmp_path):
    """A writer's side files, a README, a damaged file nobody recognises: the lake is still
    read in place, and each is listed as not read exactly as a run that reads the directory
    whole lists it (lost when it looks like telemetry)."""
    copy = _copy(lake, tmp_path)
    (copy / "_SUCCESS").write_bytes(b"")
    (copy / "README.md").write_text("exported by unbacked\n")
    host = next(p for p in sorted(copy.iterdir()) if p.is_dir())
    (host / ".events-00000.parquet.crc").write_bytes(b"crc\0\x01\x02")
    (copy / "broken.parquet").write_bytes(b"PAR1" + b"\0" * 64)
    found = HostLake.find([copy], RunReport())
    assert found is not None and found.files == 8
    in_memory, in_place = RunReport(), RunReport()
    expected = local.hunt([copy], report=in_memory)
    got = local.hunt([copy], report=in_place, **PARTITIONED)
    assert "lake_events" in in_place.extra["engine"]
    assert sorted(in_place.unread, key=str) == sorted(in_memory.unread, key=str)
    assert len(in_place.unread) == 4
    assert [u.lost for u in in_place.unread if u.path.endswith("broken.parquet")] == [True]
    assert_same_alerts(expected.alerts, got.alerts)
    assert "spilled_events" not in in_place.extra["engine"]  # they held no events
    # named on the command line, a file nobody reads is an error, as in any run
    named = [copy, copy / "README.md"]
    in_memory, in_place = RunReport(), RunReport()
    local.hunt(named, report=in_memory)
    local.hunt(named, report=in_place, **PARTITIONED)
    assert "lake_events" in in_place.extra["engine"]
    assert [f.path for f in in_place.failed_files] == [str(copy / "README.md")]
    assert [f.error for f in in_place.failed_files] == [f.error for f in in_memory.failed_files]


def test_a_lake_of_fewer_events_than_the_limit_is_held_in_memory(lake):
    report = RunReport()
    got = local.hunt([lake], report=report, memory_events=1_000_000)
    assert got.partitions == 0 and "engine" not in report.extra


def test_a_strict_run_over_the_lake_stops_on_a_bad_record_and_leaves_nothing(lake, tmp_path):
    """The groups are read while the one before is detected: a strict run's error from a file
    read on that thread comes out of the run, and what the passes kept is removed."""
    from unbacked.errors import InputError

    copy = _copy(lake, tmp_path)
    last = sorted(copy.rglob("*.parquet"))[-1]  # read with a later group, not the first
    table = pq.read_table(last)
    i = table.schema.get_field_index("time")
    field = table.schema.field(i).with_nullable(True)
    times = table.column(i).to_pylist()
    times[0] = None  # a record without its time
    pq.write_table(table.set_column(i, field, pa.array(times, field.type)), last)
    spill_dir = tmp_path / "spill"
    spill_dir.mkdir()
    with pytest.raises(InputError, match="missing or invalid required field"):
        local.hunt([copy], report=RunReport(strict=True), spill_dir=spill_dir, **PARTITIONED)
    assert list(spill_dir.iterdir()) == []
    report = RunReport()
    local.hunt([copy], report=report, **PARTITIONED)  # not strict: counted, and the run goes on
    assert "lake_events" in report.extra["engine"]
    assert report.files[str(last)].skipped == {"missing or invalid required field": 1}
