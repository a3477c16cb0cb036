"""Elastic Defend source: documents shaped as Elastic's endpoint field reference documents them
(logs-endpoint.events.api / process / library / network, Memory Threat alerts)."""

from __future__ import annotations

from typing import Any

import pytest

from unbacked.sources import choose_source
from unbacked.sources.base import InputFile
from unbacked.sources.elastic import ElasticDefendSource, get

from .windows_util import accounted, jsonl, ns, read

SYS32 = "c:\\windows\\system32\\"
WINWORD = "C:\\Program Files\\Microsoft Office\\root\\Office16\\WINWORD.EXE"


def api_doc(**over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "@timestamp": "2024-05-01T10:00:00.123Z",
        "agent": {"type": "endpoint", "version": "8.14.0"},
        "data_stream": {"dataset": "endpoint.events.api", "type": "logs"},
        "event": {
            "category": ["api"],
            "dataset": "endpoint.events.api",
            "kind": "event",
            "provider": "Microsoft-Windows-Threat-Intelligence",
            "sequence": 4242,
            "outcome": "success",
        },
        "host": {"hostname": "WS-042", "name": "ws-042", "os": {"type": "windows"}},
        "process": {
            "pid": 5708,
            "entity_id": "ZWQ1ZTg4YjYtNTcwOA==",
            "executable": WINWORD,
            "name": "WINWORD.EXE",
            "command_line": '"WINWORD.EXE" /n "C:\\Users\\alice\\Downloads\\invoice.docm"',
            "parent": {
                "pid": 4120,
                "entity_id": "ZXhwbG9yZXI=",
                "executable": "C:\\Windows\\explorer.exe",
            },
            "thread": {
                "id": 4412,
                "Ext": {
                    "call_stack_summary": "ntdll.dll|kernelbase.dll|Unbacked",
                    "call_stack_contains_unbacked": True,
                    "call_stack_final_user_module": {
                        "name": "Unbacked",
                        "protection_provenance": "Unbacked",
                    },
                    "call_stack": [
                        {
                            "symbol_info": SYS32 + "ntdll.dll!NtProtectVirtualMemory+0x14",
                            "protection": "R-X",
                        },
                        {"symbol_info": SYS32 + "kernelbase.dll!VirtualProtect+0x3b"},
                        {
                            "symbol_info": "Unbacked",
                            "protection": "RWX",
                            "allocation_private_bytes": 8192,
                        },
                    ],
                },
            },
            "Ext": {
                "api": {
                    "name": "VirtualProtect",
                    "summary": "VirtualProtect( Self, Unbacked, 0x1000, R-X, RW- )",
                    "behaviors": ["execute_shellcode", "unbacked_rwx"],
                    "parameters": {
                        "address": 3027125207040,
                        "size": 4096,
                        "protection": "R-X",
                        "protection_old": "RW-",
                    },
                },
                "memory_region": {
                    "allocation_base": 3027125207040,
                    "allocation_protection": "RW-",
                    "allocation_size": 4096,
                    "allocation_type": "PRIVATE",
                    "region_protection": "R-X",
                    "memory_pe_detected": True,
                },
            },
        },
        "user": {"name": "alice", "domain": "CORP"},
    }
    doc.update(over)
    return doc


def test_api_virtualprotect_from_source_wrapper() -> None:
    hit = {
        "_index": ".ds-logs-endpoint.events.api-default-2024.05.01-000001",
        "_id": "a1",
        "_source": api_doc(),
    }
    (r,), rep = read(ElasticDefendSource, jsonl(hit))
    assert rep.events == 1 and accounted(rep)
    assert r["time"] == ns("2024-05-01T10:00:00.123+00:00")
    assert (r["kind"], r["activity"], r["event_code"]) == (
        "memory",
        "protect",
        "elastic:VirtualProtect",
    )
    assert (r["host"], r["pid"], r["tid"], r["process_uid"]) == (
        "WS-042",
        5708,
        4412,
        "ZWQ1ZTg4YjYtNTcwOA==",
    )
    assert r["image"] == WINWORD and r["user"] == "CORP\\alice" and "invoice.docm" in r["cmd_line"]
    assert (r["parent_pid"], r["parent_uid"]) == (4120, "ZXhwbG9yZXI=")
    assert (r["base_address"], r["region_size"]) == (3027125207040, 4096)
    assert (r["protection"], r["old_protection"]) == (0x20, 0x04)  # R-X, RW-
    assert (r["alloc_base"], r["alloc_protection"], r["reservation_size"]) == (
        3027125207040,
        4,
        4096,
    )
    assert (r["region_type"], r["header_kind"]) == ("private", "pe")
    assert r["caller_unbacked"] is True and "caller_module" not in r
    assert r["call_stack_summary"] == "ntdll.dll|kernelbase.dll|Unbacked"
    assert r["call_trace"].endswith("|Unbacked") and r["src_record"] == 4242
    assert "target_pid" not in r


