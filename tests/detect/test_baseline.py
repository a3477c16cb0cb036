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
