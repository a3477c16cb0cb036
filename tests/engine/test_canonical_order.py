"""Canonical event order: blocks put in order when they are sorted and disjoint, rows sorted
otherwise; the same table either way."""

from __future__ import annotations

import random

import pyarrow as pa
import pytest

from tests.support.fleet import fleet
from unbacked.engine.order import _ordered_blocks, canonical_order, first_appearance


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


@pytest.mark.parametrize("seed", [0, 1])
def test_dictionary_encoded_strings_come_out_decoded_and_in_the_same_order(seed):
    """A lake's Parquet batches carry strings dictionary-encoded, each with dictionaries of its own:
    put in order as indices and looked up, they give the table plain strings give (blocks in
    order, and rows to sort)."""
    from tests.support.events import encode_strings
    from unbacked.model.schema import EVENT_SCHEMA

    want = _by_file()
    rows = list(range(want.num_rows))
    random.Random(seed).shuffle(rows)
    shuffled = want.take(pa.array(rows))
    parts = [encode_strings(shuffled.slice(i, 50)) for i in range(0, want.num_rows, 50)]
    assert all(p.column("process_uid").type != pa.string() for p in parts)
    got = canonical_order(parts)
    assert got.schema.equals(EVENT_SCHEMA, check_metadata=True)
    assert got.equals(want)
    blocks = [encode_strings(want.slice(i, 17)) for i in range(0, want.num_rows, 17)]
    random.Random(seed).shuffle(blocks)
    assert _ordered_blocks(blocks) is not None
    assert canonical_order(blocks).equals(want)


def _decode_and_encode(col: pa.ChunkedArray) -> pa.Array:
    import pyarrow.compute as pc

    return pc.dictionary_encode(col.cast(col.type.value_type).combine_chunks()).cast(col.type)


@pytest.mark.parametrize("seed", range(40))
def test_first_appearance_is_decoding_and_encoding_again(seed):
    """Renumbering a dictionary column's indices gives what decoding and encoding it again
    gives: chunks with dictionaries of their own, nulls, unused entries, values repeated in a
    dictionary (the long way), no rows, only nulls."""
    rng = random.Random(seed)
    words = [f"w{rng.randrange(8)}" for _ in range(rng.randrange(1, 12))]
    chunks = []
    for _ in range(rng.randrange(1, 4)):
        values = pa.array(words)  # may repeat an entry
        ids = [None if rng.random() < 0.2 else rng.randrange(len(words))
               for _ in range(rng.randrange(0, 30))]  # fmt: skip
        if rng.random() < 0.1:
            ids = [None] * len(ids)
        chunks.append(pa.DictionaryArray.from_arrays(pa.array(ids, pa.int32()), values))
    if rng.random() < 0.5:  # dictionaries built the ordinary way: distinct, in use
        chunks = [c.cast(pa.string()).dictionary_encode() for c in chunks]
    col = pa.chunked_array(chunks, pa.dictionary(pa.int32(), pa.string()))
    got = first_appearance(col)
    assert got.equals(_decode_and_encode(col))
    assert got.dictionary.equals(_decode_and_encode(col).dictionary)


def test_columns_are_taken_by_name_whatever_their_order():
    from unbacked.engine.order import gather_events

    want = _by_file()
    names = list(reversed(want.column_names))
    assert gather_events(want.select(names), None).equals(want)
