"""Canonical event order: blocks put in order when they are sorted and disjoint, rows sorted
otherwise; the same table either way."""

from __future__ import annotations

import random

import pyarrow as pa
import pytest

from tests.support.fleet import fleet
from unbacked.engine.order import _ordered_blocks, canonical_order


def _by_file() -> pa.Table:
    table = fleet(hosts=4)  # one src_file per host, lines numbered per file
    return canonical_order(table)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_shuffled_disjoint_blocks_give_the_sorted_table(seed):
    want = _by_file()
    blocks = [want.slice(i, 17) for i in range(0, want.num_rows, 17)]
    random.Random(seed).shuffle(blocks)
    assert _ordered_blocks(blocks) is not None  # the fast path applies
    assert canonical_order(blocks).equals(want)


def test_unsorted_or_overlapping_blocks_fall_back_to_sorting_rows():
    want = _by_file()
    rows = list(range(want.num_rows))
    random.Random(7).shuffle(rows)
    shuffled = want.take(pa.array(rows))
    halves = [shuffled.slice(0, 100), shuffled.slice(100)]
    assert _ordered_blocks(halves) is None
    assert canonical_order(halves).equals(want)
    # sorted blocks that interleave (same file, alternating lines) are not disjoint
    a, b = want.take(pa.array(range(0, 40, 2))), want.take(pa.array(range(1, 40, 2)))
    assert _ordered_blocks([a, b]) is None
    assert canonical_order([b, a]).equals(canonical_order(want.slice(0, 40)))
