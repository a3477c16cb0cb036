"""NumPy arrays into Arrow on their buffers: the same arrays as ``pa.array`` makes."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from unbacked.model.rows import from_numpy

DTYPES = [np.int8, np.int32, np.int64, np.uint32, np.uint64, np.float32, np.float64, np.bool_]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 65])
def test_from_numpy_is_pa_array(dtype, n):
    rng = np.random.default_rng(n)
    values = rng.integers(-50, 50, n).astype(dtype)
    valid = rng.integers(0, 2, n).astype(bool)
    for mask in (None, valid):
        got = from_numpy(values, valid=mask)
        got.validate(full=True)
        assert got.equals(pa.array(values, mask=None if mask is None else ~mask))
    strided = np.repeat(values, 2)[::2]  # not contiguous
    assert from_numpy(strided).equals(pa.array(strided))


def test_from_numpy_casts_to_the_type_asked():
    got = from_numpy(np.array([1, 2, 3]), pa.int32(), np.array([True, False, True]))
    assert got.type == pa.int32()
    assert got.to_pylist() == [1, None, 3]
