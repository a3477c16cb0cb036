#!/usr/bin/env python3
"""Ground-truth labels for the wide public corpus (``shared/data/wide``), in the label schema of
``shared/data/README.md``.

Each label is decided from the dataset's own description (OTRF ``_metadata/*.yaml``, the EVTX
file name and folder of EVTX-ATTACK-SAMPLES) and from the events themselves: Sysmon 8 remote
threads whose start address lies in no module, Sysmon 10 process access from UNKNOWN
(unbacked) frames, Sysmon 7 CLR loads into unusual hosts, in-memory stager command lines. The
decisions are written down in ``scripts/label_wide_decisions.py`` (one entry per file that holds
an injection, a look-alike or attack processes worth naming); this script resolves every
selector of a decision to the records it names (record ids, file lines) and computes the counts
(events, parse errors, hosts, time ranges, process instances, noise statistics).

A file with telemetry that *looks* like in-memory code (an S8 start outside any module, an S10
with UNKNOWN frames) must have an explicit decision: the script refuses to label it by default.
The detector is never run and its output never read here.

    python scripts/label-wide.py                  # (re)write labels/wide/
    python scripts/label-wide.py --triage FILE..  # print the candidate evidence of data files
    python scripts/label-wide.py --check          # exit 1 when labels/wide/ is out of date
    unbacked eval ../shared/data/windows ../shared/data/wide \\
        --labels ../shared/data/labels --labels labels --data-root ../shared/data
"""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import evtx

ROOT = Path(__file__).resolve().parents[1]
DATA = (ROOT / "../shared/data").resolve()
WIDE = "wide"
LABELS = ROOT / "labels"
sys.path.insert(0, str(Path(__file__).resolve().parent))

from label_wide_decisions import DECISIONS, FOLDER_CONTEXT  # noqa: E402

SYSMON = "Microsoft-Windows-Sysmon/Operational"
GUID_FIELDS = (
    ("ProcessGuid", "ProcessId", "Image"),
    ("ParentProcessGuid", "ParentProcessId", "ParentImage"),
    ("SourceProcessGuid", "SourceProcessId", "SourceImage"),
    ("SourceProcessGUID", "SourceProcessId", "SourceImage"),
    ("TargetProcessGuid", "TargetProcessId", "TargetImage"),
    ("TargetProcessGUID", "TargetProcessId", "TargetImage"),
)
#: (pid field, image field) pairs of non-Sysmon channels (Security 4688/4689, WFP, ...)
PID_FIELDS = (
    ("NewProcessId", "NewProcessName"),
    ("ProcessId", "ProcessName"),
    ("ProcessId", "Application"),
    ("ProcessID", "Application"),
    ("ProcessId", "Image"),
)
CLR_MODULES = ("clr.dll", "mscorwks.dll", "clrjit.dll", "mscoreei.dll", "coreclr.dll")
STAGER_RE = re.compile(
    r"(?i)(-e(nc|ncodedcommand)?\s+[A-Za-z0-9+/=]{40,}|iex\s*\(|invoke-expression|"
    r"downloadstring|downloaddata|frombase64string|reflection\.assembly|\[system\.reflection|"
    r"virtualalloc|invoke-shellcode|invoke-reflectivepe|invoke-mimikatz|msfvenom|"
    r"mshta\s+(vbscript|javascript|https?:)|regsvr32.*/i:https?|rundll32.*javascript:)"
)


def _num(v: Any) -> int | None:
    if v is None or v == "" or v == "-":
        return None
    if isinstance(v, int):
        return v
    try:
        return int(str(v), 0)
    except ValueError:
        return None


def _base(image: Any) -> str:
    return str(image or "").replace("\\", "/").rsplit("/", 1)[-1].strip().lower()


def _guid(v: Any) -> str | None:
    g = str(v or "").strip().strip("{}").lower()
    return None if not g or set(g) <= {"0", "-"} else g


