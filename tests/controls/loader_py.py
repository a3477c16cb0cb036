"""Positive control: the reflective ELF loader of loader.c, written in Python with ctypes.

usage: python loader_py.py PAYLOAD.so [wx|rwx] [--connect PORT]

The payload bytes are read once into a Python ``bytes`` and never mapped from the file: the code
ends up in anonymous memory that no file backs, mapped by libc's mmap/mprotect called through
libffi. After the act it prints ``READY {json}`` and waits until stdin closes.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import mmap
import os
import socket
import struct
import sys

PAGE = mmap.PAGESIZE
PROT_NONE, PROT_READ, PROT_WRITE, PROT_EXEC = 0, 1, 2, 4
MAP_PRIVATE, MAP_ANONYMOUS = 0x02, 0x20
PT_LOAD, PT_DYNAMIC = 1, 2
DT_NULL, DT_RELA, DT_RELASZ, DT_RELAENT = 0, 7, 8, 9
R_X86_64_RELATIVE = 8

libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_long,
]
libc.mprotect.restype = ctypes.c_int
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]


def _down(x: int) -> int:
    return x & ~(PAGE - 1)


def _up(x: int) -> int:
    return (x + PAGE - 1) & ~(PAGE - 1)


def _prot(flags: int) -> int:
    return (
        (PROT_READ if flags & 4 else 0)
        | (PROT_WRITE if flags & 2 else 0)
        | (PROT_EXEC if flags & 1 else 0)
    )


def load(image: bytes, mode: str) -> tuple[int, int, list[dict[str, object]]]:
    """Map ``image`` into anonymous memory, relocate it, return (base, entry, exec regions)."""
    if image[:4] != b"\x7fELF":
        raise SystemExit("payload is not ELF")
    entry_off, phoff = struct.unpack_from("<QQ", image, 24)
    phentsize, phnum = struct.unpack_from("<HH", image, 54)
    phdrs = [struct.unpack_from("<IIQQQQQQ", image, phoff + i * phentsize) for i in range(phnum)]
    loads = [p for p in phdrs if p[0] == PT_LOAD]
    lo = _down(min(p[3] for p in loads))
    span = _up(max(p[3] + p[6] for p in loads) - lo)
    prot0 = PROT_READ | PROT_WRITE | (PROT_EXEC if mode == "rwx" else 0)
    base = libc.mmap(None, span, prot0, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    if base in (None, ctypes.c_void_p(-1).value):
        raise SystemExit(f"mmap failed: errno {ctypes.get_errno()}")
    for _t, _f, off, vaddr, _pa, filesz, memsz, _al in loads:
        ctypes.memmove(base + vaddr - lo, image[off : off + filesz], filesz)
        ctypes.memset(base + vaddr - lo + filesz, 0, memsz - filesz)
    for p in phdrs:
        if p[0] == PT_DYNAMIC:
            _relocate(base, lo, p[3])
    regions: list[dict[str, object]] = []
    if mode == "rwx":
        regions.append({"base": base, "size": span, "prot": "rwx"})
    else:
        for _t, flags, _o, vaddr, _pa, _fs, memsz, _al in loads:
            start, end = _down(vaddr - lo), _up(vaddr - lo + memsz)
            prot = _prot(flags)
            if libc.mprotect(base + start, end - start, prot) != 0:
                raise SystemExit(f"mprotect failed: errno {ctypes.get_errno()}")
            if prot & PROT_EXEC:
                regions.append({"base": base + start, "size": end - start, "prot": "r-x"})
    return base, base + entry_off - lo, regions


def _relocate(base: int, lo: int, dyn_vaddr: int) -> None:
    tags: dict[int, int] = {}
    addr = base + dyn_vaddr - lo
    while True:
        tag, val = struct.unpack("<qQ", ctypes.string_at(addr, 16))
        if tag == DT_NULL:
            break
        tags[tag] = val
        addr += 16
    rela, size, ent = tags.get(DT_RELA, 0), tags.get(DT_RELASZ, 0), tags.get(DT_RELAENT, 24)
    for off in range(0, size if rela else 0, ent):
        r_offset, r_info, r_addend = struct.unpack(
            "<QQq", ctypes.string_at(base + rela - lo + off, 24)
        )
        if r_info & 0xFFFFFFFF != R_X86_64_RELATIVE:
            raise SystemExit("unsupported relocation")
        ctypes.c_uint64.from_address(base + r_offset - lo).value = base - lo + r_addend


def main() -> int:
    args = sys.argv[1:]
    path = args[0]
    mode = args[1] if len(args) > 1 and not args[1].startswith("--") else "wx"
    port = int(args[args.index("--connect") + 1]) if "--connect" in args else 0
    with open(path, "rb") as fh:
        image = fh.read()
    base, entry, regions = load(image, mode)
    result = ctypes.CFUNCTYPE(ctypes.c_int)(entry)()
    if result != 42:
        raise SystemExit(f"payload returned {result}")
    if port:
        with socket.socket() as s, contextlib.suppress(OSError):
            s.connect(("127.0.0.1", port))
    info = {
        "pid": os.getpid(),
        "mode": f"ctypes-{mode}",
        "base": base,
        "entry": entry,
        "regions": regions,
        "result": result,
    }
    print("READY " + json.dumps(info), flush=True)
    while sys.stdin.buffer.read(256):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
