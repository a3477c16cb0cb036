"""Correlation: one incident per subject, noisy-OR risk, follow-ups, timeline provenance."""

from __future__ import annotations

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
