"""Correlation: one incident per subject, noisy-OR risk, follow-ups, timeline provenance."""

from __future__ import annotations

from itertools import pairwise

from tests.support.events import API_TRACE, connect, events, launch, open_process, remote_thread
from unbacked.correlate.incidents import CorrelationConfig, correlate, noisy_or
from unbacked.detect import DetectionContext, ProgramBaseline, run_rules

PS = r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe"
NP = r"C:\Windows\System32\notepad.exe"


def _run(rows, threshold=60.0):
    ctx = DetectionContext.build(events(rows), self_baselined=True)
    ctx.baseline = ProgramBaseline().learn(ctx.facts, calibrate=False)
    return correlate(ctx, run_rules(ctx), config=CorrelationConfig(alert_threshold=threshold))


def test_noisy_or():
    assert noisy_or([]) == 0
    assert round(noisy_or([50, 50]), 6) == 75
    assert noisy_or([100, 10]) == 100


def test_injection_incident_names_injected_and_injector():
    rows = [
        launch(
            "inj", PS, cmd="powershell -c x", parent="exp", parent_image=r"C:\Windows\explorer.exe"
        ),
        launch("victim", NP, pid=200),
        *[remote_thread("inj", PS, "victim", NP, 0x590000) for _ in range(3)],
        connect("victim", NP, ip="10.0.0.5", port=4444),
        launch("child", r"C:\Windows\System32\cmd.exe", parent="victim", parent_image=NP, pid=300),
    ]
    alerts = _run(rows)
    assert len(alerts) == 1
    a = alerts[0]
    assert a.process.uid == "victim" and a.actor is not None and a.actor.uid == "inj"
    assert a.actor.parent is not None and a.actor.parent.uid == "exp"
    assert "UNB-W-001" in a.detectors and "UNB-C-001" in a.detectors and "UNB-C-002" in a.detectors
    assert a.network and a.network[0].remote == "10.0.0.5:4444"
    assert a.children and a.children[0].uid == "child"
    assert a.risk_score >= 85 and a.severity_id >= 4
    kinds = [t.kind for t in a.timeline]
    assert "thread" in kinds and "connect" in kinds and "child" in kinds
    assert all(t.provenance.file == "test.jsonl" and t.provenance.line for t in a.timeline)
    ocsf = a.to_ocsf()
    assert ocsf["class_uid"] == 2004 and ocsf["actor"]["process"]["uid"] == "inj"
    assert {x["technique"]["uid"] for x in ocsf["attacks"]} >= {"T1055", "T1620"}


def test_followups_need_foreign_code_evidence():
    # a process that only connects out and starts children is no incident
    rows = [launch("p", PS), connect("p", PS), launch("c", NP, parent="p", parent_image=PS)]
    assert _run(rows, threshold=1) == [] or all(
        "UNB-C-001" not in a.detectors for a in _run(rows, threshold=1)
    )


def test_threshold_separates_incidents_from_alerts():
    rows = [open_process("sc", r"C:\x\tool.exe", "t", NP, API_TRACE)]
    assert _run(rows, threshold=60)
    assert _run(rows, threshold=99.9) == []


def test_alert_roundtrip_through_ocsf():
    from unbacked.model.alert import Alert

    rows = [remote_thread("inj", PS, "victim", NP, 0x590000)]
    a = _run(rows)[0]
    b = Alert.from_ocsf(a.to_ocsf())
    assert b.to_ocsf() == a.to_ocsf()


def test_jit_noise_of_managed_hosts_stays_quiet():
    """Thousands of UNKNOWN frames from .NET hosts (guest agents, wsmprovhost, PowerShell) are
    JIT code, not injection: managed traces, and bare unbacked callers in hosts that run the
    CLR and whose peers do the same, raise nothing."""
    from tests.support.events import MANAGED_TRACE, module_load

    clr = r"C:\Windows\Microsoft.NET\Framework64\v4.0.30319\clr.dll"
    rows = []
    for i in range(12):
        host = r"C:\WindowsAzure\GuestAgent\WindowsAzureGuestAgent.exe"
        uid = f"ga{i}"
        rows.append(module_load(uid, host, clr))
        rows += [open_process(uid, host, "t", r"C:\Windows\System32\svchost.exe",
                              MANAGED_TRACE) for _ in range(20)]  # fmt: skip
        rows.append(open_process(uid, host, "t", NP, API_TRACE))  # P/Invoke from JIT code
    assert _run(rows) == []


def test_identities_from_the_events_about_the_alerted_processes_match_every_event():
    """Correlation describes the alerted process, its injector and their parents from the
    events about them (their own, and the launches of their ancestors) instead of every
    launch of the run: the alerts are those a process table of every event gives, parent
    chains as deep as alerts go (8), injectors found from the evidence alone included."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from unbacked.correlate.incidents import PARENT_CHAIN, _identity_events
    from unbacked.model.state import StateTracker

    def chain(prefix: str, leaf: str, image: str, depth: int) -> list[dict]:
        up = [f"{prefix}{i}" for i in range(depth)]  # up[0] the root
        rows = [launch(up[0], r"C:\Windows\explorer.exe", pid=10)]
        rows += [
            launch(u, rf"C:\x\{u}.exe", parent=p, parent_image=rf"C:\x\{p}.exe", pid=20 + i)
            for i, (p, u) in enumerate(pairwise(up))
        ]
        return [*rows, launch(leaf, image, parent=up[-1], parent_image=rf"C:\x\{up[-1]}.exe")]

    rows = [
        *chain("v", "victim", NP, 11),
        *chain("i", "inj", PS, 3),
        *[launch(f"other{i}", NP, parent="v1", parent_image=r"C:\x\v1.exe") for i in range(5)],
        *[remote_thread("inj", PS, "victim", NP, 0x590000) for _ in range(3)],
    ]
    ctx = DetectionContext.build(events(rows), self_baselined=True)
    ctx.baseline = ProgramBaseline().learn(ctx.facts, calibrate=False)
    signals = run_rules(ctx)  # the remote threads' alone: the victim is the one subject
    signals = signals.filter(pc.equal(signals["detector"], "UNB-W-001"))
    assert set(signals["subject_uid"].to_pylist()) == {"victim"}
    anonymous = signals.set_column(
        signals.schema.get_field_index("actor_uid"),
        "actor_uid",
        pa.nulls(signals.num_rows, signals.schema.field("actor_uid").type),
    )
    every = ctx.events.drop_columns(["row", "program", "target_program"])
    for sigs in (signals, anonymous):
        alerts = correlate(ctx, sigs, config=CorrelationConfig(alert_threshold=1))
        full = correlate(
            ctx, sigs, StateTracker.from_events(every), CorrelationConfig(alert_threshold=1)
        )
        assert [a.to_ocsf() for a in alerts] == [a.to_ocsf() for a in full]
        (a,) = [a for a in alerts if a.process.uid == "victim"]
        assert a.actor is not None and a.actor.uid == "inj" and a.actor.parent.uid == "i2"
        depth, p = 0, a.process.parent
        while p is not None:
            depth, p = depth + 1, p.parent
        assert depth == PARENT_CHAIN
    subset = _identity_events(ctx.events, signals, ["victim"])
    assert subset.num_rows < ctx.events.num_rows
    # beyond the chain an alert names (v3 is the 8th parent): no launch needed
    assert {"other0", "v2", "v1"}.isdisjoint(subset["process_uid"].to_pylist())
