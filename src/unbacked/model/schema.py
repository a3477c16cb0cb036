"""The normalized event schema (DESIGN.md §3), one flat Arrow schema for every kind of event.

Every source (Sysmon, ETW-TI, Elastic Defend, OCSF, the Linux sensor) emits record batches of
``EVENT_SCHEMA``. A flat, sparse layout (columns that do not apply to a kind are null) keeps the
bulk path columnar: detectors filter by ``kind``/``activity`` and read the columns they need;
DuckDB, Spark's ``mapInArrow`` and Parquet take the same batches unchanged.

Conventions
-----------
* ``process_*`` is the *actor*: the process that performed the act (the caller of
  VirtualAlloc/mmap, the opener in a ProcessAccess, the creator of a remote thread, the process
  that connected or loaded a module). For ``launch`` events ``process_*`` is the new process and
  ``parent_*`` its parent.
* ``target_*`` is the process acted upon when it is another one (remote thread, open, write VM,
  remote allocation). Null for local acts.
* ``process_uid`` is the Windows ProcessGuid where the source has one, else
  ``host:pid:start-time-ns`` (or ``host:pid`` when the start time is unknown).
* Addresses and sizes are unsigned 64-bit; protections are Windows ``PAGE_*`` masks for Windows
  sources and Linux ``PROT_*`` masks for Linux sources (``os`` tells which).
* Provenance travels with every row: ``src_format``, ``src_file``, ``src_record`` (EVTX
  EventRecordID / NXLog RecordNumber / sensor sequence) and ``src_line`` (1-based line of a
  JSON-lines input, or the parser's record index for EVTX).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

import pyarrow as pa

#: Version 2 appended the file identity of the actor's image and the target's parent; files of
#: version 1 read unchanged (``conform`` fills the new columns with nulls).
EVENT_SCHEMA_VERSION = "2"


class Kind(StrEnum):
    """What an event is about (maps onto OCSF classes, see ``OCSF_CLASS``)."""

    PROCESS = "process"
    MODULE = "module"
    MEMORY = "memory"
    THREAD = "thread"
    NETWORK = "network"


class Activity(StrEnum):
    """What happened. Several activities share a kind."""

    # process (OCSF Process Activity 1007)
    LAUNCH = "launch"
    TERMINATE = "terminate"
    OPEN = "open"  # handle to another process (Sysmon 10)
    TAMPER = "tamper"  # image replaced / hollowed (Sysmon 25)
    EXEC = "exec"  # Linux execve of an existing process
    # module (OCSF Module Activity 1005)
    LOAD = "load"
    UNLOAD = "unload"
    # memory (OCSF Memory Activity 1004)
    ALLOCATE = "allocate"  # VirtualAlloc / mmap with PROT_EXEC
    PROTECT = "protect"  # VirtualProtect / mprotect
    MAP_VIEW = "map_view"  # NtMapViewOfSection / file mmap
    WRITE = "write"  # WriteProcessMemory
    MEMFD = "memfd"  # memfd_create
    # thread (OCSF Process Activity 1007 Inject / thread create)
    THREAD_CREATE = "thread_create"  # local thread
    REMOTE_THREAD = "remote_thread"  # CreateRemoteThread / Sysmon 8
    APC = "apc"  # QueueUserAPC
    SET_CONTEXT = "set_context"  # SetThreadContext
    # network (OCSF Network Activity 4001)
    CONNECT = "connect"
    ACCEPT = "accept"


OCSF_CLASS: Mapping[Kind, int] = {
    Kind.PROCESS: 1007,
    Kind.MODULE: 1005,
    Kind.MEMORY: 1004,
    Kind.THREAD: 1007,
    Kind.NETWORK: 4001,
}

_STR = pa.string()
_DSTR = pa.dictionary(pa.int32(), pa.string())

#: Every column, in order. Dictionary-encoded where values repeat heavily.
EVENT_FIELDS: list[pa.Field] = [
    # -- what and when
    pa.field("time", pa.timestamp("ns", tz="UTC"), nullable=False),
    pa.field("kind", _DSTR, nullable=False),
    pa.field("activity", _DSTR, nullable=False),
    pa.field("event_code", _DSTR),  # source-native id, e.g. "sysmon:10", "etwti:6", "linux:mmap"
    pa.field("os", _DSTR),  # "windows" | "linux"
    pa.field("host", _DSTR),
    # -- actor process
    pa.field("process_uid", _STR),
    pa.field("pid", pa.int64()),
    pa.field("tid", pa.int64()),
    pa.field("image", _STR),
    pa.field("cmd_line", _STR),
    pa.field("user", _STR),
    pa.field("process_start", pa.timestamp("ns", tz="UTC")),
    pa.field("parent_uid", _STR),
    pa.field("parent_pid", pa.int64()),
    pa.field("parent_image", _STR),
    pa.field("parent_cmd_line", _STR),
    # -- target process (cross-process acts)
    pa.field("target_uid", _STR),
    pa.field("target_pid", pa.int64()),
    pa.field("target_tid", pa.int64()),
    pa.field("target_image", _STR),
    pa.field("granted_access", pa.uint32()),
    pa.field("call_trace", _STR),  # "|"-joined frames, "module+offset" or "UNKNOWN(addr)"
    # -- module
    pa.field("module_path", _STR),
    pa.field("module_base", pa.uint64()),
    pa.field("module_size", pa.uint64()),
    pa.field("signed", pa.bool_()),
    pa.field("signature", _STR),
    pa.field("description", _STR),  # file description / product (Sysmon 7 Description)
    # -- memory region
    pa.field("base_address", pa.uint64()),
    pa.field("region_size", pa.uint64()),
    pa.field("alloc_base", pa.uint64()),
    pa.field("alloc_type", pa.uint32()),  # MEM_COMMIT|MEM_RESERVE... / mmap flags
    pa.field("protection", pa.uint32()),  # new protection
    pa.field("old_protection", pa.uint32()),
    pa.field("alloc_protection", pa.uint32()),  # protection at allocation time (ETW-TI v2 VaVad*)
    pa.field("region_type", _DSTR),  # "private" | "image" | "mapped" | "anonymous" | "file"
    pa.field("backing_path", _STR),  # file behind the region, null when none
    pa.field("reservation_size", pa.uint64()),  # size of the VAD/VMA the region belongs to
    pa.field("fd", pa.int64()),
    pa.field("vm_flags", pa.uint64()),
    pa.field("header_kind", _DSTR),  # "pe" | "elf" | "none" | null (unknown)
    # -- who asked (calling code)
    pa.field("caller_module", _STR),  # module of the caller, null when unbacked/unknown
    pa.field("caller_offset", pa.uint64()),
    pa.field("caller_unbacked", pa.bool_()),  # the calling code lies in unbacked memory
    pa.field("syscall_module", _STR),  # module of the syscall instruction (Linux)
    pa.field("syscall_outside_libc", pa.bool_()),
    pa.field("call_stack_summary", _STR),  # "ntdll.dll|kernelbase.dll|Unbacked"
    # -- thread
    pa.field("start_address", pa.uint64()),
    pa.field("start_module", _STR),  # null/"" when the start lies in no module
    pa.field("start_function", _STR),
    # -- network
    pa.field("protocol", _DSTR),
    pa.field("direction", _DSTR),  # "outbound" | "inbound"
    pa.field("local_ip", _STR),
    pa.field("local_port", pa.int32()),
    pa.field("remote_ip", _STR),
    pa.field("remote_port", pa.int32()),
    pa.field("remote_host", _STR),
    # -- provenance
    pa.field("src_format", _DSTR, nullable=False),
    pa.field("src_file", _DSTR),
    pa.field("src_record", pa.int64()),
    pa.field("src_line", pa.int64()),
    # -- v2: file identity of the actor's image (program identity beyond the name)
    pa.field("image_device", pa.uint64()),  # Linux: device of the executable file
    pa.field("image_inode", pa.uint64()),  # Linux: inode of the executable file
    pa.field("image_build_id", _STR),  # ELF NT_GNU_BUILD_ID, hex
    pa.field("image_hash", _STR),  # "sha256:<hex>" (Sysmon Hashes; Linux when no build-id)
    pa.field("image_signature", _STR),  # Windows: signer / signature status of the image
    # -- v2: the target's parent (is the target the actor's own child?)
    pa.field("target_parent_pid", pa.int64()),
]

EVENT_SCHEMA: pa.Schema = pa.schema(
    EVENT_FIELDS,
    metadata={"unbacked.schema": "event", "unbacked.schema.version": EVENT_SCHEMA_VERSION},
)

EVENT_COLUMNS: tuple[str, ...] = tuple(f.name for f in EVENT_FIELDS)
_EVENT_NAMES = frozenset(EVENT_COLUMNS)


def empty_events() -> pa.Table:
    """A zero-row table of ``EVENT_SCHEMA``."""
    return EVENT_SCHEMA.empty_table()


#: ``EVENT_SCHEMA`` with every string column dictionary-encoded: the types a source's
#: ``read_encoded`` may give a string column (a lake's Parquet keeps most strings as
#: dictionaries; the embedded engine orders rows by their indices and looks each value up once:
#: ``decode_strings``)
ENCODED_EVENT_SCHEMA: pa.Schema = pa.schema(
    [pa.field(f.name, _DSTR) if f.type == _STR else f for f in EVENT_FIELDS],
    metadata=EVENT_SCHEMA.metadata,
)
#: the string columns of ``EVENT_SCHEMA`` (dictionary-encoded in ``ENCODED_EVENT_SCHEMA``)
STRING_COLUMNS: frozenset[str] = frozenset(f.name for f in EVENT_FIELDS if f.type == _STR)


def decode_strings(table: pa.Table) -> pa.Table:
    """``table`` with dictionary-encoded string columns (``ENCODED_EVENT_SCHEMA``'s types) as
    ``EVENT_SCHEMA``: each value looked up in its dictionary, nothing hashed."""
    arrays = []
    for field in EVENT_SCHEMA:
        col = table.column(field.name)
        if col.type != field.type:
            col = col.cast(field.type)
        arrays.append(col)
    return pa.Table.from_arrays(arrays, schema=EVENT_SCHEMA)


def conform(
    data: pa.Table | pa.RecordBatch | Mapping[str, Any], *, encoded: bool = False
) -> pa.Table:
    """Return ``data`` as a table of exactly ``EVENT_SCHEMA``.

    Missing columns are filled with nulls, columns are cast to the schema's types (a plain string
    column becomes dictionary-encoded, an int column unsigned, ...), unknown columns are dropped.
    ``data`` may be a table, a batch or a mapping of column name to array/list.
    ``encoded``: a string column that comes dictionary-encoded stays so (as in
    ``ENCODED_EVENT_SCHEMA``; the schema then differs from ``EVENT_SCHEMA`` in those columns).
    Raises ``pyarrow.ArrowInvalid`` when a value cannot be cast (a source bug, not bad input:
    sources clean their values before conforming).
    """
    if isinstance(data, Mapping):
        n = _mapping_length(data)
        cols = {k: v for k, v in data.items() if k in _EVENT_NAMES}
        table = pa.table({k: _as_array(v) for k, v in cols.items()}) if cols else None
    else:
        table = pa.Table.from_batches([data]) if isinstance(data, pa.RecordBatch) else data
        n = table.num_rows
    arrays = []
    fields = []
    # the names once: ``column_names`` builds a list of new strings at every call (75 calls
    # of it cost ~2.7 ms, five times the rest of conforming a batch)
    present = frozenset(table.column_names) if table is not None else frozenset()
    for field in EVENT_SCHEMA:
        if table is not None and field.name in present:
            col = table.column(field.name)
            if encoded and field.type == _STR and pa.types.is_dictionary(col.type):
                field = pa.field(field.name, _DSTR)
            if col.type != field.type:
                col = col.cast(field.type)
            arrays.append(col)
            fields.append(field)
        else:
            arrays.append(pa.nulls(n, field.type))
            fields.append(field)
    schema = EVENT_SCHEMA if not encoded else pa.schema(fields, metadata=EVENT_SCHEMA.metadata)
    return pa.Table.from_arrays(arrays, schema=schema)


def _as_array(values: Any) -> pa.Array | pa.ChunkedArray:
    if isinstance(values, pa.Array | pa.ChunkedArray):
        return values
    return pa.array(values)


def _mapping_length(data: Mapping[str, Any]) -> int:
    lengths = {len(v) for v in data.values()}
    if len(lengths) > 1:
        raise ValueError(f"columns of different lengths: {sorted(lengths)}")
    return lengths.pop() if lengths else 0
