"""Elastic Defend (endpoint) events as NDJSON exported from Elasticsearch.

Elastic Defend turns the Threat-Intelligence ETW stream into ``api`` events
(``logs-endpoint.events.api-*``) that carry, besides the API and its parameters, the calling
thread's call stack already summarised: ``process.thread.Ext.call_stack_summary``
(``ntdll.dll|kernelbase.dll|Unbacked``) and ``call_stack_final_user_module`` (the last module
before the system DLLs, or ``Unbacked``), the very "who asked" feature the baselines learn.

Inputs: one document per line, either bare (``{"@timestamp": ..., "process": {...}}``) or as the
search/scroll API and ``elasticdump`` write them (``{"_index": ..., "_source": {...}}``). Field
names may be nested objects or dotted keys (``"process.Ext.api.name"``), as Kibana's CSV/JSON
exports and some pipelines flatten them; both are read.

Mapping (Elastic's documented endpoint fields, see docs/sources-windows.md):

* ``process.Ext.api.name`` selects the activity: ``VirtualAlloc[Ex]``/``NtAllocateVirtualMemory``
  allocate, ``VirtualProtect[Ex]``/``NtProtectVirtualMemory`` protect, ``MapViewOfFile*``/
  ``NtMapViewOfSection`` map_view, ``WriteProcessMemory``/``NtWriteVirtualMemory`` write,
  ``QueueUserAPC``/``NtQueueApcThread*`` apc, ``SetThreadContext``/``NtSetContextThread``
  set_context; other APIs are counted as ignored.
* parameters: ``address`` -> base_address, ``size`` -> region_size, ``allocation_type``
  (``COMMIT|RESERVE``) -> alloc_type, ``protection``/``protection_old`` (``RWX``, ``R-X``) ->
  protection/old_protection as ``PAGE_*`` masks, ``procedure`` -> start_address (APC, context).
* ``process.*`` is the actor; ``Target.process.*`` (present for cross-process calls, behaviour
  ``cross-process``) the target.
* ``[Target.]process.Ext.memory_region.*``: ``allocation_base``, ``allocation_protection``,
  ``allocation_size`` (-> reservation_size), ``allocation_type`` (``PRIVATE``/``IMAGE``/
  ``MAPPED`` -> region_type), ``mapped_path`` -> backing_path, ``memory_pe_detected`` ->
  header_kind ``pe``.
* call stacks: ``call_stack_final_user_module.name`` -> caller_module (``Unbacked`` ->
  caller_unbacked), ``call_stack_summary`` as is, ``call_stack[].symbol_info`` -> call_trace.

Process (start/end), library (load), network (connection attempted/accepted) events and
Memory Threat ``shellcode_thread`` alerts (a thread starting in unbacked memory) give the
context and the thread events.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import pyarrow as pa

from unbacked.model import Activity, Kind
from unbacked.runreport import RunReport
from unbacked.sources._wincommon import (
    Rows,
    basename,
    caller_of,
    json_records,
    parse_frame,
    parse_time_ns,
    text,
)
from unbacked.sources._winconst import (
    parse_alloc_type,
    parse_protection,
    parse_region_type,
    parse_uint,
)
from unbacked.sources.base import InputFile, Source, register

#: Elastic API name (lower-case) -> activity
API_ACTIVITY: Mapping[str, Activity] = {
    "virtualalloc": Activity.ALLOCATE,
    "virtualallocex": Activity.ALLOCATE,
    "virtualalloc2": Activity.ALLOCATE,
    "virtualallocexnuma": Activity.ALLOCATE,
    "ntallocatevirtualmemory": Activity.ALLOCATE,
    "ntallocatevirtualmemoryex": Activity.ALLOCATE,
    "virtualprotect": Activity.PROTECT,
    "virtualprotectex": Activity.PROTECT,
    "ntprotectvirtualmemory": Activity.PROTECT,
    "mapviewoffile": Activity.MAP_VIEW,
    "mapviewoffileex": Activity.MAP_VIEW,
    "mapviewoffile2": Activity.MAP_VIEW,
    "mapviewoffile3": Activity.MAP_VIEW,
    "mapviewoffilenuma2": Activity.MAP_VIEW,
    "ntmapviewofsection": Activity.MAP_VIEW,
    "ntmapviewofsectionex": Activity.MAP_VIEW,
    "writeprocessmemory": Activity.WRITE,
    "ntwritevirtualmemory": Activity.WRITE,
    "queueuserapc": Activity.APC,
    "queueuserapc2": Activity.APC,
    "ntqueueapcthread": Activity.APC,
    "ntqueueapcthreadex": Activity.APC,
    "ntqueueapcthreadex2": Activity.APC,
    "setthreadcontext": Activity.SET_CONTEXT,
    "ntsetcontextthread": Activity.SET_CONTEXT,
}

_MEMORY = frozenset({Activity.ALLOCATE, Activity.PROTECT, Activity.MAP_VIEW, Activity.WRITE})
#: final-user-module names that are not a module
_NOT_A_MODULE = frozenset({"unbacked", "undetermined", "unknown", "kernel", ""})


def get(doc: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted ``path`` whether the document nests objects, uses dotted keys, or
    mixes both (``{"process": {"Ext.api": {...}}}``). ``None`` when absent."""
    if path in doc:
        return doc[path]
    parts = path.split(".")
    for i in range(1, len(parts)):
        sub = doc.get(".".join(parts[:i]))
        if isinstance(sub, Mapping):
            found = get(sub, ".".join(parts[i:]))
            if found is not None:
                return found
    return None


