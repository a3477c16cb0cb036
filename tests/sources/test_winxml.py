"""Windows event XML source: the export layouts, Sysmon through the shared Sysmon mapping,
ETW-TI rendered as XML, and the parser's refusal of DTD/entity tricks."""

from __future__ import annotations

import time
from xml.parsers import expat

import pyarrow as pa
import pytest

from unbacked.runreport import RunReport
from unbacked.sources import choose_source
from unbacked.sources.base import InputFile
from unbacked.sources.sysmon_json import SysmonJsonSource
from unbacked.sources.winxml import (
    MAX_EVENT,
    WinEventXmlSource,
    XmlForbidden,
    iter_events,
    parse_event,
)

from .windows_util import accounted, jsonl, ns, read

NS = "http://schemas.microsoft.com/win/2004/08/events/event"

SYSMON_8_DATA = {
    "RuleName": "-",
    "UtcTime": "2024-05-01 10:00:00.123",
    "SourceProcessGuid": "{4a1f2a3b-0000-0000-1000-000000000a00}",
    "SourceProcessId": "100",
    "SourceImage": "C:\\temp\\inj.exe",
    "TargetProcessGuid": "{4a1f2a3b-0000-0000-2000-000000000b00}",
    "TargetProcessId": "200",
    "TargetImage": "C:\\Windows\\System32\\notepad.exe",
    "NewThreadId": "5555",
    "StartAddress": "0x000001F2A0B10000",
    "StartModule": "-",
    "StartFunction": "-",
    "SourceUser": "CORP\\alice",
    "TargetUser": "CORP\\alice",
}


def sysmon_xml(event_id: int, data: dict[str, str], record: int = 1234) -> str:
    body = "".join(f"<Data Name='{k}'>{v}</Data>" for k, v in data.items())
    return (
        f"<Event xmlns='{NS}'><System><Provider Name='Microsoft-Windows-Sysmon' "
        "Guid='{5770385f-c22a-43e0-bf4c-06f5698ffbd9}'/>"
        f"<EventID>{event_id}</EventID><Version>2</Version><Level>4</Level><Task>{event_id}</Task>"
        "<Opcode>0</Opcode><Keywords>0x8000000000000000</Keywords>"
        "<TimeCreated SystemTime='2024-05-01T10:00:00.1234567Z'/>"
        f"<EventRecordID>{record}</EventRecordID><Correlation/>"
        "<Execution ProcessID='3216' ThreadID='4000'/>"
        "<Channel>Microsoft-Windows-Sysmon/Operational</Channel>"
        "<Computer>WS-042.corp.local</Computer><Security UserID='S-1-5-18'/></System>"
        f"<EventData>{body}</EventData></Event>"
    )


TI_XML = (
    f"<Event xmlns='{NS}'><System>"
    "<Provider Name='Microsoft-Windows-Threat-Intelligence' "
    "Guid='{f4e1897c-bb5d-5668-f1d8-040f4d8dd344}'/>"
    "<EventID>1</EventID><Version>0</Version><Level>4</Level><Task>1</Task><Opcode>0</Opcode>"
    "<Keywords>0x8000000000000004</Keywords>"
    "<TimeCreated SystemTime='2024-05-01T10:00:00.2000000Z'/><EventRecordID>99</EventRecordID>"
    "<Execution ProcessID='100' ThreadID='104'/><Channel/><Computer>WS-042</Computer></System>"
    "<EventData><Data Name='CallingProcessId'>100</Data>"
    "<Data Name='CallingProcessCreateTime'>2024-05-01T09:59:00.0000000Z</Data>"
    "<Data Name='CallingThreadId'>104</Data><Data Name='TargetProcessId'>200</Data>"
    "<Data Name='BaseAddress'>0x1F2A0B10000</Data><Data Name='RegionSize'>0x2000</Data>"
    "<Data Name='AllocationType'>12288</Data><Data Name='ProtectionMask'>64</Data></EventData>"
    "<RenderingInfo Culture='en-US'><Task>KERNEL_THREATINT_TASK_ALLOCVM</Task>"
    "<Keywords><Keyword>KERNEL_THREATINT_KEYWORD_ALLOCVM_REMOTE</Keyword></Keywords>"
    "</RenderingInfo></Event>"
)

SECURITY_XML = (
    f"<Event xmlns='{NS}'><System><Provider Name='Microsoft-Windows-Security-Auditing'/>"
    "<EventID>4624</EventID><TimeCreated SystemTime='2024-05-01T10:00:00Z'/></System></Event>"
)


