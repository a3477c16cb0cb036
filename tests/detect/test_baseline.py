"""Per-program baseline: counts per instance, self-exclusion, calibration, persistence."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.events import API_TRACE, CLEAN_TRACE, events, memory, open_process
from unbacked.detect import DetectionContext, ProgramBaseline
from unbacked.errors import BaselineError

SVC = r"C:\Windows\System32\svchost.exe"


def _facts(rows):
    return DetectionContext.build(events(rows)).facts


def _fleet(n_clean: int = 20, with_unbacked: int = 0):
    rows = [open_process(f"s{i}", SVC, "t", "x.exe", CLEAN_TRACE) for i in range(n_clean)]
    rows += [open_process(f"u{i}", SVC, "t", "x.exe", API_TRACE) for i in range(with_unbacked)]
    return rows


def test_counts_are_per_instance_not_per_event():
    rows = _fleet(3) + [open_process("chatty", SVC, "t", "x.exe", API_TRACE)] * 50
    b = ProgramBaseline().learn(_facts(rows), calibrate=False)
    prof = {(r["feature"], r["value"]): r for r in b.profile("svchost.exe").to_pylist()}
    api = prof[("open.unbacked", "api")]
    assert api["instances"] == 1 and api["events"] == 50 and api["of_instances"] == 4


def test_self_exclusion_makes_a_lone_instance_surprising():
    facts = _facts(_fleet(20, with_unbacked=1))
    b = ProgramBaseline().learn(facts, calibrate=False)
    scored = b.score(facts, exclude_self=True)
    row = [r for r in scored.to_pylist() if r["feature"] == "open.unbacked" and r["value"] == "api"]
    assert row and row[0]["k"] == 0 and row[0]["n"] == 20
    assert row[0]["surprise"] > b.min_surprise
    # without leaving itself out, the instance makes its own behaviour look less rare
    same = b.score(facts, exclude_self=False)
    r2 = [r for r in same.to_pylist() if r["feature"] == "open.unbacked" and r["value"] == "api"]
    assert r2[0]["surprise"] < row[0]["surprise"]


def test_event_counts_leave_out_the_scored_instance_only_when_self_learned():
    """``program_events`` and ``program_feature_events``: what the baseline counted for the
    program, less the scored instance's own events when the baseline was learned from the
    same data (a trained baseline scoring new data subtracts nothing)."""
    rows = _fleet(3) + [open_process("chatty", SVC, "t", "x.exe", API_TRACE)] * 5
    facts = DetectionContext.build(events(rows)).instance_facts
    b = ProgramBaseline().learn(facts, calibrate=False)

    def chatty(scored):
        (row,) = [
            r
            for r in scored.to_pylist()
            if r["process_uid"] == "chatty" and r["feature"] == "open.unbacked"
        ]
        return row["k"], row["n"], row["program_events"], row["program_feature_events"]

    assert chatty(b.score(facts, exclude_self=True)) == (0, 3, 0, 3)
    assert chatty(b.score(facts, exclude_self=False)) == (1, 4, 5, 8)


def test_common_behaviour_is_not_surprising():
    facts = _facts(_fleet(10, with_unbacked=10))
    b = ProgramBaseline().learn(facts, calibrate=False)
    hits = b.surprising(b.score(facts, exclude_self=True))
    assert not [r for r in hits.to_pylist() if r["feature"] == "open.unbacked"]


def test_calibration_raises_threshold_for_diverse_programs():
    rows = [
        memory(
            f"j{i}", "/usr/bin/node", "allocate", 0x1000 * (i + 1), 4096 << (i % 7), 7, os="linux"
        )
        for i in range(30)
    ]
    facts = _facts(rows)
    b = ProgramBaseline().learn(facts)
    thr = {(r["program"], r["feature"]): r["threshold"] for r in b.thresholds_.to_pylist()}
    assert thr[("node", "mem.size")] >= b.min_surprise - 1


def test_save_load_roundtrip(tmp_path):
    facts = _facts(_fleet(5, with_unbacked=1))
    b = ProgramBaseline(prior=3.0).learn(facts)
    b.save(tmp_path / "bl")
    loaded = ProgramBaseline.load(tmp_path / "bl")
    assert loaded.prior == 3.0
    assert loaded.counts_.equals(b.counts_)
    assert loaded.score(facts).column("surprise").equals(b.score(facts).column("surprise"))


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: (d / "manifest.json").unlink(), "no baseline manifest"),
        (lambda d: (d / "manifest.json").write_text("{"), "not valid JSON"),
        (lambda d: _edit(d, version=99), "version 99"),
        (lambda d: _edit(d, format="pickle"), "not an unbacked baseline"),
        (lambda d: (d / "counts.parquet").write_bytes(b"PAR1garbage"), "checksum"),
        (lambda d: (d / "totals.parquet").unlink(), "missing"),
    ],
)
def test_load_rejects_damaged_baselines(tmp_path, damage, message):
    ProgramBaseline().learn(_facts(_fleet(3))).save(tmp_path / "bl")
    damage(tmp_path / "bl")
    with pytest.raises(BaselineError, match=message):
        ProgramBaseline.load(tmp_path / "bl")


def _edit(d, **kw):
    m = json.loads((d / "manifest.json").read_text())
    m.update(kw)
    (d / "manifest.json").write_text(json.dumps(m))


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a.exe", "b.exe", "c.exe"]),
            st.integers(0, 5),
            st.sampled_from(["x", "y", "z"]),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_surprise_is_finite_and_nonnegative(rows):
    facts = pa.table(
        {
            "row": list(range(len(rows))),
            "process_uid": [f"{p}:{i}" for p, i, _ in rows],
            "program": [p for p, _, _ in rows],
            "feature": ["mem.size"] * len(rows),
            "value": [v for _, _, v in rows],
        }
    )
    b = ProgramBaseline().learn(facts, calibrate=False)
    for exclude in (False, True):
        s = b.score(facts, exclude_self=exclude)["surprise"].to_pylist()
        assert all(x >= 0 and x < 64 for x in s)


def _xwrite(uid: str, image: str, target: str, *, code: bool = True) -> dict:
    """A Linux write into another process (ptrace POKETEXT) — into its text when ``code``."""
    return {
        "kind": "memory",
        "activity": "write",
        "event_code": "linux:ptrace_poketext",
        "os": "linux",
        "process_uid": uid,
        "image": image,
        "target_uid": target,
        "target_image": "/usr/bin/sleep",
        "base_address": 0x5555_5555_5000,
        "region_size": 8,
        "region_type": "file",
        "backing_path": "/usr/bin/sleep",
        "vm_flags": 0x75 if code else 0x73,
    }


def _linux_launch(uid: str, image: str) -> dict:
    return {
        "kind": "process",
        "activity": "launch",
        "os": "linux",
        "process_uid": uid,
        "image": image,
    }


def test_cross_process_writes_are_learned_per_program():
    """Who writes into whom on Linux: a program that never writes into other processes' code is
    surprising when it does; a debugger that always does stays quiet."""
    from unbacked.detect.anomaly import baseline_signals

    rows = []
    for i in range(40):  # a fleet: shells and services that never write, a few debuggers
        rows.append(_linux_launch(f"sh{i}", "/usr/bin/bash"))
        rows.append(_linux_launch(f"py{i}", "/usr/bin/python3"))
    for i in range(10):
        rows.append(_linux_launch(f"gdb{i}", "/usr/bin/gdb"))
        rows.append(_xwrite(f"gdb{i}", "/usr/bin/gdb", f"t{i}"))
    base = ProgramBaseline().learn(_facts(rows))
    prof = {(r["feature"], r["value"]) for r in base.profile("gdb").to_pylist()}
    assert ("xproc.write", "other code/file") in prof
    scored_rows = [
        _linux_launch("evil", "/usr/bin/bash"),
        _xwrite("evil", "/usr/bin/bash", "victim"),
        _linux_launch("dbg", "/usr/bin/gdb"),
        _xwrite("dbg", "/usr/bin/gdb", "prog"),
    ]
    ctx = DetectionContext.build(events(scored_rows), base)
    sig = baseline_signals(ctx).to_pylist()
    hit = [s for s in sig if s["feature"] == "xproc.write"]
    assert [s["subject_uid"] for s in hit] == ["evil"], sig
    assert hit[0]["value"] == "other code/file"
    assert "0 of 40 peer instances" in hit[0]["message"]


@pytest.mark.parametrize("self_learned", [True, False])
def test_peer_counts_per_fact_in_the_order_asked(self_learned, monkeypatch):
    """``DetectionContext.peer_counts``: for each fact asked, in order, the largest peer counts
    scored for its instance, feature and value; a fact no instance showed is scored on its
    own; one without a program gets none (the joins read only the asked instances' facts)."""
    from unbacked.detect.baseline import instance_facts

    rows = [
        *_fleet(6, with_unbacked=2),
        open_process("lone", r"C:\x\lone.exe", "t", "x.exe", API_TRACE),
    ]
    ctx = DetectionContext.build(events(rows))
    trained = ProgramBaseline().learn(instance_facts(ctx.facts), calibrate=False)
    ctx.baseline, ctx.self_baselined = trained, self_learned
    best: dict[tuple[str, str, str], tuple[int, int]] = {}
    for r in ctx.scored.to_pylist():
        key = (r["process_uid"], r["feature"], r["value"])
        k, n = best.get(key, (0, 0))
        best[key] = (max(k, r["k"]), max(n, r["n"]))
    known = ctx.instance_facts.select(["row", "process_uid", "program", "feature", "value"])
    made_up = pa.table(
        {
            "row": [0, 1],
            "process_uid": ["s1", "s2"],
            "program": ["svchost.exe", None],
            "feature": ["open.unbacked", "open.unbacked"],
            "value": ["never-seen", "api"],
        },
        schema=known.schema,
    )
    asked = pa.concat_tables(
        [made_up.slice(0, 1), known.take(list(range(known.num_rows))[::-1]), made_up.slice(1)]
    )
    ctx.scored  # noqa: B018 - scored once, before the counts are asked
    rescored: list[int] = []
    score = ProgramBaseline.score

    def counting(self, facts, **kw):
        rescored.append(facts.num_rows)
        return score(self, facts, **kw)

    monkeypatch.setattr(ProgramBaseline, "score", counting)
    k, n = ctx.peer_counts(asked)
    assert rescored == [1]  # the made-up fact with a program alone: the others were found
    alone = trained.score(made_up.slice(0, 1), exclude_self=self_learned)
    want = [(int(alone["k"][0].as_py()), int(alone["n"][0].as_py()))]
    want += [best[(r["process_uid"], r["feature"], r["value"])] for r in known.to_pylist()[::-1]]
    want += [(0, 0)]
    assert list(zip(k.tolist(), n.tolist(), strict=True)) == want
    assert any(kk > 0 for kk, _ in want) and want[0][1] > 0  # not all zeros
