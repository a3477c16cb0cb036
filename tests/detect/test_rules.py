"""Every rule: its true-positive fixture fires on the right subject, its false-positive fixture
does not, and its metadata meets the project's conventions (the contract every detector meets,
empty input included, is checked by the kit: ``test_conformance.py``)."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import pytest

from tests.detect.rule_fixtures import FIXTURES
from tests.support.events import events
from unbacked.detect import SIGNAL_SCHEMA, DetectionContext, ProgramBaseline, load_rules
from unbacked.model.schema import EVENT_SCHEMA

RULES = load_rules()


def _ctx(rows) -> DetectionContext:
    ctx = DetectionContext.build(events(rows), self_baselined=True)
    ctx.baseline = ProgramBaseline().learn(ctx.facts, calibrate=False)
    return ctx


def test_every_rule_has_fixtures():
    assert set(RULES) <= set(FIXTURES), f"rules without fixtures: {set(RULES) - set(FIXTURES)}"


@pytest.mark.parametrize("rule_id", sorted(RULES))
def test_metadata(rule_id):
    cls = RULES[rule_id]
    meta = cls.metadata()
    assert re.fullmatch(r"UNB-[A-Z]-\d{3}", meta["id"])
    assert meta["title"] and meta["description"]
    assert 1 <= meta["severity"] <= 5
    assert 0 < meta["score"] <= 100
    assert meta["attack"] and all(re.fullmatch(r"T\d{4}(\.\d{3})?", t) for t in meta["attack"])
    assert meta["references"], "a rule cites where its logic comes from"
    assert meta["kinds"] and set(meta["kinds"]) <= {
        "process",
        "module",
        "memory",
        "thread",
        "network",
    }
    assert set(meta["requires"]) <= set(EVENT_SCHEMA.names)


@pytest.mark.parametrize("rule_id", sorted(FIXTURES))
def test_true_positive(rule_id):
    fx = FIXTURES[rule_id]
    out = RULES[rule_id]().evaluate(_ctx(fx["tp"]))
    assert out.schema.equals(SIGNAL_SCHEMA, check_metadata=False)
    subjects = set(out["subject_uid"].to_pylist())
    assert fx["subject"] in subjects
    if "actor" in fx:
        assert fx["actor"] in set(out["actor_uid"].to_pylist())
    assert all(0 < s <= 100 for s in out["score"].to_pylist())
    assert all(r is not None for r in out["row"].to_pylist())  # provenance back to the event


@pytest.mark.parametrize("rule_id", sorted(FIXTURES))
def test_false_positive(rule_id):
    out = RULES[rule_id]().evaluate(_ctx(FIXTURES[rule_id]["fp"]))
    assert out.num_rows == 0, out.select(["subject_uid", "message"]).to_pylist()


@pytest.mark.parametrize("rule_id", sorted(RULES))
def test_rule_ignores_other_kinds(rule_id):
    """Feeding a rule every other rule's fixtures never raises and yields the signal schema."""
    rows = [r for fx in FIXTURES.values() for r in fx["tp"] + fx["fp"]]
    out = RULES[rule_id]().evaluate(_ctx(rows))
    assert isinstance(out, pa.Table)
    assert out.schema.equals(SIGNAL_SCHEMA, check_metadata=False)


def test_memfd_rule_fires_on_executable_mappings_and_executions_of_memfds_only():
    """UNB-M-005 on both of its shapes, beside the events that share a part of them: an
    executable mapping of a memfd and an exec of one fire, in event order; a writable mapping
    of a memfd, an executable mapping of a file, a memfd path on a memory event's image, a
    Windows event and events without an os, kind or activity do not."""
    from tests.support.events import memory

    linux = {"os": "linux"}
    at = ("map_view", 0x1000, 0x1000)
    rows = [
        memory("w", "/usr/bin/w", *at, 0x3, backing_path="/memfd:a", **linux),
        memory("x", "/usr/bin/x", *at, 0x5, backing_path="/memfd:b", **linux),
        memory("f", "/usr/bin/f", *at, 0x5, backing_path="/lib/f.so", **linux),
        memory("i", "/memfd:c", *at, 0x5, **linux),
        {"kind": "process", "activity": "exec", "process_uid": "e", "image": "/memfd:d", **linux},
        {"kind": "process", "activity": "exec", "process_uid": "v", "image": "/memfd:e",
         "os": "windows"},
        # no os, no kind, no activity: not Linux executions or mappings
        memory("n", "/usr/bin/n", *at, 0x5, backing_path="/memfd:f"),
        {"activity": "exec", "process_uid": "k", "image": "/memfd:g", **linux},
        {"kind": "process", "process_uid": "a", "image": "/memfd:h", **linux},
        {"kind": "process", "activity": "launch", "process_uid": "l", "image": "/memfd:i",
         **linux},
    ]  # fmt: skip
    out = RULES["UNB-M-005"]().evaluate(_ctx(rows))
    assert out["subject_uid"].to_pylist() == ["x", "e", "l"]
    assert out["value"].to_pylist() == ["/memfd:b", "/memfd:d", "/memfd:i"]


@pytest.mark.parametrize("small_rows", [8_192, 0])
def test_rule_queries_share_one_connection_per_events_table(monkeypatch, small_rows):
    """Every rule's query over the same events table runs on one connection of the context
    (the events copied once into a TEMP table when small, else viewed in place), another
    table gets its own, and ``close`` closes them."""
    import duckdb

    import unbacked.detect.base as base
    from tests.support.events import launch, memory

    monkeypatch.setattr(base, "SMALL_QUERY_ROWS", small_rows)
    ctx = _ctx(
        [
            memory("p", "/usr/bin/p", "allocate", 0x1000, 0x1000, 0x7, os="linux"),
            launch("c", "/usr/bin/c", parent="p", parent_image="/usr/bin/p", os="linux"),
        ]
    )
    first = ctx.query(ctx.events, "SELECT row, kind FROM ev ORDER BY row")
    second = ctx.query(ctx.events, "SELECT count(*) AS n FROM ev WHERE kind = 'memory'")
    assert first["kind"].to_pylist() == ["memory", "process"]
    assert second["n"].to_pylist() == [1]
    launches = ctx.select(kind="process")
    assert ctx.query_rows(launches, "SELECT row FROM ev")["process_uid"].to_pylist() == ["c"]
    held = ctx.cache["connections"]
    assert [t is ctx.events for t, _ in held] == [True, False]
    ctx.close()
    assert "connections" not in ctx.cache
    for _, con in held:
        with pytest.raises(duckdb.ConnectionException, match="closed"):
            con.sql("SELECT 1").fetchall()


def test_the_linux_rules_share_a_connection_per_column_list():
    """The Linux rules query the events' columns they need; every rule asking for the same
    columns reads the same table, so their queries share its connection and view."""
    from unbacked.detect import run_rules
    from unbacked.engine.local import load_events
    from unbacked.runreport import RunReport

    samples = Path(__file__).resolve().parents[2] / "samples" / "linux"
    ctx = DetectionContext.build(load_events([samples], RunReport()))
    run_rules(ctx)
    held = ctx.cache["connections"]
    tables = [t for t, _ in held]
    # one connection per table, and no two tables with the same columns
    assert len({id(t) for t in tables}) == len(tables)
    assert len({tuple(t.column_names) for t in tables}) == len(tables)
    assert len(tables) >= 2  # the whole events and at least one column list
    ctx.close()
