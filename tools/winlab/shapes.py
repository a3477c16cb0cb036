"""Render recorded winlab events (flat manifest JSON, as record.py writes them) in the other
shapes the same telemetry takes in the field: SilkETW JSON, Windows event XML, Elastic Defend.

Each renderer follows what that consumer really writes, including what it loses (SilkETW has no
event id and no stack; TraceEvent renders numbers as strings with thousands separators and
process names without ``.exe``; Elastic reports only memory APIs, processes, libraries and
connections, with the stack already summarised). Tests read every rendering with its source and
check the normalized rows agree with the flat recording on what each shape carries.

Standard library only, so tests can import it without the emulator.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from xml.sax.saxutils import escape, quoteattr

TI = "Microsoft-Windows-Threat-Intelligence"
KPROC = "Microsoft-Windows-Kernel-Process"
KNET = "Microsoft-Windows-Kernel-Network"
GUIDS = {
    TI: "f4e1897c-bb5d-5668-f1d8-040f4d8dd344",
    KPROC: "22fb2cd6-0e7b-422b-a0c7-2fad1fd0e716",
    KNET: "7dd42a49-5329-4832-8dfd-43d979153a88",
}
HEADER = ("ProviderName", "EventId", "Version", "TimeStamp", "Computer", "ProcessId",
          "ThreadId", "ProcessName", "Stack")  # fmt: skip
#: (provider, id) -> (TraceEvent event name, opcode, opcode name)
NAMES: dict[tuple[str, int], tuple[str, int, str]] = {
    (TI, 6): ("KERNEL_THREATINT_TASK_ALLOCVM", 0, "Info"),
    (TI, 7): ("KERNEL_THREATINT_TASK_PROTECTVM", 0, "Info"),
    (TI, 12): ("KERNEL_THREATINT_TASK_WRITEVM", 0, "Info"),
    (KPROC, 1): ("ProcessStart/Start", 1, "Start"),
    (KPROC, 2): ("ProcessStop/Stop", 2, "Stop"),
    (KPROC, 3): ("ThreadStart/Start", 1, "Start"),
    (KPROC, 5): ("ImageLoad", 0, "Info"),
    (KNET, 12): ("KERNEL_NETWORK_TASK_TCPIP/Connectionattempted.", 12, "Connectionattempted."),
}
FILETIME_FIELDS = frozenset({"CallingProcessCreateTime", "TargetProcessCreateTime", "CreateTime"})
FILETIME_EPOCH = 116_444_736_000_000_000
SHORT = {0x01: "---", 0x02: "R--", 0x04: "RW-", 0x08: "RC-", 0x10: "--X", 0x20: "R-X",
         0x40: "RWX", 0x80: "RCX"}  # fmt: skip
EXE_DIR = "c:\\users\\analyst\\appdata\\local\\dochost\\"
SYS_DIR = "c:\\windows\\system32\\"


def _filetime(ft: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=(ft - FILETIME_EPOCH) // 10)


def _time(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")[:26] + "+00:00")


def _digits7(ts: str) -> str:
    """The fraction of a recorder timestamp (7 digits)."""
    return ts.split(".", 1)[1].rstrip("Z")


def _us_date(dt: datetime) -> str:
    hour = dt.hour % 12 or 12
    return f"{dt.month}/{dt.day}/{dt.year} {hour}:{dt.minute:02d}:{dt.second:02d} " + (
        "PM" if dt.hour >= 12 else "AM"
    )


# -- SilkETW ------------------------------------------------------------------------------------


def _trace_event_value(key: str, value: Any) -> str:
    if key in FILETIME_FIELDS and isinstance(value, int):
        return _us_date(_filetime(value))
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def to_silketw(ev: dict[str, Any]) -> dict[str, Any]:
    """What SilkETW writes for the event: no id, TraceEvent's names and string values."""
    provider = ev["ProviderName"]
    name, opcode, opname = NAMES[(provider, ev["EventId"])]
    payload = {k: _trace_event_value(k, v) for k, v in ev.items() if k not in HEADER}
    pname = ev["ProcessName"].removesuffix(".exe")
    return {
        "ProviderGuid": GUIDS[provider],
        "YaraMatch": [],
        "ProviderName": provider,
        "EventName": name,
        "Opcode": opcode,
        "OpcodeName": opname,
        "TimeStamp": ev["TimeStamp"].replace("Z", "+00:00"),
        "ThreadID": ev["ThreadId"],
        "ProcessID": ev["ProcessId"],
        "ProcessName": pname,
        "PointerSize": 8,
        "EventDataLength": 0,
        "XmlEventData": {
            "FormattedMessage": "",
            "ProviderName": provider,
            "EventName": name,
            "PName": pname,
            **payload,
        },
    }


