"""ETW Threat-Intelligence source: golden records in the shapes consumers write.

Field names and ids are the provider manifest's (docs/sources-windows.md). SilkETW records carry
TraceEvent-rendered strings ("0x1000", "4,096") and no event id; flat records carry JSON numbers
and the manifest's names next to krabsetw-style header fields.
"""

from __future__ import annotations

import pytest

from unbacked.sources import choose_source
from unbacked.sources.base import InputFile
from unbacked.sources.etwti import EtwTiSource

from .windows_util import accounted, jsonl, ns, read

TI = "Microsoft-Windows-Threat-Intelligence"


def silk(event_name: str, payload: dict[str, str], **header: object) -> dict[str, object]:
    rec: dict[str, object] = {
        "ProviderGuid": "f4e1897c-bb5d-5668-f1d8-040f4d8dd344",
        "YaraMatch": [],
        "ProviderName": TI,
        "EventName": event_name,
        "Opcode": 0,
        "OpcodeName": "Info",
        "TimeStamp": "2024-05-01T12:00:00.1234567+02:00",
        "ThreadID": 4412,
        "ProcessID": 5708,
        "ProcessName": "WINWORD",
        "PointerSize": 8,
        "EventDataLength": 120,
        "XmlEventData": {"FormattedMessage": "", "ProviderName": TI, **payload},
    }
    rec.update(header)
    return rec


CALLER = {
    "CallingProcessId": "5,708",
    "CallingProcessCreateTime": "5/1/2024 9:59:00 AM",
    "CallingThreadId": "4,412",
}


def test_silketw_protectvm_local_v2_fields() -> None:
    rec = silk(
        "KERNEL_THREATINT_TASK_PROTECTVM",
        {
            **CALLER,
            "TargetProcessId": "5,708",
            "BaseAddress": "0x2c0ceb91000",
            "RegionSize": "0x1000",
            "ProtectionMask": "0x20",
            "LastProtectionMask": "4",
            "VaVadQueryResult": "0",
            "VaVadAllocationBase": "0x2c0ceb90000",
            "VaVadAllocationProtect": "4",
            "VaVadRegionType": "131,072",
            "VaVadRegionSize": "0x6000",
            "VaVadCommitSize": "0x6000",
            "VaVadMmfName": "",
        },
    )
    rows, rep = read(EtwTiSource, jsonl(rec))
    assert rep.events == 1 and accounted(rep)
    (r,) = rows
    assert r["time"] == ns("2024-05-01T10:00:00.1234567+00:00")  # offset honoured, UTC stored
    assert (r["kind"], r["activity"], r["event_code"]) == ("memory", "protect", "etwti:7")
    assert (r["pid"], r["tid"], r["image"]) == (5708, 4412, "WINWORD")
    assert r["process_start"] == ns("2024-05-01T09:59:00+00:00")
    assert r["process_uid"] == ":5708:1714557540000000000"
    assert "target_pid" not in r  # local: no target
    assert (r["base_address"], r["region_size"]) == (0x2C0CEB91000, 0x1000)
    assert (r["protection"], r["old_protection"]) == (0x20, 0x04)
    assert (r["alloc_base"], r["alloc_protection"]) == (0x2C0CEB90000, 0x04)
    assert (r["region_type"], r["reservation_size"]) == ("private", 0x6000)
    assert "backing_path" not in r
    assert (r["os"], r["src_format"], r["src_line"]) == ("windows", "etwti-json", 1)


