"""Hostile input for every Windows parser: whatever the bytes, a source counts and goes on.

Each property feeds a parser input built from its own vocabulary (real field names with values
of every wrong type, truncated and mangled records) and from raw bytes, and checks the source
never raises and accounts for every record it saw (event, ignored, or skipped).
"""

from __future__ import annotations

import io
import json
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unbacked.runreport import RunReport
from unbacked.sources import _wincommon
from unbacked.sources._wincommon import parse_frame, parse_time_ns
from unbacked.sources._winconst import (
    parse_alloc_type,
    parse_protection,
    parse_region_type,
    parse_uint,
)
from unbacked.sources.elastic import ElasticDefendSource
from unbacked.sources.etwti import EtwTiSource
from unbacked.sources.winxml import WinEventXmlSource, XmlForbidden, parse_event

from .test_etwti import flat
from .windows_util import accounted, read

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(
        [
            "0x1000",
            "0x",
            "4,096",
            "-1",
            "0xFFFFFFFFFFFFFFFFFF",
            "RWX",
            "R-X",
            "COMMIT|RESERVE",
            "PAGE_EXECUTE_READWRITE|PAGE_GUARD",
            "MEM_PRIVATE",
            "2024-05-01T10:00:00.1234567+02:00",
            "5/1/2024 13:00:00 PM",
            "9999-12-31T23:59:59Z",
            "/Date(1714557600000)/",
            "127.0.0.1",
            "::1",
            "Unbacked",
            "",
        ]
    ),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)

ETW_KEYS = [
    "ProviderName", "EventName", "EventId", "Version", "Opcode", "TimeStamp", "ProcessID",
    "ProcessId", "ThreadID", "ThreadId", "ProcessName", "XmlEventData", "Data", "Metadata",
    "Stack", "KeywordsName", "CallingProcessId", "CallingProcessCreateTime", "CallingThreadId",
    "TargetProcessId", "TargetProcessCreateTime", "TargetThreadId", "BaseAddress", "RegionSize",
    "ViewSize", "BytesCopied", "AllocationType", "ProtectionMask", "LastProtectionMask",
    "VaVadQueryResult", "VaVadAllocationBase", "VaVadAllocationProtect", "VaVadRegionType",
    "VaVadRegionSize", "VaVadMmfName", "ApcRoutine", "ApcRoutineVadRegionType", "Pc",
    "ContextFlags", "OperationStatus", "ImageName", "ImageBase", "ImageSize", "CreateTime",
    "ParentProcessID", "Win32StartAddr", "PID", "daddr", "saddr", "dport", "sport",
]  # fmt: skip
ETW_CONST = {
    "ProviderName": st.sampled_from(
        [
            "Microsoft-Windows-Threat-Intelligence",
            "Microsoft-Windows-Kernel-Process",
            "Microsoft-Windows-Kernel-Network",
            "f4e1897c-bb5d-5668-f1d8-040f4d8dd344",
            "Other",
        ]
    ),
    "EventId": st.integers(min_value=-2, max_value=70),
    "EventName": st.sampled_from(
        [
            "KERNEL_THREATINT_TASK_ALLOCVM",
            "ProcessStart/Start",
            "ImageLoad",
            "ThreadStart",
            "KERNEL_NETWORK_TASK_TCPIP/Connectionattempted.",
            "KERNEL_THREATINT_TASK_READVM",
            "x",
        ]
    ),
    "TimeStamp": st.sampled_from(["2024-05-01T10:00:00Z", "bad", 133590312000000000]),
}


def _record(keys: list[str], data: st.DataObject) -> dict[str, Any]:
    rec: dict[str, Any] = {}
    for k in keys:
        strat = ETW_CONST.get(k)
        rec[k] = data.draw(strat if strat is not None else values)
    return rec


@SETTINGS
@given(st.data(), st.lists(st.lists(st.sampled_from(ETW_KEYS), max_size=20), max_size=6))
def test_etwti_json_structured_garbage(data: st.DataObject, layouts: list[list[str]]) -> None:
    lines = []
    for keys in layouts:
        rec = _record(keys, data)
        if data.draw(st.booleans()):
            rec["XmlEventData"] = _record(data.draw(st.lists(st.sampled_from(ETW_KEYS))), data)
        lines.append(json.dumps(rec).encode())  # big ints, NaN: json writes what orjson won't
    _, rep = read(EtwTiSource, b"\n".join(lines))
    assert accounted(rep)


@SETTINGS
@given(st.binary(max_size=2000))
def test_etwti_raw_bytes(blob: bytes) -> None:
    _, rep = read(EtwTiSource, blob)
    assert accounted(rep)