def test_wef_export_with_root_sysmon_and_ti() -> None:
    doc = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Events>\n'
        + sysmon_xml(8, SYSMON_8_DATA)
        + "\n"
        + TI_XML
        + "\n"
        + SECURITY_XML
        + "\n</Events>\n"
    )
    rows, rep = read(WinEventXmlSource, doc.encode())
    assert (rep.records, rep.events, rep.ignored) == (3, 2, 1) and accounted(rep)
    by_code = {r["event_code"]: r for r in rows}
    s = by_code["sysmon:8"]
    assert (s["kind"], s["activity"], s["pid"], s["target_pid"]) == (
        "thread",
        "remote_thread",
        100,
        200,
    )
    assert (s["start_address"], s["target_tid"], s["src_record"]) == (0x1F2A0B10000, 5555, 1234)
    assert s["time"] == ns("2024-05-01T10:00:00.123+00:00") and s["src_line"] == 3
    t = by_code["etwti:1"]
    assert (t["activity"], t["pid"], t["tid"], t["target_pid"]) == ("allocate", 100, 104, 200)
    assert (t["protection"], t["region_size"], t["host"], t["src_record"]) == (
        0x40,
        0x2000,
        "WS-042",
        99,
    )
    assert t["process_start"] == ns("2024-05-01T09:59:00+00:00") and t["src_line"] == 4
    assert all(r["src_format"] == "winevent-xml" for r in rows)


def test_sysmon_rows_equal_the_sysmon_json_source() -> None:
    """Same event as XML and as export JSON: the shared Sysmon mapping gives the same row."""
    xml_rows, _ = read(WinEventXmlSource, sysmon_xml(8, SYSMON_8_DATA).encode())
    export = {
        "EventID": 8,
        "Channel": "Microsoft-Windows-Sysmon/Operational",
        "ProviderName": "Microsoft-Windows-Sysmon",
        "Computer": "WS-042.corp.local",
        "EventRecordID": 1234,
        "TimeCreated": "2024-05-01T10:00:00.1234567Z",
        **SYSMON_8_DATA,
    }
    json_rows, _ = read(SysmonJsonSource, jsonl(export))
    drop = {"src_format", "src_file", "src_line"}
    assert [{k: v for k, v in r.items() if k not in drop} for r in xml_rows] == [
        {k: v for k, v in r.items() if k not in drop} for r in json_rows
    ]


def test_bare_concatenated_and_splunk_one_per_line() -> None:
    wevtutil = (sysmon_xml(8, SYSMON_8_DATA, 1) + sysmon_xml(8, SYSMON_8_DATA, 2)).encode()
    rows, rep = read(WinEventXmlSource, wevtutil)
    assert [r["src_record"] for r in rows] == [1, 2] and accounted(rep)
    splunk = "\n".join(
        [sysmon_xml(8, SYSMON_8_DATA, 10), TI_XML, sysmon_xml(8, SYSMON_8_DATA, 11)]
    ).encode()
    rows, rep = read(WinEventXmlSource, splunk)
    assert sorted(r["src_line"] for r in rows) == [1, 2, 3] and rep.events == 3


def test_utf16_export() -> None:
    doc = "<Events>" + sysmon_xml(8, SYSMON_8_DATA) + "</Events>"
    data = doc.encode("utf-16")  # with BOM, as Windows tools write
    assert WinEventXmlSource.sniff(data[:4096], "x")
    rows, _ = read(WinEventXmlSource, data)
    assert len(rows) == 1 and rows[0]["pid"] == 100


def test_corrupt_truncated_and_oversized_events_are_counted() -> None:
    broken = f"<Event xmlns='{NS}'><System><Provider Name='Microsoft-Windows-Sysmon'/><EventID>8"
    huge = sysmon_xml(8, dict(SYSMON_8_DATA, RuleName="x" * (MAX_EVENT + 10)))
    doc = "\n".join([broken, sysmon_xml(8, SYSMON_8_DATA, 5), huge, TI_XML, broken])
    rows, rep = read(WinEventXmlSource, doc.encode())
    assert [r["src_line"] for r in rows] == [2, 4]
    assert rep.skipped == {"xml": 2, "event-too-large": 1} and accounted(rep)


