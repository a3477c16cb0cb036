"""Helpers for the source tests: read bytes with a source, check the run's accounting."""

from __future__ import annotations

from typing import Any

import orjson
import pyarrow as pa

from unbacked.model import EVENT_SCHEMA
from unbacked.runreport import FileReport, RunReport
from unbacked.sources import InputFile, Source


def read_bytes(
    source: type[Source], data: bytes, name: str = "input.jsonl", *, strict: bool = False
) -> tuple[pa.Table, FileReport]:
    """Everything ``source`` reads from ``data`` as one table, and the file's report.

    Fails when a table is not exactly ``EVENT_SCHEMA`` (including its metadata).
    """
    report = RunReport(strict=strict)
    tables = []
    for table in source().read(InputFile.from_bytes(name, data), report):
        assert table.schema.equals(EVENT_SCHEMA, check_metadata=True), table.schema
        tables.append(table)
    out = pa.concat_tables(tables) if tables else EVENT_SCHEMA.empty_table()
    return out, report.file(name)


def rows(table: pa.Table) -> list[dict[str, Any]]:
    """Rows without nulls, timestamps as integer ns (exact comparisons)."""
    for col in ("time", "process_start"):
        i = table.column_names.index(col)
        table = table.set_column(i, col, table.column(col).cast(pa.int64()))
    return [{k: v for k, v in r.items() if v is not None} for r in table.to_pylist()]


def jsonl(*objs: Any) -> bytes:
    return b"\n".join(orjson.dumps(o) for o in objs) + b"\n"


def accounted(rep: FileReport) -> bool:
    """Every record is an event, ignored or skipped: nothing vanishes silently."""
    return rep.records == rep.events + rep.ignored + sum(rep.skipped.values())
