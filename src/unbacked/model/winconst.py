"""Memory protection and allocation constants (Windows PAGE_*/MEM_*, Linux PROT_*/MAP_*).

Protections in the event model are stored as the OS's own mask (``os`` column says which); these
helpers name and classify them the same way for both, so detectors and renderers do not care.
"""

from __future__ import annotations

# Windows PAGE_* (low byte is exclusive; modifiers above)
PAGE_NOACCESS = 0x01
PAGE_READONLY = 0x02
PAGE_READWRITE = 0x04
PAGE_WRITECOPY = 0x08
PAGE_EXECUTE = 0x10
PAGE_EXECUTE_READ = 0x20
PAGE_EXECUTE_READWRITE = 0x40
PAGE_EXECUTE_WRITECOPY = 0x80
PAGE_GUARD = 0x100
PAGE_NOCACHE = 0x200
PAGE_WRITECOMBINE = 0x400
PAGE_TARGETS_INVALID = 0x40000000

_PAGE_NAMES = {
    PAGE_NOACCESS: "PAGE_NOACCESS",
    PAGE_READONLY: "PAGE_READONLY",
    PAGE_READWRITE: "PAGE_READWRITE",
    PAGE_WRITECOPY: "PAGE_WRITECOPY",
    PAGE_EXECUTE: "PAGE_EXECUTE",
    PAGE_EXECUTE_READ: "PAGE_EXECUTE_READ",
    PAGE_EXECUTE_READWRITE: "PAGE_EXECUTE_READWRITE",
    PAGE_EXECUTE_WRITECOPY: "PAGE_EXECUTE_WRITECOPY",
}
_PAGE_SHORT = {
    PAGE_NOACCESS: "---",
    PAGE_READONLY: "R--",
    PAGE_READWRITE: "RW-",
    PAGE_WRITECOPY: "RC-",
    PAGE_EXECUTE: "--X",
    PAGE_EXECUTE_READ: "R-X",
    PAGE_EXECUTE_READWRITE: "RWX",
    PAGE_EXECUTE_WRITECOPY: "RCX",
}
_PAGE_MODIFIERS = {PAGE_GUARD: "GUARD", PAGE_NOCACHE: "NOCACHE", PAGE_WRITECOMBINE: "WRITECOMBINE"}

MEM_COMMIT = 0x1000
MEM_RESERVE = 0x2000
MEM_RESET = 0x80000
MEM_TOP_DOWN = 0x100000
MEM_LARGE_PAGES = 0x20000000
MEM_IMAGE = 0x1000000
MEM_MAPPED = 0x40000
MEM_PRIVATE = 0x20000
_MEM_NAMES = {
    MEM_COMMIT: "MEM_COMMIT",
    MEM_RESERVE: "MEM_RESERVE",
    MEM_RESET: "MEM_RESET",
    MEM_TOP_DOWN: "MEM_TOP_DOWN",
    MEM_LARGE_PAGES: "MEM_LARGE_PAGES",
}

# Linux PROT_*
PROT_READ = 0x1
PROT_WRITE = 0x2
PROT_EXEC = 0x4


def _page_base(mask: int) -> int:
    return mask & 0xFF


def is_executable(mask: int | None, os: str | None = "windows") -> bool:
    if mask is None:
        return False
    if os == "linux":
        return bool(mask & PROT_EXEC)
    return bool(_page_base(mask) & 0xF0)


def is_writable(mask: int | None, os: str | None = "windows") -> bool:
    if mask is None:
        return False
    if os == "linux":
        return bool(mask & PROT_WRITE)
    return _page_base(mask) in (
        PAGE_READWRITE,
        PAGE_WRITECOPY,
        PAGE_EXECUTE_READWRITE,
        PAGE_EXECUTE_WRITECOPY,
    )


def short_protection(mask: int | None, os: str | None = "windows") -> str:
    """``RWX``/``R-X``/``RW-`` style, the same for both OSes."""
    if mask is None:
        return "?"
    if os == "linux":
        return (
            ("R" if mask & PROT_READ else "-")
            + ("W" if mask & PROT_WRITE else "-")
            + ("X" if mask & PROT_EXEC else "-")
        )
    return _PAGE_SHORT.get(_page_base(mask), f"0x{mask:x}")


