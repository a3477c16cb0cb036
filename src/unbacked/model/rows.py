"""Arrow rows as Python values, without pandas.

pyarrow turns a ``timestamp[ns]`` value into a Python object only through pandas
(``pandas.Timestamp``); without pandas it raises for any time that is not a whole microsecond.
Every place that takes rows of events or signals into Python goes through ``to_rows`` instead of
``to_pylist``: timestamps become timezone-aware ``datetime`` (microseconds, the finer digits cut
off), the same with pandas installed or not, and the exact nanoseconds stay available as an
integer where an order depends on them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pyarrow as pa


def _as_us(col: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    tz = col.type.tz
    # cut, not rounded: a time never moves to a later microsecond than it happened in
    return col.cast(pa.timestamp("us", tz=tz), safe=False)


def _is_fine(typ: pa.DataType) -> bool:
    return bool(pa.types.is_timestamp(typ) and typ.unit == "ns")


def python_table(table: pa.Table, keep_ns: Iterable[str] = ()) -> pa.Table:
    """``table`` with every nanosecond timestamp column cast to microseconds; each column named
    in ``keep_ns`` also kept as integer nanoseconds in ``<name>_ns``."""
    keep = set(keep_ns)
    for i, f in enumerate(table.schema):
        if not pa.types.is_timestamp(f.type):
            continue
        col = table.column(i)
        if f.name in keep:
            ns = col.cast(pa.timestamp("ns", tz=f.type.tz)).cast(pa.int64())
            table = table.append_column(f"{f.name}_ns", ns)
        if _is_fine(f.type):
            table = table.set_column(i, f.name, _as_us(col))
    return table


def to_rows(table: pa.Table, keep_ns: Iterable[str] = ()) -> list[dict[str, Any]]:
    """``table.to_pylist()`` that never needs pandas (see the module docstring)."""
    if not any(_is_fine(t) for t in table.schema.types) and not keep_ns:
        rows: list[dict[str, Any]] = table.to_pylist()
        return rows
    rows = python_table(table, keep_ns).to_pylist()
    return rows


def to_values(col: pa.ChunkedArray | pa.Array) -> list[Any]:
    """``col.to_pylist()`` that never needs pandas."""
    values: list[Any] = (_as_us(col) if _is_fine(col.type) else col).to_pylist()
    return values