def test_silketw_allocvm_remote_is_inferred_from_pids() -> None:
    rec = silk(
        "KERNEL_THREATINT_TASK_ALLOCVM",
        {
            **CALLER,
            "TargetProcessId": "812",
            "TargetProcessCreateTime": "5/1/2024 8:00:00 AM",
            "BaseAddress": "0x1f2a0b10000",
            "RegionSize": "0x3a000",
            "AllocationType": "0x3000",
            "ProtectionMask": "64",
        },
    )
    (r,), _ = read(EtwTiSource, jsonl(rec))
    assert (r["activity"], r["event_code"]) == ("allocate", "etwti:1")
    assert (r["pid"], r["target_pid"]) == (5708, 812)
    assert r["target_uid"] == ":812:1714550400000000000"
    assert (r["alloc_type"], r["protection"], r["region_size"]) == (0x3000, 0x40, 0x3A000)
    assert (r["alloc_base"], r["alloc_protection"], r["region_type"]) == (
        0x1F2A0B10000,
        0x40,
        "private",
    )


def test_keyword_name_decides_local_vs_remote() -> None:
    rec = silk(
        "KERNEL_THREATINT_TASK_MAPVIEW",
        {
            **CALLER,
            "TargetProcessId": "5708",
            "BaseAddress": "0x10000",
            "ViewSize": "0x2000",
            "AllocationType": "0",
            "ProtectionMask": "0x20",
        },
        KeywordsName="KERNEL_THREATINT_KEYWORD_MAPVIEW_REMOTE",
    )
    (r,), _ = read(EtwTiSource, jsonl(rec))
    assert (r["activity"], r["event_code"], r["region_type"]) == ("map_view", "etwti:3", "mapped")
    assert r["target_pid"] == 5708 and r["region_size"] == 0x2000


def flat(event_id: int, version: int = 0, **fields: object) -> dict[str, object]:
    return {
        "ProviderName": TI,
        "EventId": event_id,
        "Version": version,
        "TimeStamp": "2024-05-01T10:00:00.5Z",
        "Computer": "WS-042",
        "ProcessId": 100,
        "ThreadId": 104,
        "ProcessName": "inj.exe",
        "CallingProcessId": 100,
        "CallingProcessCreateTime": 133590240000000000,  # FILETIME 2024-05-01T08:00:00Z
        "CallingThreadId": 104,
        **fields,
    }


def test_flat_writevm_remote_v2_with_stack() -> None:
    rec = flat(
        14,
        2,
        OperationStatus=0,
        TargetProcessId=200,
        BaseAddress=0x1F2A0B10000,
        BytesCopied=0x3A000,
        VaVadQueryResult=0,
        VaVadAllocationBase=0x1F2A0B10000,
        VaVadAllocationProtect=0x40,
        VaVadRegionType=0x20000,
        VaVadRegionSize=0x3A000,
        VaVadCommitSize=0x3A000,
        VaVadMmfName="",
        Stack=[
            "ntdll.dll!NtWriteVirtualMemory+0x14",
            "KERNELBASE.dll!WriteProcessMemory+0x6a",
            "inj.exe+0x1638",
            "kernel32.dll!BaseThreadInitThunk+0x14",
        ],
    )
    (r,), _ = read(EtwTiSource, jsonl(rec))
    assert (r["activity"], r["event_code"], r["host"]) == ("write", "etwti:14", "WS-042")
    assert (r["target_pid"], r["base_address"], r["region_size"]) == (200, 0x1F2A0B10000, 0x3A000)
    assert r["process_uid"] == "WS-042:100:1714550400000000000"
    assert (r["caller_module"], r["caller_offset"], r["caller_unbacked"]) == (
        "inj.exe",
        0x1638,
        False,
    )
    assert r["call_stack_summary"] == "ntdll.dll|kernelbase.dll|inj.exe|kernel32.dll"
    assert r["call_trace"].startswith("ntdll.dll!NtWriteVirtualMemory+0x14|")
    assert r["alloc_protection"] == 0x40 and r["region_type"] == "private"


