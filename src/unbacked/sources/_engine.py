"""The bulk path shared by every JSON-shaped source: lines of JSON in, Arrow events out.

Why this shape: parsing JSON one object at a time in Python (orjson + dict look-ups) costs more
than the parse itself. Instead lines become Arrow string arrays (zero-copy over the bytes read;
Python only finds line ends) and DuckDB's C++ JSON reader pulls every field a format needs in
one pass (``json_extract_string`` with a list of paths, so case variants such as
``SourceProcessGUID`` / ``SourceProcessGuid`` and dotted keys coexist), then maps them to
``EVENT_SCHEMA`` in SQL (casts, hex, timestamps, ``CASE`` by event id) on all cores.

* JSON-lines inputs are streamed through *one* query per input (``stream_json_lines``): the
  query is planned once, DuckDB pulls batches as it needs them, the input is never held
  whole.
* EVTX records arrive as the parser's JSON strings; blocks of them, possibly from several
  small files, are mapped one query per block (``JsonQuery.run_files``).

A malformed line makes the fast query fail; the input (or block) is then read again with a
``json_valid`` filter, so every bad line is counted exactly with its reason.
"""

from __future__ import annotations

import threading
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import IO, ClassVar

import duckdb
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from unbacked.duck import fetch_arrow
from unbacked.errors import FormatError
from unbacked.model import conform
from unbacked.model.rows import from_numpy
from unbacked.runreport import RunReport
from unbacked.sources.base import (
    SNIFF_BYTES,
    InputFile,
    Source,
    count_read_error,
    read_tolerant,
)
from unbacked.sql import sql_str

#: What a failing query raises: a DuckDB error, or, when its message quotes input cut inside a
#: UTF-8 sequence, a UnicodeDecodeError while that message is decoded
QUERY_ERRORS: tuple[type[Exception], ...] = (duckdb.Error, UnicodeDecodeError)

#: Bytes of text handed to DuckDB at once (split at a line end).
BLOCK_BYTES = 64 * 1024 * 1024
#: A longer line is skipped (bounded memory on files without newlines).
MAX_LINE_BYTES = 64 * 1024 * 1024
#: Record batches per block, so DuckDB can spread a block over its threads.
_BATCHES_PER_BLOCK = 16

_WS = frozenset(b" \t\r\n\f\v")
_BOM = b"\xef\xbb\xbf"
_BRACE = ord("{")

# Helpers every mapping query may use. Every cast is a TRY_CAST, so a hostile value becomes
# NULL instead of failing the block; timestamps outside the ns range become NULL too. Regular
# expressions run only on the rare rows that need them (CASE evaluates lazily per row).
_MACROS = r"""
CREATE OR REPLACE MACRO ub_str(x) AS
    CASE WHEN x IN ('', '-') OR (strlen(x) < 8 AND trim(x) IN ('', '-')) THEN NULL ELSE x END;
CREATE OR REPLACE MACRO ub_int(x) AS TRY_CAST(x AS BIGINT);
CREATE OR REPLACE MACRO ub_uint(x) AS TRY_CAST(x AS UBIGINT);
CREATE OR REPLACE MACRO ub_u32(x) AS TRY_CAST(x AS UINTEGER);
CREATE OR REPLACE MACRO ub_port(x) AS
    CASE WHEN TRY_CAST(x AS INTEGER) BETWEEN 0 AND 65535 THEN TRY_CAST(x AS INTEGER) END;
CREATE OR REPLACE MACRO ub_bool(x) AS
    CASE lower(trim(x)) WHEN 'true' THEN true WHEN 'false' THEN false
                        WHEN '1' THEN true WHEN '0' THEN false END;
CREATE OR REPLACE MACRO ub_ts(x) AS
    CASE WHEN length(x) > 19 AND substr(x, -6, 1) IN ('+', '-') AND substr(x, -3, 1) = ':'
         THEN CASE WHEN TRY_CAST(x AS TIMESTAMPTZ)
                        BETWEEN TIMESTAMPTZ '1678-01-01' AND TIMESTAMPTZ '2262-01-01'
                   THEN epoch_ns(TRY_CAST(x AS TIMESTAMPTZ)) END
         ELSE epoch_ns(TRY_CAST(x AS TIMESTAMP_NS)) END;
CREATE OR REPLACE MACRO ub_ns(x) AS TRY_CAST(x AS BIGINT);
CREATE OR REPLACE MACRO ub_ms(x) AS
    CASE WHEN TRY_CAST(x AS BIGINT) BETWEEN -9200000000000 AND 9200000000000
         THEN TRY_CAST(x AS BIGINT) * 1000000 END;
CREATE OR REPLACE MACRO ub_unescape(x) AS
    CASE WHEN contains(x, '&')
         THEN replace(replace(replace(replace(replace(replace(replace(x,
              '&lt;', '<'), '&gt;', '>'), '&quot;', '"'), '&apos;', ''''), '&#39;', ''''),
              '&#34;', '"'), '&amp;', '&')
         ELSE x END;
CREATE OR REPLACE MACRO ub_image(x) AS
    CASE WHEN contains(x, '\') OR contains(x, '/')
         THEN CASE WHEN regexp_matches(x, '^([A-Za-z]:[\\/]|[\\/])')
                        AND NOT regexp_matches(x, '[\x00-\x1f<>|"*]') THEN x END
         WHEN regexp_full_match(x, '[A-Za-z0-9 _.()$-]+|[^\x00-\x1f<>|"?*:]+\.[A-Za-z0-9]{1,8}')
         THEN x END;
CREATE OR REPLACE MACRO ub_guid(x) AS
    CASE WHEN x IN ('', '-', '{00000000-0000-0000-0000-000000000000}',
                    '00000000-0000-0000-0000-000000000000')
              OR (strlen(x) < 8 AND trim(x) IN ('', '-')) THEN NULL
         ELSE x END;
"""


