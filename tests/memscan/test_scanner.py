"""The scanner contract (chunks with overlap, no duplicate hits, thread safety, bounded memory)
run over every registered scanner, plus the byte statistics and header classification."""

from __future__ import annotations

import os
import struct
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.memscan.mdwriter import build_pe
from unbacked.memscan import headers, stats
from unbacked.memscan.scanner import (
    ByteStats,
    ScannerInterface,
    ShellcodeScanner,
    SignatureScanner,
    iter_chunks,
    scan,
)


class FlatSpace:
    """A contiguous buffer at ``base`` (tests only)."""

    def __init__(self, data: bytes, base: int = 0x10000) -> None:
        self.data, self.base = data, base

    def runs(self, base: int, size: int) -> list[tuple[int, int]]:
        lo, hi = max(base, self.base), min(base + size, self.base + len(self.data))
        return [(lo, hi - lo)] if lo < hi else []

    def read(self, address: int, size: int) -> bytes:
        off = address - self.base
        return self.data[off : off + size]


class ZeroSpace(FlatSpace):
    """A huge space of zeros that never exists in memory at once."""

    def __init__(self, size: int) -> None:
        super().__init__(b"", 0)
        self.size = size

    def runs(self, base: int, size: int) -> list[tuple[int, int]]:
        return [(base, min(size, self.size - base))]

    def read(self, address: int, size: int) -> bytes:
        return bytes(min(size, self.size - address))


NEEDLES = {
    "signature": (lambda **kw: SignatureScanner(**kw), b"\x7fELF"),
    "shellcode": (lambda **kw: ShellcodeScanner(**kw), b"\xfc\x48\x83\xe4\xf0"),
}


def _yara_scanner(**kw: int) -> ScannerInterface:
    import yara

    from unbacked.memscan.yarascan import YaraScanner

    rules = yara.compile(source="rule n { strings: $a = { 7F 45 4C 46 } condition: $a }")
    return YaraScanner(rules, **kw)


SCANNERS = ["signature", "shellcode", "yara"]


def _make(name: str, **kw: int) -> tuple[ScannerInterface, bytes]:
    if name == "yara":
        pytest.importorskip("yara")
        return _yara_scanner(**kw), b"\x7fELF"
    factory, needle = NEEDLES[name]
    return factory(**kw), needle


@pytest.mark.parametrize("name", SCANNERS)
@pytest.mark.parametrize("where", [0, 4090, 4094, 4096, 4100, 4096 + 512 - 2, 8190, 12000])
def test_hit_once_wherever_it_falls(name: str, where: int) -> None:
    scanner, needle = _make(name, chunk_size=4096, overlap=512)
    data = bytearray(16384)
    data[where : where + len(needle)] = needle
    space = FlatSpace(bytes(data))
    hits = [h.address - space.base for h in scan(space, scanner, [(space.base, len(data))])]
    assert hits == [where]


@pytest.mark.parametrize("name", SCANNERS)
@settings(max_examples=40, deadline=None)
@given(
    positions=st.lists(st.integers(0, 20000), max_size=6, unique=True),
    chunk=st.sampled_from([1024, 4096, 5000]),
)
def test_chunked_equals_whole(name: str, positions: list[int], chunk: int) -> None:
    scanner, needle = _make(name, chunk_size=chunk, overlap=256)
    whole, _ = _make(name, chunk_size=1 << 20, overlap=256)
    data = bytearray(os.urandom(20032).replace(needle[:1], b"\x00"))
    for p in sorted(positions):
        data[p : p + len(needle)] = needle
    space = FlatSpace(bytes(data))
    chunked = [h.address for h in scan(space, scanner, [(space.base, len(data))])]
    single = [h.address for h in scan(space, whole, [(space.base, len(data))])]
    assert chunked == single
    assert len(chunked) == len(set(chunked))


@pytest.mark.parametrize("name", SCANNERS)
def test_declared_thread_safe_scanners_agree_across_threads(name: str) -> None:
    scanner, needle = _make(name, chunk_size=4096, overlap=512)
    assert scanner.thread_safe is True
    data = (b"\x00" * 3000 + needle) * 200
    space = FlatSpace(data)

    def run(_: int) -> list[int]:
        return [h.address for h in scan(space, scanner, [(space.base, len(data))])]

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(run, range(8)))
    assert all(r == results[0] for r in results) and len(results[0]) == 200


def test_chunks_are_bounded_and_memory_does_not_grow() -> None:
    space = ZeroSpace(256 << 20)
    sig = SignatureScanner(chunk_size=1 << 20, overlap=4096)
    tracemalloc.start()
    try:
        biggest = 0
        for data, _addr, _last in iter_chunks(space, [(0, space.size)], sig.chunk_size,
                                              sig.overlap):  # fmt: skip
            biggest = max(biggest, len(data))
            list(sig(data, 0))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert biggest == sig.chunk_size + sig.overlap
    assert peak < 4 * (sig.chunk_size + sig.overlap)


def test_contract_arguments_validated() -> None:
    with pytest.raises(ValueError):
        SignatureScanner(chunk_size=100, overlap=200)


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=5000))
def test_byte_stats_equal_bincount(data: bytes) -> None:
    b = ByteStats()
    b.update(data[:1001])
    b.update(data[1001:])
    ref = np.bincount(np.frombuffer(data, dtype=np.uint8), minlength=256)
    assert (b.hist == ref).all() and b.total == len(data)


def test_code_score_separates_code_from_data() -> None:
    code = build_pe()[0x1000:0x2000]
    assert stats.of_bytes(code).code_score >= stats.CODE_LIKE
    assert stats.of_bytes(os.urandom(1 << 16)).code_score < 0.2
    assert stats.of_bytes(b"the quick brown fox jumps over the lazy dog " * 100).code_score < 0.2
    assert stats.of_bytes(os.urandom(1 << 16)).entropy > stats.HIGH_ENTROPY
    assert stats.of_bytes(bytes(4096)).nonzero == 0


def test_classify_whole_and_wiped_headers() -> None:
    pe = build_pe()
    assert headers.classify(pe[:4096]).kind == "pe"  # type: ignore[union-attr]
    wiped = bytearray(pe[:4096])
    wiped[:0x40] = bytes(0x40)
    info = headers.classify(bytes(wiped))
    assert info is not None and info.kind == "pe-partial" and info.nt_offset == 0x80
    only_sections = bytearray(4096)
    only_sections[0x188 : 0x188 + 80] = pe[0x188 : 0x188 + 80]
    only_sections[0x40 : 0x40 + 80] = pe[0x40 : 0x40 + 80]  # DOS stub
    assert headers.classify(bytes(only_sections)).kind == "pe-partial"  # type: ignore[union-attr]
    with open("/bin/true", "rb") as fh:
        elf = fh.read(4096)
    assert headers.classify(elf).kind == "elf"  # type: ignore[union-attr]
    wiped_elf = bytes(64) + elf[64:]
    assert headers.classify(wiped_elf).kind == "elf-partial"  # type: ignore[union-attr]
    assert headers.classify(os.urandom(4096).replace(b"MZ", b"mz")) is None
    assert headers.classify(bytes(4096)) is None
    # a PE with e_lfanew pointing outside the page is not a header
    bad = bytearray(pe[:4096])
    struct.pack_into("<I", bad, 0x3C, 0xFFFFFF)
    assert headers.classify(bytes(bad)).kind == "pe-partial"  # type: ignore[union-attr]