def test_unbacked_caller_frame() -> None:
    rec = flat(
        6,
        TargetProcessId=100,
        BaseAddress=0x50000,
        RegionSize=0x1000,
        AllocationType=0x3000,
        ProtectionMask=0x40,
        Stack=[
            "ntdll.dll!NtAllocateVirtualMemory+0x14",
            "kernelbase.dll!VirtualAlloc+0x48",
            "0x1f2a0b11234",
            "inj.exe+0x10",
        ],
    )
    (r,), _ = read(EtwTiSource, jsonl(rec))
    assert r["caller_unbacked"] is True and "caller_module" not in r
    assert r["call_stack_summary"] == "ntdll.dll|kernelbase.dll|Unbacked|inj.exe"


def test_metadata_data_layout_and_list_wrapped_pointers() -> None:
    """The ``{"Metadata": {...}, "Data": {...}}`` layout with pointers in one-element lists."""
    rec = {
        "Metadata": {
            "EventId": 2,
            "Exe": "delete.exe",
            "ProcessId": 536,
            "Stack": ["ntdll!NtProtectVirtualMemory+0x14", "delete.exe+0x1638"],
        },
        "TimeStamp": "2024-05-01T10:00:01Z",
        "Data": {
            "BaseAddress": ["0x2c0ceb90000"],
            "RegionSize": ["0x1000"],
            "LastProtectionMask": 4,
            "ProtectionMask": 64,
            "TargetProcessId": 5708,
            "VaVadAllocationBase": ["0x2c0ceb90000"],
            "VaVadAllocationProtect": 4,
            "VaVadMmfName": 0,
            "VaVadQueryResult": 0,
            "VaVadRegionSize": ["0x1000"],
            "VaVadRegionType": 131072,
        },
    }
    (r,), _ = read(EtwTiSource, jsonl(rec))
    assert (r["event_code"], r["pid"], r["image"], r["target_pid"]) == (
        "etwti:2",
        536,
        "delete.exe",
        5708,
    )
    assert (r["base_address"], r["protection"], r["old_protection"]) == (0x2C0CEB90000, 64, 4)
    assert r["caller_module"] == "delete.exe"  # "ntdll" (debugger spelling) is a system thunk


def test_protectvm_v1_has_no_vad_and_v3_extra_fields_are_tolerated() -> None:
    v1 = flat(
        7,
        1,
        TargetProcessId=100,
        BaseAddress=0x1000,
        RegionSize=0x1000,
        ProtectionMask=0x20,
        LastProtectionMask=0x04,
    )
    v3 = flat(
        7,
        3,
        TargetProcessId=100,
        BaseAddress=0x1000,
        RegionSize=0x1000,
        ProtectionMask=0x20,
        LastProtectionMask=0x04,
        VaVadQueryResult=0,
        VaVadAllocationBase=0x1000,
        VaVadAllocationProtect=0x04,
        VaVadRegionType=0x1000000,
        VaVadRegionSize=0x5000,
        VaVadCommitSize=0x5000,
        VaVadMmfName="\\Device\\HarddiskVolume3\\Windows\\System32\\amsi.dll",
        SomeFutureField="x",
    )
    (r1, r3), rep = read(EtwTiSource, jsonl(v1, v3))
    assert "alloc_base" not in r1 and "region_type" not in r1
    assert (r3["region_type"], r3["alloc_base"], r3["alloc_protection"]) == ("image", 0x1000, 4)
    assert r3["backing_path"].endswith("amsi.dll")
    assert rep.skipped == {}


def test_failed_vad_query_leaves_region_fields_null() -> None:
    rec = flat(
        7,
        2,
        TargetProcessId=100,
        BaseAddress=0x1000,
        RegionSize=0x1000,
        ProtectionMask=0x20,
        LastProtectionMask=0x04,
        VaVadQueryResult=0xC0000141,
        VaVadAllocationBase=0,
        VaVadRegionType=0,
    )
    (r,), _ = read(EtwTiSource, jsonl(rec))
    assert "alloc_base" not in r and "region_type" not in r


