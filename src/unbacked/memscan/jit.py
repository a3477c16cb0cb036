"""Which JIT engines a process hosts, and whether an unbacked code region is theirs.

JIT compilers (V8, HotSpot, the CLR, LuaJIT) and libffi closures legitimately keep code in
anonymous, often RWX, memory. We recognise the *engine* from the modules the process has loaded
(the calling module is not in a dump), then accept a region as the engine's only if nothing else
is wrong with it: no PE/ELF header or remnant, no thread that *started* there, no YARA hit.
Allowlisting a whole process is not a solution (DESIGN.md §5) — a header or a thread start in
a JIT process is still reported.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from unbacked.memscan.model import Region

#: engine -> module-name pattern (matched case-insensitively against the file name)
ENGINES: dict[str, re.Pattern[str]] = {
    "hotspot": re.compile(r"^(lib)?jvm\.(so|dll)$"),
    "v8": re.compile(
        r"^(node(\.exe)?|libnode\.so.*|libv8\.so.*|v8\.dll|chrom(e|ium)(\.dll|\.exe)?|msedge(\.dll|"
        r"\.exe)?|electron(\.exe)?|libcef\.(so|dll)|code|qtwebengine.*|d8)$"
    ),
    "clr": re.compile(
        r"^(clrjit\.dll|coreclr\.dll|clr\.dll|mscorwks\.dll|libclrjit\.so|libcoreclr\.so)$"
    ),
    "luajit": re.compile(r"^(libluajit.*\.so.*|lua51\.dll|luajit(\.exe)?)$"),
    "spidermonkey": re.compile(r"^(libmozjs.*\.so.*|mozjs.*\.dll|xul\.dll|libxul\.so)$"),
    "pypy": re.compile(r"^(libpypy.*\.so.*|pypy.*)$"),
}

#: libffi closure trampolines (x86-64): ``endbr64; lea r10,[rip-..]; jmp [rip+..]`` (3.4+) and
#: ``movabs r11, fn; movabs r10, ctx; jmp r11`` (older and dlmmap fallback closures)
_FFI_TRAMPOLINE = re.compile(
    rb"\xf3\x0f\x1e\xfa\x4c\x8d\x15|\x49\xbb.{8}\x49\xba.{8}\x49\xff\xe3", re.DOTALL
)
_FFI_MODULE = re.compile(r"^(libffi\.so.*|libffi-\d+\.dll|_ctypes.*)$")


def engines(module_names: Iterable[str]) -> frozenset[str]:
    """JIT engines whose modules are loaded (``libffi`` for ffi closures)."""
    found = set()
    for name in module_names:
        base = name.replace("\\", "/").rsplit("/", 1)[-1].lower()
        for engine, pat in ENGINES.items():
            if pat.match(base):
                found.add(engine)
        if _FFI_MODULE.match(base):
            found.add("libffi")
    return frozenset(found)


def ffi_closure_page(head: bytes) -> bool:
    """True when a small region starts with a libffi closure trampoline.

    Closures come from libffi's dlmalloc, so the first trampoline follows a 16-byte chunk
    header; we accept it anywhere in the first 64 bytes."""
    return _FFI_TRAMPOLINE.search(head, 0, 96) is not None


def explains(region: Region, hosted: frozenset[str], head: bytes) -> str | None:
    """The engine that plausibly owns ``region`` (header-less unbacked code), or None."""
    if "libffi" in hosted and region.size <= 64 << 10 and ffi_closure_page(head):
        return "libffi"
    big = hosted - {"libffi"}
    if big and region.backing.value in ("anonymous", "private", "unknown"):
        return sorted(big)[0]
    return None
