"""The ring-buffer record layout, mirrored from ``bpf/unbacked.h`` as a numpy structured dtype.

Every record of the eBPF program has this one fixed size, so a contiguous run of the ring
buffer (or of a spool segment) is viewed as an array of ``EVENT_DTYPE`` and decoded column by
column; no Python object is built per event. ``tests/sensor/test_layout.py`` compiles a C
program that prints ``offsetof`` of every field and pins this dtype against it.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np

PATH_COMPS = 8
COMP_LEN = 32
NAME_LEN = 32
STR_LEN = 128
HDR_PAGES = 16
FRAMES = 8
#: ``frame_kind`` flag: the frame's return address follows an indirect call (call reg/[mem])
FRAME_INDIRECT = 0x80


class EvType(IntEnum):
    """``enum ub_type``."""

    MMAP = 1
    MPROTECT = 2
    PKEY_MPROTECT = 3
    MEMFD_CREATE = 4
    EXEC = 5
    CONNECT = 6
    FORK = 7
    EXIT = 8
    PTRACE = 9
    VM_WRITE = 10
    MEM_OPEN = 11
    MEM_WRITE = 12


class PtraceReq(IntEnum):
    """The ptrace requests the sensor records (x86-64 numbers)."""

    TRACEME = 0
    POKETEXT = 4
    POKEDATA = 5
    POKEUSER = 6
    SETREGS = 13
    ATTACH = 16
    SETREGSET = 0x4205
    SEIZE = 0x4206


class VmaKind(IntEnum):
    """``enum ub_vma_kind``: what lies behind an address."""

    UNKNOWN = 0
    ANON = 1
    FILE = 2
    STACK = 3
    HEAP = 4
    VDSO = 5


class Header(IntEnum):
    """``enum ub_header``: what the in-kernel probe found at or below a region."""

    UNKNOWN = 0
    NONE = 1
    ELF = 2
    PE = 3


class Stat(IntEnum):
    """Slots of the per-CPU ``ub_stats`` map."""

    EMITTED = 0
    LOST = 1
    SUPPRESSED = 2
    INFLIGHT_FULL = 3
    VMA_FAIL = 4
    FILTERED = 5
    FAILED = 6


STAT_SLOTS = 8

_U8, _U16, _U32, _U64, _I64 = np.uint8, np.uint16, np.uint32, np.uint64, np.int64

EVENT_DTYPE = np.dtype(
    [
        ("ts", _U64),
        ("seq", _U64),
        ("proc_start", _U64),
        ("parent_start", _U64),
        ("addr", _U64),
        ("len", _U64),
        ("flags", _U64),
        ("fd", _I64),
        ("ret", _I64),
        ("syscall_ip", _U64),
        ("caller_ip", _U64),
        ("sc_vma_start", _U64),
        ("sc_pgoff", _U64),
        ("caller_vma_start", _U64),
        ("caller_pgoff", _U64),
        ("vma_start", _U64),
        ("vma_end", _U64),
        ("vma_flags", _U64),
        ("vma_pgoff", _U64),
        ("alloc_start", _U64),
        ("suppressed", _U64),
        ("type", _U32),
        ("pid", _U32),
        ("tid", _U32),
        ("ppid", _U32),
        ("uid", _U32),
        ("prot", _U32),
        ("old_prot", _U32),
        ("header_kind", _U32),
        ("header_delta", _U32),
        ("vma_kind", _U8),
        ("sc_kind", _U8),
        ("caller_kind", _U8),
        ("exe_depth", _U8),
        ("path_depth", _U8),
        ("exe_trunc", _U8),
        ("path_trunc", _U8),
        ("family", _U8),
        ("remote_port", _U16),
        ("pad16", _U16),
        ("pad32", _U32),
        ("remote_addr", _U8, (16,)),
        ("comm", "S16"),
        ("sc_name", f"S{NAME_LEN}"),
        ("caller_name", f"S{NAME_LEN}"),
        ("str", f"S{STR_LEN}"),
        ("exe", f"S{COMP_LEN}", (PATH_COMPS,)),
        ("path", f"S{COMP_LEN}", (PATH_COMPS,)),
        # record layout v2: executable file identity, target of a cross-process act
        ("exe_ino", _U64),
        ("target_start", _U64),
        ("exe_dev", _U32),
        ("target_pid", _U32),
        ("target_tid", _U32),
        ("target_ppid", _U32),
        ("frame_ip", _U64, (FRAMES,)),
        ("frame_off", _U64, (FRAMES,)),
        ("frame_kind", _U8, (FRAMES,)),
        ("frame_name", f"S{NAME_LEN}", (FRAMES,)),
        # v3: the target thread's instruction pointer at a cross-process write
        ("target_ip", _U64),
    ],
    align=True,
)

#: size of one record's payload; the ring buffer adds an 8-byte header per record
EVENT_SIZE = EVENT_DTYPE.itemsize
RECORD_DTYPE = np.dtype([("hdr_len", _U32), ("hdr_pgoff", _U32), ("ev", EVENT_DTYPE)])

assert EVENT_SIZE % 8 == 0, "records must stay 8-byte aligned in the ring buffer"
