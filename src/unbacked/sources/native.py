"""unbacked's own event files: Parquet and JSON lines of ``EVENT_SCHEMA``, read and written.

* **Parquet**: the schema metadata says ``unbacked.schema == "event"``; columns are cast to the
  current schema (unknown columns dropped, missing ones null), read one row group at a time.
* **JSON lines**: one event object per line, keys are ``EVENT_SCHEMA`` column names, nulls
  omitted, ``time``/``process_start`` as integer nanoseconds since the epoch (UTC). Read by the
  bulk engine like every other JSON format; values of the wrong type become null, a line
  without ``time``/``kind``/``activity``/``src_format`` is skipped with its reason.

``write_events`` and ``EventWriter`` produce both (chosen by suffix); the live sensor appends
batches with ``EventWriter``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, ClassVar, Literal

import orjson
import pyarrow as pa

from unbacked.errors import FormatError, InputError
from unbacked.model import EVENT_SCHEMA, conform
from unbacked.model.rows import from_numpy, per_value
from unbacked.model.schema import STRING_COLUMNS
from unbacked.runreport import RunReport
from unbacked.sources._engine import (
    JsonLinesSource,
    JsonQuery,
    first_json_objects,
    undecodable_utf8,
)
from unbacked.sources.base import InputFile, Source, register

if TYPE_CHECKING:
    import pyarrow.parquet as pq

PARQUET_MAGIC = b"PAR1"
_REQUIRED = ("time", "kind", "activity", "src_format")
_PARQUET_BATCH_ROWS = 64 * 1024


def _column_sql(f: pa.Field) -> str:
    x = f'"{f.name}"'
    t = f.type
    if pa.types.is_timestamp(t):
        return f"coalesce(ub_ns({x}), ub_ts({x}))"
    if pa.types.is_int64(t):
        return f"ub_int({x})"
    if pa.types.is_int32(t):
        return (
            f"CASE WHEN ub_int({x}) BETWEEN -2147483648 AND 2147483647 "
            f"THEN CAST(ub_int({x}) AS INTEGER) END"
        )
    if pa.types.is_uint64(t):
        return f"ub_uint({x})"
    if pa.types.is_uint32(t):
        return f"ub_u32({x})"
    if pa.types.is_boolean(t):
        return f"ub_bool({x})"
    return x


def _native_query() -> JsonQuery:
    fields = [(f.name, [f'$."{f.name}"']) for f in EVENT_SCHEMA if f.name != "src_line"]
    fields.append(("src_line_orig", ['$."src_line"']))
    cols = []
    for f in EVENT_SCHEMA:
        if f.name in ("src_file", "src_format", "src_line"):
            continue
        cols.append(f'{_column_sql(f)} AS "{f.name}"')
    missing = " OR ".join(f'"{c}" IS NULL' for c in _REQUIRED)
    sql = (
        ", g AS (SELECT ln, "
        + ", ".join(cols)
        + ', "src_format" AS src_format_, "src_file" AS src_file_, '
        + "ub_int(src_line_orig) AS src_line_ FROM f) "
        + "SELECT CASE WHEN "
        + missing.replace('"src_format"', "src_format_")
        + " THEN 'missing or invalid required field' ELSE 'ok' END AS _status, "
        + ", ".join(f'"{f.name}"' for f in EVENT_SCHEMA if f.name not in _PROV)
        + ", src_format_ AS src_format, src_file_ AS src_file, "
        + "coalesce(src_line_, ln) AS src_line, ln AS _ln FROM g"
    )
    return JsonQuery(fields, sql)


_PROV = ("src_format", "src_file", "src_line")
NATIVE_QUERY = _native_query()


@register
class NativeJsonlSource(JsonLinesSource):
    """unbacked event JSON lines (``write_events(..., "x.jsonl")``, the sensor's output)."""

    name: ClassVar[str] = "unbacked-jsonl"
    description: ClassVar[str] = "unbacked event JSON lines (EVENT_SCHEMA columns, time in ns)"
    priority: ClassVar[int] = 60
    examples: ClassVar[tuple[bytes, ...]] = (
        b'{"time":1700000000123456789,"kind":"memory","activity":"allocate","os":"linux",'
        b'"host":"h","process_uid":"h:42:1","pid":42,"base_address":140000000000,'
        b'"protection":7,"src_format":"linux-sensor","src_record":1}\n',
    )

    @classmethod
    def sniff(cls, head: bytes, name: str) -> bool:
        objs = first_json_objects(head, limit=1)
        if not objs:
            return False
        o = objs[0]
        t = o.get("time")
        return (
            all(k in o for k in ("kind", "activity", "src_format"))
            and isinstance(t, int)
            and not isinstance(t, bool)
        )

    # native lines keep the provenance they were written with (the Sysmon file and record an
    # event came from); this file and line stand in where an event had none
    query = NATIVE_QUERY


class _ParquetExamples:
    """``NativeParquetSource.examples``, built on first use: writing Parquet at import time
    would cost every command that imports the sources (pyarrow loads pandas to write it)."""

    _value: tuple[bytes, ...] | None = None

    def __get__(self, obj: object, owner: type | None = None) -> tuple[bytes, ...]:
        if self._value is None:
            type(self)._value = (_parquet_example(),)
        return self._value  # type: ignore[return-value]


def _parquet_example() -> bytes:
    import pyarrow.parquet as pq  # in the functions: a hunt of JSON or EVTX never loads it

    buf = pa.BufferOutputStream()
    table = conform(
        {
            "time": pa.array([1_700_000_000_000_000_000], pa.timestamp("ns", tz="UTC")),
            "kind": ["process"],
            "activity": ["launch"],
            "pid": [1],
            "src_format": ["unbacked-parquet"],
        }
    )
    pq.write_table(table, buf)
    return bytes(buf.getvalue().to_pybytes())


@register
class NativeParquetSource(Source):
    """unbacked event Parquet files (schema metadata ``unbacked.schema == "event"``)."""

    name: ClassVar[str] = "unbacked-parquet"
    description: ClassVar[str] = "unbacked event Parquet (schema metadata unbacked.schema=event)"
    priority: ClassVar[int] = 60
    examples: ClassVar[tuple[bytes, ...]] = _ParquetExamples()  # type: ignore[assignment]

    @classmethod
    def sniff(cls, head: bytes, name: str) -> bool:
        return head.startswith(PARQUET_MAGIC)

    @classmethod
    def accepts(cls, inp: InputFile, head: bytes) -> bool:
        if not cls.sniff(head, inp.name):
            return False
        try:
            with inp.open() as fh:
                metadata = _footer(inp, fh)
        except (pa.ArrowException, OSError, ValueError):
            return False
        return _is_event_schema(metadata)

    def read(self, inp: InputFile, report: RunReport) -> Iterator[pa.Table]:
        return self._read(inp, report, encoded=False)

    def read_encoded(self, inp: InputFile, report: RunReport) -> Iterator[pa.Table]:
        """String columns as the file's dictionaries: Parquet writers keep repetitive strings
        dictionary-encoded, and reading them as such costs a fraction of materializing every
        value (a lake's call traces and command lines repeat on every event of a process)."""
        return self._read(inp, report, encoded=True)

    def _read(self, inp: InputFile, report: RunReport, *, encoded: bool) -> Iterator[pa.Table]:
        import pyarrow.parquet as pq

        rep = report.file(inp.name, self.name)
        fh: IO[bytes] | None = None
        try:
            fh = inp.open()
            pf = pq.ParquetFile(fh, metadata=_footer(inp, fh))
            if encoded:
                schema = pf.schema_arrow
                names = [n for n in schema.names if n in STRING_COLUMNS]
                strings = [n for n in names if schema.field(n).type == pa.string()]
                if strings:
                    pf = pq.ParquetFile(fh, read_dictionary=strings, metadata=pf.metadata)
            for batch in pf.iter_batches(batch_size=_PARQUET_BATCH_ROWS):
                rep.records += batch.num_rows
                try:
                    table = conform(batch, encoded=encoded)
                except (pa.ArrowException, ValueError) as exc:
                    report.skip(
                        inp.name,
                        "columns do not match the event schema",
                        batch.num_rows,
                        detail=str(exc)[:200],
                    )
                    continue
                bad = table.column("time").null_count
                if bad or any(table.column(c).null_count for c in _REQUIRED):
                    import pyarrow.compute as pc

                    ok = pc.and_(
                        pc.and_(pc.is_valid(table.column("time")), pc.is_valid(table["kind"])),
                        pc.and_(pc.is_valid(table["activity"]), pc.is_valid(table["src_format"])),
                    )
                    n_bad = table.num_rows - pc.sum(ok).as_py()
                    report.skip(inp.name, "missing or invalid required field", n_bad)
                    table = table.filter(ok)
                table = _valid_utf8_rows(table, inp.name, report)
                rep.events += table.num_rows
                if table.num_rows:
                    yield table
        except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:  # names not UTF-8
            raise FormatError(
                f"unreadable Parquet file: {exc}", source=inp.name, hint="is the file complete?"
            ) from exc
        finally:
            if fh is not None:
                fh.close()


#: the footer ``accepts`` parsed, for the ``read`` of the same input that follows it (a
#: Parquet footer with its ~80 columns' metadata takes ~1 ms to parse)
_last_footer: tuple[InputFile, pq.FileMetaData] | None = None


def _footer(inp: InputFile, fh: IO[bytes]) -> pq.FileMetaData:
    """The Parquet footer of ``inp`` (open as ``fh``), parsed once for ``accepts`` and the
    ``read`` after it."""
    global _last_footer
    last = _last_footer
    if last is not None and last[0] is inp:
        return last[1]
    import pyarrow.parquet as pq

    metadata = pq.read_metadata(fh)
    _last_footer = (inp, metadata)
    return metadata


def _is_event_schema(metadata: pq.FileMetaData) -> bool:
    return (metadata.metadata or {}).get(b"unbacked.schema") == b"event"


def _event_footer(fh: IO[bytes]) -> pq.FileMetaData | None:
    """The footer of an unbacked event Parquet file with a ``host`` column, else None."""
    if fh.read(4) != PARQUET_MAGIC:
        return None  # before pyarrow.parquet is imported: a run of EVTX files never loads it
    import pyarrow.parquet as pq

    fh.seek(0)
    metadata = pq.read_metadata(fh)
    if not _is_event_schema(metadata) or "host" not in metadata.schema.names:
        return None
    return metadata


def event_parquet_rows(path: str | os.PathLike[str]) -> int | None:
    """The rows of an unbacked event Parquet file whose row groups' statistics do not show two
    hosts, from its footer alone (a first look: ``event_parquet_hosts`` reads the hosts);
    None if it is not such a file or cannot be read so (``read`` then says why)."""
    try:
        with open(path, "rb") as fh:
            metadata = _event_footer(fh)
            if metadata is None:
                return None
            host = metadata.schema.names.index("host")
            for i in range(metadata.num_row_groups):
                stats = metadata.row_group(i).column(host).statistics
                if stats is not None and stats.has_min_max and stats.min != stats.max:
                    return None
            return int(metadata.num_rows)
    except (pa.ArrowException, OSError, ValueError, LookupError):
        return None


def event_parquet_hosts(path: str | os.PathLike[str]) -> set[str | None] | None:
    """The hosts of an unbacked event Parquet file's rows, read from its ``host`` column alone
    (a dictionary per row group, each value once); None if it is not such a file or cannot be
    read so."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        with open(path, "rb") as fh:
            metadata = _event_footer(fh)
            if metadata is None:
                return None
            pf = pq.ParquetFile(fh, read_dictionary=["host"], metadata=metadata)
            column = pf.read(columns=["host"], use_threads=False).column("host")
            hosts: set[str | None] = set()
            for chunk in column.chunks:
                if not isinstance(chunk, pa.DictionaryArray):
                    return None
                hosts.update(chunk.dictionary.take(pc.unique(chunk.indices)).to_pylist())
            return hosts
    except (pa.ArrowException, OSError, ValueError, LookupError):
        return None


def _valid_utf8_rows(table: pa.Table, name: str, report: RunReport) -> pa.Table:
    """The rows of ``table`` whose strings are valid UTF-8; the others are skipped and counted
    (``invalid UTF-8``, as the JSON readers count such lines). Parquet readers do not check: a
    file may hold any bytes in a string column, and the queries downstream refuse them. Every
    string column is checked, a dictionary column on its dictionary (each distinct value
    once)."""
    import pyarrow.compute as pc

    bad: pa.ChunkedArray | None = None
    columns: list[str] = []
    for column_field in table.schema:
        typ = column_field.type
        if pa.types.is_dictionary(typ):
            typ = typ.value_type
        if typ != pa.string():
            continue
        col = table.column(column_field.name)
        try:
            for chunk in col.chunks:
                values = chunk.dictionary if isinstance(chunk, pa.DictionaryArray) else chunk
                values.validate(full=True)
        except pa.ArrowInvalid:
            flags = _invalid_utf8(col)
            bad = flags if bad is None else pc.or_(bad, flags)
            columns.append(column_field.name)
    if bad is None:
        return table
    n_bad = pc.sum(bad).as_py() or 0
    report.skip(name, "invalid UTF-8", n_bad, detail=f"in {', '.join(columns)}")
    return table.filter(pc.invert(bad))


def _invalid_utf8(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """For each row of a string column (plain or dictionary-encoded), whether its value is not
    valid UTF-8 (the slow path, for a column that failed validation)."""
    return per_value(col, lambda v: from_numpy(undecodable_utf8(v.view(pa.binary()))))


# -- writing -----------------------------------------------------------------------------------
Format = Literal["parquet", "jsonl"]


def _format_for(path: Path) -> Format:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return "parquet"
    if suffix in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    raise InputError(
        f"cannot tell the event file format from the suffix {suffix!r}",
        source=str(path),
        hint="use .parquet, .jsonl or .json",
    )


_NS_COLUMNS = ("time", "process_start")


def _jsonl_bytes(table: pa.Table) -> bytes:
    """One JSON object per row, nulls omitted, timestamps as integer ns."""
    cols = {}
    for name in table.column_names:
        col = table.column(name)
        if name in _NS_COLUMNS:
            col = col.cast(pa.int64())
        elif pa.types.is_dictionary(col.type):
            col = col.cast(pa.string())
        cols[name] = col.to_pylist()
    names = list(cols)
    values = [cols[n] for n in names]
    out = bytearray()
    dumps = orjson.dumps
    for row in zip(*values, strict=True):
        out += dumps({k: v for k, v in zip(names, row, strict=True) if v is not None})
        out += b"\n"
    return bytes(out)


class EventWriter:
    """Append batches of events to a Parquet or JSON-lines file (the sensor's sink).

    Every batch is conformed to ``EVENT_SCHEMA`` first, so the file always reads back as
    native events. Use as a context manager; ``close`` finishes the Parquet footer.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, format: Format | None = None, append: bool = False
    ) -> None:
        self.path = Path(path)
        self.format: Format = format or _format_for(self.path)
        self.rows = 0
        self._pq: pq.ParquetWriter | None = None
        self._fh: IO[bytes] | None = None
        if self.format == "parquet":
            if append:
                raise InputError(
                    "Parquet files cannot be appended to", source=str(path), hint="use .jsonl"
                )
            import pyarrow.parquet as pq

            self._pq = pq.ParquetWriter(str(self.path), EVENT_SCHEMA, compression="zstd")
        else:
            self._fh = open(self.path, "ab" if append else "wb")  # noqa: SIM115 - closed in close()

    def write(self, data: pa.Table | pa.RecordBatch) -> None:
        table = conform(data)
        if table.num_rows == 0:
            return
        if self._pq is not None:
            self._pq.write_table(table)
        elif self._fh is not None:
            self._fh.write(_jsonl_bytes(table))
            self._fh.flush()
        self.rows += table.num_rows

    def close(self) -> None:
        if self._pq is not None:
            self._pq.close()
            self._pq = None
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def write_events(table: pa.Table, path: str | os.PathLike[str]) -> Path:
    """Write ``table`` (conformed to ``EVENT_SCHEMA``) as Parquet or JSON lines by suffix."""
    with EventWriter(path) as w:
        w.write(table)
        if w.rows == 0 and w.format == "parquet":
            assert w._pq is not None
            w._pq.write_table(EVENT_SCHEMA.empty_table())
    return Path(path)
