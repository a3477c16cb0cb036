"""Reading helpers for the Windows source tests: bytes in, rows and the file report out."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
import pyarrow as pa

from unbacked.model import EVENT_SCHEMA
from unbacked.runreport import FileReport, RunReport
from unbacked.sources.base import InputFile, Source


def read(source: type[Source], data: bytes, name: str = "input") -> tuple[list[dict], FileReport]:
    """All rows ``source`` reads from ``data`` (nulls dropped) and the file's report.

    Every table must be exactly ``EVENT_SCHEMA``: a source that emits anything else fails here.
    Timestamps come back as integer nanoseconds (UTC), exact to the last digit.
    """
    report = RunReport()
    rows: list[dict[str, Any]] = []
    for table in source().read(InputFile.from_bytes(name, data), report):
        assert table.schema.equals(EVENT_SCHEMA, check_metadata=False)
        for col in ("time", "process_start"):
            i = table.column_names.index(col)
            table = table.set_column(i, col, table.column(col).cast(pa.int64()))
        rows.extend({k: v for k, v in r.items() if v is not None} for r in table.to_pylist())
    return rows, report.file(name)


def ns(iso: str) -> int:
    """Nanoseconds since the epoch of an ISO 8601 time with an offset (up to 9 digits)."""
    date, _, rest = iso.partition(".")
    if not rest:
        whole = datetime.fromisoformat(iso)
        return int(whole.timestamp()) * 1_000_000_000
    digits = rest[: len(rest) - len(rest.lstrip("0123456789"))]
    tz = rest[len(digits) :]
    whole = datetime.fromisoformat(date + tz)
    return int(whole.timestamp()) * 1_000_000_000 + int(digits.ljust(9, "0"))


def jsonl(*objs: Any) -> bytes:
    return b"\n".join(orjson.dumps(o) for o in objs) + b"\n"


def accounted(rep: FileReport) -> bool:
    """Every record is an event, ignored or skipped: nothing vanishes silently."""
    return rep.events + rep.ignored + sum(rep.skipped.values()) == rep.records
