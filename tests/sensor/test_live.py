"""The live sensor, run for real around each positive control (root + eBPF; skipped otherwise).

Each test records a control with ``unbacked record``'s pipeline and asserts that the events
show the act as it happened: the right syscall, protection, region, header, caller and syscall
location — the facts the Linux detection rules key on.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from tests.sensor.conftest import RecordFn, rows
from tests.support.controls import parse_ready, run_control

pytestmark = pytest.mark.live

PROT_R, PROT_W, PROT_X = 1, 2, 4


def _exec_protects(table, pid):  # type: ignore[no-untyped-def]
    return [r for r in rows(table, pid=pid, activity="protect") if r["protection"] & PROT_X]


def test_loader_wx_protect_rx_anonymous_with_elf_header(record_control: RecordFn) -> None:
    table, info, summary = record_control("loader", "wx")
    rx = info["regions"][0]
    hits = [r for r in _exec_protects(table, info["pid"]) if r["base_address"] == rx["base"]]
    assert len(hits) == 1, _exec_protects(table, info["pid"])
    r = hits[0]
    assert r["protection"] == PROT_R | PROT_X
    assert r["old_protection"] == PROT_R | PROT_W
    assert r["region_size"] == rx["size"]
    assert r["region_type"] == "anonymous"
    assert r["backing_path"] is None
    assert r["header_kind"] == "elf"
    assert r["alloc_base"] == info["base"]  # the run of anonymous VMAs starts at the image
    assert r["caller_module"] == "loader"
    assert r["caller_unbacked"] is False
    assert r["syscall_module"] == "libc.so.6"
    assert r["syscall_outside_libc"] is False
    assert r["image"].endswith("/loader")
    assert r["cmd_line"].endswith("loader wx")
    assert r["os"] == "linux" and r["src_format"] == "unbacked-sensor"
    assert summary["sensor"]["lost"] == 0


def test_loader_rwx_allocation(record_control: RecordFn) -> None:
    table, info, _ = record_control("loader", "rwx")
    region = info["regions"][0]
    allocs = [
        r
        for r in rows(table, pid=info["pid"], activity="allocate")
        if r["base_address"] == region["base"]
    ]
    assert len(allocs) == 1
    r = allocs[0]
    assert r["protection"] == PROT_R | PROT_W | PROT_X
    assert r["region_size"] == region["size"]
    assert r["region_type"] == "anonymous"
    assert r["alloc_type"] & 0x20  # MAP_ANONYMOUS
    assert r["caller_module"] == "loader"
    assert r["event_code"] == "linux:mmap"


def test_loader_raw_syscall_is_unbacked_and_outside_libc(record_control: RecordFn) -> None:
    table, info, _ = record_control("loader", "syscall")
    stub, payload = info["regions"]
    protects = _exec_protects(table, info["pid"])
    by_base = {r["base_address"]: r for r in protects}
    # the stub page itself: made by libc's mprotect, called from the loader (backed)
    assert by_base[stub["base"]]["syscall_outside_libc"] is False
    assert by_base[stub["base"]]["header_kind"] in ("none", None)
    # the payload: mprotect issued by the stub, from unbacked memory
    r = by_base[payload["base"]]
    assert r["header_kind"] == "elf"
    assert r["caller_unbacked"] is True
    assert r["caller_module"] is None
    assert r["syscall_outside_libc"] is True
    assert r["syscall_module"] is None
    assert r["call_stack_summary"] == "unbacked|unbacked"


def test_loader_jit_like_chunk(record_control: RecordFn) -> None:
    table, info, _ = record_control("loader", "jit")
    region = info["regions"][0]
    hits = [r for r in _exec_protects(table, info["pid"]) if r["base_address"] == region["base"]]
    assert len(hits) == 1
    r = hits[0]
    assert r["region_size"] == 64 * 1024
    assert r["base_address"] % (64 * 1024) == 0
    assert r["header_kind"] == "elf"  # JIT-shaped, but the image header gives it away
    assert r["region_type"] == "anonymous"


def test_ctypes_loader_caller_is_libffi(record_control: RecordFn) -> None:
    table, info, _ = record_control("loader_py", "wx")
    rx = info["regions"][0]
    hits = [r for r in _exec_protects(table, info["pid"]) if r["base_address"] == rx["base"]]
    assert len(hits) == 1
    r = hits[0]
    assert r["header_kind"] == "elf"
    assert r["region_type"] == "anonymous"
    assert r["caller_module"] is not None and r["caller_module"].startswith("libffi")
    assert r["image"].split("/")[-1].startswith("python")


def test_ctypes_shellcode_page(record_control: RecordFn) -> None:
    table, info, _ = record_control("shellcode_py", "wx")
    page = info["regions"][0]
    hits = [r for r in _exec_protects(table, info["pid"]) if r["base_address"] == page["base"]]
    assert len(hits) == 1
    r = hits[0]
    assert r["region_size"] == 4096
    assert r["old_protection"] == PROT_R | PROT_W
    assert r["header_kind"] == "none"  # a bare stub: no image header
    assert r["caller_module"].startswith("libffi")


def test_memfd_create_then_execveat(record_control: RecordFn) -> None:
    table, info, _ = record_control("memfd_exec")
    pid = info["pid"]
    memfd = rows(table, pid=pid, activity="memfd")
    execs = rows(table, pid=pid, activity="exec")
    assert len(memfd) == 1
    assert memfd[0]["backing_path"] == "/memfd:unbacked-control"
    assert memfd[0]["event_code"] == "linux:memfd_create"
    fexec = [e for e in execs if e["event_code"] == "linux:execveat"]
    assert len(fexec) == 1
    e = fexec[0]
    assert e["time"] > memfd[0]["time"]
    assert e["fd"] == memfd[0]["fd"]
    assert e["image"] == "/memfd:unbacked-control"
    assert e["backing_path"] == "/memfd:unbacked-control"
    assert e["cmd_line"] == "unbacked-control memfd-exec"


def test_memfd_dlopen_maps_memfd_executable(record_control: RecordFn) -> None:
    table, info, _ = record_control("memfd_dlopen")
    maps = [
        r
        for r in rows(table, pid=info["pid"], activity="map_view")
        if (r["backing_path"] or "").startswith("/memfd:unbacked-payload")
    ]
    assert maps, rows(table, pid=info["pid"], activity="map_view")
    assert any(r["protection"] & PROT_X for r in maps)
    assert all(r["region_type"] == "file" for r in maps)
    assert rows(table, pid=info["pid"], activity="memfd")


def test_connect_after_load(record_control: RecordFn) -> None:
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        port = srv.getsockname()[1]
        table, info, _ = record_control("loader", "wx", "--connect", str(port))
    conns = rows(table, pid=info["pid"], activity="connect")
    assert len(conns) == 1
    c = conns[0]
    assert (c["remote_ip"], c["remote_port"]) == ("127.0.0.1", port)
    assert c["direction"] == "outbound"
    load = [r for r in _exec_protects(table, info["pid"]) if r["header_kind"] == "elf"]
    assert load and load[0]["time"] < c["time"]


def test_descendants_are_followed(live: None, controls: dict[str, Path], tmp_path: Path) -> None:
    """`record` follows a shell into its child: launch (fork), exec, the load, exit."""
    import subprocess

    import pyarrow.parquet as pq

    from unbacked.sensor.record import record_command

    out, stdout = tmp_path / "tree.parquet", tmp_path / "tree.out"
    script = f"{controls['loader']} wx </dev/null; true"
    with open(stdout, "w") as fh:
        result = record_command(["/bin/sh", "-c", script], out, stdin=subprocess.DEVNULL, stdout=fh)
    assert result.exit_code == 0
    info = parse_ready(stdout.read_text().strip().splitlines()[-1])
    table = pq.read_table(out)
    pid = info["pid"]
    launch = rows(table, pid=pid, activity="launch")
    assert len(launch) == 1
    shell = launch[0]["parent_pid"]
    assert rows(table, pid=shell, activity="exec")  # the shell itself was recorded
    assert rows(table, pid=pid, activity="exec")[0]["image"].endswith("/loader")
    assert [r for r in _exec_protects(table, pid) if r["header_kind"] == "elf"]
    assert rows(table, pid=pid, activity="terminate")


def test_flood_without_rate_limit_accounts_for_every_event(record_control: RecordFn) -> None:
    """50,000 exec-memory events in ~0.5 s: recorded + lost == 50,000, and lost is reported."""
    n = 50_000
    table, info, summary = record_control("flood", str(n), "0.5", rate_burst=0)
    flood = rows(table, pid=info["pid"], event_code="linux:mprotect")
    page = [r for r in flood if r["base_address"] == info["regions"][0]["base"]]
    stats = summary["sensor"]
    assert stats["suppressed"] == 0
    # every flood event recorded or counted lost, none invented; the lost counter is the
    # sensor's, not the page's: another event of the recorded tree dropped in the same flood
    # (the control's exit, an unmap) counts too, so it may exceed the flood's share by a few
    assert len(page) <= n, (len(page), stats)
    assert n <= len(page) + stats["lost"] <= n + 8, (len(page), stats)
    print(f"flood: recorded {len(page)} of {n}, lost {stats['lost']} in {info['seconds']:.3f}s")


def test_flood_is_rate_limited_visibly(record_control: RecordFn) -> None:
    """With the per-(process, caller) limit, the excess is counted, never silently dropped."""
    n = 50_000
    table, info, summary = record_control("flood", str(n), "0.5", rate_burst=5_000)
    page = [
        r
        for r in rows(table, pid=info["pid"], event_code="linux:mprotect")
        if r["base_address"] == info["regions"][0]["base"]
    ]
    stats = summary["sensor"]
    assert stats["suppressed"] > 0
    assert len(page) + stats["suppressed"] + stats["lost"] == n, (len(page), stats)


def test_loss_is_reported_when_the_consumer_stalls(live: None, controls: dict[str, Path]) -> None:
    """A 1 MiB ring and nobody reading during a flood: the kernel counts every dropped record."""
    import os
    import signal
    import subprocess

    from unbacked.sensor.live import Sensor, SensorOptions

    n = 50_000
    with Sensor(SensorOptions(ring_mb=1, rate_burst=0, follow_tree=True)) as sensor:
        proc = subprocess.Popen(
            [
                "/bin/sh",
                "-c",
                'kill -STOP $$; exec "$@"',
                "gate",
                str(controls["flood"]),
                str(n),
                "0.5",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        os.waitpid(proc.pid, os.WUNTRACED)
        sensor.track(proc.pid)
        os.kill(proc.pid, signal.SIGCONT)
        proc.wait(timeout=30)  # not reading meanwhile: the 1 MiB ring overflows
        recs = sensor.drain(0.2)
        stats = sensor.stats()
    mine = recs[(recs["pid"] == proc.pid) & (recs["type"] == 2)]
    assert stats["lost"] > 0
    # every flood record is either read or counted lost; the ring was also full when the
    # process exited, so its exit record may be among the lost
    assert n <= len(mine) + stats["lost"] <= n + 1, (len(mine), stats)


def test_system_wide_sensor_sees_a_running_control(live: None, controls: dict[str, Path]) -> None:
    """The system-wide mode, with the control still alive (the READY-then-inspect flow)."""
    from unbacked.sensor.decode import EventDecoder
    from unbacked.sensor.live import Sensor

    with Sensor() as sensor:
        dec = EventDecoder(clock_offset_ns=sensor.clock_offset_ns)
        with run_control("loader", "wx") as (_proc, info):
            time.sleep(0.1)
            table = dec.to_table(sensor.drain(0.3))
        stats = sensor.stats()
    hits = [
        r
        for r in rows(table, pid=info["pid"], activity="protect")
        if r["base_address"] == info["regions"][0]["base"]
    ]
    assert hits and hits[0]["header_kind"] == "elf"
    assert hits[0]["process_uid"].startswith(f"{hits[0]['host']}:{info['pid']}:")
    assert {"emitted", "lost", "suppressed"} <= set(stats)
    assert stats["lost"] == 0


@pytest.mark.parametrize("users", [{}, {"OPENBLAS_NUM_THREADS": "3", "MIMALLOC_ALLOW_THP": "1"}])
def test_the_recorded_command_runs_in_the_users_environment(
    live: None, tmp_path: Path, users: dict[str, str]
) -> None:
    """The command line sets Arrow's allocator and NumPy's BLAS threads for its own process
    (``cli.main``); the command `unbacked record` starts gets the environment the user gave:
    without those settings, or with the user's own values of them."""
    import os
    import subprocess
    import sys

    seen = tmp_path / "env.txt"
    script = (
        'echo "${OPENBLAS_NUM_THREADS-unset} ${MIMALLOC_ALLOW_THP-unset} ${MINE-unset}" > '
        f"{seen}"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS",
                                                           "MIMALLOC_ALLOW_THP")}  # fmt: skip
    env.update(users, MINE="kept")
    subprocess.run(
        [sys.executable, "-m", "unbacked.cli.main", "record", "-o", str(tmp_path / "r.jsonl"),
         "--quiet", "--", "/bin/sh", "-c", script],
        env=env, check=True, timeout=300, capture_output=True,
    )  # fmt: skip
    want = [users.get("OPENBLAS_NUM_THREADS", "unset"), users.get("MIMALLOC_ALLOW_THP", "unset")]
    assert seen.read_text().split() == [*want, "kept"]