def _lower_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value.lower()]
    if isinstance(value, list):
        return [v.lower() for v in value if isinstance(v, str)]
    return []


def _user(doc: Mapping[str, Any]) -> str | None:
    name = text(get(doc, "user.name"))
    domain = text(get(doc, "user.domain"))
    if name and domain:
        return f"{domain}\\{name}"
    return name


class BadDocument(ValueError):
    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(detail or reason)
        self.reason = reason
        self.detail = detail


def map_document(doc: Mapping[str, Any]) -> dict[str, Any] | None:
    """One Elastic Defend document -> an event row (``None``: readable, not used).

    Raises ``BadDocument`` when the document cannot be placed in time or has no process.
    """
    src = doc.get("_source")
    if isinstance(src, Mapping):
        doc = src
    time_ns = parse_time_ns(get(doc, "@timestamp"))
    if time_ns is None:
        time_ns = parse_time_ns(get(doc, "event.created"))
    if time_ns is None:
        raise BadDocument("no-time", "no usable @timestamp")
    categories = _lower_list(get(doc, "event.category"))
    kind_of_event = _lower_list(get(doc, "event.kind"))
    action = (text(get(doc, "event.action")) or "").lower()
    row: dict[str, Any] = {
        "time": time_ns,
        "host": text(get(doc, "host.hostname")) or text(get(doc, "host.name")),
        "os": "windows",
    }
    if get(doc, "kibana.alert.uuid") is not None or get(doc, "signal.rule.id") is not None:
        return None  # a detection-engine alert copies the source event: not a new event
    api_name = text(get(doc, "process.Ext.api.name"))
    if api_name is not None:
        return _api(doc, row, api_name)
    feature = text(get(doc, "Memory_protection.feature"))
    if feature is not None or "alert" in kind_of_event:
        if feature == "shellcode_thread":
            return _shellcode_thread(doc, row)
        return None
    if "process" in categories and action in ("start", "exec", "fork", "end", "exit"):
        return _process(doc, row, action)
    if "library" in categories and action == "load":
        return _library(doc, row)
    if "network" in categories and action in ("connection_attempted", "connection_accepted"):
        return _network(doc, row, action)
    return None


