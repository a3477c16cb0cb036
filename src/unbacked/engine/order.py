"""The canonical order of events: by file, then by line or record within it, whatever order the
readers finished in (the embedded engine, its spill files and the partitioned run share it)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

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
        table = table.take(pc.sort_indices(_order_keys(table), sort_keys=_ORDER_KEYS))
        table = table.combine_chunks()
    # dictionaries in first-appearance order of the canonical rows (readers that finished in
    # another order built them in another order)
    for i, column_field in enumerate(table.schema):
        typ = column_field.type
        if pa.types.is_dictionary(typ):
            col = table.column(i).cast(typ.value_type).combine_chunks()
            table = table.set_column(i, column_field, pc.dictionary_encode(col).cast(typ))
    return table


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
    blocks do not overlap (strictly: ties go to the row-wise sort); None otherwise."""
    import numpy as np

    spans = []
    for table in tables:
        if table.num_rows == 0:
            continue
        keys = _order_keys(table)
        order = pc.sort_indices(keys, sort_keys=_ORDER_KEYS).to_numpy()
        if not np.array_equal(order, np.arange(len(order))):
            return None
        first, last = keys.slice(0, 1).to_pylist()[0], keys.slice(len(keys) - 1).to_pylist()[0]
        spans.append((_sortable(first), _sortable(last), table))
    spans.sort(key=lambda s: s[0])
    for (_, prev_last, _), (next_first, _, _) in itertools.pairwise(spans):
        if not prev_last < next_first:
            return None
    return [t for _, _, t in spans]


def _sortable(row: dict[str, Any]) -> tuple[tuple[bool, Any], ...]:
    """A key row as a tuple ordered like ``sort_indices`` orders (nulls last)."""
    return tuple((row[k] is None, row[k] if row[k] is not None else 0) for k in ("f", "l", "r"))


__all__ = ["canonical_order"]
