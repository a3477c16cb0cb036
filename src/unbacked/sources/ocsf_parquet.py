"""OCSF Parquet (Amazon Security Lake layout and other OCSF lakes).

The OCSF JSON-lines mapping (``sources/ocsf.py``) is the one definition of how OCSF becomes the
event model; Parquet reuses it instead of a second mapping: DuckDB writes each Parquet file's
rows as JSON lines (nested structs become nested objects, timestamps epoch milliseconds) into a
temporary file, in C++, and the JSON-lines engine maps them exactly as it maps OCSF JSON. The
row number in the Parquet file is the event's ``src_line``.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pyarrow as pa

from unbacked.errors import FormatError
from unbacked.runreport import RunReport
from unbacked.sources._engine import QUERY_ERRORS, pooled_connection, stream_json_lines
from unbacked.sources.base import SNIFF_BYTES, InputFile, Source, register
from unbacked.sources.ocsf import QUERY
from unbacked.sql import sql_ident, sql_str


def _ocsf_schema(inp: InputFile) -> pa.Schema | None:
    import pyarrow.parquet as pq  # here: only a Parquet input loads it

    try:
        with inp.open() as fh:
            schema = pq.read_schema(fh)
    except (pa.ArrowException, OSError, ValueError):
        return None
    meta = schema.metadata or {}
    if meta.get(b"unbacked.schema") == b"event":
        return None  # unbacked's own event Parquet
    names = set(schema.names)
    if "class_uid" not in names or not names & {"activity_id", "type_uid", "category_uid"}:
        return None
    return schema


@register
class OcsfParquetSource(Source):
    """OCSF 1.x Parquet: Process 1007, Module 1005, Memory 1004, Network 4001."""

    name: ClassVar[str] = "ocsf-parquet"
    description: ClassVar[str] = "OCSF Parquet (Security Lake layout): same mapping as OCSF JSON"
    priority: ClassVar[int] = 40

    @classmethod
    def sniff(cls, head: bytes, name: str) -> bool:
        # a small file's footer (its schema) is in the head: look for the OCSF column there;
        # for a larger one only the schema can tell (``accepts`` reads it)
        if head[:4] != b"PAR1":
            return False
        return b"class_uid" in head or len(head) >= SNIFF_BYTES

    @classmethod
    def accepts(cls, inp: InputFile, head: bytes) -> bool:
        return cls.sniff(head, inp.name) and _ocsf_schema(inp) is not None

    def read(self, inp: InputFile, report: RunReport) -> Iterator[pa.Table]:
        report.file(inp.name, self.name)
        schema = _ocsf_schema(inp)
        if schema is None:
            raise FormatError(
                "not OCSF Parquet (no class_uid / activity_id columns)",
                source=inp.name,
                hint="OCSF Parquet has the OCSF attributes as columns (Security Lake layout)",
            )
        tmp = Path(tempfile.mkdtemp(prefix="unbacked-ocsf-"))
        try:
            src = Path(inp.path) if inp.path else tmp / "input.parquet"
            if not inp.path:
                with inp.open() as fh, src.open("wb") as out:
                    shutil.copyfileobj(fh, out)
            lines = tmp / "rows.jsonl"
            # OCSF times are epoch milliseconds; a Parquet timestamp column becomes exactly that
            stamps = [
                f.name for f in schema if pa.types.is_timestamp(f.type) and f.name.endswith("time")
            ]
            replace = (
                " REPLACE ("
                + ", ".join(f"epoch_ms({sql_ident(c)}) AS {sql_ident(c)}" for c in stamps)
                + ")"
                if stamps
                else ""
            )
            with pooled_connection() as con:  # not a new database per file of a collection
                try:
                    con.execute(
                        f"COPY (SELECT *{replace} FROM read_parquet(?)) TO {sql_str(str(lines))} "
                        "(FORMAT JSON)",
                        [str(src)],
                    )
                except QUERY_ERRORS as exc:
                    raise FormatError(f"unreadable Parquet: {exc}", source=inp.name) from exc
            with pooled_connection() as pooled:
                yield from stream_json_lines(
                    QUERY, pooled, lambda: lines.open("rb"), inp.name, report, src_format=self.name
                )
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
