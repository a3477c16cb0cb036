"""The embedded engine partitioned by host (inputs larger than ``memory_events``): the spill
keeps every event once and every host whole, and the alerts and baselines are those of the run
that holds every event in one table."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from tests.support.compare import assert_same_alerts, assert_same_baseline, saved_baseline
from tests.support.fleet import INJECTOR_UID, TARGET_UID, fleet
from unbacked.engine import local
from unbacked.engine.spill import HostSpill, host_buckets
from unbacked.errors import InputError
from unbacked.model.schema import EVENT_SCHEMA
from unbacked.runreport import RunReport

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "linux"


@pytest.fixture(scope="module")
def fleet_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fleet") / "fleet.parquet"
    pq.write_table(fleet(hosts=8), path, row_group_size=50)
    return path


# -- the spill -------------------------------------------------------------------------------
def test_host_buckets_are_a_stable_hash_and_null_hosts_share_bucket_zero():
    hosts = pa.array(["ws01", None, "ws02", "ws01"]).dictionary_encode()
    got = host_buckets(hosts, 64).tolist()
    assert got == [zlib.crc32(b"ws01") % 64, 0, zlib.crc32(b"ws02") % 64, got[0]]
    assert host_buckets(pa.array(["ws02"], pa.string()), 64).tolist() == [got[2]]


def test_spill_keeps_every_event_once_and_every_host_whole(tmp_path):
    table = fleet(hosts=8)
    hosts = table.column("host").cast(pa.string())
    # events without a host travel too
    table = table.set_column(
        table.schema.get_field_index("host"),
        "host",
        pc.if_else(pc.equal(hosts, "ws05.corp.example"), pa.scalar(None, pa.string()), hosts)
        .dictionary_encode()
        .cast(EVENT_SCHEMA.field("host").type),
    )
    with HostSpill(tmp_path, buckets=16, flush_rows=97) as spill:
        for batch in table.to_batches(max_chunksize=41):
            spill.add(pa.Table.from_batches([batch]))
        groups = list(spill.groups(group_rows=table.num_rows // 3))
        assert spill.rows == table.num_rows
        assert spill.bytes_on_disk > 0
        where = spill.path
    assert not where.exists()  # removed on close
    assert len(groups) >= 2
    assert sum(g.num_rows for g in groups) == table.num_rows
    seen: set[str | None] = set()
    for g in groups:
        assert g.schema == EVENT_SCHEMA
        g_hosts = set(g.column("host").cast(pa.string()).to_pylist())
        assert not (g_hosts & seen), "a host in two groups"
        seen |= g_hosts
        # canonical order within the group
        assert g.equals(local.canonical_order(g))
    assert None in seen
    key = ["src_file", "src_line", "src_record"]
    every = (
        pa.concat_tables(groups)
        .select(key)
        .cast(
            pa.schema(
                [("src_file", pa.string()), ("src_line", pa.int64()), ("src_record", pa.int64())]
            )
        )
    )
    want = table.select(key).cast(every.schema)
    assert every.sort_by([(k, "ascending") for k in key]).equals(
        want.sort_by([(k, "ascending") for k in key])
    )


def test_spill_of_encoded_and_plain_tables_gives_the_groups_of_plain_ones(tmp_path):
    """Tables whose strings come dictionary-encoded (a lake's Parquet) and plain ones (JSON
    sources) spill side by side; the groups are those of plain tables, value for value."""
    from tests.support.events import encode_strings

    table = fleet(hosts=8)
    with HostSpill(tmp_path, buckets=16, flush_rows=97) as spill:
        for i, batch in enumerate(table.to_batches(max_chunksize=41)):
            part = pa.Table.from_batches([batch])
            spill.add(encode_strings(part) if i % 2 else part)
        mixed = list(spill.groups(group_rows=table.num_rows // 3))
    with HostSpill(tmp_path, buckets=16, flush_rows=97) as spill:
        for batch in table.to_batches(max_chunksize=41):
            spill.add(pa.Table.from_batches([batch]))
        plain = list(spill.groups(group_rows=table.num_rows // 3))
    assert len(mixed) == len(plain) >= 2
    for a, b in zip(mixed, plain, strict=True):
        assert a.schema.equals(EVENT_SCHEMA, check_metadata=True)
        assert a.equals(b)


def test_a_bucket_larger_than_a_group_is_never_split(tmp_path):
    table = fleet(hosts=3)
    with HostSpill(tmp_path, buckets=4) as spill:
        spill.add(table)
        plan = spill.group_plan(group_rows=1)
        groups = list(spill.groups(group_rows=1))
    assert all(len(p) == 1 for p in plan), "one bucket per group when buckets exceed the size"
    assert len(groups) == len(plan) >= 2
    assert sum(g.num_rows for g in groups) == table.num_rows


# -- the engine ------------------------------------------------------------------------------
def test_partitioned_hunt_equals_the_in_memory_hunt_on_a_fleet(fleet_file, tmp_path):
    expected = local.hunt([fleet_file])
    assert expected.partitions == 0 and expected.events.num_rows > 0
    report = RunReport()
    got = local.hunt(
        [fleet_file], report=report, memory_events=100, group_events=70, spill_dir=tmp_path
    )
    assert got.partitions >= 3, "the run should be split into several host groups"
    assert got.events.num_rows == 0
    assert report.extra["engine"]["spilled_events"] == expected.events.num_rows
    assert list(tmp_path.iterdir()) == []  # the spill is gone
    assert got.baseline is not None and expected.baseline is not None
    assert_same_baseline(expected.baseline, got.baseline)
    assert_same_alerts(expected.alerts, got.alerts)
    assert {TARGET_UID, INJECTOR_UID} <= {a.process.uid for a in got.alerts}
    assert got.signals.num_rows == expected.signals.num_rows


def test_a_lower_memory_limit_makes_smaller_host_groups(fleet_file, monkeypatch):
    """``--memory-events`` bounds what a partitioned run holds: groups of half as many events
    (one detected while the next is read), so a lower limit lowers the peak; the CLI passes the
    limit alone. The alerts stay the in-memory run's."""
    assert local.group_size(local.MEMORY_EVENTS) == local.GROUP_EVENTS
    assert local.group_size(0) == local.GROUP_EVENTS  # no limit: never partitioned anyway
    assert local.group_size(1) == 1
    sizes: list[int] = []
    detect = local.detect_partitioned

    def recording(spill, **kw):
        sizes.append(max(g.num_rows for g in spill.groups(kw["group_events"])))
        return detect(spill, **kw)

    monkeypatch.setattr(local, "detect_partitioned", recording)
    expected = local.hunt([fleet_file])
    runs = {n: local.hunt([fleet_file], memory_events=n) for n in (200, 100)}
    assert runs[100].partitions > runs[200].partitions >= 2
    # whole hosts: a group exceeds half the limit only when one host alone does
    per_host = fleet(hosts=8).group_by("host").aggregate([("host", "count")])["host_count"]
    host_rows = pc.max(per_host).as_py()
    assert sizes[0] <= max(100, host_rows) and sizes[1] <= max(50, host_rows)
    for got in runs.values():
        assert_same_alerts(expected.alerts, got.alerts)


