"""OCSF ``actor.process`` is set whenever the evidence names the injector, for every rule."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from tests.detect.rule_fixtures import FIXTURES
from tests.support.events import events, remote_thread
from unbacked.correlate.incidents import CorrelationConfig, correlate
from unbacked.detect import DetectionContext, ProgramBaseline, load_rules, run_rules

PS = r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe"
NP = r"C:\Windows\System32\notepad.exe"
ANY = CorrelationConfig(alert_threshold=1.0)


def _ctx(rows) -> DetectionContext:
    ctx = DetectionContext.build(events(rows), self_baselined=True)
    ctx.baseline = ProgramBaseline().learn(ctx.facts, calibrate=False)
    return ctx


def _injectors(rule_id: str):
    ctx = _ctx(FIXTURES[rule_id]["tp"])
    sig = run_rules(ctx)
    mine = sig.filter(pc.equal(sig["detector"], rule_id)).to_pylist()
    return ctx, sig, {(s["subject_uid"], s["actor_uid"]) for s in mine if s["actor_uid"]}


def test_cross_process_rules_name_their_injector():
    knowing = {rid for rid in sorted(load_rules()) if _injectors(rid)[2]}
    assert {"UNB-W-001", "UNB-W-006", "UNB-L-004"} <= knowing


@pytest.mark.parametrize("rule_id", sorted(load_rules()))
def test_actor_in_ocsf_whenever_known(rule_id):
    ctx, sig, pairs = _injectors(rule_id)
    by_uid = {a.process.uid: a for a in correlate(ctx, sig, config=ANY)}
    for subject, actor in pairs:
        d = by_uid[subject].to_ocsf()
        assert d["actor"]["process"]["uid"] == actor
        assert d["actor"]["process"].get("name"), d["actor"]


def test_linux_cross_process_write_names_the_writer():
    ctx, sig, pairs = _injectors("UNB-L-004")
    assert pairs == {("victim", "inj")}
    (a,) = [a for a in correlate(ctx, sig, config=ANY) if a.process.uid == "victim"]
    actor = a.to_ocsf()["actor"]["process"]
    assert actor["uid"] == "inj" and actor["pid"] == 200 and actor["name"] == "inject"
    assert "by inject (200)" in a.message


def test_injector_from_the_evidence_when_a_signal_names_none():
    # a signal resting on another process's act on the subject (a remote thread into it)
    # names that process even when the detector left actor_uid empty
    ctx = _ctx([remote_thread("inj", PS, "victim", NP, 0x590000)])
    sig = run_rules(ctx)
    assert "inj" in sig["actor_uid"].to_pylist()
    bare = sig.set_column(
        sig.schema.get_field_index("actor_uid"),
        sig.schema.field("actor_uid"),
        pa.nulls(sig.num_rows, pa.string()),
    )
    (a,) = [a for a in correlate(ctx, bare, config=ANY) if a.process.uid == "victim"]
    assert a.actor is not None and a.actor.uid == "inj" and a.actor.name == "powershell.exe"
    assert a.to_ocsf()["actor"]["process"]["uid"] == "inj"


def test_no_actor_for_self_injection():
    ctx, sig, pairs = _injectors("UNB-M-004")
    assert not pairs
    assert all(
        a.actor is None and "actor" not in a.to_ocsf() for a in correlate(ctx, sig, config=ANY)
    )
