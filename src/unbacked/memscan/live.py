"""A live Linux process as an address space (``/proc/PID/{maps,smaps,mem,task}``).

A process may exit, unmap a region or change protections while it is scanned. Reads are
positional (``os.pread`` on ``/proc/PID/mem``); a region that cannot be read (``EIO`` for
``VM_IO``/guard mappings, ``EFAULT`` after an unmap) yields no bytes and the scan goes on, while
a process that is gone raises ``ProcessGone`` (a ``ScanError``) so callers can report
"process gone" instead of a half-empty result. Reading needs ptrace access to the target
(root, or the same user with ``kernel.yama.ptrace_scope`` 0).
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterator

import numpy as np

from unbacked.errors import ScanError
from unbacked.memscan.model import Backing, Module, ProcessInfo, Region, Thread

_SPECIAL = ("[vdso]", "[vsyscall]", "[vvar]", "[vvar_vclock]", "[uprobes]", "[sigpage]",
            "[vectors]")  # fmt: skip
_GONE = {errno.ESRCH, errno.ENOENT}
#: ranges larger than this are narrowed to their present pages through pagemap
PAGEMAP_MIN = 1 << 20
_PAGEMAP_SLICE = 1 << 16  # pagemap entries read at once (512 KiB)


class ProcessGone(ScanError):
    """The process exited (or its pid was reused) before or during the scan."""


def _exited(pid: int) -> bool:
    """Whether ``pid`` has exited or is exiting: no longer listed, a zombie (state Z or X in
    its stat), or past releasing its address space (its map, readable a moment ago, is now
    empty or unreadable: the state turns Z only after that)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return True
    state = stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3]
    if state in (b"Z", b"X"):
        return True
    try:
        with open(f"/proc/{pid}/maps", "rb") as fh:
            return not fh.read(1)
    except OSError:
        return True


def _gone(pid: int, exc: OSError | None = None) -> ProcessGone:
    err = ProcessGone(
        f"process {pid} is gone",
        source=f"pid:{pid}",
        hint="the process exited before or during the scan; nothing left to verify",
    )
    if exc is not None:
        err.__cause__ = exc
    return err


def _backing(path: str, inode: int) -> Backing:
    if (
        not path
        or path.startswith("[anon")
        or path in ("[heap]", "[stack]")
        or path.startswith("[stack:")
    ):
        return Backing.ANONYMOUS
    if path in _SPECIAL:
        return Backing.SPECIAL
    if path.startswith("/memfd:"):
        return Backing.MEMFD
    if path.endswith(" (deleted)"):
        return Backing.DELETED
    if path.startswith("/dev/zero") or path.startswith("/SYSV") or path.startswith("/dev/shm/"):
        return Backing.MAPPED
    if path.startswith("["):
        return Backing.ANONYMOUS
    return Backing.IMAGE if inode else Backing.ANONYMOUS


def parse_maps(text: str) -> list[Region]:
    """Regions of a ``/proc/PID/maps`` text."""
    out = []
    for line in text.splitlines():
        parts = line.split(None, 5)
        if len(parts) < 5:
            continue
        lo, _, hi = parts[0].partition("-")
        perms = parts[1]
        path = parts[5].strip() if len(parts) > 5 else ""
        try:
            base, end, inode = int(lo, 16), int(hi, 16), int(parts[4])
        except ValueError:
            continue
        prot = perms[:3]
        prot_mask = (
            (1 if prot[0] == "r" else 0)
            | (2 if prot[1] == "w" else 0)
            | (4 if prot[2] == "x" else 0)
        )  # PROT_READ | PROT_WRITE | PROT_EXEC
        out.append(Region(base, end - base, prot, _backing(path, inode), path or None, prot_mask))
    return out


def _resident(pid: int) -> dict[int, int]:
    """Base address -> resident bytes, from ``smaps`` (to skip reading never-touched pages)."""
    out: dict[int, int] = {}
    try:
        with open(f"/proc/{pid}/smaps", encoding="utf-8", errors="replace") as fh:
            base = None
            for line in fh:
                c = line[:1]
                if c in "0123456789abcdef" and "-" in line.split(None, 1)[0]:
                    base = int(line.split("-", 1)[0], 16)
                elif line.startswith("Rss:") and base is not None:
                    out[base] = int(line.split()[1]) * 1024
    except OSError:
        return {}
    return out


