"""A Windows minidump as an address space: regions, modules, threads and bounded reads.

The ``minidump`` package parses the streams it models well (SystemInfo, ModuleList,
ThreadList), but it trusts every count and offset it reads and turns unknown stream types into
exceptions, so a hostile or truncated dump can make it loop for billions of iterations or fail
on a vendor stream (Wine's 0xFFF0, Breakpad's 0x4767xxxx). Before any stream reaches it, this
module checks the header, the directory and each stream's counts against the stream and file
sizes; unknown streams are recorded and skipped. The MemoryInfoList, Memory64List, MemoryList,
ThreadInfoList and MiscInfo streams are decoded here directly (numpy/struct over validated
sizes) because the package collapses protection masks it has no enum member for (e.g.
``PAGE_EXECUTE_READ | PAGE_GUARD``) to ``None``, and ignores ``SizeOfEntry``.

Memory bytes are read with ``os.pread`` from the descriptors — one chunk at a time, never the
whole dump — so reads are thread-safe and memory is bounded.
"""

from __future__ import annotations

import io
import logging
import os
import struct
from bisect import bisect_right
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from unbacked.errors import DependencyError, FormatError
from unbacked.memscan.model import Backing, Module, ProcessInfo, Region, Thread

log = logging.getLogger(__name__)

SIGNATURE = b"MDMP"
HEADER_SIZE = 32
DIRENT_SIZE = 12
#: stream types (MINIDUMP_STREAM_TYPE) this module reads
THREAD_LIST, MODULE_LIST, MEMORY_LIST, SYSTEM_INFO = 3, 4, 5, 7
MEMORY64_LIST, MISC_INFO, MEMORY_INFO_LIST, THREAD_INFO_LIST = 9, 15, 16, 17
_STREAM_NAMES = {
    THREAD_LIST: "ThreadList", MODULE_LIST: "ModuleList", MEMORY_LIST: "MemoryList",
    SYSTEM_INFO: "SystemInfo", MEMORY64_LIST: "Memory64List", MISC_INFO: "MiscInfo",
    MEMORY_INFO_LIST: "MemoryInfoList", THREAD_INFO_LIST: "ThreadInfoList",
}  # fmt: skip
#: stream types the Windows SDK defines (0..24, excluding 23); anything else is a vendor stream
_KNOWN_TYPES = frozenset(set(range(25)) - {23})
MODULE_SIZE = 108
THREAD_SIZE = 48
#: caps on list lengths: far above real dumps, far below what would exhaust memory
MAX_STREAMS = 1 << 12
MAX_ENTRIES = 1 << 22

MEM_COMMIT = 0x1000
MEM_IMAGE, MEM_MAPPED, MEM_PRIVATE = 0x1000000, 0x40000, 0x20000
_PROT = {
    0x01: "---", 0x02: "r--", 0x04: "rw-", 0x08: "rw-",
    0x10: "--x", 0x20: "r-x", 0x40: "rwx", 0x80: "rwx",
}  # fmt: skip
ARCH_AMD64, ARCH_INTEL, ARCH_ARM64 = 9, 0, 12

_MEMINFO = np.dtype(
    [("base", "<u8"), ("alloc_base", "<u8"), ("alloc_protect", "<u4"), ("_a1", "<u4"),
     ("size", "<u8"), ("state", "<u4"), ("protect", "<u4"), ("type", "<u4"), ("_a2", "<u4")]
)  # fmt: skip


def protection(mask: int) -> str:
    """``PAGE_*`` mask -> ``rwx`` letters (modifiers such as PAGE_GUARD are dropped)."""
    return _PROT.get(mask & 0xFF, "???")


@dataclass(slots=True)
class _Stream:
    type: int
    rva: int
    size: int


@dataclass(slots=True)
class DumpInfo:
    """What the directory said: streams used, vendor streams skipped, problems met."""

    streams: dict[int, _Stream] = field(default_factory=dict)
    unknown_streams: list[int] = field(default_factory=list)
    issues: list[str] = field(default_factory=list)
    arch: int | None = None


@contextmanager
def _quiet_package() -> Iterator[None]:
    """The minidump package logs parse failures with ``logging.exception`` on the root logger;
    a library must not print, so silence those records while it runs."""
    root = logging.getLogger()

    def drop(record: logging.LogRecord) -> bool:
        return "minidump" not in record.pathname

    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)


