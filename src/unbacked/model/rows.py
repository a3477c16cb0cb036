"""Arrow rows as Python values, without pandas.

pyarrow turns a ``timestamp[ns]`` value into a Python object only through pandas
(``pandas.Timestamp``); without pandas it raises for any time that is not a whole microsecond.
Every place that takes rows of events or signals into Python goes through ``to_rows`` instead of
``to_pylist``: timestamps become timezone-aware ``datetime`` (microseconds, the finer digits cut
off), the same with pandas installed or not, and the exact nanoseconds stay available as an
integer where an order depends on them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
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


def from_numpy(
    values: np.ndarray, type: pa.DataType | None = None, valid: np.ndarray | None = None
) -> pa.Array:
    """``pa.array(values, type, mask=~valid)`` for a 1-d NumPy array of numbers or booleans,
    built on its buffers: ``pa.array`` of an ndarray first imports ``numpy.ma`` to ask whether
    it is a masked array (10-20 ms, once per process, on every command's path)."""
    values = np.ascontiguousarray(values)
    n = len(values)
    if values.dtype == np.bool_:
        data = pa.py_buffer(np.packbits(values, bitorder="little"))
        own = pa.bool_()
    else:
        data = pa.py_buffer(values)
        own = pa.from_numpy_dtype(values.dtype)
    bits = None if valid is None else pa.py_buffer(np.packbits(valid, bitorder="little"))
    arr = pa.Array.from_buffers(own, n, [bits, data])
    return arr if type is None or type == own else arr.cast(type)


class _RefusePandas:
    """An import finder that answers "not installed" for pandas (used for one probe only)."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError("No module named 'pandas'", name="pandas")


def per_value(column: pa.ChunkedArray, verdict: Callable[[pa.Array], pa.Array]) -> pa.ChunkedArray:
    """Per row, the boolean ``verdict`` on its value (false for a null): a dictionary chunk is
    judged on its entries (each distinct value once) and the answers taken per row; a plain
    chunk row by row."""
    import pyarrow.compute as pc

    chunks = []
    for chunk in column.chunks:
        if isinstance(chunk, pa.DictionaryArray):
            chunk_verdict = verdict(chunk.dictionary).take(chunk.indices)
        else:
            chunk_verdict = verdict(chunk)
        chunks.append(pc.fill_null(chunk_verdict, False))
    return pa.chunked_array(chunks, pa.bool_())


def keep_pandas_out_of_arrow() -> bool:
    """Spare a command the ~0.3 s import of pandas that pyarrow would make on its first
    conversion of Python values (``pa.array([...])``, ``pa.scalar``, ``pc.equal(col, "x")``):
    pyarrow asks there, once, whether pandas is installed, only to learn whether a value could
    be a pandas object. Nothing in unbacked hands it one (rows come out through ``to_rows``,
    the same with pandas installed or not), so the question is answered now with "no".

    pyarrow remembers the answer for its soft checks only: anything that needs pandas by name
    (``Table.to_pandas``, ``Table.from_pandas``) imports it then as usual; only a pandas null
    (``pd.NA``, ``pd.NaT``) inside a plain Python list is then not taken for a null by
    ``pa.array(..., from_pandas=True)``. Returns whether the
    answer was given (False when pandas is already imported, or pyarrow has no such check).
    Used by the command line, not on ``import unbacked``: a notebook keeps pyarrow's defaults.
    """
    if "pandas" in sys.modules:
        return False
    shim = getattr(pa.lib, "_pandas_api", None)
    if shim is None or not hasattr(type(shim), "have_pandas"):  # the class: not the property
        return False
    finder = _RefusePandas()
    sys.meta_path.insert(0, finder)
    try:
        # the Cython layer's question (``pa.array`` of a list: could it be a pandas object?)
        # and the C++ layer's (its type inference looks up pandas' NaT/NA/Timestamp): each is
        # asked once per process and its answer kept
        pa.array([0])
        return not shim.have_pandas
    except Exception:  # a pyarrow whose check works differently: leave it as it is
        return False
    finally:
        sys.meta_path.remove(finder)
