"""The canonical order of events: by file, then by line or record within it, whatever order the
readers finished in (the embedded engine, its spill files and the partitioned run share it)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from unbacked.model.rows import from_numpy
from unbacked.model.schema import EVENT_SCHEMA, decode_strings

_ORDER_KEYS = [("f", "ascending"), ("l", "ascending"), ("r", "ascending")]


def canonical_order(
    events: pa.Table | Sequence[pa.Table], *, hosts_first: bool = False
) -> pa.Table:
    """Events in one order whatever order the readers finished in: by file, then by line or
    record within it. Everything downstream (first events, explanations, ties) is then the
    same from run to run and engine to engine.

    ``hosts_first``: by host first (nulls last), then as above, as the Spark engine sorts
    its partitions. Each host's events keep the same order among themselves, and detection
    sees hosts apart, so the results are the same; a host group read from a lake's files of
    one host each (``engine.lake``) is then those files laid end to end instead of every
    row gathered (hosts of one source file interleave by record).

    The order comes from one stable sort of every row's keys. Given the readers' tables (each
    a block of consecutive records, finished in any order), when that order is each table's
    rows in turn (the usual case), the tables are put in order instead of the rows: the same
    table, without a row-wise gather (which costs far more).

    The tables may carry their strings dictionary-encoded (``ENCODED_EVENT_SCHEMA``'s types, as
    a lake's Parquet is read): the rows are then put in order as dictionary indices and each
    value is looked up once; the result is ``EVENT_SCHEMA``'s types either way."""
    tables = [events] if isinstance(events, pa.Table) else events
    table = gather_events(*_in_order(tables, hosts_first))
    # dictionaries in first-appearance order of the canonical rows (readers that finished in
    # another order built them in another order)
    for i, column_field in enumerate(table.schema):
        typ = column_field.type
        if pa.types.is_dictionary(typ):
            table = table.set_column(i, column_field, first_appearance(table.column(i)))
    return table


def _in_order(
    events: Sequence[pa.Table], hosts_first: bool = False
) -> tuple[pa.Table, pa.Array | None]:
    """``events`` as one table and the order to take its rows in: None when laying the tables
    end to end in the right sequence already gives that order."""
    tables = _unified(events)
    table = pa.concat_tables(tables)
    keys = _order_keys(table)
    sort_keys = _ORDER_KEYS
    if hosts_first:
        keys = keys.add_column(0, "h", table["host"].cast(pa.string()))
        sort_keys = [("h", "ascending"), *_ORDER_KEYS]
    order = pc.sort_indices(keys, sort_keys=sort_keys)
    blocks = _whole_blocks(order.to_numpy(), [t.num_rows for t in tables])
    if blocks is None:
        return table, order
    return pa.concat_tables([tables[i] for i in blocks]), None


def _whole_blocks(order: np.ndarray, lengths: Sequence[int]) -> list[int] | None:
    """The tables (given by their ``lengths``, rows laid end to end) in the sequence ``order``
    visits them, when it visits each whole and in its own order (so taking the rows in
    ``order`` and laying the tables end to end in that sequence give the same table); None
    otherwise. Checked on the row numbers alone: each step goes to the next row, or from a
    table's last row to another's first."""
    if len(order) == 0:
        return None
    sizes = np.asarray(lengths, dtype=np.int64)
    starts = np.cumsum(sizes) - sizes
    kept = sizes > 0
    first = np.zeros(len(order), dtype=bool)
    last = np.zeros(len(order), dtype=bool)
    first[starts[kept]] = True
    last[(starts + sizes - 1)[kept]] = True
    steps_ok = (np.diff(order) == 1) | (last[order[:-1]] & first[order[1:]])
    if not (first[order[0]] and steps_ok.all()):
        return None
    # the table of each first row, in the order visited (empty tables share a start: the
    # last of them is the table that holds the row)
    tables: list[int] = (np.searchsorted(starts, order[first[order]], side="right") - 1).tolist()
    return tables


#: ``gather_events`` runs column by column on this many threads (Arrow releases the GIL) for
#: at least ``PARALLEL_TAKE_ROWS`` rows (the spill's flushes and host groups; a small run's
#: tables are gathered on the calling thread)
TAKE_THREADS = 2
PARALLEL_TAKE_ROWS = 65_536


def _by_column(
    table: pa.Table, gather: Callable[[str, pa.ChunkedArray], pa.Array | pa.ChunkedArray]
) -> list[pa.Array | pa.ChunkedArray]:
    """``gather(name, column)`` of each column of ``table``, on ``TAKE_THREADS`` threads for a
    large table (a random gather of string columns is memory-bound; Arrow releases the GIL)."""
    columns = list(zip(table.column_names, table.columns, strict=True))
    if table.num_columns < 2 or table.num_rows < PARALLEL_TAKE_ROWS:
        return [gather(name, col) for name, col in columns]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(TAKE_THREADS) as pool:
        return list(pool.map(lambda nc: gather(*nc), columns))


def concat_events(tables: Sequence[pa.Table]) -> pa.Table:
    """``tables`` as one table; when their strings come encoded differently (sources differ:
    a lake's dictionaries beside a JSON reader's strings), each is decoded first."""
    return pa.concat_tables(_unified(tables))


def _unified(tables: Sequence[pa.Table]) -> list[pa.Table]:
    """``tables`` with one schema: each decoded (``decode_strings``) when they differ
    (metadata included; compared, not hashed: pyarrow before 16 cannot hash a schema with
    metadata)."""
    tables = list(tables)
    if any(not t.schema.equals(tables[0].schema, check_metadata=True) for t in tables[1:]):
        return [decode_strings(t) for t in tables]
    return tables


def gather_events(table: pa.Table, order: pa.Array | None) -> pa.Table:
    """``table``'s rows in ``order`` (as they are when None), one chunk per column, with
    ``EVENT_SCHEMA``'s types: a string column that comes dictionary-encoded is looked up in its
    dictionaries after the rows are put in order as indices (columns on ``TAKE_THREADS``
    threads for a large table)."""

    def gather(name: str, col: pa.ChunkedArray) -> pa.Array:
        typ = EVENT_SCHEMA.field(name).type
        if pa.types.is_dictionary(col.type) and typ == pa.string():
            return _decoded(col, order)
        taken = (col.take(order) if order is not None else col).combine_chunks()
        return taken if taken.type == typ else taken.cast(typ)

    # by name: a table is an event table whatever the order of its columns
    events = table.select(EVENT_SCHEMA.names)
    return pa.Table.from_arrays(_by_column(events, gather), schema=EVENT_SCHEMA)


def _decoded(col: pa.ChunkedArray, order: pa.Array | None) -> pa.Array:
    """The values of a dictionary column (chunks with dictionaries of their own) in ``order``:
    the chunks' dictionaries laid end to end, each chunk's indices shifted onto its own, the
    indices gathered, then each value looked up once. Nothing is hashed here: a dictionary
    entry repeated across chunks is looked up, never merged."""
    # a reader's batch may carry its whole file's dictionary
    chunks = [_used_entries(c) if len(c.dictionary) > len(c) else c for c in col.chunks]
    if not chunks:
        return pa.array([], pa.string())
    values = pa.concat_arrays([c.dictionary for c in chunks])
    same = all(c.indices.type == pa.int32() for c in chunks)
    indices = pa.concat_arrays([c.indices if same else c.indices.cast(pa.int64()) for c in chunks])
    if len(chunks) > 1:
        sizes = np.array([len(c.dictionary) for c in chunks], dtype=np.int64)
        lengths = np.array([len(c) for c in chunks], dtype=np.int64)
        shift = np.repeat(np.cumsum(sizes) - sizes, lengths)
        valid = None if not indices.null_count else indices.is_valid().to_numpy(False)
        ids = indices.fill_null(0).to_numpy(zero_copy_only=False) + shift
        indices = from_numpy(ids, pa.int64(), valid)
    if order is not None:
        indices = indices.take(order)
    return values.take(indices)


def _used_entries(chunk: pa.DictionaryArray) -> pa.DictionaryArray:
    """``chunk`` with a dictionary of only the entries it uses, in the dictionary's order
    (entries counted, not hashed)."""
    size = len(chunk.dictionary)
    indices = chunk.indices
    valid = None if not indices.null_count else indices.is_valid().to_numpy(zero_copy_only=False)
    ids = indices.fill_null(0).to_numpy(zero_copy_only=False)
    used = np.flatnonzero(np.bincount(ids if valid is None else ids[valid], minlength=size))
    renumber = np.zeros(size, dtype=np.int32)
    renumber[used] = np.arange(len(used), dtype=np.int32)
    return pa.DictionaryArray.from_arrays(
        from_numpy(renumber[ids], pa.int32(), valid), chunk.dictionary.take(from_numpy(used))
    )


def first_appearance(col: pa.ChunkedArray) -> pa.Array:
    """A dictionary column with its values in the order they first appear and only those (as
    ``dictionary_encode`` of the decoded values gives), by renumbering the indices: no value
    is decoded or hashed again. A dictionary with nulls or repeated values among its entries
    (which decoding would merge) goes the long way."""
    typ = col.type
    arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    values = arr.dictionary
    if values.null_count or pc.count_distinct(values).as_py() != len(values):
        return pc.dictionary_encode(arr.cast(typ.value_type)).cast(typ)
    indices = arr.indices
    valid = None if not indices.null_count else indices.is_valid().to_numpy(zero_copy_only=False)
    ids = indices.fill_null(0).to_numpy(zero_copy_only=False)
    # Arrow's unique keeps the order of first appearance
    order = pc.unique(indices.drop_null() if valid is not None else indices).to_numpy()
    renumber = np.zeros(max(len(values), 1), dtype=np.int64)
    renumber[order] = np.arange(len(order))
    new_ids = from_numpy(renumber[ids], typ.index_type, valid)
    return pa.DictionaryArray.from_arrays(new_ids, values.take(from_numpy(order)))


def _order_keys(events: pa.Table) -> pa.Table:
    return pa.table(
        {
            "f": events["src_file"].cast(pa.string()),
            "l": events["src_line"],
            "r": events["src_record"],
        }
    )


__all__ = ["canonical_order", "concat_events", "first_appearance", "gather_events"]