def test_partitioned_train_and_detect_equal_the_in_memory_ones(fleet_file, tmp_path):
    local.train([fleet_file], tmp_path / "mem")
    local.train([fleet_file], tmp_path / "part", memory_events=100, group_events=70)
    # the manifest names every table file with its SHA-256: equal manifests, equal bytes
    assert saved_baseline(tmp_path / "mem") == saved_baseline(tmp_path / "part")
    expected = local.hunt([fleet_file], baseline=tmp_path / "mem")
    got = local.hunt([fleet_file], baseline=tmp_path / "mem", memory_events=100, group_events=70)
    assert got.partitions >= 3
    assert_same_alerts(expected.alerts, got.alerts)


def test_partitioned_hunt_equals_the_in_memory_hunt_on_the_linux_samples():
    expected = local.hunt([SAMPLES])
    got = local.hunt([SAMPLES], memory_events=100, group_events=100)
    assert got.partitions >= 1
    assert_same_alerts(expected.alerts, got.alerts)
    assert len(got.alerts) >= 5


def test_partitioned_hunt_equals_the_in_memory_hunt_on_shared_data(shared_data):
    windows = shared_data / "windows"
    expected = local.hunt([windows])
    got = local.hunt([windows], memory_events=2_000, group_events=8_000)
    assert got.partitions >= 3
    assert_same_baseline(expected.baseline, got.baseline)
    assert_same_alerts(expected.alerts, got.alerts)
    assert len(got.alerts) >= 15


