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

Scanners are plug-ins registered in ``SCANNERS`` under their ``name`` (another package adds one
through an ``unbacked.scanners`` entry point); ``unbacked.testing.check_scanner`` runs the
contract's checks on one.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np

from unbacked.plugins import Registry


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

    #: short unique name in ``SCANNERS``
    name: ClassVar[str]
    #: one line for ``unbacked plugins`` and the docs
    description: ClassVar[str]
    thread_safe: ClassVar[bool] = False
    #: bytes in which the scanner made by ``sample`` finds at least one hit (the conformance
    #: kit scans them whole and in every chunking and expects the same hits)
    examples: ClassVar[tuple[bytes, ...]] = ()

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

    @classmethod
    def sample(cls, **kw: Any) -> ScannerInterface:
        """An instance for the conformance kit (``chunk_size`` and ``overlap`` in ``kw``); a
        scanner that needs more (YARA: compiled rules) overrides it with a small example."""
        return cls(**kw)


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
# ``headers.py``; the scanner only proposes candidates. ``bytes.find`` per literal (memchr
# speed) is three times faster than one alternation regex over the same bytes.
_LITERALS = (
    (b"MZ", "mz"),  # DOS header
    (b"\x7fELF", "elf"),  # ELF identification
    (b"PE\x00\x00", "nt-header"),  # NT signature (machine checked below)
    (b"This program cannot be run in DOS mode", "dos-stub"),  # left when MZ is wiped
    (b".text\x00\x00\x00", "section-table"),  # section table remnant
)
_NT_MACHINES = (b"\x4c\x01", b"\x64\x86", b"\x64\xaa")


class SignatureScanner(ScannerInterface):
    """Finds candidate PE/ELF headers and header remnants anywhere in a region.

    Stateless, hence thread-safe. Hits are candidates; ``headers.classify`` decides.
    """

    name = "signature"
    description = "Candidate PE/ELF headers and header remnants (MZ, ELF, PE, DOS stub, sections)."
    thread_safe = True
    examples = (
        b"\x00" * 300 + b"MZ\x90\x00" + b"\x00" * 60 + b"PE\x00\x00\x64\x86" + b"\x00" * 40,
        b"\xcc" * 5000 + b"\x7fELF\x02\x01\x01" + b"\xcc" * 100
        + b"This program cannot be run in DOS mode" + b"\x00" * 10,
    )  # fmt: skip

    def __init__(self, *, kinds: tuple[str, ...] | None = None, **kw: int) -> None:
        super().__init__(**kw)
        self.literals = [(lit, k) for lit, k in _LITERALS if kinds is None or k in kinds]

    def __call__(self, data: bytes, data_offset: int, *, last: bool = True) -> Iterator[Hit]:
        limit = self.limit(data, last)
        hits: list[Hit] = []
        for lit, kind in self.literals:
            pos = data.find(lit, 0, limit + len(lit) - 1)
            while pos != -1:
                if kind != "nt-header" or data[pos + 4 : pos + 6] in _NT_MACHINES:
                    hits.append(Hit(data_offset + pos, kind))
                pos = data.find(lit, pos + 1, limit + len(lit) - 1)
        hits.sort(key=lambda h: h.address)
        yield from hits


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
        """Add ``data``'s bytes. Counting 16-bit pairs and folding the 65,536 bins into
        low and high bytes is 2.7x faster than ``bincount`` over single bytes."""
        n = len(data)
        if not n:
            return
        even = n & ~1
        if even:
            pairs = np.bincount(np.frombuffer(data, dtype=np.uint16, count=even // 2),
                                minlength=65536).reshape(256, 256)  # fmt: skip
            self.hist += pairs.sum(axis=0) + pairs.sum(axis=1)
        if n & 1:
            self.hist[data[-1]] += 1
        self.total += n


#: byte patterns of hand-written shellcode that compiled and JIT-generated code do not contain:
#: PEB/TEB access through a segment register, the ROR-13 API-hash loop of Metasploit/Cobalt
#: Strike stagers, their ``cld; and rsp,-16`` entry, and an inline ``/bin/sh`` execve.
_SHELLCODE = tuple(
    re.compile(p, re.DOTALL)
    for p in (
        rb"\x65\x48\x8b[\x04-\x3c\x40-\x7f]\x25?\x60",  # mov r64, gs:[0x60]  (PEB, x64)
        rb"\x64\x8b[\x05-\x3d]\x30\x00\x00\x00",  # mov r32, fs:[0x30]  (PEB, x86)
        rb"\x64\xa1\x30\x00\x00\x00",  # mov eax, fs:[0x30]
        rb"\xc1[\xc8-\xcf]\x0d[\x01\x03\x41]",  # ror r32, 13 ; add — API hashing
        rb"\xfc\x48\x83\xe4\xf0",  # cld; and rsp, -16 — x64 stager entry
        rb"\xfc\xe8[\x80-\x9f]\x00\x00\x00",  # cld; call — x86 stager entry
        rb"/bin//?sh",  # "/bin/sh" or "/bin//sh" pushed by execve shellcode
    )
)  # one pattern each: a literal prefix per pattern lets ``re`` skip ahead fast
_SHELLCODE_NAMES = {
    0x65: "PEB access via gs", 0x64: "PEB access via fs", 0xC1: "ROR-13 API hashing",
    0xFC: "stager entry (cld)", 0x2F: "/bin/sh string",
}  # fmt: skip


class ShellcodeScanner(ScannerInterface):
    """Finds hand-written shellcode idioms (see ``_SHELLCODE``). Stateless: thread-safe."""

    name = "shellcode"
    description = "Hand-written shellcode idioms: PEB access, ROR-13 API hashing, stager entry."
    thread_safe = True
    examples = (
        b"\x90" * 100 + b"\xfc\x48\x83\xe4\xf0\xe8\xc0\x00\x00\x00" + b"\x90" * 3000
        + b"\x65\x48\x8b\x04\x25\x60\x00\x00\x00" + b"/bin//sh\x00",
    )  # fmt: skip

    def __call__(self, data: bytes, data_offset: int, *, last: bool = True) -> Iterator[Hit]:
        limit = self.limit(data, last)
        hits = [m.start() for pat in _SHELLCODE for m in pat.finditer(data, 0, limit + 16)
                if m.start() < limit]  # fmt: skip
        for pos in sorted(hits):
            yield Hit(data_offset + pos, "shellcode", _SHELLCODE_NAMES[data[pos]])


#: every memory scanner: the package's own (signature, shellcode; YARA with the [yara] extra)
#: and the ``unbacked.scanners`` entry points of installed packages
SCANNERS: Registry[type[ScannerInterface]] = Registry(
    "scanners",
    group="unbacked.scanners",
    base=ScannerInterface,
)
SCANNERS.register(SignatureScanner)
SCANNERS.register(ShellcodeScanner)
SCANNERS.declare(
    "yara",
    "unbacked.memscan.yarascan:YaraScanner",
    summary="YARA rules over suspicious regions only.",
    needs=("yara",),
    extra="yara",
)
