"""unbacked's own event files: round trips through Parquet and JSON lines, the streaming writer."""

from __future__ import annotations

from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from unbacked.errors import InputError
from unbacked.model import EVENT_SCHEMA, conform
from unbacked.runreport import RunReport
from unbacked.sources import EventWriter, read_events, write_events
from unbacked.sources.native import NativeJsonlSource, NativeParquetSource

from .util import accounted, read_bytes, rows

NS = 1_700_000_000_123_456_789


def sample(n: int = 3) -> pa.Table:
    """Events touching every column type (dictionary, uint64, uint32, bool, int32, ts)."""
    return conform(
        {
            "time": pa.array([NS + i for i in range(n)], pa.timestamp("ns", tz="UTC")),
            "kind": ["memory"] * n,
            "activity": ["allocate"] * n,
            "event_code": ["linux:mmap"] * n,
            "os": ["linux"] * n,
            "host": ["h"] * n,
            "process_uid": [f"h:{i}:1" for i in range(n)],
            "pid": list(range(n)),
            "process_start": pa.array([1] * n, pa.timestamp("ns", tz="UTC")),
            "image": ['/usr/bin/\u00e9x"q\\'] * n,
            "base_address": pa.array([2**64 - 1 - i for i in range(n)], pa.uint64()),
            "protection": pa.array([7] * n, pa.uint32()),
            "caller_unbacked": [True, False, None][:n] + [None] * max(0, n - 3),
            "remote_port": pa.array([None] * n, pa.int32()),
            "src_format": ["linux-sensor"] * n,
            "src_file": ["sensor.spool"] * n,
            "src_record": list(range(10, 10 + n)),
            "src_line": [None] * n,
        }
    )


def same(a: pa.Table, b: pa.Table) -> bool:
    return rows(a) == rows(b)


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl", ".json"])
def test_round_trip_keeps_every_value_and_provenance(tmp_path: Path, suffix: str) -> None:
    t = sample()
    path = write_events(t, tmp_path / f"ev{suffix}")
    report = RunReport()
    back = read_events([path], report)
    assert back.schema.equals(EVENT_SCHEMA, check_metadata=True)
    if suffix == ".parquet":
        assert same(back, t)
    else:  # JSON lines: a missing src_line becomes the line in this file
        assert same(back.drop_columns(["src_line"]), t.drop_columns(["src_line"]))
        assert back.column("src_line").to_pylist() == [1, 2, 3]
    rep = report.files[str(path)]
    assert rep.format == ("unbacked-parquet" if suffix == ".parquet" else "unbacked-jsonl")
    assert rep.events == 3 and accounted(rep)


def test_parquet_read_encoded_keeps_strings_as_dictionaries_with_the_same_values(
    tmp_path: Path,
) -> None:
    """What the spill asks for: every string column the file holds as a string comes as a
    dictionary, the rest as ``read`` gives it, and decoding gives ``read``'s table; a string
    column the file lacks stays a column of nulls."""
    from unbacked.model.schema import ENCODED_EVENT_SCHEMA, STRING_COLUMNS, decode_strings
    from unbacked.sources.base import InputFile

    t = sample(5).drop_columns(["cmd_line"])  # a column the file does not hold
    path = tmp_path / "ev.parquet"
    pq.write_table(t, path, row_group_size=2)
    inp = InputFile.from_bytes(str(path), path.read_bytes())
    plain = pa.concat_tables(NativeParquetSource().read(inp, RunReport()))
    tables = list(NativeParquetSource().read_encoded(inp, RunReport()))
    assert len(tables) >= 2  # batch by batch, each with dictionaries of its own
    for table in tables:
        for field in table.schema:
            if field.name in STRING_COLUMNS and field.name != "cmd_line":
                assert field.type == ENCODED_EVENT_SCHEMA.field(field.name).type, field.name
            else:
                assert field.type == EVENT_SCHEMA.field(field.name).type, field.name
    decoded = pa.concat_tables([decode_strings(x) for x in tables])
    assert decoded.schema.equals(EVENT_SCHEMA, check_metadata=True)
    assert decoded.equals(plain)
    assert decoded.column("cmd_line").null_count == 5


@pytest.mark.parametrize("dictionary", [True, False])
@pytest.mark.parametrize("encoded", [True, False])
def test_parquet_strings_not_utf8_are_skipped_and_counted(
    tmp_path: Path, dictionary: bool, encoded: bool
) -> None:
    """A valid Parquet file may hold any bytes in a string column (writers do not check, nor
    do readers); such a row is skipped and counted, the others are read, and nothing invalid
    reaches the queries downstream (which refused it: the whole run failed)."""
    from unbacked.sources.base import InputFile

    t = sample(4)
    raw = pa.array([b"ok", b"\xff\xfe not utf-8", None, b"ok"], pa.binary())
    t = t.set_column(t.schema.get_field_index("cmd_line"), "cmd_line", raw.view(pa.string()))
    path = tmp_path / "ev.parquet"
    pq.write_table(t, path, use_dictionary=dictionary)
    inp = InputFile.from_bytes(str(path), path.read_bytes())
    report = RunReport()
    source = NativeParquetSource()
    tables = list(source.read_encoded(inp, report) if encoded else source.read(inp, report))
    got = pa.concat_tables(tables)
    assert got.num_rows == 3
    assert got.column("src_record").to_pylist() == [10, 12, 13]
    rep = report.files[str(path)]
    assert rep.skipped == {"invalid UTF-8": 1}
    assert rep.events == 3 and accounted(rep)


