"""The canonical order of events: by file, then by line or record within it, whatever order the
readers finished in (the embedded engine, its spill files and the partitioned run share it)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from unbacked.model.rows import from_numpy
from unbacked.model.schema import EVENT_SCHEMA, decode_strings

_ORDER_KEYS = [("f", "ascending"), ("l", "ascending"), ("r", "ascending")]


def canonical_order(events: pa.Table | Sequence[pa.Table]) -> pa.Table:
    """Events in one order whatever order the readers finished in: by file, then by line or
    record within it. Everything downstream (first events, explanations, ties) is then the
    same from run to run and engine to engine.

    Given the readers' tables (each a block of consecutive records, finished in any order),
    the blocks are put in order instead of the rows when that is enough: each block already in
    order and no two overlapping (the usual case; a row-wise gather costs far more).

    The tables may carry their strings dictionary-encoded (``ENCODED_EVENT_SCHEMA``'s types, as
    a lake's Parquet is read): the rows are then put in order as dictionary indices and each
    value is looked up once; the result is ``EVENT_SCHEMA``'s types either way."""
    if isinstance(events, pa.Table):
        events = [events]
    blocks = _ordered_blocks(list(events))
    order: pa.Array | None = None
    if blocks is not None:
        table = concat_events(blocks)
    else:
        table = concat_events(events)
        order = pc.sort_indices(_order_keys(table), sort_keys=_ORDER_KEYS)
    table = gather_events(table, order)
    # dictionaries in first-appearance order of the canonical rows (readers that finished in
    # another order built them in another order)
    for i, column_field in enumerate(table.schema):
        typ = column_field.type
        if pa.types.is_dictionary(typ):
            table = table.set_column(i, column_field, first_appearance(table.column(i)))
    return table


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
    if len({t.schema for t in tables}) > 1:
        tables = [decode_strings(t) for t in tables]
    return pa.concat_tables(tables)


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
    import numpy as np

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
    import numpy as np

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
    import numpy as np

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


def _ordered_blocks(tables: list[pa.Table]) -> list[pa.Table] | None:
    """``tables`` sorted by their first row when each is in canonical order within and the
    blocks do not overlap (strictly: ties go to the row-wise sort); None otherwise. Overlap is
    looked for first, from each block's first and last rows: blocks that overlap (a spill's
    host groups) are not sorted only to learn it."""
    import numpy as np

    spans = []
    for table in tables:
        if table.num_rows == 0:
            continue
        ends = _order_keys(pa.concat_tables([table.slice(0, 1), table.slice(table.num_rows - 1)]))
        first, last = ends.to_pylist()
        spans.append((_sortable(first), _sortable(last), table))
    spans.sort(key=lambda s: s[0])
    for (_, prev_last, _), (next_first, _, _) in itertools.pairwise(spans):
        if not prev_last < next_first:
            return None
    for _, _, table in spans:
        order = pc.sort_indices(_order_keys(table), sort_keys=_ORDER_KEYS).to_numpy()
        if not np.array_equal(order, np.arange(len(order))):
            return None
    return [t for _, _, t in spans]


def _sortable(row: dict[str, Any]) -> tuple[tuple[bool, Any], ...]:
    """A key row as a tuple ordered like ``sort_indices`` orders (nulls last)."""
    return tuple((row[k] is None, row[k] if row[k] is not None else 0) for k in ("f", "l", "r"))


__all__ = ["canonical_order", "concat_events", "first_appearance", "gather_events"]
