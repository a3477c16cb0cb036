"""Canonical event order: blocks put in order when they are sorted and disjoint, rows sorted
otherwise; the same table either way."""

from __future__ import annotations

import random

import pyarrow as pa
import pytest

from tests.support.fleet import fleet
from unbacked.engine.order import _in_order, canonical_order, first_appearance


def _whole_tables(tables: list[pa.Table]) -> bool:
    """Whether the tables are put in order whole (no row-wise gather)."""
    return _in_order(tables)[1] is None


def _by_file() -> pa.Table:
    table = fleet(hosts=4)  # one src_file per host, lines numbered per file
    return canonical_order(table)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_shuffled_disjoint_blocks_give_the_sorted_table(seed):
    want = _by_file()
    blocks = [want.slice(i, 17) for i in range(0, want.num_rows, 17)]
    random.Random(seed).shuffle(blocks)
    assert _whole_tables(blocks)  # the fast path applies
    assert canonical_order(blocks).equals(want)


def test_unsorted_or_overlapping_blocks_fall_back_to_sorting_rows():
    want = _by_file()
    rows = list(range(want.num_rows))
    random.Random(7).shuffle(rows)
    shuffled = want.take(pa.array(rows))
    halves = [shuffled.slice(0, 100), shuffled.slice(100)]
    assert not _whole_tables(halves)
    assert canonical_order(halves).equals(want)
    # sorted blocks that interleave (same file, alternating lines) are not disjoint
    a, b = want.take(pa.array(range(0, 40, 2))), want.take(pa.array(range(1, 40, 2)))
    assert not _whole_tables([a, b])
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
    assert _whole_tables(blocks)
    assert canonical_order(blocks).equals(want)


def _row_by_row(tables: list[pa.Table]) -> pa.Table:
    """The canonical order the long way: every row sorted (stably, tables end to end)."""
    import pyarrow.compute as pc

    from unbacked.engine.order import concat_events, gather_events

    table = concat_events(tables)
    keys = pa.table(
        {"f": table["src_file"].cast(pa.string()), "l": table["src_line"], "r": table["src_record"]}
    )
    order = pc.sort_indices(keys, sort_keys=[("f", "ascending"), ("l", "ascending"),
                                             ("r", "ascending")])  # fmt: skip
    out = gather_events(table, order)
    for i, f in enumerate(out.schema):
        if pa.types.is_dictionary(f.type):
            out = out.set_column(i, f, first_appearance(out.column(i)))
    return out


@pytest.mark.parametrize("seed", range(60))
def test_tables_put_in_order_whole_give_what_sorting_every_row_gives(seed):
    """Whether the tables go whole or their rows are gathered, the table is the stable sort
    of every row: tables empty, of one row, overlapping, repeating rows (ties between tables),
    shuffled within, given in any order; and the tables go whole when they can."""
    rng = random.Random(seed)
    base = _by_file()
    tables = []
    for _ in range(rng.randrange(1, 8)):
        start = rng.randrange(base.num_rows)
        t = base.slice(start, rng.choice([0, 1, rng.randrange(1, 60)]))
        if t.num_rows > 1 and rng.random() < 0.3:
            t = t.take(pa.array(rng.sample(range(t.num_rows), t.num_rows)))
        tables.append(t)
    rng.shuffle(tables)
    assert canonical_order(tables).equals(_row_by_row(tables))
    # disjoint sorted pieces of it, shuffled, with empty ones among them: whole
    cuts = sorted(rng.sample(range(1, base.num_rows), rng.randrange(1, 12)))
    pieces = [base.slice(a, b - a) for a, b in zip([0, *cuts], [*cuts, base.num_rows], strict=True)]
    pieces += [base.slice(0, 0)] * rng.randrange(3)
    rng.shuffle(pieces)
    assert _whole_tables(pieces)
    assert canonical_order(pieces).equals(base)


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