def test_a_process_on_two_hosts_is_refused_when_partitioned(tmp_path):
    table = fleet(hosts=6, notepads=1)
    uids = [u.replace("ws01.corp.example", "ws00.corp.example") if u else u
            for u in table.column("process_uid").to_pylist()]  # fmt: skip
    table = table.set_column(
        table.schema.get_field_index("process_uid"), "process_uid", pa.array(uids, pa.string())
    )
    path = tmp_path / "fleet.parquet"
    pq.write_table(table, path)
    spill_dir = tmp_path / "spill"
    spill_dir.mkdir()
    # hosts ws00 and ws01 must land in different groups for the split to show
    with pytest.raises(InputError, match="more than one host"):
        local.hunt([path], memory_events=10, group_events=1, spill_dir=spill_dir)
    assert list(spill_dir.iterdir()) == []  # removed on the error path too
    local.hunt([path])  # one table: counted once, no premise to break


def test_cli_memory_limit_gives_the_same_alert_file(fleet_file, tmp_path):
    from unbacked.cli.main import main

    spill = tmp_path / "spill"
    spill.mkdir()
    args = ["hunt", str(fleet_file), "-q", "--fail-on", "none"]
    assert main([*args, "-o", str(tmp_path / "mem.jsonl")]) == 0
    limited = ["--memory-events", "50", "--spill-dir", str(spill)]
    report = ["--report", str(tmp_path / "run.json")]
    assert main([*args, "-o", str(tmp_path / "part.jsonl"), *limited, *report]) == 0
    mem = (tmp_path / "mem.jsonl").read_text()
    assert mem and (tmp_path / "part.jsonl").read_text() == mem
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["engine"]["partitions"] >= 1 and run["engine"]["spilled_events"] == 283
    assert list(spill.iterdir()) == []
    assert main(["train", str(fleet_file), "-q", "-o", str(tmp_path / "bl"),
                 "--memory-events", "50"]) == 0  # fmt: skip
    assert (tmp_path / "bl" / "manifest.json").is_file()


def test_disk_trouble_is_a_spill_error_saying_what_to_do(tmp_path):
    import shutil

    from unbacked.errors import SpillError

    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(SpillError, match="cannot create the spill directory") as info:
        HostSpill(not_a_dir)
    assert "--spill-dir" in (info.value.hint or "")
    table = fleet(hosts=2)
    with HostSpill(tmp_path, flush_rows=10) as spill:
        shutil.rmtree(spill.path)  # the directory vanishes under the run (disk pulled, cleaner)
        with pytest.raises(SpillError, match="cannot write events to the spill"):
            spill.add(table)


def test_a_partitioned_run_says_which_pass_over_which_host_group_runs(fleet_file, tmp_path):
    said: list[tuple[str, str]] = []
    got = local.hunt([fleet_file], memory_events=100, group_events=70,
                     stage=lambda what, detail: said.append((what, detail)))  # fmt: skip
    n = got.partitions
    assert said == [("learning", f"host group {i} of {n}") for i in range(1, n + 1)] + [
        ("detecting", f"host group {i} of {n}") for i in range(1, n + 1)
    ]
    said.clear()
    local.train([fleet_file], memory_events=100, group_events=70,
                stage=lambda what, detail: said.append((what, detail)))  # fmt: skip
    assert [w for w, _ in said] == ["learning"] * n + ["calibrating"] * n
