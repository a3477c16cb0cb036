"""A Windows x64 process with known injected regions, written as a minidump by ``mdwriter``.

Injected (must be found):            Clean (must not be reported):
  REFLECTIVE  private reflective DLL    victim.exe, ntdll.dll, kernel32.dll, clrjit.dll images
              (ReflectiveLoader export,  JIT      RWX code heap of the CLR (no header, no thread
              thread started in it)               start)
  SHELLCODE   private RWX shellcode      HEAP     rw- heap holding a PE *file* buffer
  WIPED       private r-x PE, DOS header EMPTY    private r-x page of zeros
              wiped                      STACK    the thread stacks
  SECTION     MEM_MAPPED r-x view with
              shellcode, thread running
              in it
  PHANTOM     MEM_IMAGE mapping no module
              list entry accounts for
              (doppelganging / phantom DLL)
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from tests.memscan.mdwriter import (
    MEM_IMAGE,
    MEM_MAPPED,
    MEM_PRIVATE,
    PAGE,
    PAGE_EXECUTE_READ,
    PAGE_EXECUTE_READWRITE,
    PAGE_EXECUTE_WRITECOPY,
    PAGE_READONLY,
    PAGE_READWRITE,
    Mem,
    Minidump,
    ThreadSpec,
    build_pe,
)

REFLECTIVE = 0x1F0000
SHELLCODE = 0x2A0000
WIPED = 0x300000
SECTION = 0x500000
JIT = 0x600000
HEAP = 0x700000
EMPTY = 0x800000
STACK = 0x900000
PHANTOM = 0x7FF000000000
INJECTED = (REFLECTIVE, SHELLCODE, WIPED, SECTION, PHANTOM)

#: x64 shellcode in the style of a stager: PEB walk, hashing loop, call/ret
SHELLCODE_BYTES = bytes.fromhex(
    "fc4883e4f0e8c0000000415141505251564831d265488b5260488b5218488b5220488b7250480fb74a4a"
    "4d31c94831c0ac3c617c022c2041c1c90d4101c1e2ed524151488b52208b423c4801d08b808800000048"
    "85c074674801d0508b4818448b40204901d0e35648ffc9418b34884801d64d31c94831c0ac41c1c90d41"
    "01c138e075f14c034c24084539d175d858448b40244901d066418b0c48448b401c4901d0418b04884801"
    "d0415841585e595a41584159415a4883ec204152ffe05841595a488b12e957ffffff5d"
)


def _image(name_base: int, size: int, code: bytes) -> list[Mem]:
    """A clean MEM_IMAGE mapping: header page r--, .text r-x, .data rw-."""
    hdr = build_pe(exports=("Export1",), dll_name="clean.dll")[:PAGE]
    return [
        Mem(name_base, PAGE, PAGE_READONLY, MEM_IMAGE, hdr, alloc_protect=PAGE_EXECUTE_WRITECOPY),
        Mem(
            name_base + PAGE,
            size - 2 * PAGE,
            PAGE_EXECUTE_READ,
            MEM_IMAGE,
            code,
            alloc_base=name_base,
            alloc_protect=PAGE_EXECUTE_WRITECOPY,
        ),
        Mem(
            name_base + size - PAGE,
            PAGE,
            PAGE_READWRITE,
            MEM_IMAGE,
            b"\x01" * 64,
            alloc_base=name_base,
            alloc_protect=PAGE_EXECUTE_WRITECOPY,
        ),
    ]


def build() -> Minidump:
    pe = build_pe()
    code = pe[PAGE : 2 * PAGE]
    md = Minidump(pid=4242)
    images = [
        ("C:\\Program Files\\Victim\\victim.exe", 0x140000000, 0x10000),
        ("C:\\Windows\\System32\\ntdll.dll", 0x7FFA10000000, 0x20000),
        ("C:\\Windows\\System32\\kernel32.dll", 0x7FFA20000000, 0x10000),
        ("C:\\Windows\\Microsoft.NET\\Framework64\\v4.0.30319\\clrjit.dll", 0x7FFA30000000,
         0x10000),
    ]  # fmt: skip
    for name, base, size in images:
        md.modules.append((name, base, size))
        md.memory += _image(base, size, code)
    ntdll_text = 0x7FFA10000000 + PAGE + 0x10
    # reflective DLL: one private allocation, header rw-, .text r-x, .rdata r--
    md.memory += [
        Mem(REFLECTIVE, PAGE, PAGE_READWRITE, MEM_PRIVATE, pe[:PAGE],
            alloc_protect=PAGE_EXECUTE_READWRITE),
        Mem(REFLECTIVE + PAGE, PAGE, PAGE_EXECUTE_READ, MEM_PRIVATE, pe[PAGE : 2 * PAGE],
            alloc_base=REFLECTIVE, alloc_protect=PAGE_EXECUTE_READWRITE),
        Mem(REFLECTIVE + 2 * PAGE, PAGE, PAGE_READONLY, MEM_PRIVATE, pe[2 * PAGE :],
            alloc_base=REFLECTIVE, alloc_protect=PAGE_EXECUTE_READWRITE),
    ]  # fmt: skip
    md.memory.append(Mem(SHELLCODE, PAGE, PAGE_EXECUTE_READWRITE, MEM_PRIVATE, SHELLCODE_BYTES))
    wiped = bytearray(pe)
    wiped[0:0x40] = b"\x00" * 0x40  # MZ and e_lfanew gone; stub, NT header, sections remain
    md.memory.append(Mem(WIPED, 3 * PAGE, PAGE_EXECUTE_READ, MEM_PRIVATE, bytes(wiped)))
    md.memory.append(Mem(SECTION, PAGE, PAGE_EXECUTE_READ, MEM_MAPPED, SHELLCODE_BYTES * 4))
    md.memory += _image(PHANTOM, 0x4000, code)  # an image section, but not in the ModuleList
    # clean: CLR JIT code heap (code-like, RWX, no header, threads only pass through it)
    md.memory.append(Mem(JIT, 4 * PAGE, PAGE_EXECUTE_READWRITE, MEM_PRIVATE, code * 4))
    md.memory.append(Mem(HEAP, 4 * PAGE, PAGE_READWRITE, MEM_PRIVATE, b"\x00" * 64 + pe))
    md.memory.append(Mem(EMPTY, PAGE, PAGE_EXECUTE_READ, MEM_PRIVATE, None))
    md.memory.append(
        Mem(STACK, 4 * PAGE, PAGE_READWRITE, MEM_PRIVATE, (ntdll_text).to_bytes(8, "little") * 16)
    )
    md.threads = [
        ThreadSpec(100, 0x140001000, ntdll_text, STACK + 0x100),  # main thread
        ThreadSpec(101, REFLECTIVE + PAGE + 0x10, ntdll_text, STACK + 0x1100),  # reflective
        ThreadSpec(102, 0x7FFA10001000, SECTION + 0x20, STACK + 0x2100),  # runs in the view
        ThreadSpec(103, 0x7FFA30001000, JIT + 0x40, STACK + 0x3100),  # JIT worker in JIT code
    ]
    return md


def write(path: str | os.PathLike[str]) -> Path:
    md = build()
    with open(path, "wb") as fh:
        md.write(fh)
    return Path(path)


def to_bytes() -> bytes:
    buf = io.BytesIO()
    build().write(buf)
    return buf.getvalue()
