"""The live address space on this very process: maps parsing, pagemap runs, unreadable ranges."""

from __future__ import annotations

import ctypes
import mmap
import os
import sys

import pytest

from unbacked.memscan.live import LinuxProcessSpace, parse_maps
from unbacked.memscan.model import Backing

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Linux /proc")


def test_parse_maps_backings() -> None:
    text = "\n".join([
        "00400000-00452000 r-xp 00000000 08:02 173521      /usr/bin/dbus-daemon",
        "7f0000000000-7f0000001000 rwxp 00000000 00:00 0 ",
        "7f0000001000-7f0000002000 r-xp 00000000 00:01 77  /memfd:payload (deleted)",
        "7f0000002000-7f0000003000 r-xp 00000000 08:02 99  /tmp/x y.so (deleted)",
        "7f0000003000-7f0000004000 rw-p 00000000 00:00 0   [heap]",
        "7f0000004000-7f0000005000 r-xp 00000000 00:00 0   [vdso]",
        "7f0000005000-7f0000006000 r-xp 00000000 00:00 0   [anon:v8 code]",
        "garbage line",
        "zz-yy r-xp 0 0 0",
    ])  # fmt: skip
    regions = parse_maps(text)
    assert [r.backing for r in regions] == [
        Backing.IMAGE, Backing.ANONYMOUS, Backing.MEMFD, Backing.DELETED, Backing.ANONYMOUS,
        Backing.SPECIAL, Backing.ANONYMOUS,
    ]  # fmt: skip
    assert regions[1].protection == "rwx" and regions[1].raw_protection == 7
    assert regions[3].path == "/tmp/x y.so (deleted)"


def test_runs_follow_present_pages() -> None:
    size = 8 << 20
    m = mmap.mmap(-1, size, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    try:
        base = ctypes.addressof(ctypes.c_char.from_buffer(m))
        m[0x10000] = 1
        m[0x500000] = 2
        m[0x501000] = 3
        with LinuxProcessSpace(os.getpid()) as space:
            runs = space.runs(base, size)
            assert runs == [(base + 0x10000, 0x1000), (base + 0x500000, 0x2000)]
            assert space.read(base + 0x500000, 1) == b"\x02"
            assert space.runs(base, 0x1000) == [(base, 0x1000)]  # small: whole
    finally:
        del base
        m.close()


def test_unreadable_range_yields_nothing() -> None:
    with LinuxProcessSpace(os.getpid()) as space:
        assert space.read(0x10, 64) == b""
        assert space.unreadable == 1
        assert space.alive()
