"""Sysmon JSON lines: NXLog and export flavours (OTRF) and Winlogbeat/ECS."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from unbacked.runreport import RunReport
from unbacked.sources import read_events
from unbacked.sources.base import InputFile
from unbacked.sources.discovery import choose_source
from unbacked.sources.sysmon_json import SysmonJsonSource, WinlogbeatSource

from .util import accounted, jsonl, read_bytes, rows

CH = "Microsoft-Windows-Sysmon/Operational"
G1 = "{b59756a9-9966-5f14-1000-000000000400}"
G2 = "{b59756a9-b9b4-5f17-7007-000000000400}"
T0_NS = 1_595_390_448_715_000_000  # 2020-07-22 04:00:48.715 UTC


def nx(eid: int, rec: int, **data: Any) -> dict[str, Any]:
    """An NXLog (im_msvistalog) Sysmon record: event data at top level, numbers as strings."""
    base = {
        "EventTime": "2020-07-22 00:00:48",  # local time: must not be used
        "EventReceivedTime": "2020-07-22 00:00:49",
        "SourceModuleType": "im_msvistalog",
        "Hostname": "WORKSTATION5.mordor.local",
        "Channel": CH,
        "SourceName": "Microsoft-Windows-Sysmon",
        "EventID": eid,
        "RecordNumber": rec,
        "@timestamp": "2020-07-22T04:00:49.786Z",
        "ProcessId": "9999",  # the NXLog envelope pid: not the actor of 8/10
        "Message": "x" * 50,
        "UtcTime": "2020-07-22 04:00:48.715",
    }
    base.update(data)
    return base


def export(eid: int, **data: Any) -> dict[str, Any]:
    base = {
        "SourceName": "Microsoft-Windows-Sysmon",
        "Level": "4",
        "Channel": CH,
        "Hostname": "MKT01.pandalab.com",
        "TimeCreated": "2023-08-15T09:53:46.119Z",
        "@timestamp": "2023-08-15T09:53:46.119Z",
        "EventID": eid,
        "Task": str(eid),
        "RuleName": "-",
        "UtcTime": "2023-08-16 04:53:46.060",
    }
    base.update(data)
    return base


ACCESS = {
    "SourceProcessGUID": G1,
    "SourceProcessId": "920",
    "SourceThreadId": "6392",
    "SourceImage": "C:\\windows\\system32\\svchost.exe",
    "TargetProcessGUID": G2,
    "TargetProcessId": "1296",
    "TargetImage": "C:\\windows\\system32\\notepad.exe",
    "GrantedAccess": "0x1F1FFF",
    "CallTrace": "C:\\windows\\SYSTEM32\\ntdll.dll+9c534|UNKNOWN(00000000043F99AB)",
}


def test_nxlog_process_access_maps_actor_and_target() -> None:
    table, rep = read_bytes(SysmonJsonSource, jsonl(nx(10, 1780399, **ACCESS)), "a.json")
    (r,) = rows(table)
    assert r["kind"] == "process" and r["activity"] == "open" and r["event_code"] == "sysmon:10"
    assert r["time"] == T0_NS
    assert (r["process_uid"], r["pid"], r["tid"]) == (G1, 920, 6392)
    assert r["image"] == "C:\\windows\\system32\\svchost.exe"
    assert (r["target_uid"], r["target_pid"]) == (G2, 1296)
    assert r["target_image"].endswith("notepad.exe")
    assert r["granted_access"] == 0x1F1FFF
    assert r["call_trace"].endswith("UNKNOWN(00000000043F99AB)")
    assert r["host"] == "WORKSTATION5.mordor.local" and r["os"] == "windows"
    assert (r["src_format"], r["src_file"], r["src_record"], r["src_line"]) == (
        "sysmon-jsonl",
        "a.json",
        1780399,
        1,
    )
    assert (rep.records, rep.events, rep.ignored) == (1, 1, 0) and accounted(rep)


def test_nxlog_values_are_html_unescaped_export_values_are_not() -> None:
    cmd = "cmd.exe /c echo a &amp;&amp; echo &lt;b&gt; &quot;c&quot;"
    line = {
        "ProcessGuid": G1,
        "ProcessId": "5244",
        "Image": "C:\\Windows\\System32\\cmd.exe",
        "CommandLine": cmd,
    }
    (r,) = rows(read_bytes(SysmonJsonSource, jsonl(nx(1, 5, **line)))[0])
    assert r["cmd_line"] == 'cmd.exe /c echo a && echo <b> "c"'
    (e,) = rows(read_bytes(SysmonJsonSource, jsonl(export(1, **line)))[0])
    assert e["cmd_line"] == cmd  # the export flavour is not escaped: keep it verbatim


def test_launch_network_module_thread_terminate_tamper() -> None:
    lines = [
        export(
            1,
            ProcessGuid=G2,
            ProcessId="7448",
            Image="C:\\Program Files\\Edge\\msedge.exe",
            CommandLine="msedge.exe --x",
            User="PANDALAB\\stevie",
            ParentProcessGuid=G1,
            ParentProcessId="4544",
            ParentImage="C:\\Windows\\explorer.exe",
            ParentCommandLine="C:\\Windows\\Explorer.EXE",
            Description="Microsoft Edge",
        ),
        export(
            3,
            ProcessGuid=G2,
            ProcessId="7448",
            Image="C:\\x.exe",
            Protocol="tcp",
            Initiated="true",
            SourceIp="192.168.1.41",
            SourcePort="63829",
            DestinationIp="10.0.0.5",
            DestinationPort="443",
            DestinationHostname="-",
        ),
        export(
            3,
            ProcessGuid=G2,
            ProcessId="4",
            Image="System",
            Protocol="tcp",
            Initiated="false",
            SourceIp="10.9.9.9",
            SourcePort="50000",
            SourceHostname="attacker.example",
            DestinationIp="192.168.1.41",
            DestinationPort="445",
        ),
        export(
            7,
            ProcessGuid=G2,
            ProcessId="7448",
            Image="C:\\x.exe",
            ImageLoaded="C:\\Windows\\System32\\clr.dll",
            Signed="true",
            Signature="Microsoft Corporation",
            Description="CLR",
        ),
        export(
            8,
            SourceProcessGuid=G1,
            SourceProcessId="1988",
            SourceImage="C:\\Users\\u\\payload.exe",
            TargetProcessGuid=G2,
            TargetProcessId="1400",
            TargetImage="C:\\Windows\\System32\\svchost.exe",
            NewThreadId="7648",
            StartAddress="0x000002BAA0700000",
            StartModule="-",
            StartFunction="-",
        ),
        export(8, SourceProcessGuid=G1, SourceProcessId="1", StartModule="", StartFunction=""),
        export(5, ProcessGuid=G2, ProcessId="7448", Image="C:\\x.exe"),
        export(25, ProcessGuid=G2, ProcessId="7448", Image="C:\\x.exe", Type="Image is replaced"),
    ]
    table, rep = read_bytes(SysmonJsonSource, jsonl(*lines))
    got = rows(table)
    assert [(r["kind"], r["activity"]) for r in got] == [
        ("process", "launch"),
        ("network", "connect"),
        ("network", "accept"),
        ("module", "load"),
        ("thread", "remote_thread"),
        ("thread", "remote_thread"),
        ("process", "terminate"),
        ("process", "tamper"),
    ]
    launch, out, inb, load, thr, thr_empty, term, tamper = got
    assert launch["parent_uid"] == G1 and launch["parent_pid"] == 4544
    assert launch["parent_image"].endswith("explorer.exe")
    assert launch["process_start"] == launch["time"] and launch["user"] == "PANDALAB\\stevie"
    assert launch["cmd_line"] == "msedge.exe --x" and launch["description"] == "Microsoft Edge"
    assert out["direction"] == "outbound" and (out["local_ip"], out["local_port"]) == (
        "192.168.1.41",
        63829,
    )
    assert (out["remote_ip"], out["remote_port"]) == ("10.0.0.5", 443)
    assert "remote_host" not in out  # "-" is no host
    assert inb["direction"] == "inbound" and inb["remote_ip"] == "10.9.9.9"
    assert (inb["local_ip"], inb["local_port"]) == ("192.168.1.41", 445)
    assert inb["remote_host"] == "attacker.example"
    assert load["module_path"].endswith("clr.dll") and load["signed"] is True
    assert load["signature"] == "Microsoft Corporation" and load["description"] == "CLR"
    assert thr["start_address"] == 0x2BAA0700000 and thr["target_tid"] == 7648
    assert (thr["process_uid"], thr["pid"], thr["target_pid"]) == (G1, 1988, 1400)
    for r in (thr, thr_empty):
        assert "start_module" not in r and "start_function" not in r  # "" and "-" are null
    assert term["pid"] == 7448 and tamper["event_code"] == "sysmon:25"
    for r in got:
        assert "src_record" not in r  # the export flavour has no record number
    assert [r["src_line"] for r in got] == list(range(1, 9))
    assert rep.events == 8 and accounted(rep)


def test_other_ids_and_channels_are_ignored_not_errors() -> None:
    lines = [
        export(13, TargetObject="HKLM\\x"),
        export(22, QueryName="example.org"),
        {
            **export(4688),
            "Channel": "Security",
            "SourceName": "Microsoft-Windows-Security-Auditing",
        },
        export(10, **ACCESS),
    ]
    table, rep = read_bytes(SysmonJsonSource, jsonl(*lines))
    assert table.num_rows == 1 and rep.ignored == 3 and not rep.skipped and accounted(rep)


def test_garbage_source_image_is_nulled_join_keys_kept() -> None:
    bad = {**ACCESS, "SourceImage": "\u3100"}
    odd = {**ACCESS, "SourceImage": "<unknown process>", "TargetImage": "System"}
    a, b = rows(read_bytes(SysmonJsonSource, jsonl(export(10, **bad), export(10, **odd)))[0])
    assert "image" not in a and a["process_uid"] == G1 and a["pid"] == 920
    assert "image" not in b and b["target_image"] == "System"


def test_missing_or_zero_guid_falls_back_to_host_pid() -> None:
    zero = "{00000000-0000-0000-0000-000000000000}"
    lines = [
        export(3, ProcessGuid=zero, ProcessId="8920", Image="<unknown process>", Initiated="true"),
        export(1, ProcessId="77", Image="C:\\a.exe", ParentProcessId="4"),
    ]
    net, launch = rows(read_bytes(SysmonJsonSource, jsonl(*lines))[0])
    assert net["process_uid"] == "MKT01.pandalab.com:8920"
    assert launch["process_uid"] == f"MKT01.pandalab.com:77:{launch['time']}"
    assert launch["parent_uid"] == "MKT01.pandalab.com:4"


def test_time_falls_back_to_record_time_and_skips_without_any() -> None:
    no_utc = export(5, ProcessGuid=G1, ProcessId="1")
    del no_utc["UtcTime"]
    none = {**no_utc}
    del none["TimeCreated"], none["@timestamp"]
    bad = export(5, ProcessGuid=G1, ProcessId="1", UtcTime="yesterday")
    del bad["TimeCreated"], bad["@timestamp"]
    table, rep = read_bytes(SysmonJsonSource, jsonl(no_utc, none, bad))
    (r,) = rows(table)
    assert r["time"] == 1_692_093_226_119_000_000  # TimeCreated 2023-08-15T09:53:46.119Z
    # the report names the field that was missing or unreadable
    assert rep.skipped == {
        "no valid timestamp: no UtcTime, no record time": 1,
        "no valid timestamp: UtcTime unreadable, no record time": 1,
    }
    assert accounted(rep)
    odd = export(5, ProcessGuid=G1, ProcessId="1", TimeCreated="12/12/2021 3:18:07 AM")
    del odd["UtcTime"], odd["@timestamp"]
    _, rep = read_bytes(SysmonJsonSource, jsonl(odd))
    assert rep.skipped == {"no valid timestamp: no UtcTime, record time unreadable": 1}


def test_bad_lines_are_counted_with_reasons() -> None:
    good = jsonl(export(10, **ACCESS))
    data = (
        good
        + b'{"EventID": 10, "Channel": "trunc\n'
        + b"[1, 2, 3]\n"
        + b"\n   \n"
        + b'"just a string"\n'
        + b"\xff\xfe\x00garbage\n"
        + b'{"EventID": "ten", "Channel": "'
        + CH.encode()
        + b'"}\n'
        + b'{"hello": "world"}\n'
        + good
    )
    table, rep = read_bytes(SysmonJsonSource, data)
    assert table.num_rows == 2
    assert rep.skipped == {
        "malformed JSON": 1,
        "not a JSON object": 3,
        "invalid EventID": 1,
        "not a Windows event record": 1,
    }
    assert rep.records == 8 and accounted(rep)
    assert rows(table)[1]["src_line"] == 10  # blank lines still count as lines


def test_invalid_utf8_inside_an_object_line_is_counted() -> None:
    data = jsonl(export(10, **ACCESS)) + b'{"EventID": 10, "Image": "\xc3\x28"}\n'
    table, rep = read_bytes(SysmonJsonSource, data)
    assert table.num_rows == 1 and rep.skipped == {"invalid UTF-8": 1} and accounted(rep)


def test_strict_raises_on_first_bad_line() -> None:
    from unbacked.errors import InputError

    with pytest.raises(InputError):
        read_bytes(SysmonJsonSource, jsonl(export(10, **ACCESS)) + b"{oops\n", strict=True)


def winlogbeat(eid: int | str, data: dict[str, Any], *, dotted: bool = False) -> dict[str, Any]:
    w = {
        "channel": CH,
        "provider_name": "Microsoft-Windows-Sysmon",
        "event_id": eid,
        "computer_name": "DC01.example.local",
        "record_id": 4242,
        "event_data": data,
    }
    doc: dict[str, Any] = {"@timestamp": "2021-01-01T00:00:00.000Z", "winlog": w}
    if dotted:
        flat = {"@timestamp": doc["@timestamp"]}
        for k, v in w.items():
            if k == "event_data":
                flat.update({f"winlog.event_data.{dk}": dv for dk, dv in data.items()})
            else:
                flat[f"winlog.{k}"] = v
        return flat
    return doc


@pytest.mark.parametrize("dotted", [False, True])
def test_winlogbeat_nested_and_dotted(dotted: bool) -> None:
    data = {**ACCESS, "UtcTime": "2021-01-01 00:00:01.250"}
    doc = winlogbeat("10" if dotted else 10, data, dotted=dotted)
    other = winlogbeat(4624, {}, dotted=dotted)
    other["winlog.channel" if dotted else "winlog"] = (
        "Security" if dotted else {**doc["winlog"], "channel": "Security", "provider_name": "X"}
    )
    blob = jsonl(doc, other)
    assert choose_source(InputFile.from_bytes("w.json", blob), blob) is WinlogbeatSource
    table, rep = read_bytes(WinlogbeatSource, blob)
    (r,) = rows(table)
    assert r["time"] == 1_609_459_201_250_000_000
    assert (r["process_uid"], r["pid"], r["tid"], r["target_pid"]) == (G1, 920, 6392, 1296)
    assert r["host"] == "DC01.example.local" and r["src_record"] == 4242
    assert r["src_format"] == "sysmon-winlogbeat"
    assert rep.ignored == 1 and accounted(rep)


def test_sniff_tells_flavours_apart() -> None:
    nxb, exb, wlb = jsonl(nx(10, 1, **ACCESS)), jsonl(export(10)), jsonl(winlogbeat(10, {}))
    assert SysmonJsonSource.sniff(nxb, "a") and SysmonJsonSource.sniff(exb, "a")
    assert not SysmonJsonSource.sniff(wlb, "a") and WinlogbeatSource.sniff(wlb, "a")
    assert not WinlogbeatSource.sniff(nxb, "a")
    assert not SysmonJsonSource.sniff(b"key: value\n", "a.yaml")


def test_zip_member_read_in_place_and_macosx_skipped(tmp_path: Path) -> None:
    z = tmp_path / "set.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("data/set.json", jsonl(export(10, **ACCESS), export(13)))
        zf.writestr("__MACOSX/data/._set.json", b"\x00\x05\x16\x07junk")
    report = RunReport()
    table = read_events([z], report)
    name = f"{z}!data/set.json"
    assert table.column("src_file").to_pylist() == [name]
    assert set(report.files) == {name} and report.files[name].ignored == 1
    assert [p for p in tmp_path.iterdir()] == [z]  # nothing was extracted


# -- golden: the real OTRF files --------------------------------------------------------------
OTRF = "windows/OTRF_Security-Datasets/datasets"


def _otrf_labels(shared: Path) -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for lab in sorted((shared / "labels" / OTRF).rglob("*.json")):
        label = json.loads(lab.read_text())
        out.append((shared / label["file"].replace(".json", ".zip"), label))
    return out


@pytest.mark.shared_data
@pytest.mark.slow
def test_otrf_golden_counts_and_evidence(shared_data: Path) -> None:
    labels = _otrf_labels(shared_data)
    assert len(labels) >= 6
    for zpath, label in labels:
        report = RunReport()
        table = read_events([zpath], report)
        (rep,) = [f for f in report.files.values() if f.error is None]
        assert rep.format == "sysmon-jsonl"
        assert rep.records == label["events"], zpath.name
        assert sum(rep.skipped.values()) == label["parse_errors"] == 0
        assert accounted(rep)
        by_line = {r["src_line"]: r for r in rows(table)}
        hosts = set(table.column("host").to_pylist())
        assert hosts <= set(label["hosts"]), zpath.name
        nxlog = label["format"].endswith("nxlog")
        checked = 0
        for inst in label["malicious"] + label.get("possible", []):
            for ev in inst["evidence"]:
                if ev.get("event_id") not in (1, 3, 5, 7, 8, 10, 25) or not ev.get("file_line"):
                    continue
                if "Sysmon" not in (ev.get("channel") or ""):
                    continue
                r = by_line[ev["file_line"]]
                assert r["event_code"] == f"sysmon:{ev['event_id']}"
                assert r.get("src_record") == (ev["record_id"] if nxlog else None)
                f = ev.get("fields", {})
                for key, col in (
                    ("SourceProcessId", "pid"),
                    ("ProcessId", "pid"),
                    ("TargetProcessId", "target_pid"),
                ):
                    if key in f and str(f[key]).isdigit():
                        assert r[col] == int(f[key]), (zpath.name, ev)
                if inst.get("process_guid") and ev["event_id"] in (1, 5, 7, 3):
                    assert r["process_uid"] == inst["process_guid"]
                checked += 1
        assert checked > 0 or label["malicious_count"] == 0, zpath.name


def test_malformed_line_late_in_a_big_input_counts_once_and_yields_once() -> None:
    good = jsonl(export(10, **ACCESS))
    data = good * 70_000 + b'{"EventID": 10, "Chan\n' + good * 10
    table, rep = read_bytes(SysmonJsonSource, data)
    lines = table.column("src_line").to_pylist()
    assert len(lines) == len(set(lines)) == 70_010  # nothing yielded twice
    assert rep.events == 70_010 and rep.skipped == {"malformed JSON": 1}
    assert rep.records == 70_011 and accounted(rep)


SHA = "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08"


def test_image_hash_and_signature_of_the_process_image() -> None:
    """Event 1's Hashes are the image's; event 7's only when the loaded image is the process's
    own executable (then its signature is the image's too). Garbage digests are dropped."""
    img = "C:\\Windows\\System32\\svchost.exe"
    launch = export(
        1, ProcessGuid=G1, ProcessId="920", Image=img, Hashes=f"MD5=0123,SHA256={SHA},IMPHASH=AB"
    )
    md5_only = export(1, ProcessGuid=G2, ProcessId="921", Image=img, Hashes="MD5=" + "ab" * 16)
    garbage = export(1, ProcessGuid=G2, ProcessId="922", Image=img, Hashes="SHA256=\u3100xyz")
    own = export(
        7,
        ProcessGuid=G1,
        ProcessId="920",
        Image=img,
        ImageLoaded=img.upper(),
        Hashes=f"SHA256={SHA}",
        Signed="true",
        Signature="Microsoft Windows",
        SignatureStatus="Valid",
    )
    dll = export(
        7,
        ProcessGuid=G1,
        ProcessId="920",
        Image=img,
        ImageLoaded="C:\\Users\\x\\evil.dll",
        Hashes=f"SHA256={'0' * 64}",
        Signed="false",
    )
    unsigned = {**own, "Signed": "false", "Signature": "-", "SignatureStatus": "Unavailable"}
    a, b, c, d, e, f = rows(
        read_bytes(SysmonJsonSource, jsonl(launch, md5_only, garbage, own, dll, unsigned))[0]
    )
    assert a["image_hash"] == "sha256:" + SHA.lower() and "image_signature" not in a
    assert b["image_hash"] == "md5:" + "ab" * 16
    assert "image_hash" not in c
    assert d["image_hash"] == a["image_hash"]
    assert d["image_signature"] == "Microsoft Windows (Valid)"
    assert "image_hash" not in e and "image_signature" not in e  # the module's, not the image's
    assert f["image_signature"] == "unsigned"


def _plain(table: pa.Table) -> list[dict[str, Any]]:
    """Rows by value (a dictionary column's dictionary is not part of what a table says)."""
    plain = [
        pa.field(f.name, f.type.value_type if pa.types.is_dictionary(f.type) else f.type)
        for f in table.schema
    ]
    return table.cast(pa.schema(plain)).to_pylist()


def test_a_block_of_many_files_is_counted_per_file_as_each_alone() -> None:
    """``run_files`` (one query and one conform for a block of small files) gives each file the
    counters, skip details and events that mapping that file alone gives (``_account``)."""
    from unbacked.sources._engine import BlockResult, _account, pooled_connection
    from unbacked.sources.sysmon_json import OTRF_QUERY

    no_time = export(5, ProcessGuid=G1, ProcessId="1")
    del no_time["UtcTime"], no_time["TimeCreated"], no_time["@timestamp"]
    files = {
        "a.json": [export(10, **ACCESS), export(3, ProcessGuid=G2, ProcessId="7"),
                   {"hello": "world"}, export(10, **ACCESS)],
        "b.json": [no_time, {"EventID": "ten", "Channel": CH}, no_time],
        "c.json": [{"hello": "world"}],
        "d.json": [export(10, **ACCESS)],
    }  # fmt: skip
    lines, ln, fi = [], [], []
    for k, records in enumerate(files.values()):
        for i, rec in enumerate(records, start=1):
            lines.append(json.dumps(rec))
            ln.append(i + k)  # line numbers of their own in each file
            fi.append(k)
    lines.append('{"EventID": 10, "Channel": "trunc')  # malformed: the block is read guarded
    ln.append(9)
    fi.append(2)
    names = list(files)
    with pooled_connection() as con:
        got = OTRF_QUERY.run_files(
            con, pa.array(lines), np.array(ln), np.array(fi), names, src_format="sysmon-json"
        )
        for k, name in enumerate(names):
            mine = [i for i, f in enumerate(fi) if f == k]
            ref = BlockResult(table=None)
            out = OTRF_QUERY.query(
                con, pa.array([lines[i] for i in mine]), np.array([ln[i] for i in mine]), ref
            )
            if out is not None:
                ref = _account(out, ref, src_format="sysmon-json", src_file=name)
            (got_name, res) = got[k]
            assert got_name == name
            assert (res.events, res.ignored, res.skipped) == (ref.events, ref.ignored, ref.skipped)
            if ref.table is None:
                assert res.table is None
            else:
                assert res.table is not None and res.table.schema == ref.table.schema
                assert _plain(res.table) == _plain(ref.table)
    assert sum(r.events for _, r in got) == 4
    assert got[1][1].skipped and got[2][1].skipped  # the cases are not all empty
