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


def test_the_rules_stage_times_the_rules_alone(monkeypatch):
    """The facts and their scores against the baseline are made in the stage before the
    rules (the run report's timings say where the time goes), not when a rule first asks."""
    from unbacked.engine import local

    seen: list[set[str]] = []
    run_rules = local.run_rules

    def recording(ctx):
        seen.append(set(ctx.cache))
        return run_rules(ctx)

    monkeypatch.setattr(local, "run_rules", recording)
    table = events([memory("x", "a.exe", "allocate", 0x10000, 0x1000, 0x40)])
    result = detect_events(table)
    assert seen and {"instance_facts", "scored"} <= seen[0]
    assert list(result.timings) == ["features_baseline", "rules", "correlate"]