def test_small_files_read_together_count_as_read_alone() -> None:
    """``read_many`` (a collection of small XML files: one Sysmon query for all) gives every
    file the rows and counters it gets when read alone."""
    broken = f"<Event xmlns='{NS}'><System><Provider Name='Microsoft-Windows-Sysmon'/><EventID>8"
    docs = {
        "a.xml": "\n".join([sysmon_xml(8, SYSMON_8_DATA, 1), TI_XML, SECURITY_XML]),
        "b.xml": "\n".join([broken, sysmon_xml(8, SYSMON_8_DATA, 2)]),
        "c.xml": "no events here",
        "d.xml": sysmon_xml(8, dict(SYSMON_8_DATA, SourceProcessId="x"), 3),
    }
    report = RunReport()
    inputs = [InputFile.from_bytes(n, d.encode()) for n, d in docs.items()]
    together = pa.concat_tables(WinEventXmlSource().read_many(inputs, report)).to_pylist()
    for name, doc in docs.items():
        alone, rep = read(WinEventXmlSource, doc.encode(), name)
        mine = [r for r in together if r["src_file"] == name]
        assert sorted((r["src_line"], r["event_code"]) for r in mine) == sorted(
            (r["src_line"], r["event_code"]) for r in alone
        )
        got = report.file(name)
        assert (got.records, got.events, got.ignored, got.skipped) == (
            rep.records,
            rep.events,
            rep.ignored,
            rep.skipped,
        )
        assert accounted(got)
    assert report.file("a.xml").events == 2 and report.file("b.xml").skipped == {"xml": 1}


def test_entity_tricks_are_refused_without_expansion() -> None:
    laughs = (
        f"<Event xmlns='{NS}'><!DOCTYPE lolz [<!ENTITY lol 'lol'>"
        "<!ENTITY lol2 '&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;'>]>"
        "<System><Provider Name='&lol2;'/></System></Event>"
    )
    xxe = f"<Event xmlns='{NS}'><System><Provider Name='&xxe;'/></System></Event>"
    with pytest.raises((XmlForbidden, expat.ExpatError)):
        parse_event(laughs)
    doc = (
        "<?xml version='1.0'?>\n<!DOCTYPE Events [<!ENTITY xxe SYSTEM 'file:///etc/passwd'>]>\n"
        f"<Events>{xxe}\n{laughs}\n{sysmon_xml(8, SYSMON_8_DATA)}</Events>"
    )
    t0 = time.perf_counter()
    rows, rep = read(WinEventXmlSource, doc.encode())
    assert time.perf_counter() - t0 < 5
    assert len(rows) == 1 and sum(rep.skipped.values()) == 2 and accounted(rep)


def test_parse_event_reads_system_eventdata_and_userdata() -> None:
    ev = parse_event(
        f"<Event xmlns='{NS}'><System><Provider Name='P' Guid='{{g}}'/><EventID Qualifiers='0'>7"
        "</EventID><Execution ProcessID='4' ThreadID='8'/></System>"
        "<UserData><Op xmlns='urn:x'><Path>C:\\a.dll</Path><Size>12</Size></Op></UserData></Event>"
    )
    assert ev.system["EventID"] == "7" and ev.system["Provider@Guid"] == "{g}"
    assert ev.system["Execution@ThreadID"] == "8"
    assert ev.data == {"Path": "C:\\a.dll", "Size": "12"}


def test_iter_events_across_chunk_boundaries() -> None:
    import io

    from unbacked.sources import winxml

    events = [sysmon_xml(8, SYSMON_8_DATA, i) for i in range(300)]
    data = "\n".join(events).encode()
    old = winxml.CHUNK
    winxml.CHUNK = 777  # force events and tags to straddle reads
    try:
        got = list(iter_events(io.BytesIO(data)))
    finally:
        winxml.CHUNK = old
    assert [line for line, _ in got] == list(range(1, 301))
    assert [x for _, x in got] == events


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (sysmon_xml(8, SYSMON_8_DATA).encode(), True),
        (b'{"EventID": 8}', False),
        (b"<html><body>Event</body></html>", False),
    ],
)
def test_sniff(head: bytes, expected: bool) -> None:
    assert WinEventXmlSource.sniff(head, "x") is expected


def test_discovery_picks_this_source() -> None:
    data = ("<Events>" + TI_XML + "</Events>").encode()
    assert choose_source(InputFile.from_bytes("ti.xml", data), data) is WinEventXmlSource
