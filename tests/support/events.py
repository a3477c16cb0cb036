"""Small hand-made event tables for unit tests (the normalized schema, a few columns set)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa

from unbacked.model.schema import EVENT_SCHEMA, conform

T0 = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)


def events(rows: list[dict[str, Any]]) -> pa.Table:
    """Rows -> EVENT_SCHEMA table. Defaults: time T0 + i seconds, host "h1", src_format "test",
    src_file "test.jsonl", src_line i+1."""
    filled = []
    for i, r in enumerate(rows):
        row = {
            "time": T0 + timedelta(seconds=i),
            "host": "h1",
            "os": "windows",
            "src_format": "test",
            "src_file": "test.jsonl",
            "src_line": i + 1,
            **r,
        }
        filled.append(row)
    cols = {name: [r.get(name) for r in filled] for name in EVENT_SCHEMA.names}
    arrays = {}
    for field in EVENT_SCHEMA:
        typ = field.type.value_type if pa.types.is_dictionary(field.type) else field.type
        arrays[field.name] = pa.array(cols[field.name], typ)
    return conform(pa.table(arrays))


def launch(
    uid: str,
    image: str,
    *,
    parent: str | None = None,
    parent_image: str | None = None,
    cmd: str | None = None,
    pid: int = 100,
    **kw: Any,
) -> dict[str, Any]:
    return {
        "kind": "process",
        "activity": "launch",
        "process_uid": uid,
        "pid": pid,
        "image": image,
        "cmd_line": cmd or image,
        "parent_uid": parent,
        "parent_image": parent_image,
        **kw,
    }


def open_process(
    uid: str,
    image: str,
    target_uid: str,
    target_image: str,
    trace: str,
    access: int = 0x1FFFFF,
    **kw: Any,
) -> dict[str, Any]:
    return {
        "kind": "process",
        "activity": "open",
        "process_uid": uid,
        "image": image,
        "target_uid": target_uid,
        "target_image": target_image,
        "call_trace": trace,
        "granted_access": access,
        **kw,
    }


def remote_thread(
    uid: str,
    image: str,
    target_uid: str,
    target_image: str,
    start: int,
    module: str | None = None,
    function: str | None = None,
    **kw: Any,
) -> dict[str, Any]:
    return {
        "kind": "thread",
        "activity": "remote_thread",
        "process_uid": uid,
        "image": image,
        "target_uid": target_uid,
        "target_image": target_image,
        "start_address": start,
        "start_module": module,
        "start_function": function,
        **kw,
    }


def module_load(uid: str, image: str, path: str, **kw: Any) -> dict[str, Any]:
    return {
        "kind": "module",
        "activity": "load",
        "process_uid": uid,
        "image": image,
        "module_path": path,
        **kw,
    }


def connect(
    uid: str, image: str, ip: str = "203.0.113.7", port: int = 443, **kw: Any
) -> dict[str, Any]:
    return {
        "kind": "network",
        "activity": "connect",
        "process_uid": uid,
        "image": image,
        "direction": "outbound",
        "protocol": "tcp",
        "remote_ip": ip,
        "remote_port": port,
        **kw,
    }


def memory(
    uid: str,
    image: str,
    activity: str,
    base: int,
    size: int,
    prot: int,
    old: int | None = None,
    **kw: Any,
) -> dict[str, Any]:
    return {
        "kind": "memory",
        "activity": activity,
        "process_uid": uid,
        "image": image,
        "base_address": base,
        "alloc_base": base,
        "region_size": size,
        "protection": prot,
        "old_protection": old,
        "region_type": "private",
        **kw,
    }


SYS = r"C:\Windows\System32"
NTDLL = SYS + r"\ntdll.dll+9d4c4"
KBASE = SYS + r"\KERNELBASE.dll+2c13e"
K32 = SYS + r"\KERNEL32.DLL+17bd4"
CLEAN_TRACE = "|".join(
    [NTDLL, KBASE, r"C:\Program Files\App\app.exe+1234", K32, SYS + r"\ntdll.dll+6ce51"]
)
API_TRACE = "|".join([NTDLL, KBASE, "UNKNOWN(000002BAA10DAD1E)"])
ONLY_TRACE = "UNKNOWN(000001F3C35A0014)"
KERNEL_TRACE = "|".join([NTDLL, "UNKNOWN(FFFFF80012345678)"])
MANAGED_TRACE = "|".join(
    [
        NTDLL,
        KBASE,
        r"C:\Windows\Microsoft.NET\Framework64\v4.0.30319\clr.dll+1d59",
        "UNKNOWN(00007FFF31F61C82)",
    ]
)
#: JIT code of a .NET service in the x64 image range (next to its runtime), no module named
IMAGE_RANGE_TRACE = "|".join([NTDLL, KBASE, "UNKNOWN(00007FFE7CEE9C00)"])
#: a service's own binary calling into code it generated, which starts a process
HOSTED_TRACE = "|".join(
    [
        NTDLL,
        KBASE,
        K32,
        "UNKNOWN(0000024F64B7B7A1)",
        "UNKNOWN(0000024F64B7B7A1)",
        r"C:\Packages\Agent\agent.exe+56529",
        r"C:\Packages\Agent\agent.exe+4dfbc",
        SYS + r"\sechost.dll+2de2",
        K32,
        SYS + r"\ntdll.dll+6ce51",
    ]
)
#: shellcode run as an EnumFonts callback: gdi32full.dll, a Windows DLL but not an API one by
#: name, calls into it (the program's own module only called EnumFonts)
GDI_CALLBACK_TRACE = "|".join(
    [
        NTDLL,
        KBASE,
        "UNKNOWN(000001A2B3C40010)",
        SYS + r"\gdi32full.dll+5f2e1",
        SYS + r"\GDI32.dll+4b12",
        r"C:\Users\Public\a.exe+1234",
        K32,
        SYS + r"\ntdll.dll+6ce51",
    ]
)
#: the same entered from crypt32.dll (CertEnumSystemStore) in a 32-bit process
CRYPT32_CALLBACK_TRACE = "|".join(
    [
        r"C:\Windows\SysWOW64\ntdll.dll+72c1c",
        r"C:\Windows\SysWOW64\KERNELBASE.dll+10f4a",
        "UNKNOWN(02A70044)",
        r"C:\Windows\SysWOW64\CRYPT32.dll+3a6d1",
        r"C:\Users\Public\a.exe+1234",
        r"C:\Windows\SysWOW64\KERNEL32.DLL+1fa29",
        r"C:\Windows\SysWOW64\ntdll.dll+6d35e",
    ]
)
#: exploit shellcode started from a window-message callback (user32 calls into it)
CALLBACK_TRACE = "|".join(
    [
        SYS + r"\ntdll.dll+4534c",
        SYS + r"\kernel32.dll+5112b",
        "UNKNOWN(966AF6DA)",
        "UNKNOWN(82678E06)",
        SYS + r"\user32.DLL+15cdc",
        SYS + r"\IEFRAME.dll+1a9cc",
    ]
)


def exact_rows(table: pa.Table) -> list[dict[str, Any]]:
    """``table.to_pylist()`` with every time as integer nanoseconds: exact and comparable, and
    no ``pandas.Timestamp`` needed (the suite runs with pandas kept out of pyarrow)."""
    for i, f in enumerate(table.schema):
        if pa.types.is_timestamp(f.type):
            table = table.set_column(i, f.name, table.column(i).cast(pa.int64()))
    rows: list[dict[str, Any]] = table.to_pylist()
    return rows


def encode_strings(table: pa.Table) -> pa.Table:
    """``table`` (``EVENT_SCHEMA``) with every string column dictionary-encoded
    (``ENCODED_EVENT_SCHEMA``), as a lake's Parquet is read by ``Source.read_encoded``."""
    from unbacked.model.schema import ENCODED_EVENT_SCHEMA, STRING_COLUMNS

    arrays = []
    for field in ENCODED_EVENT_SCHEMA:
        col = table.column(field.name)
        if field.name in STRING_COLUMNS and not pa.types.is_dictionary(col.type):
            col = col.dictionary_encode()
        arrays.append(col.cast(field.type))
    return pa.Table.from_arrays(arrays, schema=ENCODED_EVENT_SCHEMA)
