"""Decoding raw sensor records into EVENT_SCHEMA rows (no root needed: synthetic records)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.events import exact_rows
from unbacked.model.schema import EVENT_SCHEMA
from unbacked.sensor.decode import EventDecoder, empty_records, render_path
from unbacked.sensor.layout import COMP_LEN, EVENT_DTYPE, PATH_COMPS, EvType, Header, VmaKind

PAGE = 4096


def _path(rec: np.void, field: str, path: str) -> None:
    parts = [p.encode() for p in path.strip("/").split("/")][::-1]
    comps = np.zeros(PATH_COMPS, dtype=f"S{COMP_LEN}")
    comps[: len(parts)] = parts[:PATH_COMPS]
    rec[field] = comps
    rec[f"{field}_depth" if field == "exe" else "path_depth"] = min(len(parts), PATH_COMPS)


def _base(n: int) -> np.ndarray:
    recs = empty_records(n)
    for i in range(n):
        recs[i]["ts"] = 1_000_000_000 + i
        recs[i]["seq"] = i
        recs[i]["pid"] = 4242
        recs[i]["tid"] = 4243
        recs[i]["ppid"] = 1
        recs[i]["proc_start"] = 500
        recs[i]["comm"] = b"loader"
        _path(recs[i], "exe", "/opt/demo/loader")
    return recs


def _decoder() -> EventDecoder:
    return EventDecoder(host="h1", clock_offset_ns=10**18, src_file="cap.parquet", read_proc=False)


def test_mprotect_rx_of_anonymous_memory_from_unbacked_caller() -> None:
    recs = _base(1)
    r = recs[0]
    r["type"] = EvType.MPROTECT
    r["addr"], r["len"], r["prot"], r["old_prot"] = 0x7F0000001000, PAGE, 5, 3
    r["vma_kind"], r["vma_start"], r["vma_end"], r["vma_flags"] = (
        VmaKind.ANON,
        0x7F0000001000,
        0x7F0000002000,
        0x75,
    )
    r["alloc_start"] = 0x7F0000000000
    r["header_kind"], r["header_delta"] = Header.ELF, PAGE
    r["sc_kind"], r["caller_kind"] = VmaKind.ANON, VmaKind.ANON
    t = _decoder().to_table(recs)
    assert t.schema.equals(EVENT_SCHEMA, check_metadata=True)
    row = exact_rows(t)[0]
    assert (row["kind"], row["activity"], row["event_code"]) == (
        "memory",
        "protect",
        "linux:mprotect",
    )
    assert row["os"] == "linux" and row["host"] == "h1"
    assert t.column("time").cast(pa.int64())[0].as_py() == 10**18 + 1_000_000_000
    assert row["process_uid"] == f"h1:4242:{10**18 + 500}"
    assert row["image"] == "/opt/demo/loader"
    assert row["base_address"] == 0x7F0000001000 and row["region_size"] == PAGE
    assert row["protection"] == 5 and row["old_protection"] == 3
    assert row["region_type"] == "anonymous" and row["backing_path"] is None
    assert row["alloc_base"] == 0x7F0000000000 and row["reservation_size"] == PAGE
    assert row["header_kind"] == "elf" and row["vm_flags"] == 0x75
    assert row["caller_unbacked"] is True and row["caller_module"] is None
    assert row["syscall_outside_libc"] is True and row["syscall_module"] is None
    assert row["call_stack_summary"] == "unbacked|unbacked"
    assert row["alloc_type"] is None and row["fd"] is None
    assert row["src_format"] == "unbacked-sensor" and row["src_record"] == 0
    assert row["src_file"] == "cap.parquet"


def test_caller_module_offset_and_libc() -> None:
    recs = _base(2)
    for r in recs:
        r["type"] = EvType.MMAP
        r["addr"], r["len"], r["prot"], r["flags"], r["fd"] = 0x10000, PAGE, 7, 0x22, -1
        r["vma_kind"] = VmaKind.ANON
        r["sc_kind"], r["sc_name"] = VmaKind.FILE, b"libc.so.6"
        r["caller_kind"], r["caller_name"] = VmaKind.FILE, b"libffi.so.8"
        r["caller_ip"], r["caller_vma_start"], r["caller_pgoff"] = 0x5005, 0x5000, 2
    recs[1]["sc_name"] = b"node"
    rows = exact_rows(_decoder().to_table(recs))
    assert rows[0]["activity"] == "allocate" and rows[0]["alloc_type"] == 0x22
    assert rows[0]["caller_module"] == "libffi.so.8"
    assert rows[0]["caller_offset"] == 5 + 2 * PAGE
    assert rows[0]["caller_unbacked"] is False
    assert rows[0]["syscall_outside_libc"] is False
    assert rows[1]["syscall_module"] == "node" and rows[1]["syscall_outside_libc"] is True
    assert rows[0]["call_stack_summary"] == "libc.so.6|libffi.so.8"
    assert rows[0]["fd"] is None  # anonymous mmap: fd -1 is not a descriptor


def test_file_mapping_is_map_view_with_backing_path() -> None:
    recs = _base(1)
    r = recs[0]
    r["type"], r["prot"], r["fd"], r["addr"], r["len"] = EvType.MMAP, 5, 3, 0x20000, 8 * PAGE
    r["vma_kind"] = VmaKind.FILE
    _path(r, "path", "/usr/lib/x86_64-linux-gnu/libc.so.6")
    row = exact_rows(_decoder().to_table(recs))[0]
    assert row["activity"] == "map_view"
    assert row["backing_path"] == "/usr/lib/x86_64-linux-gnu/libc.so.6"
    assert row["region_type"] == "file" and row["fd"] == 3


def test_failed_memory_syscalls_are_left_out() -> None:
    recs = _base(2)
    recs["type"] = EvType.MPROTECT
    recs["prot"] = 7
    recs[1]["ret"] = -13  # EACCES
    t = _decoder().to_table(recs)
    assert t.num_rows == 1 and t["src_record"].to_pylist() == [0]


def test_memfd_exec_connect_and_lifecycle() -> None:
    recs = _base(5)
    recs[0]["type"], recs[0]["fd"], recs[0]["str"] = EvType.MEMFD_CREATE, 3, b"stage2"
    recs[1]["type"], recs[1]["fd"], recs[1]["len"] = EvType.EXEC, 3, 1
    argv = b"stage2\0--x\0"
    recs[1]["str"], recs[1]["addr"] = argv, len(argv)
    _path(recs[1], "path", "/memfd:stage2")
    _path(recs[1], "exe", "/memfd:stage2")
    recs[2]["type"], recs[2]["fd"], recs[2]["family"] = EvType.CONNECT, 5, 2
    recs[2]["remote_port"], recs[2]["ret"] = 8443, -115  # EINPROGRESS: still an attempt
    recs[2]["remote_addr"][:4] = [10, 1, 2, 3]
    _path(recs[2], "exe", "/memfd:stage2")
    recs[3]["type"] = EvType.FORK
    recs[4]["type"] = EvType.EXIT
    rows = exact_rows(_decoder().to_table(recs))
    assert [(r["kind"], r["activity"]) for r in rows] == [
        ("memory", "memfd"),
        ("process", "exec"),
        ("network", "connect"),
        ("process", "launch"),
        ("process", "terminate"),
    ]
    assert rows[0]["backing_path"] == "/memfd:stage2" and rows[0]["fd"] == 3
    assert rows[1]["event_code"] == "linux:execveat" and rows[1]["fd"] == 3
    assert rows[1]["image"] == "/memfd:stage2" and rows[1]["cmd_line"] == "stage2 --x"
    assert rows[2]["cmd_line"] == "stage2 --x"  # learned from the exec record
    assert (rows[2]["remote_ip"], rows[2]["remote_port"]) == ("10.1.2.3", 8443)
    assert rows[2]["direction"] == "outbound"
    assert rows[3]["parent_pid"] == 1 and rows[3]["base_address"] is None


def test_render_path() -> None:
    comps = np.array([b"libc.so.6", b"lib", b"usr"] + [b""] * 5, dtype=f"S{COMP_LEN}")
    assert render_path(comps, 3, 0) == "/usr/lib/libc.so.6"
    assert render_path(comps, 2, 1) == "/…/lib/libc.so.6"
    assert render_path(comps, 0, 0) is None


def test_empty_and_wrong_dtype() -> None:
    assert _decoder().to_table(empty_records(0)).num_rows == 0
    with pytest.raises(TypeError):
        _decoder().to_table(np.zeros(3, dtype=np.int64))


def test_bulk_decode_is_columnar() -> None:
    """100k records of a few distinct processes decode in one pass into one table."""
    recs = np.repeat(_base(1), 100_000)
    recs["type"] = EvType.MPROTECT
    recs["prot"] = 5
    recs["seq"] = np.arange(100_000)
    recs["pid"] = 100 + (np.arange(100_000) % 7)
    t = _decoder().to_table(recs)
    assert t.num_rows == 100_000
    assert len(t["process_uid"].unique()) == 7
    assert isinstance(t["kind"].type, pa.DictionaryType)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.large_base_example])
@given(
    st.binary(min_size=EVENT_DTYPE.itemsize * 3, max_size=EVENT_DTYPE.itemsize * 3),
    st.lists(st.sampled_from(list(EvType)), min_size=3, max_size=3),
)
def test_corrupt_records_decode_without_error(raw: bytes, types: list[EvType]) -> None:
    """A damaged spool segment (random bytes, valid or invalid event types) never breaks the
    decoder: it yields a conforming table, rows of unknown types dropped."""
    recs = np.frombuffer(raw, dtype=EVENT_DTYPE).copy()
    recs["type"][:2] = [int(t) for t in types[:2]]  # two plausible records, one random
    t = _decoder().to_table(recs)
    assert t.schema.equals(EVENT_SCHEMA, check_metadata=True)
    assert t.num_rows <= 3


def test_frames_of_different_files_at_the_same_offsets_stay_apart() -> None:
    """Two non-PIE binaries: same addresses and offsets, other files; and a vDSO frame on its
    second page is an offset from the vDSO's start."""
    recs = _base(3)
    for i, name in enumerate((b"prog-a", b"prog-b")):
        r = recs[i]
        r["type"], r["prot"], r["addr"], r["len"] = EvType.MMAP, 7, 0x7F0000000000, PAGE
        r["frame_ip"][0], r["frame_off"][0] = 0x401234, 0x1234
        r["frame_kind"][0], r["frame_name"][0] = VmaKind.FILE, name
    r = recs[2]
    r["type"], r["prot"], r["addr"], r["len"] = EvType.MMAP, 7, 0x7F0000000000, PAGE
    r["frame_ip"][0], r["frame_off"][0], r["frame_kind"][0] = 0x7FFF_F000_1A2C, 0x1A2C, VmaKind.VDSO
    traces = _decoder().to_table(recs)["call_trace"].to_pylist()
    assert traces == ["prog-a+0x1234", "prog-b+0x1234", "[vdso]+0x1a2c"]