class MinidumpSpace:
    """Random access to one minidump. Thread-safe for reads (``os.pread``)."""

    system = "windows"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        try:
            self._fd = os.open(self.path, os.O_RDONLY)
        except OSError as exc:
            raise FormatError(
                f"cannot open dump: {exc.strerror}",
                source=self.path,
                hint="check the path and permissions",
            ) from exc
        try:
            self.file_size = os.fstat(self._fd).st_size
            self.info = DumpInfo()
            self._stacks: list[tuple[int, int]] = []
            self._read_directory()
            self._modules = self._read_modules()
            self._threads = self._read_threads()
            self._seg_start, self._seg_size, self._seg_rva = self._read_memory()
            self._regions = self._read_regions()
            self.process = self._process_info()
        except BaseException:
            os.close(self._fd)
            raise

    # -- plumbing -----------------------------------------------------------------------------
    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> MinidumpSpace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def source(self) -> str:
        return self.path

    def _pread(self, offset: int, size: int) -> bytes:
        return os.pread(self._fd, size, offset)

    def _error(
        self, message: str, offset: int | None = None, hint: str | None = None
    ) -> FormatError:
        return FormatError(
            message,
            source=self.path,
            offset=offset,
            hint=hint or "the dump is truncated or corrupt; re-acquire it or scan another copy",
        )

    def _stream_bytes(self, stype: int, minimum: int) -> bytes | None:
        s = self.info.streams.get(stype)
        if s is None:
            return None
        if s.size < minimum:
            raise self._error(f"{_STREAM_NAMES[stype]} stream too small ({s.size} bytes)", s.rva)
        data = self._pread(s.rva, s.size)
        if len(data) != s.size:
            raise self._error(f"{_STREAM_NAMES[stype]} stream runs past the end of the file", s.rva)
        return data

    def _check_count(self, stype: int, count: int, entry: int, header: int, size: int) -> None:
        if count > MAX_ENTRIES or header + count * entry > size:
            raise self._error(
                f"{_STREAM_NAMES[stype]} claims {count} entries of {entry} bytes but the stream "
                f"holds {size} bytes",
                self.info.streams[stype].rva,
            )

    # -- directory ----------------------------------------------------------------------------
    def _read_directory(self) -> None:
        head = self._pread(0, HEADER_SIZE)
        if len(head) < HEADER_SIZE or head[:4] != SIGNATURE:
            raise FormatError(
                "not a minidump (no MDMP signature)",
                source=self.path,
                offset=0,
                hint="pass a Windows minidump (.dmp) written by MiniDumpWriteDump or procdump",
            )
        nstreams, dir_rva = struct.unpack_from("<II", head, 8)
        if nstreams and dir_rva < HEADER_SIZE:
            raise self._error(f"stream directory at 0x{dir_rva:x} overlaps the header", 12)
        if nstreams > MAX_STREAMS or dir_rva + nstreams * DIRENT_SIZE > self.file_size:
            raise self._error(
                f"stream directory ({nstreams} entries at 0x{dir_rva:x}) lies outside the file",
                8,
            )
        raw = self._pread(dir_rva, nstreams * DIRENT_SIZE)
        for i in range(nstreams):
            stype, size, rva = struct.unpack_from("<III", raw, i * DIRENT_SIZE)
            if stype not in _KNOWN_TYPES:
                self.info.unknown_streams.append(stype)
                continue
            if stype not in _STREAM_NAMES or stype in self.info.streams:
                continue
            if rva + size > self.file_size:
                self.info.issues.append(
                    f"{_STREAM_NAMES[stype]} stream (0x{rva:x}+{size}) lies past the end of the "
                    "file; ignored"
                )
                continue
            self.info.streams[stype] = _Stream(stype, rva, size)
        if nstreams and not self.info.streams and self.info.issues:
            raise self._error("the stream directory holds no readable stream", dir_rva)

    def _package(self) -> Any:
        try:
            import minidump.streams as streams
        except ImportError as exc:  # pragma: no cover - the [memscan] extra pins it
            raise DependencyError(
                "the minidump package is not installed", hint="pip install 'unbacked[memscan]'"
            ) from exc
        return streams

    def _package_parse(self, cls: Any, stype: int) -> Any:
        """Run a package stream parser on a validated stream; typed error on any failure."""
        from minidump.common_structs import MINIDUMP_LOCATION_DESCRIPTOR
        from minidump.constants import MINIDUMP_STREAM_TYPE
        from minidump.directory import MINIDUMP_DIRECTORY

        s = self.info.streams[stype]
        d = MINIDUMP_DIRECTORY()
        d.StreamType = MINIDUMP_STREAM_TYPE(stype)
        d.Location = MINIDUMP_LOCATION_DESCRIPTOR()
        d.Location.Rva, d.Location.DataSize = s.rva, s.size
        fh = _BoundedReader(self._fd, self.file_size)
        try:
            with _quiet_package():
                return cls.parse(d, fh)
        except Exception as exc:
            raise self._error(f"{_STREAM_NAMES[stype]} stream cannot be parsed", s.rva) from exc

    # -- streams ------------------------------------------------------------------------------
    def _read_modules(self) -> list[Module]:
        if SYSTEM_INFO in self.info.streams:
            streams = self._package()
            try:
                si = self._package_parse(streams.MinidumpSystemInfo, SYSTEM_INFO)
                self.info.arch = int(si.ProcessorArchitecture.value)
            except FormatError as exc:
                self.info.issues.append(str(exc.message))
        data = self._stream_bytes(MODULE_LIST, 4)
        if data is None:
            return []
        (count,) = struct.unpack_from("<I", data, 0)
        self._check_count(MODULE_LIST, count, MODULE_SIZE, 4, len(data))
        # every name must lie inside the file before the package follows it
        for i in range(count):
            (name_rva,) = struct.unpack_from("<I", data, 4 + i * MODULE_SIZE + 20)
            if name_rva + 4 > self.file_size:
                raise self._error(f"module {i} name lies outside the file", name_rva)
        parsed = self._package_parse(self._package().MinidumpModuleList, MODULE_LIST)
        out = []
        for m in parsed.modules:
            name = m.name if isinstance(m.name, str) else "?"
            if m.size:
                out.append(Module(name, int(m.baseaddress), int(m.size)))
        return out

    def _read_threads(self) -> list[Thread]:
        starts: dict[int, int] = {}
        info = self._stream_bytes(THREAD_INFO_LIST, 16)
        if info is not None:
            hsize, esize, count = struct.unpack_from("<IIQ", info, 0)
            if esize < 64 or hsize < 16:
                raise self._error(
                    "ThreadInfoList has impossible header or entry size",
                    self.info.streams[THREAD_INFO_LIST].rva,
                )
            self._check_count(THREAD_INFO_LIST, count, esize, hsize, len(info))
            for i in range(count):
                off = hsize + i * esize
                tid = struct.unpack_from("<I", info, off)[0]
                starts[tid] = struct.unpack_from("<Q", info, off + 48)[0]
        data = self._stream_bytes(THREAD_LIST, 4)
        out: list[Thread] = []
        if data is None:
            return [Thread(tid, start_address=s) for tid, s in starts.items()]
        (count,) = struct.unpack_from("<I", data, 0)
        self._check_count(THREAD_LIST, count, THREAD_SIZE, 4, len(data))
        parsed = self._package_parse(self._package().MinidumpThreadList, THREAD_LIST)
        for t in parsed.threads:
            self._stacks.append((int(t.Stack.StartOfMemoryRange), int(t.Stack.DataSize)))
            ip, sp = self._context_ip_sp(t.ThreadContext.Rva, t.ThreadContext.DataSize)
            tid = int(t.ThreadId)
            out.append(Thread(tid, starts.pop(tid, None), ip, sp))
        out.extend(Thread(tid, start_address=s) for tid, s in starts.items())
        return out

    def _context_ip_sp(self, rva: int, size: int) -> tuple[int | None, int | None]:
        """Instruction and stack pointer from a thread CONTEXT (AMD64 or x86 layout)."""
        if rva + size > self.file_size:
            self.info.issues.append(f"thread context at 0x{rva:x} lies past the end of the file")
            return None, None
        arch = self.info.arch
        if arch == ARCH_AMD64 or (arch is None and size >= 0x4D0):
            if size < 0x100:
                return None, None
            ctx = self._pread(rva, 0x100)
            return struct.unpack_from("<Q", ctx, 0xF8)[0], struct.unpack_from("<Q", ctx, 0x98)[0]
        if arch == ARCH_INTEL or (arch is None and size >= 0x2CC):
            if size < 0xC8:
                return None, None
            ctx = self._pread(rva, 0xC8)
            return struct.unpack_from("<I", ctx, 0xB8)[0], struct.unpack_from("<I", ctx, 0xC4)[0]
        return None, None

    def _read_memory(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        starts: list[np.ndarray] = []
        sizes: list[np.ndarray] = []
        rvas: list[np.ndarray] = []
        m64 = self._stream_bytes(MEMORY64_LIST, 16)
        if m64 is not None:
            count, base_rva = struct.unpack_from("<QQ", m64, 0)
            self._check_count(MEMORY64_LIST, count, 16, 16, len(m64))
            desc = np.frombuffer(m64, dtype="<u8", count=2 * count, offset=16).reshape(-1, 2)
            st, sz = desc[:, 0].astype(np.uint64), desc[:, 1].astype(np.uint64)
            # object-free cumulative offsets; python ints guard against uint64 wrap-around
            if count and int(sz.astype(object).sum()) + base_rva > self.file_size:
                self.info.issues.append(
                    "Memory64List data runs past the end of the file (truncated dump); "
                    "the missing bytes are not scanned"
                )
            rva = np.empty_like(sz)
            if count:
                rva[0] = base_rva
                np.cumsum(sz[:-1], out=rva[1:])
                rva[1:] += np.uint64(base_rva)
            starts.append(st)
            sizes.append(sz)
            rvas.append(rva)
        ml = self._stream_bytes(MEMORY_LIST, 4)
        if ml is not None:
            (count,) = struct.unpack_from("<I", ml, 0)
            self._check_count(MEMORY_LIST, count, 16, 4, len(ml))
            rec = np.frombuffer(
                ml,
                dtype=np.dtype([("start", "<u8"), ("size", "<u4"), ("rva", "<u4")]),
                count=count,
                offset=4,
            )
            starts.append(rec["start"].astype(np.uint64))
            sizes.append(rec["size"].astype(np.uint64))
            rvas.append(rec["rva"].astype(np.uint64))
        if not starts:
            empty = np.zeros(0, dtype=np.uint64)
            return empty, empty, empty
        st, sz, rv = np.concatenate(starts), np.concatenate(sizes), np.concatenate(rvas)
        # clip every range to the bytes the file actually holds
        avail = np.where(
            rv >= np.uint64(self.file_size),
            np.uint64(0),
            np.uint64(self.file_size) - np.minimum(rv, np.uint64(self.file_size)),
        )
        clipped = np.minimum(sz, avail)
        if (clipped < sz).any() and not self.info.issues:
            self.info.issues.append("memory ranges run past the end of the file; clipped")
        keep = clipped > 0
        order = np.argsort(st[keep], kind="stable")
        return st[keep][order], clipped[keep][order], rv[keep][order]

    def _read_regions(self) -> list[Region]:
        data = self._stream_bytes(MEMORY_INFO_LIST, 16)
        if data is None:
            return self._regions_without_info()
        hsize, esize, count = struct.unpack_from("<IIQ", data, 0)
        if esize < 48 or hsize < 16:
            raise self._error(
                "MemoryInfoList has impossible header or entry size",
                self.info.streams[MEMORY_INFO_LIST].rva,
            )
        self._check_count(MEMORY_INFO_LIST, count, esize, hsize, len(data))
        if esize == 48:
            recs = np.frombuffer(data, dtype=_MEMINFO, count=count, offset=hsize)
        else:  # newer writers may append fields: take the first 48 bytes of each entry
            raw = np.frombuffer(data, dtype=np.uint8, count=count * esize, offset=hsize)
            recs = raw.reshape(count, esize)[:, :48].copy().view(_MEMINFO).reshape(count)
        committed = recs[recs["state"] == MEM_COMMIT]
        out = []
        for r in committed:
            t = int(r["type"])
            backing = (
                Backing.IMAGE
                if t == MEM_IMAGE
                else Backing.MAPPED
                if t == MEM_MAPPED
                else Backing.PRIVATE
                if t == MEM_PRIVATE
                else Backing.UNKNOWN
            )
            base = int(r["base"])
            mod = self._module_at(base) if backing is Backing.IMAGE else None
            path = mod.path if mod is not None else None
            out.append(
                Region(
                    base,
                    int(r["size"]),
                    protection(int(r["protect"])),
                    backing,
                    path,
                    int(r["protect"]),
                    int(r["alloc_base"]),
                    protection(int(r["alloc_protect"])),
                )
            )
        return out

    def _regions_without_info(self) -> list[Region]:
        """No MemoryInfoList: modules are images, captured memory outside them is unknown.

        Thread stacks are left out: they hold copies of headers and return addresses, and a
        stack is never where an image lives."""
        out = [Region(m.base, m.size, "???", Backing.IMAGE, m.path) for m in self._modules]
        for start, size, _ in zip(self._seg_start, self._seg_size, self._seg_rva, strict=True):
            s, n = int(start), int(size)
            on_stack = any(b < s + n and s < b + k for b, k in self._stacks)
            if self._module_at(s) is None and not on_stack:
                out.append(Region(s, n, "???", Backing.UNKNOWN))
        return sorted(out, key=lambda r: r.base)

    def _process_info(self) -> ProcessInfo:
        pid = None
        misc = self._stream_bytes(MISC_INFO, 12) if MISC_INFO in self.info.streams else None
        if misc is not None:
            flags, proc_id = struct.unpack_from("<II", misc, 4)
            if flags & 1:
                pid = proc_id
        main = self._modules[0].path if self._modules else None
        name = main.replace("\\", "/").rsplit("/", 1)[-1] if main else None
        return ProcessInfo(pid=pid, name=name, path=main)

    def _module_at(self, address: int) -> Module | None:
        for m in self._modules:
            if m.base <= address < m.end:
                return m
        return None

    # -- address-space interface --------------------------------------------------------------
    def regions(self) -> list[Region]:
        return list(self._regions)

    def modules(self) -> list[Module]:
        return list(self._modules)

    def threads(self) -> list[Thread]:
        return list(self._threads)

    @property
    def has_region_info(self) -> bool:
        return MEMORY_INFO_LIST in self.info.streams

    @property
    def captured_bytes(self) -> int:
        return int(self._seg_size.sum()) if len(self._seg_size) else 0

    def runs(self, base: int, size: int) -> list[tuple[int, int]]:
        """Captured sub-ranges of [base, base+size), merged where contiguous."""
        end = base + size
        out: list[tuple[int, int]] = []
        if not len(self._seg_start):
            return out
        i = max(0, int(np.searchsorted(self._seg_start, np.uint64(base), side="right")) - 1)
        n = len(self._seg_start)
        while i < n:
            s = int(self._seg_start[i])
            e = s + int(self._seg_size[i])
            if s >= end:
                break
            lo, hi = max(s, base), min(e, end)
            if lo < hi:
                if out and out[-1][0] + out[-1][1] == lo:
                    out[-1] = (out[-1][0], out[-1][1] + hi - lo)
                else:
                    out.append((lo, hi - lo))
            i += 1
        return out

    def read(self, address: int, size: int) -> bytes:
        """Up to ``size`` captured bytes from ``address``, stopping at the first gap."""
        parts: list[bytes] = []
        starts = self._seg_start
        while size > 0 and len(starts):
            i = bisect_right(starts, address) - 1
            if i < 0:
                break
            s = int(starts[i])
            e = s + int(self._seg_size[i])
            if address >= e:
                break
            n = min(size, e - address)
            got = self._pread(int(self._seg_rva[i]) + (address - s), n)
            parts.append(got)
            if len(got) < n:
                break
            address += n
            size -= n
        return b"".join(parts)


class _BoundedReader(io.RawIOBase):
    """A read-only file view for the package: positional reads, never past ``size``."""

    def __init__(self, fd: int, size: int) -> None:
        super().__init__()
        self._fd, self._size, self._pos = fd, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            size = self._size - self._pos
        size = max(0, min(size, self._size - self._pos))
        data = os.pread(self._fd, size, self._pos) if size else b""
        self._pos += len(data)
        return data

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)
