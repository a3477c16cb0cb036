"""The scanner contract (volatility3 ``interfaces/layers.py::ScannerInterface``) and its driver.

A scanner is handed the *available* bytes of the sections it is asked about, in ascending
address order, in chunks of at most ``chunk_size + overlap`` bytes. Consecutive chunks share
``overlap`` bytes so a pattern that straddles a chunk boundary is seen whole once. To keep
every hit unique, a scanner must not report a hit that *starts* inside the overlap (at or after
``chunk_size`` in the chunk) unless the chunk is the last of its run — the next chunk, which
starts there, will report it. ``thread_safe`` declares whether one instance may be called from
several threads at once (no state between calls).

Whatever the size of a dump or a process, the driver holds one chunk at a time: memory use is
bounded by ``chunk_size + overlap`` per scanner, never by the input.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np


class Readable(Protocol):
    """What the driver needs from an address space: captured runs and bounded reads."""

    def runs(self, base: int, size: int) -> list[tuple[int, int]]:
        """(start, size) sub-ranges of [base, base+size) whose bytes can be read."""
        ...

    def read(self, address: int, size: int) -> bytes:
        """Up to ``size`` bytes from ``address``; shorter when the run ends early."""
        ...


@dataclass(frozen=True, slots=True)
class Hit:
    """A scanner result: an address and what was found there."""

    address: int
    kind: str
    detail: str = ""


class ScannerInterface(ABC):
    """Finds things in chunks of memory; see the module docstring for the contract."""

    thread_safe: ClassVar[bool] = False

    def __init__(self, *, chunk_size: int = 1 << 22, overlap: int = 0x1000) -> None:
        if chunk_size <= 0 or overlap < 0 or overlap > chunk_size:
            raise ValueError("chunk_size must be > 0 and 0 <= overlap <= chunk_size")
        self.chunk_size = chunk_size
        self.overlap = overlap

    @abstractmethod
    def __call__(self, data: bytes, data_offset: int, *, last: bool = True) -> Iterable[Hit]:
        """Yield hits in ``data`` (which starts at address ``data_offset``).

        ``last`` tells whether more chunks of the same run follow; when it is False, hits
        starting at or after ``chunk_size`` lie in the overlap and must not be yielded.
        """

    def limit(self, data: bytes, last: bool) -> int:
        """The first offset in ``data`` at which a hit may no longer start."""
        return len(data) if last else min(len(data), self.chunk_size)


def iter_chunks(
    space: Readable, sections: Sequence[tuple[int, int]], chunk_size: int, overlap: int
) -> Iterator[tuple[bytes, int, bool]]:
    """Yield (data, address, last) covering the readable parts of ``sections``.

    A chunk is at most ``chunk_size + overlap`` bytes; the next chunk of the same run starts
    ``chunk_size`` bytes later. A short read (a page became unreadable, the process unmapped
    it) ends the run: what was read is yielded as the run's last chunk.
    """
    for base, size in sections:
        for start, length in space.runs(base, size):
            pos, end = start, start + length
            while pos < end:
                want = min(end - pos, chunk_size + overlap)
                data = space.read(pos, want)
                if not data:
                    break
                last = pos + chunk_size >= end or len(data) < want
                yield data, pos, last
                if last:
                    break
                pos += chunk_size


def scan(
    space: Readable, scanner: ScannerInterface, sections: Sequence[tuple[int, int]]
) -> Iterator[Hit]:
    """Run ``scanner`` over ``sections`` of ``space`` chunk by chunk (volatility3 ``scan``)."""
    for data, address, last in iter_chunks(space, sections, scanner.chunk_size, scanner.overlap):
        yield from scanner(data, address, last=last)


# Signatures of executable images, whole or partly wiped. Each is checked further by
# ``headers.py``; the regex only proposes candidates at C speed.
_SIGNATURES = re.compile(
    rb"MZ"  # DOS header
    rb"|\x7fELF"  # ELF identification
    rb"|PE\x00\x00(?:\x4c\x01|\x64\x86|\x64\xaa)"  # NT signature + i386/AMD64/ARM64 machine
    rb"|This program cannot be run in DOS mode"  # DOS stub left behind when MZ is wiped
    rb"|\.text\x00\x00\x00"  # section table remnant
)

_KINDS = {b"MZ": "mz", b"\x7fELF": "elf", b"This": "dos-stub", b".tex": "section-table"}


class SignatureScanner(ScannerInterface):
    """Finds candidate PE/ELF headers and header remnants anywhere in a region.

    Stateless, hence thread-safe. Hits are candidates; ``headers.classify`` decides.
    """

    thread_safe = True

    def __call__(self, data: bytes, data_offset: int, *, last: bool = True) -> Iterator[Hit]:
        limit = self.limit(data, last)
        for m in _SIGNATURES.finditer(data, 0, limit + 64):
            pos = m.start()
            if pos >= limit:
                break
            head = m.group(0)[:4]
            kind = "nt-header" if head.startswith(b"PE") else _KINDS.get(head[:4], "mz")
            yield Hit(data_offset + pos, kind)


class ByteStats:
    """Accumulates a byte histogram chunk by chunk (bounded memory, vectorised with numpy).

    Not a hit-yielding scanner but fed by the same chunking: only the non-overlapping part of
    each chunk is counted, so every byte counts once.
    """

    __slots__ = ("hist", "total")

    def __init__(self) -> None:
        self.hist = np.zeros(256, dtype=np.int64)
        self.total = 0

    def update(self, data: bytes) -> None:
        if data:
            self.hist += np.bincount(np.frombuffer(data, dtype=np.uint8), minlength=256)
            self.total += len(data)


#: byte patterns of hand-written shellcode that compiled and JIT-generated code do not contain:
#: PEB/TEB access through a segment register, the ROR-13 API-hash loop of Metasploit/Cobalt
#: Strike stagers, their ``cld; and rsp,-16`` entry, and an inline ``/bin/sh`` execve.
_SHELLCODE = re.compile(
    rb"\x65\x48\x8b[\x04-\x3c\x40-\x7f][\x25]?\x60"  # mov r64, gs:[0x60]  (PEB, x64)
    rb"|\x65\x48\x8b\x04\x25\x60\x00\x00\x00"  # mov rax, gs:[0x60] (absolute form)
    rb"|\x64\x8b[\x05-\x3d]\x30\x00\x00\x00|\x64\xa1\x30\x00\x00\x00"  # fs:[0x30] (PEB, x86)
    rb"|\xc1[\xc8-\xcf]\x0d[\x01\x03\x41]"  # ror r32, 13 ; add — API hashing
    rb"|\xfc\x48\x83\xe4\xf0|\xfc\xe8[\x80-\x9f]\x00\x00\x00"  # stager entry (x64 / x86)
    rb"|\x2f\x62\x69\x6e\x2f(?:\x2f)?\x73\x68",  # "/bin/sh" or "/bin//sh" in code
    re.DOTALL,
)
_SHELLCODE_NAMES = {
    0x65: "PEB access via gs", 0x64: "PEB access via fs", 0xC1: "ROR-13 API hashing",
    0xFC: "stager entry (cld)", 0x2F: "/bin/sh string",
}  # fmt: skip


class ShellcodeScanner(ScannerInterface):
    """Finds hand-written shellcode idioms (see ``_SHELLCODE``). Stateless: thread-safe."""

    thread_safe = True

    def __call__(self, data: bytes, data_offset: int, *, last: bool = True) -> Iterator[Hit]:
        limit = self.limit(data, last)
        for m in _SHELLCODE.finditer(data, 0, limit + 16):
            if m.start() >= limit:
                break
            yield Hit(data_offset + m.start(), "shellcode", _SHELLCODE_NAMES[data[m.start()]])