def test_apc_and_setthreadcontext_start_addresses() -> None:
    apc = flat(
        4,
        0,
        TargetProcessId=200,
        TargetThreadId=9000,
        ApcRoutine=0x1F2A0B10000,
        ApcArgument1=0,
        ApcRoutineVadQueryResult=0,
        ApcRoutineVadAllocationBase=0x1F2A0B10000,
        ApcRoutineVadAllocationProtect=0x40,
        ApcRoutineVadRegionType=0x20000,
        ApcRoutineVadRegionSize=0x3A000,
        ApcRoutineVadMmfName="",
    )
    ctx = flat(
        5,
        0,
        TargetProcessId=200,
        TargetThreadId=9001,
        ContextFlags=0x10000B,
        Pc=0x7FF612341000,
        PcVadQueryResult=0,
        PcAllocationBase=0x7FF612340000,
        PcVadAllocationProtect=0x80,
        PcVadRegionType=0x1000000,
        PcVadMmfName="\\Device\\HarddiskVolume3\\x\\host.exe",
    )
    (a, c), _ = read(EtwTiSource, jsonl(apc, ctx))
    assert (a["kind"], a["activity"], a["event_code"]) == ("thread", "apc", "etwti:4")
    assert (a["target_pid"], a["target_tid"], a["start_address"]) == (200, 9000, 0x1F2A0B10000)
    assert (a["start_module"], a["alloc_protection"], a["region_type"]) == ("", 0x40, "private")
    assert (c["activity"], c["target_tid"], c["start_address"]) == (
        "set_context",
        9001,
        0x7FF612341000,
    )
    assert (c["alloc_base"], c["region_type"], c["start_module"]) == (
        0x7FF612340000,
        "image",
        "host.exe",
    )


def test_failed_operation_and_unused_events_are_ignored() -> None:
    failed = flat(
        14, 0, OperationStatus=0xC0000005, TargetProcessId=200, BaseAddress=1, BytesCopied=0
    )
    readvm = flat(13, 0, OperationStatus=0, TargetProcessId=200, BaseAddress=1, BytesCopied=8)
    suspend = silk("KERNEL_THREATINT_TASK_SUSPENDRESUME_THREAD", {"CallingProcessId": "1"})
    rows, rep = read(EtwTiSource, jsonl(failed, readvm, suspend))
    assert rows == [] and rep.ignored == 3 and accounted(rep)


