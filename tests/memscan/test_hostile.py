"""Hostile and truncated dumps: a typed error or a result, never a hang or a huge allocation."""

from __future__ import annotations

import struct
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.memscan import scenario
from unbacked.errors import FormatError
from unbacked.memscan import scan_minidump

FIXTURE = scenario.to_bytes()
#: tmp_path is reused across examples on purpose: each example overwrites the same file
_FIXTURE_OK = [HealthCheck.function_scoped_fixture]


def _scan_bytes(tmp: Path, data: bytes) -> None:
    path = tmp / "h.dmp"
    path.write_bytes(data)
    try:
        scan_minidump(path)
    except FormatError as exc:
        assert exc.source == str(path) and exc.hint


@settings(
    max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    edits=st.lists(
        st.tuples(st.integers(0, len(FIXTURE) - 1), st.binary(min_size=1, max_size=16)),
        min_size=1,
        max_size=8,
    )
)
def test_mutated_fixture(tmp_path: Path, edits: list[tuple[int, bytes]]) -> None:
    data = bytearray(FIXTURE)
    for off, chunk in edits:
        data[off : off + len(chunk)] = chunk
    _scan_bytes(tmp_path, bytes(data[: len(FIXTURE)]))


@settings(
    max_examples=100, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cut=st.integers(0, len(FIXTURE)))
def test_truncated_fixture(tmp_path: Path, cut: int) -> None:
    _scan_bytes(tmp_path, FIXTURE[:cut])


@settings(
    max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=st.binary(max_size=4096),
    nstreams=st.integers(0, 2**32 - 1),
    rva=st.integers(0, 2**32 - 1),
)
def test_random_directory(tmp_path: Path, body: bytes, nstreams: int, rva: int) -> None:
    head = struct.pack("<4sIIIIIQ", b"MDMP", 0xA793, nstreams, rva, 0, 0, 0)
    _scan_bytes(tmp_path, head + body)


@pytest.mark.parametrize("stype, payload", [
    (4, struct.pack("<I", 0xFFFFFFFF)),  # ModuleList claims 4 billion modules
    (3, struct.pack("<I", 0x7FFFFFFF)),  # ThreadList
    (9, struct.pack("<QQ", 2**63, 0)),  # Memory64List
    (16, struct.pack("<IIQ", 16, 48, 2**60)),  # MemoryInfoList
    (17, struct.pack("<IIQ", 16, 64, 2**40)),  # ThreadInfoList
    (5, struct.pack("<I", 0xFFFFFFFF)),  # MemoryList
])  # fmt: skip
def test_huge_counts_are_refused_quickly(tmp_path: Path, stype: int, payload: bytes) -> None:
    head = struct.pack("<4sIIIIIQ", b"MDMP", 0xA793, 1, 32, 0, 0, 0)
    data = head + struct.pack("<III", stype, len(payload), 44) + payload
    path = tmp_path / "huge.dmp"
    path.write_bytes(data)
    tracemalloc.start()
    try:
        with pytest.raises(FormatError, match="claims"):
            scan_minidump(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20


def test_memory_past_end_of_file_is_clipped(tmp_path: Path) -> None:
    cut = len(FIXTURE) - 0x1800  # drop the last pages of captured memory
    path = tmp_path / "t.dmp"
    path.write_bytes(FIXTURE[:cut])
    result = scan_minidump(path)
    assert any("past the end" in i for i in result.issues)


def test_a_region_too_short_for_a_dos_header_is_not_rebuilt() -> None:
    # found by bench/fuzz_campaign.py: a region shorter than a DOS header (6-21 bytes) taken
    # for a PE made the DOS-header restore write past the buffer (an untyped struct.error)
    pytest.importorskip("pefile")
    from unbacked.memscan.headers import HeaderInfo, reconstruct_pe

    image = b"\x00\x00\x00\x00PE\x00\x00" + bytes(13)
    assert reconstruct_pe(image, HeaderInfo("pe-partial", "test", nt_offset=4)) is None
