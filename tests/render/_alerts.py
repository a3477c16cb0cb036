"""Alerts for the report tests: one with every section filled, and hostile telemetry in it.

The shared real data has Sysmon only (no protection history, no header kinds, no memory scan),
so the sections those feed are exercised with this hand-built alert: an injector whose command
line, image name and timeline summaries carry markup and script, as an attacker would plant them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from unbacked.model.alert import (
    Alert,
    Explanation,
    NetworkContact,
    ProcessRef,
    Provenance,
    RegionInfo,
    TimelineEntry,
)

#: each would run script or fetch something if the report ever treated telemetry as markup
HOSTILE_CMD = (
    'powershell.exe -nop -c "</script><script>window.__pwned=1</script>'
    '<img src=x onerror=window.__pwned=2>" & echo \'"><svg onload=window.__pwned=3>'
)
HOSTILE_NAME = "<b>evil</b>.exe"
HOSTILE_SUMMARY = "wrote </script><script>window.__pwned=4</script> into 0x1c0000"
FILE = r"C:\logs\Microsoft-Windows-Sysmon%4Operational.evtx"

T0 = datetime(2024, 3, 5, 14, 2, 11, 250_000, tzinfo=UTC)


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _tl(sec: float, kind: str, summary: str, record: int, signal: str | None = None):
    return TimelineEntry(_at(sec), kind, summary, Provenance(FILE, record=record), signal)


def rich_alert() -> Alert:
    explorer = ProcessRef(uid="{exp}", pid=4120, name="explorer.exe",
                          path=r"C:\Windows\explorer.exe", user="CORP\\ana")  # fmt: skip
    winword = ProcessRef(uid="{word}", pid=5332, name="WINWORD.EXE",
                         path=r"C:\Program Files\Microsoft Office\root\Office16\WINWORD.EXE",
                         cmd_line=r'"WINWORD.EXE" /n "C:\Users\ana\Downloads\invoice.docm"',
                         user="CORP\\ana", created=_at(-60), parent=explorer)  # fmt: skip
    actor = ProcessRef(uid="{ps}", pid=6144, name=HOSTILE_NAME,
                       path=r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe",
                       cmd_line=HOSTILE_CMD, user="CORP\\ana", created=_at(-30),
                       parent=winword)  # fmt: skip
    services = ProcessRef(uid="{svc}", pid=712, name="services.exe")
    victim = ProcessRef(uid="{svchost}", pid=2288, name="svchost.exe",
                        path=r"C:\Windows\System32\svchost.exe",
                        cmd_line=r"C:\Windows\system32\svchost.exe -k netsvcs -p",
                        user="NT AUTHORITY\\SYSTEM", parent=services)  # fmt: skip
    child = ProcessRef(uid="{cmd}", pid=7001, name="cmd.exe", cmd_line="cmd.exe /c whoami",
                       created=_at(9))  # fmt: skip
    return Alert(
        uid="7f3c2a10-1111-4222-8333-944455556666",
        title="PE image written into unbacked memory of another process",
        message=f"svchost.exe (2288): {HOSTILE_NAME} wrote a PE image and started a thread in it",
        risk_score=97,
        severity_id=5,
        first_seen=_at(0),
        last_seen=_at(12),
        hostname="WS-0042.corp.example",
        process=victim,
        actor=actor,
        techniques=("T1055.002", "T1620", "T1071"),
        types=("Process Injection",),
        explanation=(
            Explanation(
                "alloc.protection",
                "PAGE_EXECUTE_READWRITE",
                "UNB-B-001",
                91.5,
                "svchost.exe: 0 of 18,422 executable allocations were RWX",
                baseline_count=0,
                baseline_total=18422,
                baseline_scope="program",
            ),
            Explanation(
                "thread.start_module",
                "<unbacked>",
                "UNB-W-001",
                85.0,
                "thread started in memory no module backs",
            ),
            Explanation(
                "alloc.size",
                "0x3A000",
                "UNB-B-001",
                40.2,
                "allocations of this size are rare",
                baseline_count=12,
                baseline_total=40311,
                baseline_scope="population",
            ),
        ),
        timeline=(
            _tl(0, "open", f"{HOSTILE_NAME} opened svchost.exe access 0x1fffff", 101),
            _tl(0.4, "allocate", "allocated 0x1c0000 size 0x3a000 RW", 102, "UNB-B-001"),
            _tl(0.9, "write", HOSTILE_SUMMARY, 103),
            _tl(1.3, "protect", "0x1c0000 RW -> RX", 104, "UNB-B-001"),
            _tl(1.6, "thread", "thread started at 0x1c0000 (unbacked)", 105, "UNB-W-001"),
            _tl(4.0, "connect", "connect tcp 203.0.113.7:443", 106, "UNB-C-001"),
            _tl(9.0, "child", "started child cmd.exe (7001): cmd.exe /c whoami", 107),
        ),
        regions=(
            RegionInfo(
                base=0x1C0000,
                size=0x3A000,
                protections=("RW", "RX"),
                backing=None,
                header_kind="PE",
                threads=1,
            ),
        ),
        network=(NetworkContact("203.0.113.7:443", _at(4.0), remote_host="cdn.example.net"),),
        children=(child,),
        verification={
            "status": "confirmed",
            "pid": 2288,
            "time": 1709647345000,
            "evidence": ["MZ/PE header at 0x1c0000 in private memory"],
            "regions": [{"base": "0x1c0000", "header_kind": "PE"}],
        },
        sources=({"file": FILE, "count": 7, "records": [101, 102, 103, 104, 105, 106, 107]},),
        detectors=("UNB-B-001", "UNB-W-001", "UNB-C-001"),
    )


def plain_alert(n: int = 1) -> Alert:
    """A small alert of another host and severity (sorting needs more than one row)."""
    p = ProcessRef(uid=f"{{n{n}}}", pid=900 + n, name="notepad.exe", cmd_line="notepad.exe")
    return Alert(
        uid=f"00000000-0000-4000-8000-00000000000{n}", title="Remote thread loads a library",
        message="notepad.exe: remote LoadLibrary", risk_score=60, severity_id=3,
        first_seen=_at(-3600 * n), last_seen=_at(-3600 * n + 1), hostname=f"host-{n}",
        process=p, timeline=(_tl(-3600 * n, "thread", "LoadLibraryW thread", 50 + n, "UNB-W-003"),),
    )  # fmt: skip
