"""OCSF Parquet reads exactly like the same events as OCSF JSON lines."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.json as pj
import pyarrow.parquet as pq

from unbacked.runreport import RunReport
from unbacked.sources import InputFile, read_events
from unbacked.sources.ocsf import OcsfJsonSource
from unbacked.sources.ocsf_parquet import OcsfParquetSource

DROP = ("src_format", "src_file")


def _rows(table: pa.Table) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in DROP} for r in table.to_pylist()]


def test_same_rows_as_json(tmp_path):
    data = b"".join(OcsfJsonSource.examples)
    as_json = tmp_path / "events.jsonl"
    as_json.write_bytes(data)
    table = pj.read_json(io.BytesIO(data))
    # Security Lake stores the event time as a timestamp column
    table = table.set_column(
        table.schema.get_field_index("time"),
        "time",
        table["time"].cast(pa.timestamp("ms", tz="UTC")),
    )
    as_parquet = tmp_path / "events.parquet"
    pq.write_table(table, as_parquet)
    from_json = read_events([as_json], RunReport(strict=True))
    report = RunReport(strict=True)
    from_parquet = read_events([as_parquet], report)
    assert from_parquet.num_rows == from_json.num_rows > 0
    assert _rows(from_parquet) == _rows(from_json)
    assert set(from_parquet["src_format"].cast(pa.string()).to_pylist()) == {"ocsf-parquet"}
    assert report.files[str(as_parquet)].events == from_parquet.num_rows


def test_other_parquet_is_not_claimed(tmp_path):
    p = tmp_path / "x.parquet"
    pq.write_table(pa.table({"a": [1]}), p)
    inp = InputFile(name=str(p), opener=lambda: p.open("rb"), path=str(p))
    assert not OcsfParquetSource.accepts(inp, inp.head())
