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