def connect() -> duckdb.DuckDBPyConnection:
    """A private in-memory DuckDB connection with the mapping macros, times in UTC.

    A database of its own, not ``unbacked.duck``'s shared one: it sets the time zone and
    defines macros, settings and catalog entries that the shared database must not carry."""
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone='UTC'")
    con.execute(_MACROS)
    return con


_POOL: list[duckdb.DuckDBPyConnection] = []
_POOL_LOCK = threading.Lock()
_POOL_MAX = 4


@contextmanager
def pooled_connection() -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection for one input, reused by later inputs (a run over thousands of small
    EVTX files must not pay for a new database and its macros per file).

    One input uses a connection at a time; it goes back to the pool afterwards.
    """
    with _POOL_LOCK:
        con = _POOL.pop() if _POOL else None
    if con is None:
        con = connect()
    try:
        yield con
    finally:
        with suppress(duckdb.Error):
            con.unregister("lines")
        with _POOL_LOCK:
            if len(_POOL) < _POOL_MAX:
                _POOL.append(con)
                con = None
        if con is not None:
            con.close()


@dataclass(slots=True)
class BlockResult:
    """What one block produced: the events and the counters to add to the file's report."""

    table: pa.Table | None
    events: int = 0
    ignored: int = 0
    skipped: dict[str, tuple[int, str | None]] = field(default_factory=dict)

    def add_skip(self, reason: str, count: int, detail: str | None) -> None:
        if count <= 0:
            return
        old, old_detail = self.skipped.get(reason, (0, None))
        self.skipped[reason] = (old + count, old_detail or detail)