def _actor(doc: Mapping[str, Any], row: dict[str, Any]) -> None:
    pid = parse_uint(get(doc, "process.pid"), bits=32)
    if pid is None:
        raise BadDocument("no-process", "no process.pid")
    host = row.get("host") or ""
    row.update(
        pid=pid,
        tid=parse_uint(get(doc, "process.thread.id"), bits=32),
        process_uid=text(get(doc, "process.entity_id")) or f"{host}:{pid}",
        image=text(get(doc, "process.executable")) or text(get(doc, "process.name")),
        cmd_line=text(get(doc, "process.command_line")),
        user=_user(doc),
        process_start=parse_time_ns(get(doc, "process.start")),
        parent_pid=parse_uint(get(doc, "process.parent.pid"), bits=32),
        parent_uid=text(get(doc, "process.parent.entity_id")),
        parent_image=text(get(doc, "process.parent.executable"))
        or text(get(doc, "process.parent.name")),
        parent_cmd_line=text(get(doc, "process.parent.command_line")),
        image_hash=_image_hash(doc),
        image_signature=_image_signature(doc),
    )


_HEX = {"sha256": 64, "sha1": 40, "md5": 32}


def _image_hash(doc: Mapping[str, Any]) -> str | None:
    """``sha256:<hex>`` (else sha1/md5) of the process executable (ECS ``process.hash.*``);
    a malformed digest is dropped."""
    for algo, n in _HEX.items():
        v = text(get(doc, f"process.hash.{algo}"))
        if v and len(v) == n and all(c in "0123456789abcdefABCDEF" for c in v):
            return f"{algo}:{v.lower()}"
    return None


def _image_signature(doc: Mapping[str, Any]) -> str | None:
    """Signer and status of the process executable (ECS ``process.code_signature.*``), in the
    Sysmon shape: ``Subject (Status)`` or ``unsigned``."""
    if get(doc, "process.code_signature.exists") is False:
        return "unsigned"
    subject = text(get(doc, "process.code_signature.subject_name"))
    if subject is None:
        return None
    status = text(get(doc, "process.code_signature.status"))
    if status is None:
        trusted = get(doc, "process.code_signature.trusted")
        status = (
            {True: "trusted", False: "untrusted"}.get(trusted)
            if isinstance(trusted, bool)
            else None
        )
    return f"{subject} ({status})" if status else subject


def _api(doc: Mapping[str, Any], row: dict[str, Any], api_name: str) -> dict[str, Any] | None:
    activity = API_ACTIVITY.get(api_name.lower())
    if activity is None:
        return None
    _actor(doc, row)
    row.update(kind=Kind.THREAD.value if activity not in _MEMORY else Kind.MEMORY.value)
    row.update(activity=activity.value, event_code=f"elastic:{api_name}")
    behaviors = _lower_list(get(doc, "process.Ext.api.behaviors"))
    tpid = parse_uint(get(doc, "Target.process.pid"), bits=32)
    remote = tpid is not None and (tpid != row["pid"] or "cross-process" in behaviors)
    if remote:
        host = row.get("host") or ""
        row.update(
            target_pid=tpid,
            target_uid=text(get(doc, "Target.process.entity_id")) or f"{host}:{tpid}",
            target_image=text(get(doc, "Target.process.executable"))
            or text(get(doc, "Target.process.name")),
        )
    p = "process.Ext.api.parameters."
    if activity in _MEMORY:
        row.update(
            base_address=parse_uint(get(doc, p + "address")),
            region_size=parse_uint(get(doc, p + "size")),
            protection=parse_protection(get(doc, p + "protection")),
        )
        if activity is Activity.PROTECT:
            row["old_protection"] = parse_protection(get(doc, p + "protection_old"))
        if activity in (Activity.ALLOCATE, Activity.MAP_VIEW):
            row["alloc_type"] = parse_alloc_type(get(doc, p + "allocation_type"))
        if activity is Activity.ALLOCATE:
            row.update(alloc_base=row["base_address"], alloc_protection=row["protection"])
            row["region_type"] = "private"
        elif activity is Activity.MAP_VIEW:
            row["region_type"] = "mapped"
    else:
        start = parse_uint(get(doc, p + "procedure"))
        if start is None:
            start = parse_uint(get(doc, p + "rip")) or parse_uint(get(doc, p + "eip"))
        row["start_address"] = start
        row["target_tid"] = parse_uint(get(doc, "Target.process.thread.id"), bits=32)
    region_prefix = "Target.process.Ext.memory_region." if remote else "process.Ext.memory_region."
    _region(doc, row, region_prefix)
    if activity not in _MEMORY and row.get("region_type") == "private":
        row["start_module"] = ""
    _call_stack(doc, row)
    return row