def test_kernel_process_and_network_context() -> None:
    kp = "Microsoft-Windows-Kernel-Process"
    start = {
        "ProviderName": kp,
        "EventId": 1,
        "Version": 3,
        "TimeStamp": "2024-05-01T10:00:00Z",
        "Computer": "WS-042",
        "ProcessId": 4120,
        "ThreadId": 4124,
        "ProcessName": "explorer.exe",
        "ProcessID": 6000,
        "CreateTime": 133590312000000000,
        "ParentProcessID": 4120,
        "SessionID": 1,
        "ImageName": "\\Device\\HarddiskVolume3\\Apps\\dochost.exe",
    }
    image = {
        "ProviderName": kp,
        "EventId": 5,
        "TimeStamp": "2024-05-01T10:00:00.1Z",
        "Computer": "WS-042",
        "ProcessId": 6000,
        "ThreadId": 6004,
        "ImageBase": "0x7ffb1e200000",
        "ImageSize": "0x1f8000",
        "ProcessID": 6000,
        "ImageName": "\\Windows\\System32\\ntdll.dll",
    }
    remote_thread = {
        "ProviderName": kp,
        "EventId": 3,
        "Version": 1,
        "TimeStamp": "2024-05-01T10:00:01Z",
        "Computer": "WS-042",
        "ProcessId": 100,
        "ThreadId": 104,
        "ProcessName": "inj.exe",
        "ProcessID": 6000,
        "ThreadID": 6020,
        "StartAddr": "0x7ffb1e2a2650",
        "Win32StartAddr": "0x1f2a0b10000",
    }
    connect = {
        "ProviderName": "Microsoft-Windows-Kernel-Network",
        "EventId": 12,
        "TimeStamp": "2024-05-01T10:00:02Z",
        "Computer": "WS-042",
        "ProcessId": 6000,
        "ThreadId": 6020,
        "PID": 6000,
        "size": 0,
        "daddr": 0x5C00A8C0,
        "saddr": "10.0.0.5",
        "dport": 443,
        "sport": 50100,
    }
    sent = dict(connect, EventId=10)
    rows, rep = read(EtwTiSource, jsonl(start, image, remote_thread, connect, sent))
    assert rep.ignored == 1 and accounted(rep)
    launch, load, thread, conn = rows
    assert (launch["activity"], launch["pid"], launch["parent_pid"]) == ("launch", 6000, 4120)
    uid = "WS-042:6000:1714557600000000000"
    assert launch["process_uid"] == uid and launch["image"].endswith("dochost.exe")
    assert (load["activity"], load["module_base"], load["module_size"]) == (
        "load",
        0x7FFB1E200000,
        0x1F8000,
    )
    assert load["process_uid"] == uid  # start time learned from the launch
    assert (thread["activity"], thread["pid"], thread["target_pid"]) == ("remote_thread", 100, 6000)
    assert (thread["target_tid"], thread["start_address"]) == (6020, 0x1F2A0B10000)
    assert thread["target_uid"] == uid
    assert (conn["activity"], conn["remote_ip"], conn["remote_port"]) == (
        "connect",
        "192.168.0.92",
        443,
    )
    assert (conn["local_ip"], conn["local_port"], conn["process_uid"]) == ("10.0.0.5", 50100, uid)


def test_corrupt_lines_are_counted_not_fatal() -> None:
    good = flat(
        6,
        TargetProcessId=100,
        BaseAddress=0x1000,
        RegionSize=0x1000,
        AllocationType=0x3000,
        ProtectionMask=0x40,
    )
    data = (
        jsonl(good)
        + b"{not json\n"
        + b"[1, 2]\n"
        + b"\n"
        + jsonl(dict(good, TimeStamp="yesterday"))
        + jsonl({"ProviderName": TI, "TimeStamp": "2024-05-01T10:00:00Z", "Foo": 1})
        + b"\xff\xfe garbage\n"
        + jsonl(good)
    )
    rows, rep = read(EtwTiSource, data)
    assert len(rows) == 2 and [r["src_line"] for r in rows] == [1, 8]
    assert rep.skipped == {"json": 2, "not-an-object": 1, "no-time": 1, "unknown-event": 1}
    assert accounted(rep)


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (jsonl(flat(6)), True),
        (jsonl(silk("KERNEL_THREATINT_TASK_ALLOCVM", {})), True),
        (b'{"ProviderName":"Microsoft-Windows-Kernel-Process","XmlEventData":{}}\n', True),
        (b'{"EventID": 10, "Channel": "Microsoft-Windows-Sysmon/Operational"}\n', False),
        (b"<Event xmlns='http://schemas.microsoft.com/win/2004/08/events/event'>", False),
        (b"", False),
    ],
)
def test_sniff(head: bytes, expected: bool) -> None:
    assert EtwTiSource.sniff(head, "x") is expected


def test_discovery_picks_this_source() -> None:
    data = jsonl(flat(6))
    inp = InputFile.from_bytes("ti.jsonl", data)
    assert choose_source(inp, data) is EtwTiSource


def test_apc_into_own_process_has_no_target_process() -> None:
    apc = flat(4, 0, TargetProcessId=100, TargetThreadId=108, ApcRoutine=0x50000)
    (r,), _ = read(EtwTiSource, jsonl(apc))
    assert (r["activity"], r["target_tid"], r["start_address"]) == ("apc", 108, 0x50000)
    assert "target_pid" not in r and "target_uid" not in r