class JsonQuery:
    """One format's extraction: JSON paths per canonical field, then a mapping ``SELECT``.

    ``fields`` maps a canonical name to the JSON paths that may hold it (first non-null wins).
    ``mapping_sql`` selects from the CTE ``f`` (columns ``ln`` plus every canonical name, all
    VARCHAR) and must produce ``_status`` (``'ok'``, ``'ignored'`` or a skip reason) and event
    columns named as in ``EVENT_SCHEMA``. ``post`` optionally rewrites the query's output
    table (vectorized) before it is counted and conformed (NXLog unescaping).
    """

    def __init__(
        self,
        fields: Sequence[tuple[str, Sequence[str]]],
        mapping_sql: str,
        *,
        post: Callable[[pa.Table], pa.Table] | None = None,
    ) -> None:
        paths: list[str] = []
        cols: list[str] = []
        for name, variants in fields:
            idx = []
            for p in variants:
                paths.append(p)
                idx.append(len(paths))
            expr = "coalesce(" + ", ".join(f"v[{i}]" for i in idx) + ")"
            if len(idx) == 1:
                expr = f"v[{idx[0]}]"
            cols.append(f'{expr} AS "{name}"')
        path_list = "[" + ", ".join(sql_str(p) for p in paths) + "]"
        self._post = post
        self._sql = {
            guarded: (
                "WITH raw AS (SELECT ln, json_extract_string(line, "
                + path_list
                + ") AS v FROM lines"
                + (" WHERE json_valid(line)" if guarded else "")
                + "), f AS (SELECT ln, "
                + ", ".join(cols)
                + " FROM raw) "
                + mapping_sql
            )
            for guarded in (False, True)
        }

    def sql(self, guarded: bool) -> str:
        """The query text; ``guarded`` filters out lines that are not valid JSON first."""
        return self._sql[guarded]

    @property
    def post(self) -> Callable[[pa.Table], pa.Table] | None:
        return self._post

    def run(
        self,
        con: duckdb.DuckDBPyConnection,
        lines: pa.Array,
        ln: np.ndarray,
        *,
        src_format: str,
        src_file: str,
    ) -> BlockResult:
        """Map a block of JSON texts (one object each) to events; never raises on bad data."""
        res = BlockResult(table=None)
        out = self.query(con, lines, ln, res)
        if out is None:
            return res
        return _account(out, res, src_format=src_format, src_file=src_file)

    def run_files(
        self,
        con: duckdb.DuckDBPyConnection,
        lines: pa.Array,
        ln: np.ndarray,
        fi: np.ndarray,
        files: Sequence[str],
        *,
        src_format: str,
    ) -> list[tuple[str, BlockResult]]:
        """Like ``run`` for a block that spans several small files (``fi`` indexes ``files``).

        One query for many files: a query's fixed cost (planning a few dozen expressions,
        ~25 ms) would otherwise dominate collections of small EVTX files. The file index
        travels in the high bits of the line number through the query.
        """
        key = (fi.astype(np.int64) << 32) | ln.astype(np.int64)
        block = BlockResult(table=None)
        out = self.query(con, lines, key, block)
        results = [BlockResult(table=None) for _ in files]
        out_fi = (
            np.right_shift(out.column("src_line").to_numpy(zero_copy_only=False), 32)
            if out is not None
            else np.zeros(0, dtype=np.int64)
        )
        lost = np.bincount(fi, minlength=len(files)) - np.bincount(out_fi, minlength=len(files))
        reason = next(iter(block.skipped), "unreadable record")
        if lost.any():
            # the first lost line of each file, as reading that file alone would name it
            kept = out.column("src_line").to_numpy(zero_copy_only=False) if out is not None else []
            gone = ~np.isin(key, kept)
            first = np.full(len(files), np.iinfo(np.int64).max, dtype=np.int64)
            np.minimum.at(first, fi[gone], ln[gone])
            for k in np.flatnonzero(lost > 0):
                where = f"line {int(first[k])}" if first[k] != np.iinfo(np.int64).max else None
                results[k].add_skip(reason, int(lost[k]), where)
        if out is not None and out.num_rows:
            local = pc.bit_wise_and(out.column("src_line"), pa.scalar(0xFFFFFFFF, pa.int64()))
            out = out.set_column(out.column_names.index("src_line"), "src_line", local)
            _account_files(out, out_fi, files, results, src_format=src_format)
        return list(zip(files, results, strict=True))

    def query(
        self, con: duckdb.DuckDBPyConnection, lines: pa.Array, ln: np.ndarray, res: BlockResult
    ) -> pa.Table | None:
        """The mapped rows of a block (with ``_status``), or None; bad lines go to ``res``."""
        if len(lines) == 0:
            return None
        lines, ln = _ensure_utf8(lines, ln, res)
        if len(lines) == 0:
            return None
        ln_arr = from_numpy(ln, pa.int64())
        step = max(1024, -(-len(lines) // _BATCHES_PER_BLOCK))
        batches = [
            pa.record_batch([ln_arr.slice(i, step), lines.slice(i, step)], names=["ln", "line"])
            for i in range(0, len(lines), step)
        ]
        tbl = pa.Table.from_batches(
            batches, schema=pa.schema([("ln", pa.int64()), ("line", lines.type)])
        )
        con.register("lines", tbl)
        try:
            try:
                out = fetch_arrow(con.execute(self._sql[False]))
            except QUERY_ERRORS:
                out = None
            if out is None:
                try:
                    out = fetch_arrow(con.execute(self._sql[True]))
                except QUERY_ERRORS as exc:
                    res.add_skip("unreadable block", len(lines), f"{type(exc).__name__}: {exc}")
                    return None
                bad = len(lines) - out.num_rows
                if bad:
                    rows = con.execute(
                        "SELECT min(ln) FROM lines WHERE NOT json_valid(line)"
                    ).fetchall()
                    first = rows[0][0] if rows else None
                    where = f"line {first}" if first is not None else None
                    res.add_skip("malformed JSON", bad, where)
        finally:
            con.unregister("lines")
        if self._post is not None:
            out = self._post(out)
        if out is not None and "src_line" in out.column_names and out.num_rows > 1:
            # DuckDB's parallel scan of a multi-batch table need not keep input order: restore
            # it (lines/records ascend by construction), so every run yields the same rows
            out = out.sort_by("src_line")
        return out


def _ensure_utf8(lines: pa.Array, ln: np.ndarray, res: BlockResult) -> tuple[pa.Array, np.ndarray]:
    """Return ``lines`` as valid UTF-8 strings; lines that are not are counted and dropped.

    The cheap full validation passes for real data; only a corrupt block pays for the loop.
    """
    try:
        if pa.types.is_string(lines.type) or pa.types.is_large_string(lines.type):
            lines.validate(full=True)
            return lines, ln
        if pa.types.is_binary(lines.type):
            return lines.cast(pa.string()), ln  # the cast validates UTF-8
        if pa.types.is_large_binary(lines.type):
            return lines.cast(pa.large_string()), ln
    except pa.ArrowInvalid:
        pass
    raw = lines.cast(pa.large_binary()) if not pa.types.is_binary(lines.type) else lines
    bad = undecodable_utf8(raw)
    first_bad = int(ln[bad][0]) if bad.any() else None
    res.add_skip(
        "invalid UTF-8", int(bad.sum()), f"line {first_bad}" if first_bad is not None else None
    )
    good = ~bad
    return raw.filter(from_numpy(good)).cast(pa.large_string()), ln[good]


def undecodable_utf8(values: pa.Array) -> np.ndarray:
    """For each value of a string or binary array, whether its bytes are not UTF-8 (a null is
    not): the slow path, one value at a time, for an array that failed validation."""
    flags = np.zeros(len(values), dtype=bool)
    raw = values if pa.types.is_binary(values.type) else values.cast(pa.large_binary())
    for i, b in enumerate(raw.to_pylist()):
        if b is not None:
            try:
                b.decode("utf-8")
            except UnicodeDecodeError:
                flags[i] = True
    return flags


def _account(out: pa.Table, res: BlockResult, *, src_format: str, src_file: str) -> BlockResult:
    """Count one input's mapped rows by ``_status`` into ``res`` and set its events (``ok``
    rows with their provenance, conformed): ``_account_files`` for a block of one file."""
    zeros = np.zeros(out.num_rows, dtype=np.int64)
    _account_files(out, zeros, [src_file], [res], src_format=src_format)
    return res


def with_provenance(table: pa.Table, provenance: Sequence[tuple[str, pa.Array]]) -> pa.Table:
    """``table`` with each provenance column (``src_format``, ``src_file``) set to the values
    given, except where a record carries its own (native events): those come first."""
    for col, value in provenance:
        if col in table.column_names:
            i = table.column_names.index(col)
            merged = pc.coalesce(table.column(col).cast(pa.string()), value.cast(pa.string()))
            table = table.set_column(i, col, merged)
        else:
            table = table.append_column(col, value)
    return table


def _account_files(
    out: pa.Table,
    out_fi: np.ndarray,
    files: Sequence[str],
    results: list[BlockResult],
    *,
    src_format: str,
) -> None:
    """Count a block's mapped rows by ``_status`` into each file's result (``out_fi``: the
    index in ``files`` of each row, ascending; ``src_line`` the line within its file), and set
    each file's events: a slice of the block's ``ok`` rows, conformed once (conforming ~70
    columns costs ~2 ms, paid once per block instead of once per file of a collection of small
    files)."""
    status = out.column("_status")
    # the counts of each (file, status) in order of first appearance within the file
    per = (
        pa.table({"fi": from_numpy(out_fi), "status": status, "line": out.column("src_line")})
        .group_by(["fi", "status"], use_threads=False)
        .aggregate([("line", "min"), ("line", "count")])
    )
    for k, reason, first, cnt in zip(
        per["fi"].to_pylist(),
        per["status"].to_pylist(),
        per["line_min"].to_pylist(),
        per["line_count"].to_pylist(),
        strict=True,
    ):
        res = results[k]
        if reason == "ok":
            res.events += cnt
        elif reason == "ignored" or reason is None:
            res.ignored += cnt
        else:
            res.add_skip(reason, cnt, f"line {first}" if first is not None else None)
    ok = pc.equal(status, "ok")
    table = out.filter(ok).drop_columns(["_status"])
    if table.num_rows == 0:
        return
    ok_fi = out_fi[np.asarray(ok.to_numpy(zero_copy_only=False), dtype=bool)]
    names = pa.array(list(files), pa.string())
    own_file = "src_file" in table.column_names  # native events may carry their own
    table = with_provenance(
        table,
        (
            ("src_format", constant_dict(src_format, table.num_rows)),
            ("src_file", pa.DictionaryArray.from_arrays(from_numpy(ok_fi.astype(np.int32)), names)),
        ),
    )
    table = conform(table)
    src_file = table.schema.get_field_index("src_file")
    file_type = table.schema.field(src_file).type
    starts = np.searchsorted(ok_fi, np.arange(len(files) + 1))
    for k in range(len(files)):
        a, b = int(starts[k]), int(starts[k + 1])
        if b > a:
            part = table.slice(a, b - a)
            if not own_file:  # one file's name as a dictionary of its own
                part = part.set_column(
                    src_file, "src_file", constant_dict(files[k], b - a).cast(file_type)
                )
            results[k].table = part


def constant_dict(value: str, n: int) -> pa.DictionaryArray:
    """``n`` copies of ``value`` as a dictionary array (no per-row string)."""
    return pa.DictionaryArray.from_arrays(
        from_numpy(np.zeros(n, dtype=np.int32)), pa.array([value], pa.string())
    )


# -- lines -------------------------------------------------------------------------------------
@dataclass(slots=True)
class LineBlock:
    """JSON-object lines of one block with their 1-based line numbers."""

    lines: pa.Array
    ln: np.ndarray
    records: int  # non-blank lines in the block (objects or not)
    skipped: dict[str, tuple[int, str | None]] = field(default_factory=dict)
    other_ln: np.ndarray | None = None  # line numbers of non-blank lines that are not objects


def split_lines(
    block: bytes | bytearray, first_line: int, end: int | None = None, *, keep_other: bool = False
) -> tuple[LineBlock, int]:
    """Cut ``block[:end]`` at newlines; return the object lines and the number of lines consumed.

    The lines are a zero-copy Arrow view of ``block`` (which must not change afterwards).
    Blank lines are not records. A non-blank line whose first character is not ``{`` cannot be
    an event object and is counted right here, without a parser.
    """
    total = len(block) if end is None else end
    starts = [0]
    find = block.find
    pos = find(b"\n", 0, total)
    while pos != -1:
        starts.append(pos + 1)
        pos = find(b"\n", pos + 1, total)
    if starts[-1] == total:
        starts.pop()
    n = len(starts)
    offs = np.empty(n + 1, dtype=np.int64)
    offs[:n] = starts
    offs[n] = total
    lens = np.diff(offs)
    buf = np.frombuffer(block, dtype=np.uint8, count=total)
    first = np.zeros(n, dtype=np.uint8)
    nonempty = lens > 0
    first[nonempty] = buf[offs[:n][nonempty]]
    is_obj = first == _BRACE
    blank = ~nonempty | (lens == 1) & (first == 10)
    # lines starting with whitespace: look closer (rare)
    for i in np.flatnonzero(np.isin(first, list(_WS)) & ~blank):
        s = bytes(block[offs[i] : offs[i + 1]]).strip()
        if not s:
            blank[i] = True
        elif s[:1] == b"{":
            is_obj[i] = True
    lnos = np.arange(first_line, first_line + n, dtype=np.int64)
    records = int(n - blank.sum())
    notobj = ~is_obj & ~blank
    skipped: dict[str, tuple[int, str | None]] = {}
    n_notobj = int(notobj.sum())
    if n_notobj:
        skipped["not a JSON object"] = (n_notobj, f"line {int(lnos[notobj][0])}")
    data = pa.py_buffer(block)
    if total >= 2**31:
        arr = pa.LargeStringArray.from_buffers(n, pa.py_buffer(offs), data)
    else:
        arr = pa.StringArray.from_buffers(n, pa.py_buffer(offs.astype(np.int32)), data)
    other = lnos[notobj] if keep_other else None
    if not is_obj.all():
        arr = arr.filter(from_numpy(is_obj))
        lnos = lnos[is_obj]
    return LineBlock(arr, lnos, records, skipped, other), n


def _fill(stream: IO[bytes], prefix: bytes, n: int) -> tuple[bytearray, int, BaseException | None]:
    """A new buffer holding ``prefix`` and then up to ``n`` bytes of ``stream``.

    Read with ``readinto`` straight into one allocation: no intermediate pieces, no joins.
    Returns the buffer, how many bytes of it are valid, and a read error if one stopped it
    (what was read before the error stays usable).
    """
    buf = bytearray(len(prefix) + n)
    buf[: len(prefix)] = prefix
    view = memoryview(buf)
    pos = len(prefix)
    error: BaseException | None = None
    readinto = getattr(stream, "readinto", None)
    try:
        while pos < len(buf):
            if readinto is not None:
                got = readinto(view[pos : min(len(buf), pos + _READ_PIECE)])
            else:
                piece = stream.read(min(_READ_PIECE, len(buf) - pos))
                got = len(piece)
                view[pos : pos + got] = piece
            if not got:
                break
            pos += got
    except (FormatError, OSError, EOFError, zlib.error, ValueError, zipfile.BadZipFile) as exc:
        error = exc
    finally:
        view.release()
    return buf, pos, error


_READ_PIECE = 4 * 1024 * 1024


def iter_line_blocks(
    stream: IO[bytes], name: str, report: RunReport, *, block_bytes: int | None = None
) -> Iterator[LineBlock]:
    """Read ``stream`` in blocks cut at line ends; unreadable tails are reported, not raised.

    A read error (corrupt archive member, size cap) ends the input: the complete lines read
    before it are used, the error is counted once with its reason. A line longer than
    ``MAX_LINE_BYTES`` is counted and skipped without holding it in memory.
    """
    block_bytes = block_bytes or BLOCK_BYTES
    pending = b""
    line_no = 1
    discarding = False
    first = True
    while True:
        buf, size, error = _fill(stream, pending, block_bytes)
        if first:
            first = False
            if buf[:3] == _BOM:  # a UTF-8 byte order mark is not part of the first record
                buf[:3] = b"   "
        at_end = error is not None or size < len(buf)
        start = 0
        pending = b""
        if discarding:
            nl = buf.find(b"\n", 0, size)
            if nl == -1:
                if at_end:
                    break
                continue  # still inside the long line
            discarding = False
            line_no += 1
            start = nl + 1
        cut = buf.rfind(b"\n", start, size)
        if at_end:
            # complete lines are used; a last line without newline too, unless the read
            # failed in the middle of it
            end = size if error is None else cut + 1
            if end > start:
                part = buf if start == 0 else bytes(buf[start:end])
                blk, _ = split_lines(part, line_no, end - start)
                yield blk
            if error is not None:
                count_read_error(report, name, error)
            break
        if cut == -1:
            if size - start > MAX_LINE_BYTES:
                report.file(name).records += 1
                report.skip(name, "line too long", detail=f"line {line_no}")
                discarding = True
            else:
                pending = bytes(buf[start:size])  # a long line: keep reading it
            continue
        pending = bytes(buf[cut + 1 : size])
        if start == 0:
            blk, consumed = split_lines(buf, line_no, cut + 1)
        else:
            blk, consumed = split_lines(bytes(buf[start : cut + 1]), line_no)
        line_no += consumed
        yield blk


#: lines of text per record batch handed to DuckDB when streaming (parallelism grain)
_STREAM_BATCH_ROWS = 4096
#: bytes read per block when streaming (small: buffers are recycled, not faulted in anew)
STREAM_BLOCK_BYTES = 8 * 1024 * 1024
_LINES_SCHEMA = pa.schema([("ln", pa.int64()), ("line", pa.string())])


class _Abort(Exception):
    """Stops the DuckDB scan when the line producer itself failed (re-raised afterwards)."""


def stream_json_lines(
    query: JsonQuery,
    con: duckdb.DuckDBPyConnection,
    open_stream: Callable[[], IO[bytes]],
    name: str,
    report: RunReport,
    *,
    src_format: str,
) -> Iterator[pa.Table]:
    """Map a JSON-lines input with *one* query streamed over the whole input.

    DuckDB pulls record batches from the line splitter as it needs them and hands mapped
    batches back as they are ready, so a query is planned once per input (not per block),
    the input is never held whole, and buffers are recycled instead of being faulted
    in anew. Reading, splitting and mapping overlap on their own.

    A malformed line makes the fast (unguarded) query fail mid-stream. Then the input is read
    again with the guarded query (``json_valid`` filter); its counters replace the first pass's
    and events already yielded are not yielded twice.
    """
    rep = report.file(name)
    snapshot = (rep.records, rep.events, rep.ignored, rep.skipped.copy(), dict(rep.examples))
    # line numbers the fast pass already mapped (and yielded): the guarded pass must not yield
    # them again, and must yield every other one. A set, not a maximum: DuckDB's parallel scan
    # hands batches back out of input order.
    seen: list[np.ndarray] = []
    for guarded in (False, True):
        if guarded:  # start the counters of this input afresh
            rep.records, rep.events, rep.ignored = snapshot[0], snapshot[1], snapshot[2]
            rep.skipped, rep.examples = snapshot[3].copy(), dict(snapshot[4])
        failure: list[BaseException] = []
        fed = [0]
        reader = pa.RecordBatchReader.from_batches(
            _LINES_SCHEMA, _line_batches(open_stream, name, report, failure, fed)
        )
        con.register("lines", reader)
        seen_set = pa.array(np.concatenate(seen)) if guarded and seen else None
        out_rows = 0
        result: pa.RecordBatchReader | None = None
        try:
            result = con.sql(query.sql(guarded)).to_arrow_reader(65536)
            for batch in result:
                out = pa.Table.from_batches([batch])
                out_rows += out.num_rows
                if query.post is not None:
                    out = query.post(out)
                line_col = out.column("_ln" if "_ln" in out.column_names else "src_line")
                res = _account(out, BlockResult(table=None), src_format=src_format, src_file=name)
                rep.events += res.events
                rep.ignored += res.ignored
                for reason, (cnt, detail) in res.skipped.items():
                    report.skip(name, reason, cnt, detail=detail)
                table = res.table
                if guarded and seen_set is not None and table is not None:
                    # counted again above, but each event is yielded once only
                    keep = pc.invert(pc.is_in(line_col, value_set=seen_set))
                    table = _account(
                        out.filter(keep),
                        BlockResult(table=None),
                        src_format=src_format,
                        src_file=name,
                    ).table
                if not guarded and out.num_rows:
                    seen.append(line_col.to_numpy(zero_copy_only=False))
                if table is not None and table.num_rows:
                    yield table
        except (*QUERY_ERRORS, pa.ArrowException, OSError):
            # a failing query surfaces through the Arrow stream as an Arrow/OS error
            if failure:
                raise failure[0] from None
            if guarded:
                report.skip(name, "unreadable data", detail="the JSON reader failed")
                return
            continue  # a malformed line: read again, guarded
        finally:
            if result is not None:
                result.close()
            con.unregister("lines")
        if failure:
            raise failure[0]
        if guarded and fed[0] > out_rows:
            report.skip(name, "malformed JSON", fed[0] - out_rows)
        return


def _line_batches(
    open_stream: Callable[[], IO[bytes]],
    name: str,
    report: RunReport,
    failure: list[BaseException],
    fed: list[int],
) -> Iterator[pa.RecordBatch]:
    """Record batches (ln, line) of an input's object lines; runs inside DuckDB's scan.

    An exception cannot cross DuckDB intact, so it is kept in ``failure`` for the caller.
    """
    rep = report.file(name)
    try:
        with open_stream() as stream:
            for blk in iter_line_blocks(stream, name, report, block_bytes=STREAM_BLOCK_BYTES):
                rep.records += blk.records
                for reason, (cnt, detail) in blk.skipped.items():
                    report.skip(name, reason, cnt, detail=detail)
                res = BlockResult(table=None)
                lines, ln = _ensure_utf8(blk.lines, blk.ln, res)
                for reason, (cnt, detail) in res.skipped.items():
                    report.skip(name, reason, cnt, detail=detail)
                if not pa.types.is_string(lines.type):
                    lines = lines.cast(pa.string())
                fed[0] += len(lines)
                ln_arr = from_numpy(ln, pa.int64())
                for i in range(0, len(lines), _STREAM_BATCH_ROWS):
                    yield pa.record_batch(
                        [ln_arr.slice(i, _STREAM_BATCH_ROWS), lines.slice(i, _STREAM_BATCH_ROWS)],
                        schema=_LINES_SCHEMA,
                    )
    except GeneratorExit:
        raise
    except BaseException as exc:  # re-raised in the caller's thread
        failure.append(exc)
        raise _Abort() from exc


#: JSON-lines inputs up to this size are read together, one query for many (a collection of
#: thousands of small files, or of small archive members, must not pay ~50 ms per file)
SMALL_JSONL_BYTES = 4 * 1024 * 1024


class JsonLinesSource(Source):
    """A JSON-lines format read by the bulk engine: one streamed query per large input, one
    query per group of small inputs (``read_many``)."""

    query: ClassVar[JsonQuery]
    batch_bytes: ClassVar[int] = SMALL_JSONL_BYTES
    batch_files: ClassVar[int] = 4096

    def read(self, inp: InputFile, report: RunReport) -> Iterator[pa.Table]:
        report.file(inp.name, self.name)
        with pooled_connection() as con:
            yield from stream_json_lines(
                self.query, con, inp.open, inp.name, report, src_format=self.name
            )

    def read_many(self, inputs: Sequence[InputFile], report: RunReport) -> Iterator[pa.Table]:
        for inp in inputs:
            report.file(inp.name, self.name)
        with pooled_connection() as con:
            yield from read_small_json_lines(self.query, con, inputs, report, src_format=self.name)


def read_small_json_lines(
    query: JsonQuery,
    con: duckdb.DuckDBPyConnection,
    inputs: Sequence[InputFile],
    report: RunReport,
    *,
    src_format: str,
) -> Iterator[pa.Table]:
    """Map small JSON-lines inputs (each read whole) with one query; counters per input."""
    bufs: list[bytes] = []
    starts: list[int] = []  # first global line number of each input
    files: list[str] = []
    errors: list[tuple[str, FormatError]] = []
    next_line = 1
    for inp in inputs:
        try:
            data, error = read_tolerant(inp)
        except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            report.file_error(
                inp.name,
                FormatError(f"unreadable input: {type(exc).__name__}: {exc}", source=inp.name),
            )
            continue
        if data[:3] == _BOM:
            data = b"   " + data[3:]
        if data and not data.endswith(b"\n"):
            data += b"\n"
        files.append(inp.name)
        starts.append(next_line)
        next_line += data.count(b"\n")
        bufs.append(data)
        if error is not None:
            errors.append((inp.name, error))
    if not files:
        return
    start_arr = np.array(starts, dtype=np.int64)

    def file_of(lnos: np.ndarray) -> np.ndarray:
        return np.searchsorted(start_arr, lnos, side="right") - 1

    def per_file(lnos: np.ndarray, reason: str | None) -> np.ndarray:
        owner = file_of(lnos)
        counts = np.bincount(owner, minlength=len(files))
        if reason is not None:
            for k in np.flatnonzero(counts):
                first = int(lnos[owner == k].min() - start_arr[k] + 1)
                report.skip(files[k], reason, int(counts[k]), detail=f"line {first}")
        return counts

    blk, _ = split_lines(b"".join(bufs), 1, keep_other=True)
    records = np.bincount(file_of(blk.ln), minlength=len(files))
    if blk.other_ln is not None and len(blk.other_ln):
        records += per_file(blk.other_ln, "not a JSON object")
    for k, n in enumerate(records.tolist()):
        report.file(files[k]).records += n
    for name, error in errors:
        count_read_error(report, name, error)
    res = BlockResult(table=None)
    lines, ln = _ensure_utf8(blk.lines, blk.ln, res)
    if len(ln) < len(blk.ln):
        per_file(np.setdiff1d(blk.ln, ln), "invalid UTF-8")
    if len(ln) == 0:
        return
    fi = file_of(ln)
    local = ln - start_arr[fi] + 1
    key = (fi << 32) | local
    block = BlockResult(table=None)
    out = query.query(con, lines, key, block)
    got = np.zeros(len(files), dtype=np.int64)
    table = None
    if out is not None and out.num_rows:
        src_line = out.column("src_line").to_numpy(zero_copy_only=False)
        out_fi = np.right_shift(src_line, 32)
        local = np.bitwise_and(src_line, 0xFFFFFFFF)
        got = np.bincount(out_fi, minlength=len(files))
        status = out.column("_status")
        grouped = (
            pa.table({"fi": from_numpy(out_fi), "status": status, "ln": from_numpy(local)})
            .group_by(["fi", "status"], use_threads=False)
            .aggregate([("ln", "count"), ("ln", "min")])
            .to_pylist()
        )
        for g in grouped:
            name, reason, cnt = files[g["fi"]], g["status"], g["ln_count"]
            rep = report.file(name)
            if reason == "ok":
                rep.events += cnt
            elif reason == "ignored" or reason is None:
                rep.ignored += cnt
            else:
                report.skip(name, reason, cnt, detail=f"line {g['ln_min']}")
        ok = pc.equal(status, "ok")
        sel = out.filter(ok).drop_columns(["_status"])
        if sel.num_rows:
            ok_np = ok.to_numpy(zero_copy_only=False)
            sel = sel.set_column(
                sel.column_names.index("src_line"), "src_line", from_numpy(local[ok_np])
            )
            names = pa.DictionaryArray.from_arrays(
                from_numpy(out_fi[ok_np].astype(np.int32)), pa.array(files, pa.string())
            )
            provenance = (
                ("src_format", constant_dict(src_format, sel.num_rows)),
                ("src_file", names),
            )
            table = conform(with_provenance(sel, provenance))
    # lines the query dropped (not JSON, invalid UTF-8): counted per input
    lost = np.bincount(fi, minlength=len(files)) - got
    reason = next(iter(block.skipped), "malformed JSON")
    for j in np.flatnonzero(lost > 0):
        report.skip(files[j], reason, int(lost[j]))
    if table is not None and table.num_rows:
        yield table


@dataclass(slots=True)
class FilesBlock:
    """JSON texts from several inputs: ``fi`` indexes ``files`` per line."""

    lines: pa.Array
    ln: np.ndarray
    fi: np.ndarray
    files: list[str]


def run_pipelined_files(
    blocks: Iterator[FilesBlock],
    work: Callable[[FilesBlock], list[tuple[str, BlockResult]]],
    report: RunReport,
) -> Iterator[pa.Table]:
    """Map block *n* in a worker while the caller reads block *n+1*; counters go to each input.

    DuckDB releases the GIL, so parsing (the ``evtx`` parser) overlaps with mapping. At most
    one block is in flight: memory stays bounded by two blocks.
    """

    def apply(results: list[tuple[str, BlockResult]]) -> Iterator[pa.Table]:
        for name, res in results:
            rep = report.file(name)
            rep.events += res.events
            rep.ignored += res.ignored
            for reason, (cnt, detail) in res.skipped.items():
                report.skip(name, reason, cnt, detail=detail)
            if res.table is not None and res.table.num_rows:
                yield res.table

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="unbacked-src") as pool:
        pending: Future[list[tuple[str, BlockResult]]] | None = None
        for blk in blocks:
            fut = pool.submit(work, blk)
            if pending is not None:
                yield from apply(pending.result())
            pending = fut
        if pending is not None:
            yield from apply(pending.result())


#: the JSON objects of a head that a sniffer looks at (the first ones)
_SNIFF_OBJECTS = 5


def first_json_objects(head: bytes, limit: int = _SNIFF_OBJECTS) -> list[dict[str, object]]:
    """Parse up to ``limit`` complete leading lines of ``head`` that are JSON objects.

    Sniffing looks at real keys, not at substrings, so a format is claimed only when its first
    records look like it. A truncated last line is ignored; so are damaged lines among the
    first ``_SNIFF_LINES`` (a cut first line, NaN, NUL bytes: the reader counts them as
    skipped) and a UTF-8 byte order mark.

    The sources sniff the same head one after another: the last head's answer is kept (the
    head itself held with it, so no other object can take its identity), a list of its own
    for each caller.
    """
    global _LAST_SNIFF
    last = _LAST_SNIFF
    if last is not None and last[0] is head and last[1] >= limit:
        return last[2][:limit]
    depth = max(limit, _SNIFF_OBJECTS)  # what most sniffers ask: one parse serves them all
    out = _parse_json_objects(head, depth)
    _LAST_SNIFF = (head, depth, out)
    return out[:limit]


_LAST_SNIFF: tuple[bytes, int, list[dict[str, object]]] | None = None


def _parse_json_objects(head: bytes, limit: int) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    if head.startswith(_BINARY_MAGIC):  # an archive or binary format holding JSON text inside
        return out
    lines = head.removeprefix(_BOM).split(b"\n")
    # a head shorter than the sniff size is the whole input: its last line is complete
    complete = lines if len(head) < SNIFF_BYTES else lines[:-1]
    for raw in complete[:_SNIFF_LINES]:
        s = raw.strip()
        if not s or s[:1] != b"{":
            continue
        try:
            obj = orjson.loads(s)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(obj, dict):
            continue
        out.append(obj)
        if len(out) >= limit:
            break
    return out


#: binary formats whose content may hold JSON text (a stored zip member): never JSON lines
_BINARY_MAGIC = (
    b"PK\x03\x04",
    b"PK\x05\x06",
    b"PAR1",
    b"ElfFile",
    b"MDMP",
    b"\x7fELF",
    b"\x1f\x8b",
)
#: lines of a head that sniffing looks at (a damaged first line does not hide the rest)
_SNIFF_LINES = 64
