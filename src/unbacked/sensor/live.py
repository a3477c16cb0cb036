"""The live sensor: checks the machine, loads and attaches the eBPF programs, hands out records.

``Sensor`` owns the kernel side (object, maps, links) and the ring buffer. ``read`` returns raw
records (numpy, ``EVENT_DTYPE``); ``decode.to_events`` turns them into ``EVENT_SCHEMA`` tables.
System-wide by default; with ``follow_tree=True`` only the processes added with ``track`` and
their descendants are recorded (``unbacked record``), filtered in the kernel.
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from unbacked.errors import SensorError
from unbacked.sensor.build import BTF_PATH, build_object
from unbacked.sensor.layout import EVENT_DTYPE, STAT_SLOTS, Stat
from unbacked.sensor.libbpf import BpfObject, possible_cpus
from unbacked.sensor.ringbuf import RingBuffer

TRACEFS = Path("/sys/kernel/tracing")
BPFFS = Path("/sys/fs/bpf")
DEFAULT_RING_MB = 32


class UbConfig(ctypes.Structure):
    """``struct ub_config`` of ``bpf/unbacked.h``."""

    _fields_ = [
        ("self_tgid", ctypes.c_uint32),
        ("filter_tree", ctypes.c_uint32),
        ("rl_burst", ctypes.c_uint32),
        ("rl_window_ms", ctypes.c_uint32),
        ("hdr_pages", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
    ]


def kernel_notes(release: str) -> list[str]:
    """What the sensor cannot see on kernel ``release`` (``uname -r``): the cross-process acts'
    targets are found with ``bpf_task_from_pid`` (Linux 6.1)."""
    m = re.match(r"(\d+)\.(\d+)", release)
    if m and (int(m.group(1)), int(m.group(2))) < (6, 1):
        return [
            f"kernel {release} < 6.1: no bpf_task_from_pid, so cross-process acts (ptrace, "
            "process_vm_writev, /proc/PID/mem) carry the pid the call named but no target "
            "process (target_uid null) and no target mapping: UNB-L-003 and UNB-L-004 cannot "
            "fire"
        ]
    return []


@dataclass(frozen=True, slots=True)
class SensorOptions:
    """How the sensor runs. Rate limiting: at most ``rate_burst`` records per (process, caller,
    syscall) per ``rate_window_ms``; the excess is counted and reported in the next record of
    the same key and in ``stats()['suppressed']``. ``rate_burst=0`` turns it off."""

    ring_mb: int = DEFAULT_RING_MB
    follow_tree: bool = False
    rate_burst: int = 20_000
    rate_window_ms: int = 1000
    header_pages: int = 16


def check_environment() -> None:
    """Raise a SensorError that says what to do when this machine cannot run the sensor."""
    if os.uname().sysname != "Linux":
        raise SensorError("the live sensor runs on Linux only")
    if os.uname().machine != "x86_64":
        raise SensorError(
            f"the live sensor supports x86-64 only (this is {os.uname().machine})",
            hint="use recorded captures (samples/linux/) on other machines",
        )
    if os.geteuid() != 0:
        raise SensorError(
            "the live sensor needs root (CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN for tracefs)",
            hint="run with sudo, or analyse recorded captures with `unbacked hunt`",
        )
    if not BTF_PATH.exists():
        raise SensorError(
            "the kernel has no BTF (/sys/kernel/btf/vmlinux is missing)",
            hint="the sensor is CO-RE and needs a kernel built with CONFIG_DEBUG_INFO_BTF=y",
        )
    ensure_mounts()
    if not (TRACEFS / "events" / "syscalls" / "sys_enter_mprotect").exists():
        raise SensorError(
            "the kernel has no syscall tracepoints (events/syscalls in tracefs)",
            hint="the sensor needs CONFIG_FTRACE_SYSCALLS=y",
        )


def ensure_mounts() -> None:
    """Mount tracefs and bpffs when they are absent (both are needed to attach and pin), with
    the mount(2) system call: no ``mount`` program needs to be on PATH."""
    for fstype, where in (("tracefs", TRACEFS), ("bpf", BPFFS)):
        if _mounted(where):
            continue
        error = _mount(fstype, where)
        if error is not None and not _mounted(where):
            raise SensorError(
                f"cannot mount {fstype} at {where}: {error}",
                hint=f"mount it by hand: mount -t {fstype} {fstype} {where}",
            )


def _mount(fstype: str, where: Path) -> str | None:
    """``mount -t FSTYPE FSTYPE WHERE`` through libc; the error text, or None."""
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_void_p]
    source = fstype.encode()
    if libc.mount(source, os.fsencode(where), source, 0, None) == 0:
        return None
    err = ctypes.get_errno()
    return f"{os.strerror(err)} (errno {err})"


def _mounted(where: Path) -> bool:
    try:
        with open("/proc/self/mounts") as fh:
            return any(line.split()[1] == str(where) for line in fh)
    except OSError:
        return False


class Sensor:
    """The loaded, attached eBPF sensor. Use as a context manager."""

    def __init__(self, options: SensorOptions | None = None) -> None:
        self.options = options or SensorOptions()
        self._obj: BpfObject | None = None
        self._ring: RingBuffer | None = None
        self._ncpu = 1
        self.attached: list[str] = []
        #: wall-clock minus monotonic ns, to turn bpf_ktime_get_ns into UTC
        self.clock_offset_ns = 0
        self.records_read = 0
        self.started_at = 0.0
        #: what this kernel cannot give (said at start)
        self.notes: list[str] = []

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> Sensor:
        check_environment()
        self.notes = kernel_notes(os.uname().release)
        for note in self.notes:
            print(f"unbacked sensor: {note}", file=sys.stderr)
        ring = self.options.ring_mb << 20
        if self.options.ring_mb <= 0 or ring & (ring - 1):
            raise SensorError(
                f"ring buffer of {self.options.ring_mb} MiB is not a power of two",
                hint="use 8, 16, 32, 64 or 128",
            )
        obj_path = build_object()
        self._obj = BpfObject(obj_path, max_entries={"ub_events": ring})
        try:
            self._configure()
            self._ncpu = possible_cpus()
            self._ring = RingBuffer(
                self._obj.map_fd("ub_events"), self._obj.max_entries("ub_events")
            )
            self.attached = self._obj.attach_all()
        except BaseException:
            self.close()
            raise
        self.clock_offset_ns = _clock_offset_ns()
        self.started_at = time.time()
        return self

    def _configure(self) -> None:
        assert self._obj is not None
        o = self.options
        cfg = UbConfig(
            self_tgid=os.getpid(),
            filter_tree=1 if o.follow_tree else 0,
            rl_burst=max(0, o.rate_burst),
            rl_window_ms=max(1, o.rate_window_ms),
            hdr_pages=max(1, min(16, o.header_pages)),
        )
        self._obj.update("ub_config_map", ctypes.c_uint32(0), cfg)

    def track(self, pid: int) -> None:
        """Record process ``pid`` and (through fork) its descendants (follow_tree mode)."""
        assert self._obj is not None
        self._obj.update("ub_tracked", ctypes.c_uint32(pid), ctypes.c_uint8(1))

    def close(self) -> None:
        if self._ring is not None:
            self._ring.close()
            self._ring = None
        if self._obj is not None:
            self._obj.close()
            self._obj = None

    def __enter__(self) -> Sensor:
        return self.start() if self._obj is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- data -----------------------------------------------------------------------------
    def wait(self, timeout: float) -> bool:
        if self._ring is None:
            raise SensorError("sensor is not running")
        return self._ring.wait(timeout)

    def read(self, max_records: int = 1 << 16) -> np.ndarray:
        """Committed records, acknowledged to the kernel (an empty array when none)."""
        if self._ring is None:
            raise SensorError("sensor is not running")
        recs = self._ring.take(max_records)
        self.records_read += len(recs)
        return recs

    def peek(self, max_records: int = 1 << 16) -> tuple[np.ndarray, int]:
        """Committed records *not yet* acknowledged, and the position to ``ack`` them with."""
        if self._ring is None:
            raise SensorError("sensor is not running")
        return self._ring.peek(max_records)

    def ack(self, position: int, count: int) -> None:
        """Acknowledge records returned by ``peek`` once they are stored safely."""
        if self._ring is None:
            raise SensorError("sensor is not running")
        self._ring.ack(position)
        self.records_read += count

    def drain(self, timeout: float = 0.2) -> np.ndarray:
        """Everything committed now plus what arrives within ``timeout`` seconds."""
        parts = []
        deadline = time.monotonic() + timeout
        while True:
            recs = self.read()
            if len(recs):
                parts.append(recs)
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.wait(min(left, 0.05))
        return np.concatenate(parts) if parts else np.empty(0, dtype=EVENT_DTYPE)

    def stats(self) -> dict[str, Any]:
        """Kernel counters summed over CPUs: emitted, lost (ring full), suppressed, ..."""
        if self._obj is None:
            raise SensorError("sensor is not running")
        vals = (ctypes.c_uint64 * self._ncpu)()
        out: dict[str, Any] = {}
        for slot in Stat:
            ok = self._obj.lookup("ub_stats", ctypes.c_uint32(int(slot)), vals)
            out[slot.name.lower()] = int(sum(vals)) if ok else None
        out["read"] = self.records_read
        out["ring_bytes"] = self._obj.max_entries("ub_events")
        assert len(Stat) <= STAT_SLOTS
        return out


def _clock_offset_ns() -> int:
    """CLOCK_REALTIME - CLOCK_MONOTONIC, measured as the tightest of a few samples."""
    best: tuple[int, int] | None = None
    for _ in range(5):
        m0 = time.monotonic_ns()
        r = time.time_ns()
        m1 = time.monotonic_ns()
        if best is None or m1 - m0 < best[0]:
            best = (m1 - m0, r - (m0 + m1) // 2)
    assert best is not None
    return best[1]