@pytest.mark.parametrize("column", ["image", "host", "event_code", "src_file"])
def test_hunt_of_a_parquet_file_with_strings_not_utf8_completes(
    tmp_path: Path, column: str
) -> None:
    """Plain string columns and the schema's dictionary-typed ones alike."""
    from unbacked.engine.local import hunt

    t = sample(3)
    raw = pa.array([b"\xc3\x28", b"ok", b"ok"], pa.binary())
    t = t.set_column(t.schema.get_field_index(column), column, raw.view(pa.string()))
    path = tmp_path / "ev.parquet"
    pq.write_table(t, path)
    result = hunt([path])
    assert result.report.skipped_by_reason() == {"invalid UTF-8": 1}
    assert result.report.events == 2


def test_jsonl_omits_nulls_and_writes_integer_ns(tmp_path: Path) -> None:
    path = write_events(sample(1), tmp_path / "e.jsonl")
    obj = orjson.loads(path.read_bytes().splitlines()[0])
    assert obj["time"] == NS and obj["process_start"] == 1
    assert "tid" not in obj and "remote_port" not in obj
    assert obj["base_address"] == 2**64 - 1
    assert NativeJsonlSource.sniff(path.read_bytes(), path.name)


def test_streaming_writer_appends_batches(tmp_path: Path) -> None:
    t = sample(3)
    for name in ("s.parquet", "s.jsonl"):
        with EventWriter(tmp_path / name) as w:
            for batch in t.to_batches(max_chunksize=1):
                w.write(batch)
            w.write(EVENT_SCHEMA.empty_table())
        assert w.rows == 3
        assert read_events(tmp_path / name).num_rows == 3
    with EventWriter(tmp_path / "s.jsonl", append=True) as w:
        w.write(t)
    assert read_events(tmp_path / "s.jsonl").num_rows == 6
    with pytest.raises(InputError):
        EventWriter(tmp_path / "x.csv")
    with pytest.raises(InputError):
        EventWriter(tmp_path / "x.parquet", append=True)


def test_empty_table_writes_a_readable_parquet(tmp_path: Path) -> None:
    path = write_events(EVENT_SCHEMA.empty_table(), tmp_path / "empty.parquet")
    assert pq.read_schema(path).metadata[b"unbacked.schema"] == b"event"
    assert read_events(path).num_rows == 0


def test_parquet_without_event_metadata_is_not_claimed(tmp_path: Path) -> None:
    other = tmp_path / "other.parquet"
    pq.write_table(pa.table({"a": [1]}), other)
    report = RunReport()
    read_events([other], report)
    assert report.files[str(other)].error and "UnknownFormatError" in report.files[str(other)].error
    assert NativeParquetSource.sniff(other.read_bytes()[:64], other.name)  # magic only


def test_parquet_with_missing_required_values_skips_those_rows(tmp_path: Path) -> None:
    t = sample(3)
    kind = pa.array(["memory", None, "memory"], pa.string())
    loose = pa.schema([f.with_nullable(True) for f in EVENT_SCHEMA], metadata=EVENT_SCHEMA.metadata)
    t = t.cast(loose).set_column(1, pa.field("kind", pa.string()), kind)
    pq.write_table(t, tmp_path / "holes.parquet")
    report = RunReport()
    out = read_events([tmp_path / "holes.parquet"], report)
    rep = report.files[str(tmp_path / "holes.parquet")]
    assert out.num_rows == 2 and rep.skipped == {"missing or invalid required field": 1}
    assert accounted(rep)


def test_native_jsonl_hostile_values_become_null_or_skip() -> None:
    lines = [
        {
            "time": NS,
            "kind": "process",
            "activity": "open",
            "src_format": "x",
            "pid": "abc",
            "granted_access": -5,
            "signed": "maybe",
            "remote_port": 2**40,
            "zzz": {"a": 1},
        },
        {"time": "2024-01-01T00:00:00Z", "kind": "process", "activity": "open", "src_format": "x"},
        {"time": 1.5e30, "kind": "process", "activity": "open", "src_format": "x"},
        {"kind": "process", "activity": "open", "src_format": "x"},
        {"time": NS, "activity": "open", "src_format": "x"},
    ]
    data = b"\n".join(orjson.dumps(x) for x in lines) + b"\n"
    table, rep = read_bytes(NativeJsonlSource, data)
    a, b = rows(table)
    assert a["time"] == NS and "pid" not in a and "granted_access" not in a
    assert "signed" not in a and "remote_port" not in a
    assert b["time"] == 1_704_067_200_000_000_000
    assert rep.skipped == {"missing or invalid required field": 3} and accounted(rep)


def test_parquet_with_column_names_not_utf8_is_a_format_error() -> None:
    # found by bench/fuzz_campaign.py: pyarrow raises UnicodeDecodeError on such names
    from unbacked.errors import FormatError
    from unbacked.runreport import RunReport
    from unbacked.sources import InputFile
    from unbacked.sources.native import NativeParquetSource

    data = NativeParquetSource.examples[0]
    bad = data.replace(b"activity", b"\xff\xfetivity")
    with pytest.raises(FormatError):
        list(NativeParquetSource().read(InputFile.from_bytes("bad.parquet", bad), RunReport()))