class LinuxProcessSpace:
    """Random access to a running process. Reads are thread-safe (``os.pread``)."""

    system = "linux"

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.source = f"pid:{pid}"
        try:
            with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as fh:
                maps = fh.read()
        except OSError as exc:
            if exc.errno in _GONE:
                raise _gone(pid, exc) from exc
            raise ScanError(
                f"cannot read the memory map of process {pid}: {exc.strerror}",
                source=self.source,
                hint="run as root or as the process owner",
            ) from exc
        rss = _resident(pid)
        self._regions = [
            Region(
                r.base,
                r.size,
                r.protection,
                r.backing,
                r.path,
                r.raw_protection,
                resident=rss.get(r.base),
            )
            for r in parse_maps(maps)
        ]
        self.process = self._process_info()
        self.unreadable = 0
        self._fd = -1
        self._pagemap_fd = -1  # -1: not opened yet, -2: unavailable
        if not self._regions:
            # kernel threads (and processes past exit_mm) have no address space: nothing to read
            return
        try:
            self._fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
        except OSError as exc:
            # a process that exits between reading its map and opening its memory has no
            # address space left, and the kernel refuses it to anyone but root (EACCES): gone
            if exc.errno in _GONE or _exited(pid):
                raise _gone(pid, exc) from exc
            raise ScanError(
                f"cannot open the memory of process {pid}: {exc.strerror}",
                source=self.source,
                hint="reading another process's memory needs root (or ptrace_scope 0 and the "
                "same user)",
            ) from exc

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._pagemap_fd >= 0:
            os.close(self._pagemap_fd)
        self._pagemap_fd = -2

    def __enter__(self) -> LinuxProcessSpace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def alive(self) -> bool:
        try:
            with open(f"/proc/{self.pid}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            return False
        start = _start_ticks(stat)
        zombie = stat.rsplit(b")", 1)[-1].split()[:1] == [b"Z"]
        return not zombie and (self.process.start_time_ns is None or start == self._start_ticks)

    def _process_info(self) -> ProcessInfo:
        pid = self.pid
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                stat = fh.read()
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmd = fh.read().replace(b"\x00", b" ").strip().decode("utf-8", "replace")
            with open(f"/proc/{pid}/comm", "rb") as fh:
                comm = fh.read().strip().decode("utf-8", "replace")
            uid = None
            with open(f"/proc/{pid}/status", encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    if line.startswith("Uid:"):
                        uid = int(line.split()[1])
                        break
        except OSError as exc:
            if exc.errno in _GONE or exc.errno == errno.ESRCH:
                raise _gone(pid, exc) from exc
            raise ScanError(f"cannot read /proc/{pid}: {exc.strerror}", source=self.source) from exc
        try:
            exe: str | None = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            exe = None
        self._start_ticks = _start_ticks(stat)
        start_ns = _boot_ns() + self._start_ticks * 1_000_000_000 // os.sysconf("SC_CLK_TCK")
        user = None
        if uid is not None:
            try:
                import pwd

                user = pwd.getpwuid(uid).pw_name
            except (KeyError, ImportError):
                user = str(uid)
        host = socket.gethostname()
        return ProcessInfo(
            pid=pid,
            name=comm,
            path=exe,
            cmd_line=cmd or None,
            user=user,
            uid=f"{host}:{pid}:{start_ns}",
            start_time_ns=start_ns,
        )

    # -- address-space interface --------------------------------------------------------------
    def regions(self) -> list[Region]:
        return list(self._regions)

    def modules(self) -> list[Module]:
        """File mappings, one per path (base = lowest mapping, size up to the highest end)."""
        spans: dict[str, tuple[int, int]] = {}
        for r in self._regions:
            if r.backing is Backing.IMAGE and r.path:
                lo, hi = spans.get(r.path, (r.base, r.end))
                spans[r.path] = (min(lo, r.base), max(hi, r.end))
        return [Module(p, lo, hi - lo) for p, (lo, hi) in spans.items()]

    def threads(self) -> list[Thread]:
        """Threads with their current pc/sp (``/proc/PID/task/TID/syscall``, needs ptrace)."""
        out: list[Thread] = []
        if not self._regions:
            return out
        try:
            tids = os.listdir(f"/proc/{self.pid}/task")
        except OSError as exc:
            if exc.errno in _GONE:
                raise _gone(self.pid, exc) from exc
            return []
        for t in tids:
            if not t.isdigit():
                continue
            ip = sp = None
            try:
                with open(f"/proc/{self.pid}/task/{t}/syscall", encoding="ascii") as fh:
                    fields = fh.read().split()
                if len(fields) >= 3 and fields[0] != "running":
                    sp, ip = int(fields[-2], 16), int(fields[-1], 16)
            except (OSError, ValueError):
                pass
            out.append(Thread(int(t), None, ip, sp))
        return out

    def runs(self, base: int, size: int) -> list[tuple[int, int]]:
        """Sub-ranges whose pages are present or swapped (``/proc/PID/pagemap``).

        JIT engines reserve hundreds of MiB of executable address space and touch a few pages;
        reading the untouched rest would only return zeros. Small ranges, and any range when
        pagemap cannot be read, are returned whole. The pagemap is read in bounded slices.
        """
        if size <= 0:
            return []
        if size <= PAGEMAP_MIN or self._pagemap_fd == -2:
            return [(base, size)]
        if self._pagemap_fd == -1:
            try:
                self._pagemap_fd = os.open(f"/proc/{self.pid}/pagemap", os.O_RDONLY)
            except OSError:
                self._pagemap_fd = -2
                return [(base, size)]
        page = 4096
        first, last = base // page, (base + size + page - 1) // page
        out: list[tuple[int, int]] = []
        for lo in range(first, last, _PAGEMAP_SLICE):
            hi = min(last, lo + _PAGEMAP_SLICE)
            try:
                raw = os.pread(self._pagemap_fd, (hi - lo) * 8, lo * 8)
            except OSError:
                raw = b""
            if len(raw) != (hi - lo) * 8:
                return [(base, size)]
            used = (np.frombuffer(raw, dtype="<u8") >> np.uint64(62)) != 0  # present | swapped
            edges = np.flatnonzero(np.diff(np.concatenate(([False], used, [False])).astype(
                np.int8)))  # fmt: skip
            for a, b in zip(edges[::2], edges[1::2], strict=True):
                start, end = (lo + int(a)) * page, (lo + int(b)) * page
                if out and out[-1][0] + out[-1][1] == start:  # continues across a slice
                    out[-1] = (out[-1][0], end - out[-1][0])
                else:
                    out.append((start, end - start))
        return [(max(s, base), min(s + n, base + size) - max(s, base)) for s, n in out]

    def read(self, address: int, size: int) -> bytes:
        if self._fd < 0:
            return b""
        try:
            return os.pread(self._fd, size, address)
        except OSError as exc:
            if exc.errno in (errno.EIO, errno.EFAULT, errno.EINVAL):
                self.unreadable += 1
                return b""
            if exc.errno in _GONE:
                raise _gone(self.pid, exc) from exc
            raise ScanError(
                f"reading process {self.pid} at 0x{address:x} failed: {exc.strerror}",
                source=self.source,
                offset=address,
            ) from exc


def _start_ticks(stat: bytes) -> int:
    """Field 22 (starttime, clock ticks after boot) of ``/proc/PID/stat``."""
    rest = stat.rsplit(b")", 1)[-1].split()
    return int(rest[19]) if len(rest) > 19 else 0


def _boot_ns() -> int:
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("btime"):
                    return int(line.split()[1]) * 1_000_000_000
    except OSError:
        pass
    return 0


def all_pids() -> Iterator[int]:
    """Pids of every process (not threads) visible in ``/proc``, this one excluded."""
    me = os.getpid()
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != me:
            yield int(name)
