"""Sniffing parses an input's head once however many sources look at it."""

from __future__ import annotations

import orjson

from unbacked.sources import _engine
from unbacked.sources._engine import first_json_objects


def test_the_sources_sniffing_one_head_share_one_parse(monkeypatch) -> None:
    parses: list[int] = []
    real = _engine._parse_json_objects
    monkeypatch.setattr(_engine, "_parse_json_objects", lambda h, n: parses.append(n) or real(h, n))
    monkeypatch.setattr(_engine, "_LAST_SNIFF", None)
    head = b"".join(orjson.dumps({"i": i}) + b"\n" for i in range(12))

    assert first_json_objects(head, limit=1) == [{"i": 0}]
    assert first_json_objects(head) == [{"i": i} for i in range(5)]
    assert parses == [5]  # the first parse went five deep for the sniffers after it
    mine = first_json_objects(head)
    mine.append({"mine": True})  # a caller's list is its own
    assert first_json_objects(head) == [{"i": i} for i in range(5)]
    assert parses == [5]

    assert first_json_objects(head, limit=8) == [{"i": i} for i in range(8)]
    assert parses == [5, 8]  # deeper than what was kept: parsed again
    other = bytes(bytearray(head))  # the same bytes in another object
    assert first_json_objects(other) == [{"i": i} for i in range(5)]
    assert parses == [5, 8, 5]


def test_an_event_parquet_footer_is_parsed_once_for_sniffing_and_reading(monkeypatch, tmp_path):
    import pyarrow.parquet as pq

    from tests.support.fleet import fleet
    from unbacked.runreport import RunReport
    from unbacked.sources import iter_event_tables, native, write_events

    paths = [write_events(fleet(hosts=1), tmp_path / f"{i}.parquet") for i in range(2)]
    parses: list[object] = []
    real = pq.read_metadata
    monkeypatch.setattr(pq, "read_metadata", lambda f, **kw: parses.append(f) or real(f, **kw))
    monkeypatch.setattr(native, "_last_footer", None, raising=False)
    report = RunReport()
    tables = list(iter_event_tables(paths, report, encoded=True))
    assert sum(t.num_rows for t in tables) == report.events > 0
    assert {f.format for f in report.files.values()} == {"unbacked-parquet"}
    assert len(parses) == 2  # one per file, not one for ``accepts`` and one for ``read``
