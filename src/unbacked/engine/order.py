"""The canonical order of events: by file, then by line or record within it, whatever order the
readers finished in (the embedded engine, its spill files and the partitioned run share it)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from unbacked.model.rows import from_numpy

_ORDER_KEYS = [("f", "ascending"), ("l", "ascending"), ("r", "ascending")]


def canonical_order(events: pa.Table | Sequence[pa.Table]) -> pa.Table:
    """Events in one order whatever order the readers finished in: by file, then by line or
    record within it. Everything downstream (first events, explanations, ties) is then the
    same from run to run and engine to engine.

    Given the readers' tables (each a block of consecutive records, finished in any order),
    the blocks are put in order instead of the rows when that is enough: each block already in
    order and no two overlapping (the usual case; a row-wise gather costs far more)."""
    if isinstance(events, pa.Table):
        events = [events]
    blocks = _ordered_blocks(list(events))
    if blocks is not None:
        table = pa.concat_tables(blocks).combine_chunks()
    else:
        table = pa.concat_tables(events)
        table = take_rows(table, pc.sort_indices(_order_keys(table), sort_keys=_ORDER_KEYS))
        table = table.combine_chunks()
    # dictionaries in first-appearance order of the canonical rows (readers that finished in
    # another order built them in another order)
    for i, column_field in enumerate(table.schema):
        typ = column_field.type
        if pa.types.is_dictionary(typ):
            table = table.set_column(i, column_field, first_appearance(table.column(i)))
    return table


#: gathers run column by column on this many threads (Arrow releases the GIL), for gathers of
#: at least ``PARALLEL_TAKE_ROWS`` rows (the spill's flushes and host groups; a small run's
#: tables are gathered on the calling thread)
TAKE_THREADS = 2
PARALLEL_TAKE_ROWS = 65_536


def take_rows(table: pa.Table, indices: pa.Array) -> pa.Table:
    """``table.take(indices)``, columns gathered in parallel (a random gather of string
    columns is memory-bound, and ``Table.take`` runs one column after the other)."""
    if table.num_columns < 2 or len(indices) < PARALLEL_TAKE_ROWS:
        return table.take(indices)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(TAKE_THREADS) as pool:
        columns = list(pool.map(lambda c: c.take(indices), table.columns))
    return pa.Table.from_arrays(columns, schema=table.schema)


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
    seen, first = np.unique(ids if valid is None else ids[valid], return_index=True)
    order = seen[np.argsort(first, kind="stable")]
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


__all__ = ["canonical_order", "first_appearance", "take_rows"]