# -- Windows event XML ---------------------------------------------------------------------------


def _xml_value(key: str, value: Any) -> str:
    if key in FILETIME_FIELDS and isinstance(value, int):
        return _filetime(value).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"
    return str(value)


def to_xml(ev: dict[str, Any], record_id: int) -> str:
    """The event as ``wevtutil qe /f:xml`` prints it (one element, no rendering info)."""
    provider = ev["ProviderName"]
    data = "".join(
        f"<Data Name={quoteattr(k)}>{escape(_xml_value(k, v))}</Data>"
        for k, v in ev.items()
        if k not in HEADER
    )
    return (
        "<Event xmlns='http://schemas.microsoft.com/win/2004/08/events/event'><System>"
        f"<Provider Name={quoteattr(provider)} Guid='{{{GUIDS[provider]}}}'/>"
        f"<EventID>{ev['EventId']}</EventID><Version>{ev['Version']}</Version><Level>4</Level>"
        f"<Task>{ev['EventId']}</Task><Opcode>{NAMES[(provider, ev['EventId'])][1]}</Opcode>"
        "<Keywords>0x8000000000000000</Keywords>"
        f"<TimeCreated SystemTime='{ev['TimeStamp']}'/><EventRecordID>{record_id}</EventRecordID>"
        f"<Correlation/><Execution ProcessID='{ev['ProcessId']}' ThreadID='{ev['ThreadId']}'/>"
        f"<Channel/><Computer>{escape(ev['Computer'])}</Computer><Security/></System>"
        f"<EventData>{data}</EventData></Event>"
    )


# -- Elastic Defend ------------------------------------------------------------------------------


def _symbol(frame: str) -> str:
    if frame.startswith("0x"):
        return "Unbacked"
    mod = frame.split("!", 1)[0].split("+", 1)[0]
    where = EXE_DIR if mod.endswith(".exe") else SYS_DIR
    return where + frame


def _entity(ev: dict[str, Any], pid: int, start_ft: int | None) -> str:
    raw = f"{ev['Computer']}|{pid}|{start_ft or 0}".encode()
    return base64.b64encode(raw).decode()