def _region(doc: Mapping[str, Any], row: dict[str, Any], prefix: str) -> None:
    region = get(doc, prefix.rstrip("."))
    if region is None and get(doc, prefix + "allocation_base") is None:
        prefix = "process.Ext.memory_region."
        if get(doc, prefix + "allocation_base") is None:
            return
    for col, key, parse in (
        ("alloc_base", "allocation_base", parse_uint),
        ("alloc_protection", "allocation_protection", parse_protection),
        ("reservation_size", "allocation_size", parse_uint),
    ):
        value = parse(get(doc, prefix + key))
        if value is not None:
            row[col] = value
    rtype = parse_region_type(get(doc, prefix + "allocation_type"))
    if rtype is not None:
        row["region_type"] = rtype
    mapped = text(get(doc, prefix + "mapped_path"))
    if mapped:
        row["backing_path"] = mapped
    pe = get(doc, prefix + "memory_pe_detected")
    if pe is True:
        row["header_kind"] = "pe"


def _call_stack(doc: Mapping[str, Any], row: dict[str, Any]) -> None:
    t = "process.thread.Ext."
    frames: list[str] = []
    stack = get(doc, t + "call_stack")
    if isinstance(stack, list):
        for entry in stack[:256]:
            if isinstance(entry, Mapping):
                sym = text(entry.get("symbol_info"))
                if sym is None:
                    addr = parse_uint(entry.get("instruction_pointer"))
                    sym = f"0x{addr:x}" if addr is not None else None
                if sym:
                    frames.append(sym)
            elif isinstance(entry, str):
                frames.append(entry)
    summary = text(get(doc, t + "call_stack_summary"))
    final = text(get(doc, t + "call_stack_final_user_module.name"))
    mod, off, unbacked, derived = caller_of(frames) if frames else (None, None, None, None)
    if final is not None:
        low = final.lower()
        if low == "unbacked":
            mod, unbacked = None, True
            off = None
        elif low in _NOT_A_MODULE:
            mod, unbacked, off = None, None, None
        else:
            name = basename(final)
            mod = name.lower() if name else None
            unbacked = False
            off = next((o for m, o, _u in (parse_frame(f) for f in frames) if m == mod and o), None)
    row.update(
        caller_module=mod,
        caller_offset=off,
        caller_unbacked=unbacked,
        call_stack_summary=summary or derived,
        call_trace="|".join(frames)[:32_768] if frames else None,
    )