def test_cross_process_write_rows_carry_the_targets_instruction_pointer() -> None:
    recs = _base(2)
    for r in recs:
        r["type"], r["flags"] = EvType.PTRACE, 4  # POKETEXT
        r["addr"], r["len"] = 0x555555555000, 8
        r["target_pid"] = r["target_tid"] = 77
        r["target_start"], r["target_ip"] = 900, 0x555555555000
        r["vma_kind"], r["vma_flags"] = VmaKind.FILE, 0x75
    recs[1]["flags"], recs[1]["addr"] = 6, 0x555555555010  # POKEUSER at regs.rip
    rows = exact_rows(_decoder().to_table(recs))
    assert [r["event_code"] for r in rows] == ["linux:ptrace_poketext", "linux:ptrace_pokeuser"]
    assert rows[0]["activity"] == "write" and rows[0]["start_address"] == 0x555555555000
    assert rows[1]["activity"] == "set_context" and rows[1]["start_address"] == 0x555555555010


def test_unreadable_file_identity_is_not_retried_for_the_same_process(monkeypatch) -> None:
    from unbacked.sensor import fileid

    calls: list[str] = []

    def stat(path: str):
        calls.append(path)
        raise OSError("gone")

    monkeypatch.setattr(fileid.os, "stat", stat)
    ids = fileid.FileIdentities()
    for _ in range(3):
        assert ids.get("/opt/x", 1, 2, 10).sha256 is None
    assert calls == ["/proc/10/exe", "/opt/x"]  # tried once for process 10
    for pid in range(11, 20):
        ids.get("/opt/x", 1, 2, pid)
    assert len(calls) == 2 * fileid.FileIdentities.RETRIES  # a few other processes, then no more
