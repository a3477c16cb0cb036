"""detect_events on hand-made events: odd but legal inputs never break the pipeline."""

from __future__ import annotations

from tests.support.events import events, memory
from unbacked.engine.local import detect_events
from unbacked.model.schema import EVENT_SCHEMA


def test_memory_event_without_image():
    # an ETW-TI allocation whose process was never named: no program, still scored by rules
    result = detect_events(events([memory("x", None, "allocate", 0x10000, 0x1000, 0x40)]))
    assert result.signals.num_rows == 1
    assert [a.process.uid for a in result.alerts] == ["x"]


def test_empty_input():
    result = detect_events(EVENT_SCHEMA.empty_table())
    assert result.alerts == [] and result.signals.num_rows == 0