def _shellcode_thread(doc: Mapping[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    _actor(doc, row)
    t = "process.thread.Ext."
    start_module = text(get(doc, t + "start_address_module"))
    row.update(
        kind=Kind.THREAD.value,
        activity=Activity.THREAD_CREATE.value,
        event_code="elastic:shellcode_thread",
        start_address=parse_uint(get(doc, t + "start_address")),
        start_module=""
        if start_module is None or start_module.lower() in _NOT_A_MODULE
        else basename(start_module),
        alloc_protection=parse_protection(get(doc, t + "start_address_allocation_protection")),
        target_tid=row.get("tid"),
    )
    _region(doc, row, "process.Ext.memory_region.")
    _call_stack(doc, row)
    return row


def _process(doc: Mapping[str, Any], row: dict[str, Any], action: str) -> dict[str, Any]:
    _actor(doc, row)
    launch = action in ("start", "exec", "fork")
    row.update(
        kind=Kind.PROCESS.value,
        activity=(Activity.LAUNCH if launch else Activity.TERMINATE).value,
        event_code=f"elastic:process:{action}",
        tid=None,
    )
    return row


def _library(doc: Mapping[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    _actor(doc, row)
    path = text(get(doc, "dll.path")) or text(get(doc, "file.path"))
    exists = get(doc, "dll.code_signature.exists")
    trusted = get(doc, "dll.code_signature.trusted")
    row.update(
        kind=Kind.MODULE.value,
        activity=Activity.LOAD.value,
        event_code="elastic:library:load",
        module_path=path,
        module_base=parse_uint(get(doc, "dll.Ext.mapped_address")),
        module_size=parse_uint(get(doc, "dll.Ext.mapped_size")),
        signed=(bool(exists) and trusted is not False) if isinstance(exists, bool) else None,
        signature=text(get(doc, "dll.code_signature.subject_name")),
    )
    return row


def _network(doc: Mapping[str, Any], row: dict[str, Any], action: str) -> dict[str, Any]:
    _actor(doc, row)
    connect = action == "connection_attempted"
    remote, local = ("destination", "source") if connect else ("source", "destination")
    row.update(
        kind=Kind.NETWORK.value,
        activity=(Activity.CONNECT if connect else Activity.ACCEPT).value,
        event_code=f"elastic:network:{action}",
        protocol=(text(get(doc, "network.transport")) or "").lower() or None,
        direction="outbound" if connect else "inbound",
        remote_ip=text(get(doc, f"{remote}.ip")),
        remote_port=parse_uint(get(doc, f"{remote}.port"), bits=16),
        local_ip=text(get(doc, f"{local}.ip")),
        local_port=parse_uint(get(doc, f"{local}.port"), bits=16),
        remote_host=text(get(doc, f"{remote}.domain")),
    )
    return row


_SNIFF_MARKERS = (
    b"endpoint.events.",
    b"logs-endpoint.",
    b'"call_stack_summary"',
    b'"Memory_protection"',
    b'"process.Ext.api.name"',
)


@register
class ElasticDefendSource(Source):
    """Elastic Defend endpoint events (API, process, library, network, memory alerts)."""

    name: ClassVar[str] = "elastic-defend"
    description: ClassVar[str] = (
        "Elastic Defend endpoint events as NDJSON (bare or _source-wrapped): API calls with "
        "call stacks, processes, libraries, network, shellcode-thread alerts"
    )
    priority: ClassVar[int] = 45
    examples: ClassVar[tuple[bytes, ...]] = (
        b'{"_index":".ds-logs-endpoint.events.api-default","_source":{"@timestamp":'
        b'"2024-05-01T10:00:00.123Z","event":{"category":["api"],"dataset":"endpoint.events.api",'
        b'"kind":"event"},"host":{"hostname":"WS-042"},"process":{"pid":5708,"entity_id":"ZWQ1",'
        b'"executable":"C:\\\\Office16\\\\WINWORD.EXE","thread":{"id":4412,"Ext":'
        b'{"call_stack_summary":"ntdll.dll|kernelbase.dll|Unbacked",'
        b'"call_stack_final_user_module":{"name":"Unbacked"}}},"Ext":{"api":{"name":'
        b'"VirtualProtect","parameters":{"address":3027125207040,"size":4096,'
        b'"protection":"R-X","protection_old":"RW-"}}}}}}\n',
    )

    @classmethod
    def sniff(cls, head: bytes, name: str) -> bool:
        start = head.lstrip(b"\xef\xbb\xbf \t\r\n")
        if not start.startswith((b"{", b"[")):
            return False
        if any(m in head for m in _SNIFF_MARKERS):
            return True
        return b'"Ext"' in head and b'"api"' in head and b'"process"' in head

    def read(self, inp: InputFile, report: RunReport) -> Iterator[pa.Table]:
        rep = report.file(inp.name, self.name)
        rows = Rows(src_format=self.name, src_file=inp.name)
        with inp.open() as fh:
            for lineno, obj in json_records(fh, inp.name, report):
                try:
                    row = map_document(obj)
                except BadDocument as exc:
                    report.skip(inp.name, exc.reason, detail=exc.detail, offset=lineno)
                    continue
                if row is None:
                    rep.ignored += 1
                    continue
                row["src_line"] = lineno
                src = obj.get("_source")
                seq = parse_uint(
                    get(src if isinstance(src, dict) else obj, "event.sequence"), bits=63
                )
                if seq is not None:
                    row["src_record"] = seq
                rows.add(row)
                if rows.full():
                    rep.events += len(rows)
                    yield rows.table()
        if len(rows):
            rep.events += len(rows)
            yield rows.table()