def test_dotted_keys_and_cross_process_allocation() -> None:
    doc = {
        "@timestamp": "2024-05-01T10:00:01Z",
        "event.category": "api",
        "host.hostname": "WS-042",
        "process.pid": 100,
        "process.executable": "C:\\temp\\inj.exe",
        "process.Ext.api.name": "VirtualAllocEx",
        "process.Ext.api.parameters.address": 65536,
        "process.Ext.api.parameters.size": 237568,
        "process.Ext.api.parameters.allocation_type": "COMMIT|RESERVE",
        "process.Ext.api.parameters.protection": "RWX",
        "process.Ext.api.behaviors": ["cross-process", "native_api"],
        "Target.process.pid": 200,
        "Target.process.entity_id": "bm90ZXBhZA==",
        "Target.process.executable": "C:\\Windows\\System32\\notepad.exe",
        "Target.process.Ext.memory_region.allocation_type": "PRIVATE",
        "Target.process.Ext.memory_region.allocation_protection": "RWX",
        "process.thread.Ext.call_stack_final_user_module.name": "inj.exe",
        "process.thread.Ext.call_stack": [
            {"symbol_info": "c:\\windows\\system32\\ntdll.dll!NtAllocateVirtualMemory+0x14"},
            {"symbol_info": "c:\\windows\\system32\\kernelbase.dll!VirtualAllocEx+0x4f"},
            {"symbol_info": "c:\\temp\\inj.exe+0x1638"},
        ],
    }
    (r,), _ = read(ElasticDefendSource, jsonl(doc))
    assert (r["activity"], r["pid"], r["process_uid"]) == ("allocate", 100, "WS-042:100")
    assert (r["target_pid"], r["target_uid"], r["target_image"]) == (
        200,
        "bm90ZXBhZA==",
        "C:\\Windows\\System32\\notepad.exe",
    )
    assert (r["alloc_type"], r["protection"], r["region_size"]) == (0x3000, 0x40, 237568)
    assert (r["alloc_protection"], r["region_type"]) == (0x40, "private")
    assert (r["caller_module"], r["caller_offset"], r["caller_unbacked"]) == (
        "inj.exe",
        0x1638,
        False,
    )
    assert r["call_stack_summary"] == "ntdll.dll|kernelbase.dll|inj.exe"  # derived from frames


def test_apc_write_mapview_and_unused_apis() -> None:
    apc = api_doc()
    apc["process"]["Ext"]["api"] = {
        "name": "QueueUserAPC",
        "behaviors": ["cross-process"],
        "parameters": {"procedure": 2141589667840, "argument1": 0},
    }
    apc["Target"] = {
        "process": {
            "pid": 812,
            "name": "explorer.exe",
            "thread": {"id": 9000},
            "Ext": {
                "memory_region": {"allocation_type": "PRIVATE", "allocation_protection": "RWX"}
            },
        }
    }
    write = api_doc()
    write["process"]["Ext"]["api"] = {
        "name": "WriteProcessMemory",
        "parameters": {"address": 65536, "size": 512},
    }
    mapview = api_doc()
    mapview["process"]["Ext"]["api"] = {
        "name": "MapViewOfFile",
        "parameters": {"address": 131072, "size": 8192, "protection": "R-X"},
    }
    mapview["process"]["Ext"]["memory_region"] = {
        "allocation_type": "MAPPED",
        "mapped_path": "C:\\x\\section.bin",
    }
    other = api_doc()
    other["process"]["Ext"]["api"] = {"name": "ReadProcessMemory"}
    rows, rep = read(ElasticDefendSource, jsonl(apc, write, mapview, other))
    a, w, m = rows
    assert rep.ignored == 1 and accounted(rep)
    assert (a["kind"], a["activity"], a["start_address"]) == ("thread", "apc", 2141589667840)
    assert (a["target_pid"], a["target_tid"], a["start_module"]) == (812, 9000, "")
    assert (a["alloc_protection"], a["region_type"]) == (0x40, "private")
    assert (w["activity"], w["base_address"], w["region_size"]) == ("write", 65536, 512)
    assert (m["activity"], m["region_type"], m["backing_path"]) == (
        "map_view",
        "mapped",
        "C:\\x\\section.bin",
    )