def to_elastic(ev: dict[str, Any], seq: int, starts: dict[int, int]) -> dict[str, Any] | None:
    """The Elastic Defend document for the event, or ``None`` when Defend reports nothing for
    it (thread starts, image loads of the system DLLs are reported; plain thread starts are not).
    ``starts`` maps pid -> FILETIME start, filled from process starts."""
    provider, eid = ev["ProviderName"], ev["EventId"]
    pid = ev.get("ProcessID") if provider == KPROC else ev["ProcessId"]
    if provider == KPROC and eid == 1:
        starts[pid] = ev["CreateTime"]
    host = ev["Computer"]
    t = _time(ev["TimeStamp"])
    doc: dict[str, Any] = {
        "@timestamp": t.strftime("%Y-%m-%dT%H:%M:%S.") + _digits7(ev["TimeStamp"])[:6] + "Z",
        "agent": {"type": "endpoint"},
        "host": {"hostname": host, "name": host.lower(), "os": {"type": "windows"}},
        "process": {
            "pid": pid,
            "entity_id": _entity(ev, pid, starts.get(pid)),
            "executable": EXE_DIR + "dochost.exe",
            "name": "dochost.exe",
        },
    }
    if provider == TI and eid in (6, 7, 12):
        api = {6: "VirtualAlloc", 7: "VirtualProtect", 12: "WriteProcessMemory"}[eid]
        params: dict[str, Any] = {"address": int(ev["BaseAddress"], 16)}
        if eid == 12:
            params["size"] = int(ev["BytesCopied"], 16)
        else:
            params["size"] = int(ev["RegionSize"], 16)
            params["protection"] = SHORT[ev["ProtectionMask"] & 0xFF]
        if eid == 6:
            kinds = [
                n for b, n in ((0x1000, "COMMIT"), (0x2000, "RESERVE")) if ev["AllocationType"] & b
            ]
            params["allocation_type"] = "|".join(kinds)
        if eid == 7:
            params["protection_old"] = SHORT[ev["LastProtectionMask"] & 0xFF]
        frames = [_symbol(f) for f in ev.get("Stack", [])]
        mods = []
        for f in frames:
            m = "Unbacked" if f == "Unbacked" else f.rsplit("\\", 1)[-1].split("!")[0].split("+")[0]
            if not mods or mods[-1] != m:
                mods.append(m)
        final = next(
            (m for m in mods if m not in ("kernel32.dll", "kernelbase.dll", "ntdll.dll")), None
        )
        doc["event"] = {
            "category": ["api"],
            "dataset": "endpoint.events.api",
            "kind": "event",
            "provider": TI,
            "sequence": seq,
        }
        doc["process"]["thread"] = {
            "id": ev["CallingThreadId"],
            "Ext": {
                "call_stack": [{"symbol_info": f} for f in frames],
                "call_stack_summary": "|".join(mods),
                "call_stack_final_user_module": {"name": final or "Undetermined"},
            },
        }
        doc["process"]["Ext"] = {"api": {"name": api, "parameters": params, "behaviors": []}}
        if "VaVadAllocationBase" in ev:
            doc["process"]["Ext"]["memory_region"] = {
                "allocation_base": int(ev["VaVadAllocationBase"], 16),
                "allocation_protection": SHORT[ev["VaVadAllocationProtect"] & 0xFF],
                "allocation_size": int(ev["VaVadRegionSize"], 16),
                "allocation_type": "PRIVATE",
            }
        return doc
    if provider == KPROC and eid in (1, 2):
        doc["event"] = {
            "category": ["process"],
            "type": ["start" if eid == 1 else "end"],
            "action": "start" if eid == 1 else "end",
            "dataset": "endpoint.events.process",
            "sequence": seq,
        }
        if eid == 1:
            doc["process"]["parent"] = {"pid": ev["ParentProcessID"]}
        return doc
    if provider == KPROC and eid == 5:
        path = ev["ImageName"]
        doc["event"] = {"category": ["library"], "action": "load", "sequence": seq,
                        "dataset": "endpoint.events.library"}  # fmt: skip
        doc["dll"] = {
            "path": path,
            "name": path.rsplit("\\", 1)[-1],
            "Ext": {
                "mapped_address": int(ev["ImageBase"], 16),
                "mapped_size": int(ev["ImageSize"], 16),
            },
        }
        return doc
    if provider == KNET and eid == 12:
        doc["event"] = {"category": ["network"], "action": "connection_attempted",
                        "dataset": "endpoint.events.network", "sequence": seq}  # fmt: skip
        doc["destination"] = {"ip": ev["daddr"], "port": ev["dport"]}
        doc["source"] = {"ip": ev["saddr"], "port": ev["sport"]}
        doc["network"] = {"transport": "tcp", "direction": "egress"}
        doc["process"]["thread"] = {"id": ev["ThreadId"]}
        return doc
    return None


def render(events: list[dict[str, Any]], fmt: str) -> str:
    """All events of one run in ``fmt`` (``silketw``, ``xml``, ``elastic``), one per line."""
    lines: list[str] = []
    starts: dict[int, int] = {}
    for i, ev in enumerate(events, start=1):
        if fmt == "silketw":
            lines.append(json.dumps(to_silketw(ev), separators=(",", ":")))
        elif fmt == "xml":
            lines.append(to_xml(ev, i))
        elif fmt == "elastic":
            doc = to_elastic(ev, i, starts)
            if doc is not None:
                lines.append(json.dumps({"_index": ".ds-logs-endpoint", "_source": doc}))
        else:
            raise ValueError(f"unknown format {fmt!r}")
    return "".join(line + "\n" for line in lines)