@dataclass(slots=True)
class Rec:
    index: int  # EVTX: 1-based readable-record index; OTRF: 1-based line in the JSON member
    record_id: int | None
    event_id: int | None
    channel: str
    host: str
    utc_time: str | None
    time_created: str | None
    fields: dict[str, Any]


@dataclass(slots=True)
class Data:
    rel: str  # relative to shared/data
    fmt: str
    recs: list[Rec] = field(default_factory=list)
    parse_errors: int = 0
    member: str | None = None


def _flat_evtx(data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    ev = data.get("Event") or {}
    system = ev.get("System") or {}
    out: dict[str, Any] = {}
    for key in ("EventData", "UserData"):
        part = ev.get(key)
        if isinstance(part, dict):
            for k, v in part.items():
                if k == "#attributes":
                    continue
                if isinstance(v, dict) and key == "UserData":
                    for k2, v2 in v.items():
                        if not isinstance(v2, dict) and k2 != "#attributes":
                            out[k2] = v2
                elif k == "Data" and isinstance(v, dict | list):
                    out[k] = json.dumps(v)[:2000]
                else:
                    out[k] = v
    return system, out


def read_evtx(path: Path, rel: str) -> Data:
    d = Data(rel=rel, fmt="evtx")
    parser = evtx.PyEvtxParser(str(path))
    records = parser.records_json()
    index = 0
    budget = path.stat().st_size // 24 + 1024
    while True:
        try:
            r = next(records)
        except StopIteration:
            break
        except RuntimeError:
            d.parse_errors += 1
            if d.parse_errors > budget:
                break
            continue
        index += 1
        try:
            data = json.loads(r["data"])
        except (ValueError, TypeError):
            d.parse_errors += 1
            continue
        system, fields = _flat_evtx(data)
        eid = system.get("EventID")
        if isinstance(eid, dict):
            eid = eid.get("#text")
        tc = ((system.get("TimeCreated") or {}).get("#attributes") or {}).get("SystemTime")
        d.recs.append(
            Rec(
                index=index,
                record_id=_num(system.get("EventRecordID")),
                event_id=_num(eid),
                channel=str(system.get("Channel") or ""),
                host=str(system.get("Computer") or ""),
                utc_time=fields.get("UtcTime"),
                time_created=tc,
                fields=fields,
            )
        )
    return d


def read_otrf(path: Path, rel: str) -> Data:
    d = Data(rel=rel, fmt="otrf-jsonl/nxlog")
    with zipfile.ZipFile(path) as zf:
        members = [
            i for i in zf.infolist() if not i.is_dir() and not i.filename.startswith("__MACOSX/")
        ]
        if not members or not members[0].filename.endswith(".json"):
            d.fmt = "pcap (network capture in a zip, no host telemetry)"
            d.member = members[0].filename if members else None
            return d
        m = members[0]
        d.member = m.filename
        flavours = Counter()
        with zf.open(m) as fh:
            for line_no, raw in enumerate(io.TextIOWrapper(fh, encoding="utf-8"), 1):
                if not raw.strip():
                    continue
                try:
                    o = json.loads(raw)
                except ValueError:
                    d.parse_errors += 1
                    continue
                if not isinstance(o, dict):
                    d.parse_errors += 1
                    continue
                nx = "EventTime" in o
                flavours["nxlog" if nx else "export"] += 1
                d.recs.append(
                    Rec(
                        index=line_no,
                        record_id=_num(o.get("RecordNumber")),
                        event_id=_num(o.get("EventID")),
                        channel=str(o.get("Channel") or ""),
                        host=str(o.get("Hostname") or o.get("Computer") or ""),
                        utc_time=o.get("UtcTime"),
                        time_created=o.get("EventTime") if nx else o.get("TimeCreated"),
                        fields=o,
                    )
                )
        if flavours and flavours.most_common(1)[0][0] == "export":
            d.fmt = "otrf-jsonl/export"
    return d


def read_data(rel: str) -> Data:
    path = DATA / rel
    return read_evtx(path, rel) if path.suffix == ".evtx" else read_otrf(path, rel)


# ---------------------------------------------------------------------------------------------
# process instances (definition of shared/data/README.md)


@dataclass(slots=True)
class Proc:
    host: str
    guid: str | None
    raw_guid: str | None
    pid: int | None
    image: str | None
    records: list[int] = field(default_factory=list)  # positions in Data.recs


def instances(d: Data) -> tuple[dict[tuple[str, str], Proc], dict[tuple[str, int, str], Proc]]:
    by_guid: dict[tuple[str, str], Proc] = {}
    by_pid: dict[tuple[str, int, str], Proc] = {}
    loose: list[tuple[str, int, str, str | None, int]] = []
    for pos, r in enumerate(d.recs):
        f = r.fields
        host = r.host.lower()
        seen: set[int] = set()
        for gk, pk, ik in GUID_FIELDS:
            if gk not in f:
                continue
            g = _guid(f.get(gk))
            pid, img = _num(f.get(pk)), f.get(ik)
            if g is not None:
                p = by_guid.get((host, g))
                if p is None:
                    p = by_guid[(host, g)] = Proc(r.host, g, str(f.get(gk)), pid, None)
                if (
                    img
                    and (p.image is None or "\\" in str(img))
                    and (not p.image or (str(img) != "\u3100" and len(str(img)) > 2))
                ):
                    p.image = str(img)
                if p.pid is None:
                    p.pid = pid
                if id(p) not in seen:
                    p.records.append(pos)
                    seen.add(id(p))
            elif pid:
                loose.append((host, pid, _base(img), img, pos))
        if r.channel == "Windows PowerShell" or r.channel.startswith(
            "Microsoft-Windows-PowerShell"
        ):
            continue
        if any(gk in f for gk, _, _ in GUID_FIELDS):
            continue
        for pk, ik in PID_FIELDS:
            pid = _num(f.get(pk))
            if pid and ik in f:
                loose.append((host, pid, _base(f.get(ik)), f.get(ik), pos))
        if r.event_id == 4688 and _num(f.get("ProcessId")) and f.get("ParentProcessName"):
            loose.append(
                (
                    host,
                    _num(f.get("ProcessId")),
                    _base(f["ParentProcessName"]),
                    f["ParentProcessName"],
                    pos,
                )
            )
    guid_index: dict[tuple[str, int, str], Proc] = {}
    for p in by_guid.values():
        if p.pid is not None and p.image:
            guid_index.setdefault((p.host.lower(), p.pid, _base(p.image)), p)
    for host, pid, base, img, pos in loose:
        if not base:
            continue
        p = guid_index.get((host, pid, base)) or by_pid.get((host, pid, base))
        if p is None:
            p = by_pid[(host, pid, base)] = Proc(host, None, None, pid, str(img))
        if not p.records or p.records[-1] != pos:
            p.records.append(pos)
    return by_guid, by_pid


# ---------------------------------------------------------------------------------------------
# candidate evidence


def _s8_unbacked(r: Rec) -> bool:
    if r.event_id != 8 or r.channel != SYSMON:
        return False
    mod = str(r.fields.get("StartModule") or "").strip()
    addr = str(r.fields.get("StartAddress") or "").lower()
    return mod in ("", "-") and not addr.startswith("0xffff")


def _s10_unknown(r: Rec) -> bool:
    return (
        r.event_id == 10
        and r.channel == SYSMON
        and "UNKNOWN" in str(r.fields.get("CallTrace") or "")
    )


def triage(d: Data) -> dict[str, Any]:
    s8 = Counter()
    s8_all = Counter()
    s10 = Counter()
    clr = Counter()
    stagers = []
    for r in d.recs:
        f = r.fields
        if r.event_id == 8 and r.channel == SYSMON:
            key = (
                _base(f.get("SourceImage")),
                f.get("SourceProcessId"),
                _base(f.get("TargetImage")),
                f.get("TargetProcessId"),
            )
            s8_all[key] += 1
            if _s8_unbacked(r):
                s8[key] += 1
        if _s10_unknown(r):
            s10[
                (_base(f.get("SourceImage")), f.get("SourceProcessId"), _base(f.get("TargetImage")))
            ] += 1
        if r.event_id == 7 and r.channel == SYSMON and _base(f.get("ImageLoaded")) in CLR_MODULES:
            clr[(_base(f.get("Image")), f.get("ProcessId"))] += 1
        cmd = f.get("CommandLine") or f.get("ProcessCommandLine") or ""
        if cmd and STAGER_RE.search(str(cmd)):
            stagers.append(
                (
                    r.index,
                    r.record_id,
                    r.event_id,
                    f.get("ProcessId") or f.get("NewProcessId"),
                    str(cmd)[:300],
                )
            )
    return {
        "s8_unbacked": s8,
        "s8_all": s8_all,
        "s10_unknown": s10,
        "clr_loads": clr,
        "stager_cmdlines": stagers,
    }


# ---------------------------------------------------------------------------------------------
# resolving decisions


def _select(d: Data, sel: dict[str, Any]) -> list[Rec]:
    """Records matching ``sel``: event_id, channel, and field predicates
    (``field``: exact value, ``field~``: substring, case-insensitive)."""
    out = []
    for r in d.recs:
        if "event_id" in sel and r.event_id != sel["event_id"]:
            continue
        if "record_id" in sel and r.record_id != sel["record_id"]:
            continue
        if "index" in sel and r.index != sel["index"]:
            continue
        if "host" in sel and r.host.lower() != sel["host"].lower():
            continue
        if "pid_any" in sel and str(sel["pid_any"]) not in {
            str(r.fields.get(k)) for k in ("ProcessId", "SourceProcessId", "ParentProcessId")
        }:
            continue
        ok = True
        for k, v in sel.items():
            if k in ("event_id", "record_id", "index", "host", "what", "max", "fields", "pid_any"):
                continue
            if k.endswith("~"):
                val = str(r.fields.get(k[:-1]) or "")
                if str(v).lower() not in val.lower():
                    ok = False
                    break
            else:
                val = r.fields.get(k)
                if str(val).strip("{}").lower() != str(v).strip("{}").lower():
                    ok = False
                    break
        if ok:
            out.append(r)
    return out


KEY_FIELDS = {
    1: ("ProcessId", "Image", "CommandLine", "ParentProcessId", "ParentImage"),
    3: ("ProcessId", "Image", "DestinationIp", "DestinationPort", "DestinationHostname"),
    7: ("ProcessId", "Image", "ImageLoaded", "Signed"),
    8: (
        "SourceProcessId",
        "SourceImage",
        "TargetProcessId",
        "TargetImage",
        "NewThreadId",
        "StartAddress",
        "StartModule",
        "StartFunction",
    ),
    10: (
        "SourceProcessId",
        "SourceImage",
        "TargetProcessId",
        "TargetImage",
        "GrantedAccess",
        "CallTrace",
    ),
    11: ("ProcessId", "Image", "TargetFilename"),
    4688: ("NewProcessId", "NewProcessName", "CommandLine", "ProcessId", "ParentProcessName"),
    4104: ("ScriptBlockText", "Path"),
    4103: ("ContextInfo", "Payload"),
    400: ("HostApplication",),
    800: ("HostApplication",),
}


def _evidence(d: Data, sel: dict[str, Any]) -> list[dict[str, Any]]:
    recs = _select(d, sel)
    if not recs:
        raise SystemExit(f"{d.rel}: evidence selector matched nothing: {sel}")
    n = sel.get("max", 3)
    shown = recs[:n] + ([recs[-1]] if len(recs) > n else [])
    out = []
    for r in shown:
        keys = sel.get("fields") or KEY_FIELDS.get(r.event_id or 0, ("ProcessId", "Image"))
        fields = {}
        for k in keys:
            v = r.fields.get(k)
            if v is None:
                continue
            v = str(v)
            fields[k] = v if len(v) <= 400 else v[:400] + "..."
        e: dict[str, Any] = {"event_id": r.event_id, "channel": r.channel, "record_id": r.record_id}
        e["file_record_index" if d.fmt == "evtx" else "file_line"] = r.index
        e["utc_time"] = r.utc_time
        e["time_created"] = r.time_created
        e["fields"] = fields
        e["what"] = sel["what"]
        e["n_matching_events"] = len(recs)
        out.append(e)
    return out


def _find_proc(d: Data, procs, sel: dict[str, Any]) -> Proc:
    by_guid, by_pid = procs
    host = sel.get("host")
    if sel.get("guid"):
        g = _guid(sel["guid"])
        for (h, gg), p in by_guid.items():
            if gg == g and (host is None or h == host.lower()):
                return p
        raise SystemExit(f"{d.rel}: no process with GUID {sel['guid']}")
    pid, base = sel["pid"], _base(sel["image"])
    cands = [
        p
        for p in list(by_guid.values()) + list(by_pid.values())
        if p.pid == pid
        and _base(p.image) == base
        and (host is None or p.host.lower() == host.lower())
    ]
    if len(cands) != 1:
        raise SystemExit(f"{d.rel}: {len(cands)} processes match {sel}")
    return cands[0]


def _other_entry(p: Proc, reason: str) -> dict[str, Any]:
    """An ``other_malicious_not_injection`` entry for a process instance."""
    return {
        "host": p.host,
        "process_guid": p.raw_guid,
        "pid": p.pid,
        "image": p.image,
        "reason": reason,
    }


def _inst(d: Data, procs, entry: dict[str, Any], full: bool) -> tuple[dict[str, Any], Proc]:
    p = _find_proc(d, procs, entry)
    out: dict[str, Any] = {}
    if "role" in entry:
        out["role"] = entry["role"]
    out.update(
        host=p.host,
        process_guid=p.raw_guid,
        pid=p.pid,
        image=entry.get("image_as_written") or p.image,
    )
    if full:
        out["technique"] = entry["technique"]
        out["attack_ids"] = entry["attack_ids"]
        out["disk_backed"] = entry["disk_backed"]
        out["confidence"] = entry["confidence"]
        ev = []
        for sel in entry.get("evidence", []):
            ev += _evidence(d, sel)
        out["evidence"] = ev
        out["n_events_referencing_process"] = len(p.records)
        if entry.get("notes"):
            out["notes"] = entry["notes"]
    else:
        out["reason"] = entry["reason"]
    return out, p


def _procs_by_cmd(d: Data, procs, pattern: str, host: str | None = None) -> list[Proc]:
    """Every process instance created (S1 / 4688) with a command line matching ``pattern``."""
    rx = re.compile(pattern, re.I)
    by_guid, by_pid = procs
    out: list[Proc] = []
    for r in d.recs:
        if host and r.host.lower() != host.lower():
            continue
        cmd = str(r.fields.get("CommandLine") or "")
        if not cmd or not rx.search(cmd):
            continue
        p = None
        if r.event_id == 1 and r.channel == SYSMON:
            p = by_guid.get((r.host.lower(), _guid(r.fields.get("ProcessGuid")) or ""))
        elif r.event_id == 4688:
            pid = _num(r.fields.get("NewProcessId"))
            base = _base(r.fields.get("NewProcessName"))
            p = next(
                (
                    q
                    for q in by_guid.values()
                    if q.host.lower() == r.host.lower() and q.pid == pid and _base(q.image) == base
                ),
                None,
            ) or by_pid.get((r.host.lower(), pid or 0, base))
        if p is not None and p not in out:
            out.append(p)
    return out


def _parents_of(d: Data, procs, pattern: str, parent_image: str) -> list[Proc]:
    """The ``parent_image`` processes that started a process (S1) matching ``pattern``."""
    rx = re.compile(pattern, re.I)
    out: list[Proc] = []
    for r in d.recs:
        if r.event_id != 1 or r.channel != SYSMON:
            continue
        f = r.fields
        if _base(f.get("ParentImage")) != parent_image or not rx.search(
            str(f.get("CommandLine") or "")
        ):
            continue
        p = procs[0].get((r.host.lower(), _guid(f.get("ParentProcessGuid")) or ""))
        if p is not None and p not in out:
            out.append(p)
    return out


def metadata_for(rel: str) -> tuple[str | None, dict[str, Any] | None]:
    if "OTRF_Security-Datasets" not in rel:
        return None, None
    mdir = DATA / WIDE / "OTRF_Security-Datasets/datasets/atomic/_metadata"
    for y in sorted(mdir.glob("*.yaml")):
        text = y.read_text(encoding="utf-8", errors="replace")
        if rel.split("datasets/", 1)[1] in text:
            m = re.search(r"^title:\s*(.+)$", text, re.M)
            desc = re.search(r"^description:\s*(.+)$", text, re.M)
            return (
                y.relative_to(DATA / WIDE).as_posix(),
                {
                    "title": m.group(1).strip() if m else None,
                    "description": desc.group(1).strip() if desc else None,
                    "text": text,
                },
            )
    return None, None


#: executables run from a user's Desktop or Downloads: in these lab captures, the attack's tools
#: (sysmon.exe installed from the Desktop is the capture's own sensor, not a tool)
_USER_TOOL = re.compile(
    r"(?i)\\Users\\[^\\]+\\(Desktop|Downloads)\\(.+\\)?(?!sysmon(64)?\.exe)[^\\]+\.exe$"
)
#: a row of Empire's "agents" table: name, language, internal IP, machine, user, process, pid
_AGENT_ROW = re.compile(
    r"^\s*([A-Z0-9]{8})\s+ps\s+[\d.]+\s+(\S+)\s+\S+\s+powershell\s+(\d+)\s", re.M
)


def metadata_agents(md: dict[str, Any] | None) -> list[tuple[str, str, int]]:
    """(agent, machine, pid) of every PowerShell agent the metadata's console view lists."""
    if not md:
        return []
    return sorted({(a, m, int(p)) for a, m, p in _AGENT_ROW.findall(md["text"])})


def build(rel: str, d: Data | None = None) -> dict[str, Any]:
    d = d or read_data(rel)
    procs = instances(d)
    by_guid, by_pid = procs
    tri = triage(d)
    dec = DECISIONS.get(rel.split("/", 1)[1])
    md_path, md = metadata_for(rel)
    if dec is None:
        if tri["s8_unbacked"] or tri["s10_unknown"]:
            raise SystemExit(f"{rel}: telemetry looks like in-memory code; needs a decision")
        dec = {}
    hosts = Counter(r.host for r in d.recs)
    sys_times = sorted(str(r.utc_time) for r in d.recs if r.utc_time and r.channel == SYSMON)
    rec_times = sorted(str(r.time_created) for r in d.recs if r.time_created)
    malicious, labelled = [], []
    for e in dec.get("malicious", []):
        inst, p = _inst(d, procs, e, True)
        malicious.append(inst)
        labelled.append(p)
    possible = []
    for e in dec.get("possible", []):
        inst, p = _inst(d, procs, e, True)
        possible.append(inst)
        labelled.append(p)
    other = []
    other_seen: set[int] = {id(p) for p in labelled}
    for e in dec.get("other", []):
        if "cmd" in e or "parent_of" in e:
            found = (
                _procs_by_cmd(d, procs, e["cmd"], e.get("host"))
                if "cmd" in e
                else _parents_of(d, procs, e["parent_of"], e["parent_image"])
            )
            if not found and not e.get("optional"):
                raise SystemExit(f"{rel}: other selector matched nothing: {e}")
            for p in found:
                if id(p) in other_seen:
                    continue
                other_seen.add(id(p))
                other.append(_other_entry(p, e["reason"]))
        else:
            inst, p = _inst(d, procs, e, False)
            if id(p) not in other_seen:
                other_seen.add(id(p))
                other.append(inst)
    if "EVTX-ATTACK-SAMPLES" in rel:
        for p in list(by_guid.values()) + list(by_pid.values()):
            if id(p) not in other_seen and _USER_TOOL.search(str(p.image or "")):
                other_seen.add(id(p))
                other.append(
                    _other_entry(
                        p,
                        "tool of the attack sample, run from the user's Desktop / "
                        "Downloads; not injection",
                    )
                )
    for agent, machine, pid in metadata_agents(md):
        found = [
            p
            for p in list(by_guid.values()) + list(by_pid.values())
            if p.pid == pid
            and _base(p.image) == "powershell.exe"
            and p.host.lower().split(".")[0] == machine.lower()
        ]
        for p in found:
            if id(p) not in other_seen:
                other_seen.add(id(p))
                other.append(
                    _other_entry(
                        p,
                        f"Empire agent {agent} (agents table of the dataset "
                        "metadata): PowerShell C2, script-level; not injection",
                    )
                )
    must_not = []
    for e in dec.get("must_not_label", []):
        if "pid" in e or "guid" in e:
            inst, _p = _inst(d, procs, e, False)
            must_not.append(inst)
        else:
            entry = {k: v for k, v in e.items() if k != "count"}
            if "count" in e:  # n_events from a record selector
                entry["n_events"] = len(_select(d, e["count"]))
            must_not.append(entry)
    lab_keys = {(p.host.lower(), p.pid, _base(p.image)) for p in labelled}
    lab_guids = {p.guid for p in labelled if p.guid}

    def involves(r: Rec, pairs) -> bool:
        for gk, pk, ik in pairs:
            g = _guid(r.fields.get(gk))
            if g and g in lab_guids:
                return True
            if (r.host.lower(), _num(r.fields.get(pk)), _base(r.fields.get(ik))) in lab_keys:
                return True
        return False

    s8 = [r for r in d.recs if r.event_id == 8 and r.channel == SYSMON]
    s10u = [r for r in d.recs if _s10_unknown(r)]
    src_pairs = (GUID_FIELDS[2], GUID_FIELDS[3])
    unl = Counter(_base(r.fields.get("SourceImage")) for r in s10u if not involves(r, src_pairs))
    noise = {
        "sysmon8_total": len(s8),
        "sysmon8_involving_labelled_processes": sum(1 for r in s8 if involves(r, GUID_FIELDS)),
        "sysmon10_with_UNKNOWN_calltrace_total": len(s10u),
        "sysmon10_with_UNKNOWN_from_labelled_processes": sum(
            1 for r in s10u if involves(r, src_pairs)
        ),
        "sysmon10_UNKNOWN_by_unlabelled_source_image": dict(unl.most_common()),
    }
    scope = dec.get("scope") or (
        "attack"
        if malicious
        else "attack-possible-injection"
        if possible
        else "attack-no-injection"
    )
    if not d.recs and d.fmt.startswith("pcap"):
        scope = "network-capture (no host telemetry)"
    rationale = dec.get("rationale") or default_rationale(rel, d, tri, md)
    out: dict[str, Any] = {
        "file": rel,
        "format": d.fmt,
        "scope": scope,
        "dataset_metadata": md_path,
        "events": len(d.recs),
        "parse_errors": d.parse_errors,
        "hosts": dict(hosts.most_common()),
        "time_range_sysmon_utc": [sys_times[0], sys_times[-1]] if sys_times else None,
        "time_range_record_time": [rec_times[0], rec_times[-1]] if rec_times else None,
        "process_instances": len(by_guid) + len(by_pid),
        "malicious_count": len(malicious),
        "malicious": malicious,
    }
    if possible:
        out["possible"] = possible
    out["other_malicious_not_injection"] = other
    if dec.get("other_summary"):
        out["other_malicious_summary"] = dec["other_summary"]
    out["must_not_label"] = must_not
    out["noise_stats"] = noise
    out["benign_noise_notes"] = dec.get("noise_notes") or default_noise(tri)
    out["rationale"] = rationale
    out["generator"] = "scripts/label-wide.py (decisions: scripts/label_wide_decisions.py)"
    return out


def default_noise(tri: dict[str, Any]) -> str:
    parts = []
    if tri["s8_all"]:
        parts.append(
            "Sysmon 8: "
            + ", ".join(f"{a}->{c} x{n}" for (a, _b, c, _d), n in tri["s8_all"].most_common(5))
            + " (all with a start module or a kernel start address)"
        )
    if tri["clr_loads"]:
        parts.append("CLR loaded by: " + ", ".join(sorted({k[0] for k in tri["clr_loads"]})))
    return "; ".join(parts) or "None."


def default_rationale(rel: str, d: Data, tri: dict[str, Any], md: dict[str, Any] | None) -> str:
    if d.fmt.startswith("pcap"):
        return (
            "Network capture of the dataset (pcap in the zip): no host telemetry, no process "
            "instances; nothing to label."
        )
    what = ""
    if md:
        what = f"Metadata {md['title']!r}: {md['description']} "
    else:
        folder = rel.split("/")[2] if rel.count("/") >= 3 else ""
        what = f"{FOLDER_CONTEXT.get(folder, 'Attack sample')} ({Path(rel).name}). "
    if tri["s8_unbacked"] or tri["s10_unknown"]:
        checks = (
            "The Sysmon 8 / Sysmon 10 events that look like code outside a module are "
            "explained in benign_noise_notes (JIT-compiled managed code, window-message "
            "callbacks)"
        )
    else:
        checks = (
            "No Sysmon 8 with a start address outside a module, no Sysmon 10 with "
            "UNKNOWN frames in its call trace"
        )
    if tri["stager_cmdlines"]:
        checks += "; the command lines that match in-memory stager patterns are script-level "
        checks += "(PowerShell/WSH), with no sign of code mapped into memory"
    return what + checks + ": the attack loads no code in memory (not injection)."


# ---------------------------------------------------------------------------------------------


def data_files() -> list[str]:
    base = DATA / WIDE
    out = []
    for p in sorted(base.rglob("*")):
        if p.is_file() and p.suffix in (".evtx", ".zip"):
            out.append(p.relative_to(DATA).as_posix())
    return out


def label_path(rel: str) -> Path:
    return LABELS / Path(rel).with_suffix(".json")


def dump(obj: dict[str, Any]) -> str:
    return json.dumps(obj, indent=1, ensure_ascii=False) + "\n"


def print_triage(rel: str) -> None:
    d = read_data(rel)
    tri = triage(d)
    procs = instances(d)
    print(
        f"== {rel}  events={len(d.recs)} errors={d.parse_errors} "
        f"instances={len(procs[0]) + len(procs[1])} hosts={dict(Counter(r.host for r in d.recs))}"
    )
    for k in ("s8_unbacked", "s10_unknown", "clr_loads"):
        if tri[k]:
            print(f"  {k}: {dict(tri[k].most_common(12))}")
    for s in tri["stager_cmdlines"][:8]:
        print(f"  stager: {s}")
    if len(tri["stager_cmdlines"]) > 8:
        print(f"  ... {len(tri['stager_cmdlines'])} stager command lines")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--triage", nargs="*")
    ap.add_argument("--only", nargs="*", help="substrings of the data files to (re)label")
    a = ap.parse_args()
    if not (DATA / WIDE).is_dir():
        print(f"shared data not found at {DATA / WIDE}", file=sys.stderr)
        return 2
    files = data_files()
    if a.triage is not None:
        for rel in files:
            if not a.triage or any(t in rel for t in a.triage):
                print_triage(rel)
        return 0
    if a.only:
        files = [f for f in files if any(t in f for t in a.only)]
    stale = []
    for rel in files:
        text = dump(build(rel))
        path = label_path(rel)
        if a.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(rel)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    if a.check and stale:
        print("out of date:", *stale, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
