"""Microsoft-Windows-Threat-Intelligence ETW (with kernel process/image/thread/TCP context).

ETW-TI is the provider Defender consumes: the kernel reports every act that procures executable
memory (ALLOCVM, PROTECTVM, MAPVIEW), cross-process writes, APC queueing and thread-context
changes. It has no file format of its own; it reaches files through consumers, and this source
reads the two JSON-lines shapes they write:

* **SilkETW**: ``{"ProviderName", "EventName", "Opcode", "TimeStamp", "ProcessID", "ThreadID",
  "ProcessName", "XmlEventData": {...}}`` where the payload values are strings rendered by
  TraceEvent (``"0x1000"``, ``"4,096"``) and there is no event id (it is inferred from the task
  and keyword names and from the payload, see ``_ti_event_id``).
* **flat JSON with the manifest's field names** (krabsetw-style consumers, RedEdr, our own
  recorder): header fields (``EventId``/``Id``, ``Version``, ``ProviderName``, ``TimeStamp``,
  ``ProcessId``, ``ThreadId``, ``ProcessName``, optional ``Stack``) next to the payload, or the
  payload nested under ``Data``/``Properties``/``Payload``/``EventData`` and the header under
  ``Metadata``/``Header``.

Event ids and field names are the provider manifest's (docs/sources-windows.md lists them with
where they come from). Mapping (``process_*`` is the caller, ``target_*`` the process acted upon
for the ``*_REMOTE`` events):

======================  ===========  ======================================================
TI event (ids)          activity     columns
======================  ===========  ======================================================
ALLOCVM 6/1 (26/21)     allocate     base_address, region_size, alloc_type, protection
PROTECTVM 7/2 (27/22)   protect      + old_protection; v2+ VaVad*: alloc_base,
                                     alloc_protection, region_type, reservation_size,
                                     backing_path (VaVadMmfName)
MAPVIEW 8/3 (28/23)     map_view     base_address, region_size (ViewSize), alloc_type,
                                     protection
QUEUEUSERAPC 4 (24)     apc          target_tid, start_address (ApcRoutine) + its VAD
SETTHREADCONTEXT 5 (25) set_context  target_tid, start_address (Pc) + its VAD
WRITEVM 12/14           write        base_address, region_size (BytesCopied) + VaVad*
======================  ===========  ======================================================

Kernel-Process 1/2 (process start/stop), 3 (thread start), 5/6 (image load/unload) and
Kernel-Network 12/28 (TCP connect IPv4/IPv6), 15/31 (accept) give the context the detectors join
on. Other events (READVM, suspend/resume, driver events, data sent/received) are counted as
ignored. A failing ``OperationStatus`` means the act did not happen: ignored too.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pyarrow as pa

from unbacked.model import Activity, Kind
from unbacked.runreport import RunReport
from unbacked.sources._wincommon import (
    Rows,
    basename,
    caller_of,
    first,
    json_records,
    lower_keys,
    parse_time_ns,
    process_uid,
    text,
)
from unbacked.sources._winconst import (
    parse_alloc_type,
    parse_protection,
    parse_region_type,
    parse_uint,
)
from unbacked.sources.base import InputFile, Source, register

TI_PROVIDER = "Microsoft-Windows-Threat-Intelligence"
TI_GUID = "f4e1897c-bb5d-5668-f1d8-040f4d8dd344"
KPROC_PROVIDER = "Microsoft-Windows-Kernel-Process"
KPROC_GUID = "22fb2cd6-0e7b-422b-a0c7-2fad1fd0e716"
KNET_PROVIDER = "Microsoft-Windows-Kernel-Network"
KNET_GUID = "7dd42a49-5329-4832-8dfd-43d979153a88"

#: TI event id -> (task, local?, activity). Kernel-caller variants (21-28) share the task.
TI_EVENTS: Mapping[int, tuple[str, bool, Activity | None]] = {
    1: ("ALLOCVM", False, Activity.ALLOCATE),
    2: ("PROTECTVM", False, Activity.PROTECT),
    3: ("MAPVIEW", False, Activity.MAP_VIEW),
    4: ("QUEUEUSERAPC", False, Activity.APC),
    5: ("SETTHREADCONTEXT", False, Activity.SET_CONTEXT),
    6: ("ALLOCVM", True, Activity.ALLOCATE),
    7: ("PROTECTVM", True, Activity.PROTECT),
    8: ("MAPVIEW", True, Activity.MAP_VIEW),
    11: ("READVM", True, None),
    12: ("WRITEVM", True, Activity.WRITE),
    13: ("READVM", False, None),
    14: ("WRITEVM", False, Activity.WRITE),
    15: ("SUSPEND_THREAD", False, None),
    16: ("RESUME_THREAD", False, None),
    17: ("SUSPEND_PROCESS", False, None),
    18: ("RESUME_PROCESS", False, None),
    19: ("FREEZE_PROCESS", False, None),
    20: ("THAW_PROCESS", False, None),
    21: ("ALLOCVM", False, Activity.ALLOCATE),
    22: ("PROTECTVM", False, Activity.PROTECT),
    23: ("MAPVIEW", False, Activity.MAP_VIEW),
    24: ("QUEUEUSERAPC", False, Activity.APC),
    25: ("SETTHREADCONTEXT", False, Activity.SET_CONTEXT),
    26: ("ALLOCVM", True, Activity.ALLOCATE),
    27: ("PROTECTVM", True, Activity.PROTECT),
    28: ("MAPVIEW", True, Activity.MAP_VIEW),
    29: ("DRIVER", True, None),
    30: ("DRIVER", True, None),
    31: ("DEVICE", True, None),
    32: ("DEVICE", True, None),
}
#: (task, local, kernel caller) -> event id, to infer ids consumers leave out
_TI_IDS: Mapping[tuple[str, bool, bool], int] = {
    ("ALLOCVM", False, False): 1,
    ("PROTECTVM", False, False): 2,
    ("MAPVIEW", False, False): 3,
    ("QUEUEUSERAPC", False, False): 4,
    ("SETTHREADCONTEXT", False, False): 5,
    ("ALLOCVM", True, False): 6,
    ("PROTECTVM", True, False): 7,
    ("MAPVIEW", True, False): 8,
    ("READVM", True, False): 11,
    ("WRITEVM", True, False): 12,
    ("READVM", False, False): 13,
    ("WRITEVM", False, False): 14,
    ("ALLOCVM", False, True): 21,
    ("PROTECTVM", False, True): 22,
    ("MAPVIEW", False, True): 23,
    ("QUEUEUSERAPC", False, True): 24,
    ("SETTHREADCONTEXT", False, True): 25,
    ("ALLOCVM", True, True): 26,
    ("PROTECTVM", True, True): 27,
    ("MAPVIEW", True, True): 28,
}
_TASKS = (
    "ALLOCVM",
    "PROTECTVM",
    "MAPVIEW",
    "QUEUEUSERAPC",
    "SETTHREADCONTEXT",
    "WRITEVM",
    "READVM",
)
_OTHER_TI = ("SUSPEND", "RESUME", "FREEZE", "THAW", "DRIVER", "DEVICE")

#: Kernel-Process event names (task names) -> id
_KPROC_NAMES = (
    ("PROCESSSTART", 1),
    ("PROCESSSTOP", 2),
    ("THREADSTART", 3),
    ("THREADSTOP", 4),
    ("IMAGELOAD", 5),
    ("IMAGEUNLOAD", 6),
)
_KNET_CONNECT = frozenset({12, 28})
_KNET_ACCEPT = frozenset({15, 31})

#: Header keys, lower-cased, in order of preference across consumers.
_K_EVENT_ID = ("eventid", "event_id", "id", "eventdescriptorid")
_K_VERSION = ("version", "eventversion", "event_version")
_K_PROVIDER = ("providername", "provider_name", "provider", "providerguid", "provider_guid")
_K_TIME = ("timestamp", "time_stamp", "timecreated", "time", "systemtime", "@timestamp", "ts")
_K_PID = ("processid", "process_id", "pid")
_K_TID = ("threadid", "thread_id", "tid")
_K_PNAME = ("processname", "process_name", "exe", "image", "pname")
_K_HOST = ("computer", "computername", "hostname", "host", "machinename")
_K_NAME = ("eventname", "event_name", "taskname", "task_name", "task")
_K_KEYWORD = ("keywordsname", "keywords_name", "keywordname", "keyword", "keywords")
_K_OPCODE = ("opcode",)
_K_OPCODE_NAME = ("opcodename", "opcode_name")
_K_STACK = ("stack", "stacktrace", "stack_trace", "callstack", "call_stack", "userstack")
_K_RECORD = ("recordid", "record_id", "eventrecordid", "sequence", "seq")
#: krabsetw's EventHeader spellings, which win over same-named payload fields in the header view
_HEADER_SPELLINGS = frozenset({"ProcessId", "ThreadId", "EventId", "TimeStamp", "ProviderName"})
_PAYLOAD_KEYS = ("xmleventdata", "data", "properties", "payload", "eventdata", "event_data")
_HEADER_KEYS = ("metadata", "header", "eventheader", "system")


class BadRecord(ValueError):
    """A record that claims to be ETW but cannot be mapped; ``reason`` names the skip counter."""

    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(detail or reason)
        self.reason = reason
        self.detail = detail


@dataclass(slots=True)
class EtwRecord:
    """One ETW event as a consumer wrote it, header and payload separated, keys lower-cased."""

    provider: str  # "ti" | "kproc" | "knet" | "" (unknown)
    event_id: int | None
    version: int | None
    name: str  # upper-cased task/keyword/opcode names joined, for id inference
    opcode: int | None
    time_ns: int | None
    pid: int | None
    tid: int | None
    process_name: str | None
    host: str | None
    data: dict[str, Any]
    stack: list[str] = field(default_factory=list)
    record_id: int | None = None


def classify_provider(value: object) -> str:
    """``ti``/``kproc``/``knet`` for a provider name or GUID, ``""`` otherwise."""
    if not isinstance(value, str):
        return ""
    low = value.strip().strip("{}").lower()
    if "threat-intelligence" in low or low == TI_GUID:
        return "ti"
    if "kernel-process" in low or low == KPROC_GUID:
        return "kproc"
    if "kernel-network" in low or low == KNET_GUID:
        return "knet"
    return ""


def record_from_json(obj: Mapping[str, Any]) -> EtwRecord:
    """Split one consumer JSON object into header and payload (SilkETW or flat shapes)."""
    # Flat records mix header and payload, and two Kernel-Process payload fields differ from
    # krabsetw's header names only by case (payload ProcessID/ThreadID, header ProcessId/
    # ThreadId): the payload view lower-cases every key but lets a payload spelling win, the
    # header view holds only the header spellings and falls back to the payload view.
    top: dict[str, Any] = {}
    header: dict[str, Any] = {}
    for k, v in obj.items():
        key = str(k)
        low = key.lower()
        if key in _HEADER_SPELLINGS:
            header[low] = v
            top.setdefault(low, v)
        else:
            top[low] = v
    for hk in _HEADER_KEYS:
        h = top.get(hk)
        if isinstance(h, dict):
            header.update(lower_keys(h))
    header = {**top, **header} if header else top
    payload: dict[str, Any] | None = None
    for pk in _PAYLOAD_KEYS:
        p = top.get(pk)
        if isinstance(p, dict):
            payload = lower_keys(p)
            break
    if payload is None:
        payload = top
    provider_raw = first(header, *_K_PROVIDER)
    if provider_raw is None and payload is not top:
        provider_raw = first(payload, "providername")
    provider = classify_provider(provider_raw)
    names = [
        v.upper()
        for v in (
            first(header, *_K_NAME),
            first(header, *_K_KEYWORD),
            first(header, *_K_OPCODE_NAME),
            first(payload, "eventname") if payload is not top else None,
        )
        if isinstance(v, str)
    ]
    stack_raw = first(header, *_K_STACK)
    stack = _frames(stack_raw)
    return EtwRecord(
        provider=provider,
        event_id=parse_uint(first(header, *_K_EVENT_ID), bits=16),
        version=parse_uint(first(header, *_K_VERSION), bits=8),
        name=" ".join(names),
        opcode=parse_uint(first(header, *_K_OPCODE), bits=8),
        time_ns=parse_time_ns(first(header, *_K_TIME)),
        pid=parse_uint(first(header, *_K_PID), bits=32),
        tid=parse_uint(first(header, *_K_TID), bits=32),
        process_name=text(first(header, *_K_PNAME)),
        host=text(first(header, *_K_HOST)),
        data=payload,
        stack=stack,
        record_id=parse_uint(first(header, *_K_RECORD), bits=63),
    )


def _frames(value: object) -> list[str]:
    if isinstance(value, str):
        return [f for f in re.split(r"[|\r\n]+", value) if f.strip()][:256]
    if isinstance(value, list):
        out: list[str] = []
        for f in value[:256]:
            if isinstance(f, str):
                out.append(f)
            elif isinstance(f, dict):
                lf = lower_keys(f)
                s = first(lf, "symbol", "symbol_info", "frame", "name", "module")
                if isinstance(s, str):
                    out.append(s)
                else:
                    addr = parse_uint(first(lf, "address", "addr", "ip"))
                    if addr is not None:
                        out.append(f"0x{addr:x}")
            elif isinstance(f, int) and not isinstance(f, bool):
                out.append(f"0x{f:x}")
        return out
    return []


def _ti_event_id(rec: EtwRecord) -> int | None:
    """The TI event id: given, or inferred from task/keyword names, then from the payload.

    SilkETW writes no id; its event name is the task (``KERNEL_THREATINT_TASK_ALLOCVM``), shared
    by the local and remote events, so local vs remote comes from the keyword name when given
    and else from comparing ``CallingProcessId`` with ``TargetProcessId``.
    """
    if rec.event_id is not None and rec.event_id in TI_EVENTS:
        return rec.event_id
    d = rec.data
    task = next((t for t in _TASKS if t in rec.name), None)
    if task is None:
        if any(t in rec.name for t in _OTHER_TI):
            return 0  # known but unused
        if "lastprotectionmask" in d:
            task = "PROTECTVM"
        elif "viewsize" in d:
            task = "MAPVIEW"
        elif "allocationtype" in d and "regionsize" in d:
            task = "ALLOCVM"
        elif "apcroutine" in d:
            task = "QUEUEUSERAPC"
        elif "contextflags" in d or "pc" in d:
            task = "SETTHREADCONTEXT"
        else:
            return None
    kernel = "KERNEL_CALLER" in rec.name
    if "_LOCAL" in rec.name:
        local = True
    elif "_REMOTE" in rec.name or task in ("QUEUEUSERAPC", "SETTHREADCONTEXT"):
        local = False
    else:
        caller = parse_uint(d.get("callingprocessid"), bits=32)
        target = parse_uint(d.get("targetprocessid"), bits=32)
        local = caller is None or target is None or caller == target
    return _TI_IDS.get((task, local, kernel))


class Mapper:
    """Maps ``EtwRecord``s of one input to event rows.

    Keeps, per input, what it learned of each pid's start time (from process starts and the TI
    ``*ProcessCreateTime`` fields) so events that carry no start time (image loads, threads,
    connects) get the same ``process_uid`` as the ones that do.
    """

    def __init__(self, default_host: str | None = None) -> None:
        self.default_host = default_host
        self._starts: dict[tuple[str | None, int], int] = {}
        self._images: dict[tuple[str | None, int], str] = {}

    def _image(self, host: str | None, pid: int | None, fallback: str | None) -> str | None:
        """The image path a launch in this input gave the pid, else what the record says.

        Consumers name the process differently (SilkETW: ``dochost``, XML: nothing), so the
        launch's full path keeps one program name for one process instance.
        """
        if pid is None:
            return fallback
        return self._images.get((host, pid), fallback)

    # -- identity
    def _uid(self, host: str | None, pid: int | None, start_ns: int | None) -> str | None:
        if pid is None:
            return None
        if start_ns is not None:
            self._starts[(host, pid)] = start_ns
        else:
            start_ns = self._starts.get((host, pid))
        return process_uid(host, pid, start_ns)

    def map(self, rec: EtwRecord) -> dict[str, Any] | None:
        """One event row, or ``None`` for a readable event unbacked does not use.

        Raises ``BadRecord`` for records that cannot be mapped (no time, no event id).
        """
        provider = rec.provider
        if not provider:
            provider = _guess_provider(rec)
        if rec.time_ns is None:
            raise BadRecord("no-time", "no usable timestamp")
        if provider == "ti":
            return self._ti(rec)
        if provider == "kproc":
            return self._kproc(rec)
        if provider == "knet":
            return self._knet(rec)
        raise BadRecord("unknown-provider", str(rec.name)[:80] or None)

    def _base(self, rec: EtwRecord, code: str) -> dict[str, Any]:
        host = rec.host or self.default_host
        return {
            "time": rec.time_ns,
            "event_code": code,
            "host": host,
            "src_record": rec.record_id,
        }

    # -- Threat-Intelligence
    def _ti(self, rec: EtwRecord) -> dict[str, Any] | None:
        eid = _ti_event_id(rec)
        if eid is None:
            raise BadRecord("unknown-event", rec.name[:80] or None)
        if eid == 0:
            return None
        _task, local, activity = TI_EVENTS[eid]
        if activity is None:
            return None
        d = rec.data
        status = parse_uint(d.get("operationstatus"), bits=32)
        if status:  # NTSTATUS other than STATUS_SUCCESS: the act did not happen
            return None
        row = self._base(rec, f"etwti:{eid}")
        host = row["host"]
        pid = parse_uint(d.get("callingprocessid"), bits=32)
        if pid is None:
            pid = rec.pid
        tid = parse_uint(d.get("callingthreadid"), bits=32)
        if tid is None:
            tid = rec.tid
        start = parse_time_ns(d.get("callingprocesscreatetime"))
        row.update(
            kind=_KIND[activity],
            activity=activity.value,
            pid=pid,
            tid=tid,
            process_uid=self._uid(host, pid, start),
            process_start=start,
            image=self._image(host, pid, rec.process_name if pid == rec.pid else None),
        )
        tpid = parse_uint(d.get("targetprocessid"), bits=32)
        tstart = parse_time_ns(d.get("targetprocesscreatetime"))
        if not local and tpid is not None:
            row.update(
                target_pid=tpid,
                target_uid=self._uid(host, tpid, tstart),
                target_image=self._image(host, tpid, None),
            )
        if activity in (Activity.APC, Activity.SET_CONTEXT):
            row["target_tid"] = parse_uint(d.get("targetthreadid"), bits=32)
            if local or tpid is None or tpid == pid:  # a thread of its own: no target process
                row.update(target_pid=None, target_uid=None, target_image=None)
        if activity is Activity.APC:
            self._start(row, d, "apcroutine", "apcroutinevad")
        elif activity is Activity.SET_CONTEXT:
            self._start(row, d, "pc", "pcvad")
        else:
            base = parse_uint(d.get("baseaddress"))
            row["base_address"] = base
            if activity is Activity.WRITE:
                row["region_size"] = parse_uint(d.get("bytescopied"))
            elif activity is Activity.MAP_VIEW:
                row["region_size"] = parse_uint(d.get("viewsize"))
                row["region_type"] = "mapped"
            else:
                row["region_size"] = parse_uint(d.get("regionsize"))
            prot = parse_protection(d.get("protectionmask"))
            row["protection"] = prot
            if activity is Activity.PROTECT:
                row["old_protection"] = parse_protection(d.get("lastprotectionmask"))
            if activity in (Activity.ALLOCATE, Activity.MAP_VIEW):
                row["alloc_type"] = parse_alloc_type(d.get("allocationtype"))
            if activity is Activity.ALLOCATE:
                # a fresh private allocation: it is its own allocation base
                row.update(
                    alloc_base=base,
                    alloc_protection=prot,
                    region_type="private",
                    reservation_size=row["region_size"],
                )
            self._vad(row, d, "vavad")
        if rec.stack:
            mod, off, unbacked, summary = caller_of(rec.stack)
            row.update(
                caller_module=mod,
                caller_offset=off,
                caller_unbacked=unbacked,
                call_stack_summary=summary,
                call_trace="|".join(rec.stack)[:32_768],
            )
        return row

    @staticmethod
    def _vad(row: dict[str, Any], d: Mapping[str, Any], prefix: str) -> None:
        """v2+ VAD fields (``VaVad*``, ``ApcRoutineVad*``, ``PcVad*``) when present and valid."""
        if (prefix + "regiontype") not in d and (prefix + "allocationbase") not in d:
            return
        query = parse_uint(d.get(prefix + "queryresult"), bits=32)
        if query:  # the VAD lookup failed: the fields hold nothing
            return
        alloc_base = parse_uint(d.get(prefix + "allocationbase"))
        if alloc_base is None and prefix == "pcvad":
            alloc_base = parse_uint(d.get("pcallocationbase"))
        rtype = parse_region_type(d.get(prefix + "regiontype"))
        if alloc_base is not None:
            row["alloc_base"] = alloc_base
        ap = parse_protection(d.get(prefix + "allocationprotect"))
        if ap is not None:
            row["alloc_protection"] = ap
        if rtype is not None:
            row["region_type"] = rtype
        size = parse_uint(d.get(prefix + "regionsize"))
        if size:
            row["reservation_size"] = size
        name = d.get(prefix + "mmfname")
        backing = text(name) if isinstance(name, str) else None
        row["backing_path"] = backing

    def _start(self, row: dict[str, Any], d: Mapping[str, Any], addr_key: str, vad: str) -> None:
        row["start_address"] = parse_uint(d.get(addr_key))
        self._vad(row, d, vad)
        rtype = row.get("region_type")
        backing = row.get("backing_path")
        if rtype == "private" or (rtype is not None and backing is None and rtype != "image"):
            row["start_module"] = ""  # the start lies in no module
        elif rtype == "image" and backing:
            row["start_module"] = basename(backing)

    # -- Kernel-Process
    def _kproc(self, rec: EtwRecord) -> dict[str, Any] | None:
        eid = rec.event_id
        if eid is None:
            eid = next((i for n, i in _KPROC_NAMES if n in rec.name.replace(" ", "")), None)
        if eid is None:
            raise BadRecord("unknown-event", rec.name[:80] or None)
        d = rec.data
        row = self._base(rec, f"kproc:{eid}")
        host = row["host"]
        pid = parse_uint(d.get("processid"), bits=32)
        if pid is None:
            pid = rec.pid
        if eid in (1, 2):
            start = parse_time_ns(d.get("createtime"))
            image = text(d.get("imagename"))
            if eid == 1 and image and pid is not None:
                self._images[(host, pid)] = image
            image = image or self._image(host, pid, None)
            ppid = parse_uint(d.get("parentprocessid"), bits=32)
            row.update(
                kind=Kind.PROCESS.value,
                activity=(Activity.LAUNCH if eid == 1 else Activity.TERMINATE).value,
                pid=pid,
                process_uid=self._uid(host, pid, start),
                process_start=start,
                image=image,
                parent_pid=ppid,
                parent_uid=self._uid(host, ppid, None) if ppid is not None else None,
                parent_image=self._image(host, ppid, None),
            )
            return row
        if eid == 3:
            start_addr = parse_uint(d.get("win32startaddr"))
            if not start_addr:
                start_addr = parse_uint(d.get("startaddr"))
            creator = rec.pid if rec.pid is not None else pid
            remote = creator is not None and pid is not None and creator != pid
            row.update(
                kind=Kind.THREAD.value,
                activity=(Activity.REMOTE_THREAD if remote else Activity.THREAD_CREATE).value,
                pid=creator,
                tid=rec.tid,
                process_uid=self._uid(host, creator, None),
                image=self._image(host, creator, rec.process_name if rec.pid is not None else None),
                start_address=start_addr,
            )
            new_tid = parse_uint(d.get("threadid"), bits=32)
            if remote:
                row.update(
                    target_pid=pid,
                    target_uid=self._uid(host, pid, None),
                    target_tid=new_tid,
                    target_image=self._image(host, pid, None),
                )
            else:
                row["target_tid"] = new_tid
            return row
        if eid in (5, 6):
            path = text(d.get("imagename")) or text(d.get("filename"))
            row.update(
                kind=Kind.MODULE.value,
                activity=(Activity.LOAD if eid == 5 else Activity.UNLOAD).value,
                pid=pid,
                process_uid=self._uid(host, pid, None),
                image=self._image(host, pid, rec.process_name if pid == rec.pid else None),
                module_path=path,
                module_base=parse_uint(d.get("imagebase")),
                module_size=parse_uint(d.get("imagesize")),
            )
            return row
        return None

    # -- Kernel-Network
    def _knet(self, rec: EtwRecord) -> dict[str, Any] | None:
        eid = rec.event_id
        name = rec.name.replace(" ", "")
        if eid is None:
            if "CONNECTIONATTEMPTED" in name or rec.opcode == 12:
                eid = 12
            elif "CONNECTIONACCEPTED" in name or rec.opcode == 15:
                eid = 15
            else:
                return None
        if eid not in _KNET_CONNECT and eid not in _KNET_ACCEPT:
            return None
        d = rec.data
        pid = parse_uint(d.get("pid"), bits=32)
        if pid is None:
            pid = rec.pid
        daddr, saddr = _ip(d.get("daddr")), _ip(d.get("saddr"))
        if daddr is None:
            raise BadRecord("bad-address", str(d.get("daddr"))[:60])
        row = self._base(rec, f"knet:{eid}")
        connect = eid in _KNET_CONNECT
        # "daddr" is the remote end for outbound connects; for accepts it is the peer as well
        row.update(
            kind=Kind.NETWORK.value,
            activity=(Activity.CONNECT if connect else Activity.ACCEPT).value,
            pid=pid,
            tid=rec.tid if pid == rec.pid else None,
            process_uid=self._uid(row["host"], pid, None),
            image=self._image(row["host"], pid, rec.process_name if pid == rec.pid else None),
            protocol="tcp",
            direction="outbound" if connect else "inbound",
            remote_ip=daddr,
            remote_port=parse_uint(d.get("dport"), bits=16),
            local_ip=saddr,
            local_port=parse_uint(d.get("sport"), bits=16),
        )
        return row


_KIND: Mapping[Activity, str] = {
    Activity.ALLOCATE: Kind.MEMORY.value,
    Activity.PROTECT: Kind.MEMORY.value,
    Activity.MAP_VIEW: Kind.MEMORY.value,
    Activity.WRITE: Kind.MEMORY.value,
    Activity.APC: Kind.THREAD.value,
    Activity.SET_CONTEXT: Kind.THREAD.value,
}


def _guess_provider(rec: EtwRecord) -> str:
    d = rec.data
    if "callingprocessid" in d or "KERNEL_THREATINT" in rec.name:
        return "ti"
    if (
        "protectionmask" in d
        or "apcroutine" in d
        or ("targetprocessid" in d and "baseaddress" in d)
    ):
        return "ti"
    if "daddr" in d and "dport" in d:
        return "knet"
    if "imagebase" in d or "parentprocessid" in d or "win32startaddr" in d:
        return "kproc"
    return ""


def _ip(value: object) -> str | None:
    """Dotted/colon text as rendered, or a raw IPv4 ``UInt32`` (network byte order in memory)."""
    if isinstance(value, str):
        v = value.strip()
        n = parse_uint(v, bits=32) if not any(c in v for c in ".:") else None
        if n is None:
            try:
                return str(ipaddress.ip_address(v.split("%", 1)[0]))
            except ValueError:
                return None
        value = n
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 0xFFFFFFFF:
        return str(ipaddress.IPv4Address(value.to_bytes(4, "little")))
    return None


_SNIFF_MARKERS = (
    b"Microsoft-Windows-Threat-Intelligence",
    b"KERNEL_THREATINT",
    TI_GUID.encode(),
    TI_GUID.upper().encode(),
    b"CallingProcessId",
)


@register
class EtwTiSource(Source):
    """ETW Threat-Intelligence (+ kernel context) as JSON lines (SilkETW or flat manifest
    names)."""

    name: ClassVar[str] = "etwti-json"
    description: ClassVar[str] = (
        "Microsoft-Windows-Threat-Intelligence ETW as JSON lines (SilkETW, krabsetw-style "
        "consumers), with Kernel-Process/Kernel-Network context"
    )
    priority: ClassVar[int] = 45
    examples: ClassVar[tuple[bytes, ...]] = (
        b'{"ProviderName":"Microsoft-Windows-Threat-Intelligence","EventId":6,"Version":0,'
        b'"TimeStamp":"2024-05-01T10:00:00.0002500Z","Computer":"WS-042","ProcessId":5708,'
        b'"ThreadId":4412,"ProcessName":"WINWORD.EXE","CallingProcessId":5708,'
        b'"CallingProcessCreateTime":133590240000000000,"CallingThreadId":4412,'
        b'"TargetProcessId":5708,"BaseAddress":"0x1f2a0b10000","RegionSize":"0x3a000",'
        b'"AllocationType":12288,"ProtectionMask":64,'
        b'"Stack":["ntdll.dll!NtAllocateVirtualMemory+0x14","0x1f2a0a01234"]}\n'
        b'{"ProviderName":"Microsoft-Windows-Threat-Intelligence","EventName":'
        b'"KERNEL_THREATINT_TASK_PROTECTVM","Opcode":0,"TimeStamp":'
        b'"2024-05-01T12:00:01.1234567+02:00","ThreadID":4412,"ProcessID":5708,'
        b'"ProcessName":"WINWORD","XmlEventData":{"CallingProcessId":"5,708",'
        b'"CallingThreadId":"4,412","TargetProcessId":"5,708","BaseAddress":"0x1f2a0b10000",'
        b'"RegionSize":"0x1000","ProtectionMask":"32","LastProtectionMask":"4"}}\n',
    )

    @classmethod
    def sniff(cls, head: bytes, name: str) -> bool:
        start = head.lstrip(b"\xef\xbb\xbf \t\r\n")
        if not start.startswith((b"{", b"[")):
            return False
        if any(m in head for m in _SNIFF_MARKERS):
            return True
        # a SilkETW capture of only the kernel context providers
        return b"XmlEventData" in head and (
            KPROC_PROVIDER.encode() in head or KNET_PROVIDER.encode() in head
        )

    def read(self, inp: InputFile, report: RunReport) -> Iterator[pa.Table]:
        rep = report.file(inp.name, self.name)
        rows = Rows(src_format=self.name, src_file=inp.name)
        mapper = Mapper()
        with inp.open() as fh:
            for lineno, obj in json_records(fh, inp.name, report):
                try:
                    row = mapper.map(record_from_json(obj))
                except BadRecord as exc:
                    report.skip(inp.name, exc.reason, detail=exc.detail, offset=lineno)
                    continue
                if row is None:
                    rep.ignored += 1
                    continue
                row["src_line"] = lineno
                rows.add(row)
                if rows.full():
                    rep.events += len(rows)
                    yield rows.table()
        if len(rows):
            rep.events += len(rows)
            yield rows.table()