def test_context_events_and_shellcode_thread_alert() -> None:
    base = {
        "@timestamp": "2024-05-01T10:00:05Z",
        "host": {"hostname": "WS-042"},
        "process": {"pid": 5708, "entity_id": "ZWQ1ZTg4YjYtNTcwOA==", "executable": WINWORD},
    }
    start = dict(base, event={"category": ["process"], "type": ["start"], "action": "start"})
    lib = dict(
        base,
        event={"category": ["library"], "action": "load"},
        dll={
            "path": "C:\\Windows\\System32\\clrjit.dll",
            "name": "clrjit.dll",
            "code_signature": {
                "exists": True,
                "trusted": True,
                "subject_name": "Microsoft Corporation",
            },
            "Ext": {"mapped_address": 140717000000000, "mapped_size": 2000000},
        },
    )
    net = dict(
        base,
        event={"category": ["network"], "action": "connection_attempted"},
        destination={"ip": "127.0.0.1", "port": 4444},
        source={"ip": "127.0.0.1", "port": 50100},
        network={"transport": "tcp"},
    )
    alert = dict(
        base,
        event={"kind": "alert", "category": ["malware"], "module": "endpoint"},
        Memory_protection={"feature": "shellcode_thread", "self_injection": True},
    )
    alert["process"] = dict(
        base["process"],
        thread={
            "id": 6020,
            "Ext": {
                "start_address": 2141589667840,
                "start_address_module": "Unbacked",
                "start_address_allocation_protection": "RWX",
            },
        },
    )
    other_alert = dict(alert, Memory_protection={"feature": "memory_pattern"})
    kibana = dict(api_doc(), kibana={"alert": {"uuid": "x"}})
    rows, rep = read(ElasticDefendSource, jsonl(start, lib, net, alert, other_alert, kibana))
    assert rep.ignored == 2 and accounted(rep)
    launch, load, conn, thread = rows
    assert (launch["kind"], launch["activity"]) == ("process", "launch")
    assert (load["activity"], load["module_path"], load["signed"]) == (
        "load",
        "C:\\Windows\\System32\\clrjit.dll",
        True,
    )
    assert (load["signature"], load["module_size"]) == ("Microsoft Corporation", 2000000)
    assert (conn["activity"], conn["remote_ip"], conn["remote_port"], conn["protocol"]) == (
        "connect",
        "127.0.0.1",
        4444,
        "tcp",
    )
    assert (thread["activity"], thread["start_address"], thread["start_module"]) == (
        "thread_create",
        2141589667840,
        "",
    )
    assert (thread["alloc_protection"], thread["tid"]) == (0x40, 6020)


def test_bad_documents_are_counted() -> None:
    data = (
        jsonl(api_doc(), {"event": {"category": "api"}})
        + b"{oops\n"
        + jsonl(api_doc(process={"Ext": {"api": {"name": "VirtualAlloc"}}}))
    )
    rows, rep = read(ElasticDefendSource, data)
    assert len(rows) == 1
    assert rep.skipped == {"no-time": 1, "json": 1, "no-process": 1} and accounted(rep)


def test_get_reads_nested_dotted_and_mixed() -> None:
    doc = {"process": {"Ext.api": {"name": "A"}}, "a.b": {"c": 1}, "x": {"y.z": 2}}
    assert get(doc, "process.Ext.api.name") == "A"
    assert get(doc, "a.b.c") == 1 and get(doc, "x.y.z") == 2 and get(doc, "x.q") is None


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (jsonl(api_doc()), True),
        (jsonl({"_source": {"event": {"dataset": "endpoint.events.process"}}}), True),
        (
            b'{"winlog": {"event_id": 1, "channel": "Microsoft-Windows-Sysmon/Operational"}}\n',
            False,
        ),
        (b"not json at all", False),
    ],
)
def test_sniff(head: bytes, expected: bool) -> None:
    assert ElasticDefendSource.sniff(head, "x") is expected


def test_discovery_picks_this_source() -> None:
    data = jsonl(api_doc())
    assert choose_source(InputFile.from_bytes("defend.ndjson", data), data) is ElasticDefendSource


def test_process_hash_and_code_signature_are_the_image_identity() -> None:
    sha = "AB" * 32
    doc = api_doc()
    doc["process"] = {
        **doc["process"],
        "hash": {"sha256": sha, "md5": "cd" * 16},
        "code_signature": {
            "exists": True,
            "subject_name": "Microsoft Corporation",
            "trusted": True,
            "status": "trusted",
        },
    }
    bad = api_doc()
    bad["process"] = {
        **bad["process"],
        "hash": {"sha256": "not-a-digest", "md5": "cd" * 16},
        "code_signature": {"exists": False},
    }
    none = api_doc()
    (a, b, c), _ = read(ElasticDefendSource, jsonl(doc, bad, none))
    assert a["image_hash"] == "sha256:" + sha.lower()
    assert a["image_signature"] == "Microsoft Corporation (trusted)"
    assert b["image_hash"] == "md5:" + "cd" * 16 and b["image_signature"] == "unsigned"
    assert "image_hash" not in c and "image_signature" not in c