ELASTIC_PATHS = [
    "@timestamp", "event.category", "event.kind", "event.action", "event.sequence",
    "host.hostname", "process.pid", "process.entity_id", "process.thread.id",
    "process.Ext.api.name", "process.Ext.api.behaviors", "process.Ext.api.parameters.address",
    "process.Ext.api.parameters.size", "process.Ext.api.parameters.protection",
    "process.Ext.api.parameters.protection_old", "process.Ext.api.parameters.allocation_type",
    "process.Ext.api.parameters.procedure", "process.Ext.memory_region.allocation_type",
    "process.Ext.memory_region.allocation_base", "process.thread.Ext.call_stack",
    "process.thread.Ext.call_stack_summary", "process.thread.Ext.call_stack_final_user_module",
    "Target.process.pid", "Memory_protection.feature", "dll.path", "destination.ip",
    "destination.port", "_source", "kibana.alert.uuid",
]  # fmt: skip
ELASTIC_CONST = {
    "@timestamp": st.sampled_from(["2024-05-01T10:00:00Z", "nope", 0]),
    "process.Ext.api.name": st.sampled_from(
        ["VirtualAlloc", "VirtualProtectEx", "QueueUserAPC", "MapViewOfFile", "Other", ""]
    ),
    "event.category": st.sampled_from(["api", ["process"], ["library"], ["network"], 5]),
    "event.action": st.sampled_from(["start", "load", "connection_attempted", "end"]),
    "process.pid": st.one_of(st.integers(min_value=-5, max_value=2**40), st.text(max_size=5)),
}


@SETTINGS
@given(st.data(), st.lists(st.lists(st.sampled_from(ELASTIC_PATHS), max_size=16), max_size=6))
def test_elastic_structured_garbage(data: st.DataObject, layouts: list[list[str]]) -> None:
    lines = []
    for paths in layouts:
        doc: dict[str, Any] = {}
        for path in paths:
            value = data.draw(ELASTIC_CONST.get(path, values))
            if data.draw(st.booleans()):
                doc[path] = value  # dotted key
            else:  # nested objects, clobbering whatever is in the way
                cur: Any = doc
                *parents, leaf = path.split(".")
                for p in parents:
                    nxt = cur.get(p)
                    if not isinstance(nxt, dict):
                        nxt = cur[p] = {}
                    cur = nxt
                cur[leaf] = value
        lines.append(json.dumps(doc).encode())
    _, rep = read(ElasticDefendSource, b"\n".join(lines))
    assert accounted(rep)


@SETTINGS
@given(st.binary(max_size=2000))
def test_elastic_raw_bytes(blob: bytes) -> None:
    _, rep = read(ElasticDefendSource, blob)
    assert accounted(rep)


NS = "http://schemas.microsoft.com/win/2004/08/events/event"
xml_text = st.lists(
    st.sampled_from([*"abc01<>&;'\"/= \n\x00\u00e9", "&amp;", "&lol;", "]]>", "</Event>"]),
    max_size=12,
).map("".join)


@st.composite
def xml_events(draw: st.DrawFn) -> str:
    provider = draw(
        st.sampled_from(
            ["Microsoft-Windows-Sysmon", "Microsoft-Windows-Threat-Intelligence",
             "Microsoft-Windows-Kernel-Process", "Microsoft-Windows-Kernel-Network", "x"]
        )
    )  # fmt: skip
    names = draw(st.lists(st.sampled_from([*ETW_KEYS, "UtcTime", "SourceProcessId"]), max_size=8))
    data = "".join(f"<Data Name='{n}'>{draw(xml_text)}</Data>" for n in names)
    ev = (
        f"<Event xmlns='{NS}'><System><Provider Name='{provider}'/>"
        f"<EventID>{draw(st.integers(min_value=-1, max_value=30))}</EventID>"
        f"<TimeCreated SystemTime='{draw(st.sampled_from(['2024-05-01T10:00:00Z', 'x']))}'/>"
        f"<Channel>{draw(xml_text)}</Channel><Computer>{draw(xml_text)}</Computer></System>"
        f"<EventData>{data}</EventData></Event>"
    )
    if draw(st.booleans()):  # mangle: cut, or splice in garbage
        i = draw(st.integers(min_value=0, max_value=len(ev)))
        ev = ev[:i] + draw(xml_text) + (ev[i:] if draw(st.booleans()) else "")
    return ev


@SETTINGS
@given(st.lists(xml_events(), max_size=6), st.sampled_from(["\n", "", "<Events>"]))
def test_winxml_structured_garbage(events: list[str], sep: str) -> None:
    _, rep = read(WinEventXmlSource, sep.join(events).encode("utf-8", errors="surrogatepass"))
    assert accounted(rep)


@SETTINGS
@given(st.binary(max_size=2000))
def test_winxml_raw_bytes(blob: bytes) -> None:
    _, rep = read(WinEventXmlSource, b"<Event " + blob + b"</Event>" + blob)
    assert accounted(rep)


def test_parse_event_refuses_declarations() -> None:
    with pytest.raises(XmlForbidden):
        parse_event("<!DOCTYPE x [<!ENTITY a 'b'>]><Event>&a;</Event>")


