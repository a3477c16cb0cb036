"""Positive control: a ctypes shellcode page (benign stub ``mov eax, 42; ret``).

usage: python shellcode_py.py [wx|rwx] [--connect PORT]

wx: mmap a page RW, write the stub, mprotect it R-X, call it (the usual W^X shellcode runner).
rwx: mmap the page RWX directly. Both through libc called via libffi, from a CPython process.
After the act it prints ``READY {json}`` and waits until stdin closes.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import socket
import sys

STUB = b"\xb8\x2a\x00\x00\x00\xc3"  # mov eax, 42 ; ret
PAGE = 4096
PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4
MAP_PRIVATE, MAP_ANONYMOUS = 0x02, 0x20

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
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]


def main() -> int:
    args = sys.argv[1:]
    mode = args[0] if args and not args[0].startswith("--") else "wx"
    port = int(args[args.index("--connect") + 1]) if "--connect" in args else 0
    prot = PROT_READ | PROT_WRITE | (PROT_EXEC if mode == "rwx" else 0)
    page = libc.mmap(None, PAGE, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    if page in (None, ctypes.c_void_p(-1).value):
        raise SystemExit(f"mmap failed: errno {ctypes.get_errno()}")
    ctypes.memmove(page, STUB, len(STUB))
    if mode != "rwx" and libc.mprotect(page, PAGE, PROT_READ | PROT_EXEC) != 0:
        raise SystemExit(f"mprotect failed: errno {ctypes.get_errno()}")
    result = ctypes.CFUNCTYPE(ctypes.c_int)(page)()
    if result != 42:
        raise SystemExit(f"stub returned {result}")
    if port:
        with socket.socket() as s, contextlib.suppress(OSError):
            s.connect(("127.0.0.1", port))
    info = {
        "pid": os.getpid(),
        "mode": f"shellcode-{mode}",
        "entry": page,
        "regions": [{"base": page, "size": PAGE, "prot": "rwx" if mode == "rwx" else "r-x"}],
        "result": result,
    }
    print("READY " + json.dumps(info), flush=True)
    while sys.stdin.buffer.read(256):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
