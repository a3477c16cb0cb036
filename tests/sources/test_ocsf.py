"""OCSF JSON lines: the four classes unbacked reads, actor vs target, tolerance."""

from __future__ import annotations

from typing import Any

from unbacked.sources.ocsf import OcsfJsonSource

from .util import accounted, jsonl, read_bytes, rows

T = 1_700_000_000_123  # ms


def ev(cls: int, act: int, **kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "class_uid": cls,
        "activity_id": act,
        "category_uid": cls // 1000,
        "type_uid": cls * 100 + act,
        "time": T,
        "device": {"hostname": "ws1", "os": {"type": "Windows", "name": "Windows 11"}},
        "metadata": {"version": "1.1.0", "product": {"name": "x"}, "sequence": 7},
        "unmapped": {"anything": [1, {"deep": True}]},
    }
    base.update(kw)
    return base


INJECTOR = {"pid": 100, "uid": "U100", "file": {"path": "C:\\evil.exe"}, "cmd_line": "evil"}
VICTIM = {"pid": 200, "name": "notepad.exe", "created_time": 1_699_999_000_000}


def test_launch_uses_process_and_parent() -> None:
    line = ev(
        1007,
        1,
        process={
            "pid": 300,
            "uid": "U300",
            "name": "cmd.exe",
            "file": {"path": "C:\\Windows\\cmd.exe"},
            "cmd_line": "cmd /c x",
            "user": {"name": "alice"},
            "created_time": T,
            "parent_process": {"pid": 100, "uid": "U100", "file": {"path": "C:\\p.exe"}},
        },
    )
    (r,) = rows(read_bytes(OcsfJsonSource, jsonl(line))[0])
    assert (r["kind"], r["activity"], r["event_code"]) == ("process", "launch", "ocsf:1007:1")
    assert r["time"] == T * 1_000_000 and r["process_start"] == T * 1_000_000
    assert (r["process_uid"], r["pid"], r["image"]) == ("U300", 300, "C:\\Windows\\cmd.exe")
    assert (r["cmd_line"], r["user"]) == ("cmd /c x", "alice")
    assert (r["parent_uid"], r["parent_pid"], r["parent_image"]) == ("U100", 100, "C:\\p.exe")
    assert r["host"] == "ws1" and r["os"] == "windows" and r["src_record"] == 7
    assert r["src_format"] == "ocsf-jsonl" and r["src_line"] == 1


def test_cross_process_acts_put_actor_first_and_target_second() -> None:
    lines = [
        ev(1007, 3, actor={"process": INJECTOR}, process=VICTIM, actual_permissions=0x1F0FFF),
        ev(1007, 4, actor={"process": INJECTOR}, process={**VICTIM, "tid": 55}),
        ev(
            1004,
            1,
            actor={"process": INJECTOR},
            process=VICTIM,
            base_address="0x1f0000",
            size=4096,
            requested_permissions=0x40,
        ),
        ev(
            1005,
            1,
            actor={"process": VICTIM},
            module={
                "file": {
                    "path": "C:\\x.dll",
                    "signature": {"state_id": 1, "certificate": {"subject": "CN=Acme"}},
                },
                "base_address": "0x7ff000",
            },
        ),
    ]
    got = rows(read_bytes(OcsfJsonSource, jsonl(*lines))[0])
    op, inj, mem, mod = got
    for r in (op, inj, mem):
        assert (r["process_uid"], r["pid"], r["image"]) == ("U100", 100, "C:\\evil.exe")
        assert r["target_pid"] == 200 and r["target_image"] == "notepad.exe"
        # no uid in OCSF: host:pid:start (created_time ms -> ns)
        assert r["target_uid"] == f"ws1:200:{1_699_999_000_000 * 1_000_000}"
    assert op["granted_access"] == 0x1F0FFF and op["activity"] == "open"
    assert (inj["kind"], inj["activity"], inj["target_tid"]) == ("thread", "remote_thread", 55)
    assert (mem["kind"], mem["activity"]) == ("memory", "allocate")
    assert (mem["base_address"], mem["region_size"], mem["protection"]) == (0x1F0000, 4096, 0x40)
    assert (mod["kind"], mod["activity"], mod["pid"]) == ("module", "load", 200)
    assert (mod["module_path"], mod["module_base"]) == ("C:\\x.dll", 0x7FF000)
    assert mod["signed"] is True and mod["signature"] == "CN=Acme"
    assert "target_pid" not in mod


def test_network_direction_picks_local_and_remote() -> None:
    conn = {"protocol_name": "TCP", "direction_id": 2}
    lines = [
        ev(
            4001,
            1,
            actor={"process": INJECTOR},
            connection_info=conn,
            src_endpoint={"ip": "10.0.0.1", "port": 50000},
            dst_endpoint={"ip": "1.2.3.4", "port": 443, "hostname": "c2.example"},
        ),
        ev(
            4001,
            6,
            actor={"process": INJECTOR},
            connection_info={**conn, "direction_id": 1},
            src_endpoint={"ip": "9.9.9.9", "port": 4444},
            dst_endpoint={"ip": "10.0.0.1", "port": 445},
        ),
        ev(4001, 2, actor={"process": INJECTOR}),  # Close: not used
    ]
    table, rep = read_bytes(OcsfJsonSource, jsonl(*lines))
    out, inb = rows(table)
    assert (out["activity"], out["direction"], out["protocol"]) == ("connect", "outbound", "tcp")
    assert (out["local_ip"], out["local_port"]) == ("10.0.0.1", 50000)
    assert (out["remote_ip"], out["remote_port"], out["remote_host"]) == (
        "1.2.3.4",
        443,
        "c2.example",
    )
    assert (inb["activity"], inb["direction"]) == ("accept", "inbound")
    assert (inb["remote_ip"], inb["local_port"]) == ("9.9.9.9", 445)
    assert rep.ignored == 1 and accounted(rep)


def test_unknown_classes_ignored_wrong_types_nulled_bad_time_skipped() -> None:
    lines = [
        ev(2004, 1),  # a Detection Finding: not an event unbacked reads
        ev(3002, 1),
        ev(1007, 3, actor={"process": {"pid": "not a number", "uid": 5}}, process=[1, 2]),
        ev(1007, 2, time="never", process=VICTIM),
        ev(1007, 2, time=None, time_dt="2024-01-01T00:00:00.5+01:00", process=VICTIM),
        {"no": "class"},
    ]
    table, rep = read_bytes(OcsfJsonSource, jsonl(*lines))
    weird, term = rows(table)
    assert weird["process_uid"] == "5" and "pid" not in weird and "target_pid" not in weird
    assert term["time"] == 1_704_063_600_500_000_000  # 2023-12-31T23:00:00.5Z
    assert rep.ignored == 2
    assert rep.skipped == {"no valid timestamp": 1, "not an OCSF event": 1}
    assert accounted(rep)


def test_sniff() -> None:
    assert OcsfJsonSource.sniff(jsonl(ev(1007, 1)), "x")
    assert not OcsfJsonSource.sniff(jsonl({"class_uid": "1007", "activity_id": 1}), "x")
    assert not OcsfJsonSource.sniff(jsonl({"EventID": 1, "Channel": "x"}), "x")