def protection_name(mask: int | None, os: str | None = "windows") -> str:
    """Full name: ``PAGE_EXECUTE_READWRITE|GUARD`` (Windows) or ``PROT_READ|PROT_EXEC``."""
    if mask is None:
        return "unknown"
    if os == "linux":
        parts = [
            n for bit, n in ((1, "PROT_READ"), (2, "PROT_WRITE"), (4, "PROT_EXEC")) if mask & bit
        ]
        return "|".join(parts) or "PROT_NONE"
    name = _PAGE_NAMES.get(_page_base(mask), f"0x{_page_base(mask):x}")
    mods = [n for bit, n in _PAGE_MODIFIERS.items() if mask & bit]
    return "|".join([name, *mods])


def alloc_type_name(mask: int | None) -> str:
    if mask is None:
        return "unknown"
    parts = [n for bit, n in _MEM_NAMES.items() if mask & bit]
    rest = mask & ~sum(_MEM_NAMES)
    if rest:
        parts.append(f"0x{rest:x}")
    return "|".join(parts) or "0"


# Windows process access rights (OpenProcess, Sysmon 10 GrantedAccess), by bit
PROCESS_ACCESS_RIGHTS = {
    0x0001: "PROCESS_TERMINATE",
    0x0002: "PROCESS_CREATE_THREAD",
    0x0004: "PROCESS_SET_SESSIONID",
    0x0008: "PROCESS_VM_OPERATION",
    0x0010: "PROCESS_VM_READ",
    0x0020: "PROCESS_VM_WRITE",
    0x0040: "PROCESS_DUP_HANDLE",
    0x0080: "PROCESS_CREATE_PROCESS",
    0x0100: "PROCESS_SET_QUOTA",
    0x0200: "PROCESS_SET_INFORMATION",
    0x0400: "PROCESS_QUERY_INFORMATION",
    0x0800: "PROCESS_SUSPEND_RESUME",
    0x1000: "PROCESS_QUERY_LIMITED_INFORMATION",
    0x2000: "PROCESS_SET_LIMITED_INFORMATION",
    0x00010000: "DELETE",
    0x00020000: "READ_CONTROL",
    0x00040000: "WRITE_DAC",
    0x00080000: "WRITE_OWNER",
    0x00100000: "SYNCHRONIZE",
    0x01000000: "ACCESS_SYSTEM_SECURITY",
    0x02000000: "MAXIMUM_ALLOWED",
    0x10000000: "GENERIC_ALL",
    0x20000000: "GENERIC_EXECUTE",
    0x40000000: "GENERIC_WRITE",
    0x80000000: "GENERIC_READ",
}
#: every standard right plus the specific rights of the pre-Vista definition (0x1F0FFF); the
#: Vista+ definition is 0x1FFFFF, and injectors commonly ask for 0x1F3FFF: all of them are
#: "all access" in effect
_PROCESS_ALL_ACCESS_CORE = 0x1F0FFF
_PROCESS_ALL_ACCESS = 0x1FFFFF


def process_access_names(mask: int | None) -> str:
    """A process access mask in words: ``0x1F3FFF`` -> ``PROCESS_ALL_ACCESS``, ``0x1438`` ->
    ``PROCESS_VM_OPERATION|PROCESS_VM_READ|PROCESS_VM_WRITE|PROCESS_QUERY_INFORMATION``.

    Rights in ascending bit order; ``PROCESS_QUERY_LIMITED_INFORMATION`` is left out beside
    ``PROCESS_QUERY_INFORMATION``, which grants it; bits without a name stay in hex."""
    if mask is None:
        return "?"
    if mask == 0:
        return "no access"
    if mask & _PROCESS_ALL_ACCESS_CORE == _PROCESS_ALL_ACCESS_CORE:
        rest = mask & ~_PROCESS_ALL_ACCESS
        return "PROCESS_ALL_ACCESS" + (f"|{process_access_names(rest)}" if rest else "")
    names = []
    unknown = 0
    bit = 1
    while bit <= mask:
        if mask & bit:
            name = PROCESS_ACCESS_RIGHTS.get(bit)
            if name is None:
                unknown |= bit
            elif not (bit == 0x1000 and mask & 0x0400):
                names.append(name)
        bit <<= 1
    if unknown:
        names.append(f"0x{unknown:x}")
    return "|".join(names)