@SETTINGS
@given(values)
def test_value_decoders_never_raise(value: Any) -> None:
    parse_uint(value)
    parse_uint(value, bits=16)
    parse_protection(value)
    parse_alloc_type(value)
    parse_region_type(value)
    parse_time_ns(value)
    if isinstance(value, str):
        parse_frame(value)


def test_a_long_whitespace_run_in_a_time_is_not_quadratic() -> None:
    # found by bench/fuzz_campaign.py: 300,000 spaces inside a timestamp took minutes (the
    # pattern's optional zone between two whitespace runs); bounded now, parsed the same
    value = "2024-05-01T10:00:00" + " " * 300_000 + "x"
    assert parse_time_ns(value) is None
    assert parse_time_ns("  " + "2024-05-01T10:00:00Z" + " " * 100) == parse_time_ns(
        "2024-05-01T10:00:00Z"
    )


def test_a_long_whitespace_run_in_a_stack_frame_is_not_quadratic() -> None:
    # found by bench/fuzz_campaign.py: a frame with 300,000 inner spaces took minutes (the
    # frame pattern's lazy module name before a whitespace run and ``$``)
    start = time.perf_counter()
    assert parse_frame("inj.exe" + " " * 300_000 + "x+") == (None, None, False)
    assert parse_frame("inj.exe!f" + " " * 300_000 + "+q") == (None, None, False)
    assert time.perf_counter() - start < 5
    assert parse_frame("  KERNELBASE!VirtualAlloc+20 ") == ("kernelbase.dll", 20, False)
    assert parse_frame("C:\\x\\inj.exe+0x1638") == ("inj.exe", 0x1638, False)


def test_a_stack_frame_offset_wider_than_64_bits_is_dropped() -> None:
    # found by bench/fuzz_campaign.py: a 120-digit offset reached a uint64 column and pyarrow
    # raised OverflowError (an untyped exception: the input was lost)
    assert parse_frame("inj.exe+" + "4" * 120) == ("inj.exe", None, False)
    assert parse_frame("inj.exe+0x1" + "0" * 16) == ("inj.exe", None, False)
    assert parse_frame("inj.exe+0x" + "f" * 16) == ("inj.exe", 2**64 - 1, False)
    assert parse_frame("inj.exe+" + "9" * 5000) == ("inj.exe", None, False)  # no int() of it
    stack = ["ntdll.dll!NtWriteVirtualMemory+0x14", "inj.exe+" + "4" * 120]
    rec = flat(14, 2, OperationStatus=0, TargetProcessId=200, BaseAddress=0x10000, Stack=stack)
    (row,), rep = read(EtwTiSource, json.dumps(rec).encode() + b"\n")
    assert accounted(rep) and row["caller_module"] == "inj.exe" and "caller_offset" not in row


class _Stream(io.BytesIO):
    """A file that records the most bytes one ``readline`` call returned."""

    most = 0

    def readline(self, size: int | None = -1) -> bytes:
        line = super().readline(size)
        self.most = max(self.most, len(line))
        return line

    def __iter__(self) -> Any:  # iterating would hold a whole line: the reader must not
        raise AssertionError("iterated")


def test_a_line_longer_than_any_event_is_skipped_without_being_held(monkeypatch) -> None:
    """A JSON-lines file whose line has no end (gigabytes without a newline) is read in pieces
    of the line limit, counted as one skipped record, and the lines after it are read."""
    monkeypatch.setattr(_wincommon, "MAX_LINE", 64)
    ok = b'{"a": 1}\n'
    stream = _Stream(ok + b'{"b": "' + b"x" * 10_000 + b'"}\n' + ok + b"y" * 5_000)
    report = RunReport()
    got = [n for n, _ in _wincommon.json_records(stream, "f", report)]
    assert got == [1, 3]
    rep = report.file("f")
    assert rep.records == 4 and rep.skipped == {"line-too-long": 2}
    assert stream.most <= 64 * 64 + 1  # the first line may be an array document's start


def test_bounded_lines_give_long_lines_as_their_length() -> None:
    data = b"\n  \n" + b"[" + b"1," * 40 + b"1]\n" + b"z" * 100 + b"\nend"
    got = list(_wincommon.bounded_lines(io.BytesIO(data), 10, 200))
    assert got == [b"\n", b"  \n", b"[" + b"1," * 40 + b"1]\n", 101, b"end"]
    # the first line that is not blank has the larger limit, the ones after it the smaller
    assert list(_wincommon.bounded_lines(io.BytesIO(b"x" * 50 + b"\n" + b"y" * 50), 10, 60)) == [
        b"x" * 50 + b"\n",
        50,
    ]


def test_a_one_line_array_document_longer_than_a_line_is_still_read(monkeypatch) -> None:
    monkeypatch.setattr(_wincommon, "MAX_LINE", 64)
    doc = json.dumps([{"i": i, "pad": "p" * 20} for i in range(20)]).encode()
    assert 64 < len(doc) < 64 * 64
    report = RunReport()
    assert [n for n, _ in _wincommon.json_records(io.BytesIO(doc), "f", report)] == list(
        range(1, 21)
    )
