"""PE and ELF headers in memory — whole, or with the tell-tale remnants loaders leave behind.

Reflective loaders often wipe the first bytes of the image they map (``MZ``, ``e_lfanew``, the
ELF identification) to defeat naive header scans, but the rest of the header page keeps the
image's shape: the DOS stub text, the NT signature with a machine type, a section table of
40-byte records with page-aligned addresses, an ELF program-header table. ``classify`` looks for
all of these in the first page of a region; ``reconstruct_pe`` turns a mapped image back into a
file ``pefile`` can read (and an analyst can load), restoring a wiped DOS header.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

#: image machine types we recognise in an NT header (i386, AMD64, ARM64, ARMNT)
PE_MACHINES = {0x14C: "i386", 0x8664: "amd64", 0xAA64: "arm64", 0x1C4: "armnt"}
ELF_MACHINES = {3: "i386", 62: "x86_64", 183: "aarch64", 40: "arm", 243: "riscv"}
_PT_KNOWN = {1, 2, 3, 4, 6, 7, 0x6474E550, 0x6474E551, 0x6474E552, 0x6474E553}
_DOS_STUB = b"This program cannot be run in DOS mode"
#: names of sections compilers and linkers emit; a section table of them is an image remnant
_SECTION_NAMES = {
    b".text", b".rdata", b".data", b".pdata", b".rsrc", b".reloc", b".idata", b".edata",
    b".tls", b".bss", b".xdata", b".CRT", b"CODE", b"DATA", b".crt", b".00cfg", b".gfids",
}  # fmt: skip
#: export names used by reflective-DLL and sRDI loaders
LOADER_EXPORTS = ("reflectiveloader", "_reflectiveloader", "loaddll", "srdi", "bootstrap")
#: most bytes of an image to read for reconstruction
MAX_IMAGE = 64 << 20


@dataclass(frozen=True, slots=True)
class HeaderInfo:
    """What ``classify`` found: ``kind`` is ``pe``/``pe-partial``/``elf``/``elf-partial``."""

    kind: str
    evidence: str
    nt_offset: int | None = None  # offset of "PE\\0\\0" when known
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def partial(self) -> bool:
        return self.kind.endswith("-partial")


def _u16(b: bytes, o: int) -> int:
    return int(struct.unpack_from("<H", b, o)[0]) if 0 <= o <= len(b) - 2 else -1


def _u32(b: bytes, o: int) -> int:
    return int(struct.unpack_from("<I", b, o)[0]) if 0 <= o <= len(b) - 4 else -1


def _nt_ok(head: bytes, off: int) -> bool:
    """A plausible NT header at ``off``: signature, known machine, optional-header magic."""
    if head[off : off + 4] != b"PE\x00\x00" or _u16(head, off + 4) not in PE_MACHINES:
        return False
    nsec = _u16(head, off + 6)
    opt_size = _u16(head, off + 20)
    magic = _u16(head, off + 24)
    return 0 < nsec <= 96 and opt_size in (0xE0, 0xF0) and magic in (0x10B, 0x20B)


def _section_table(head: bytes, start: int = 0) -> tuple[int, int]:
    """(offset, count) of the longest run of plausible section headers at or after ``start``."""
    best = (-1, 0)
    pos = head.find(b".text\x00\x00\x00", start)
    while pos != -1:
        n, off, prev_va = 0, pos, -1
        while off + 40 <= len(head):
            name = head[off : off + 8].rstrip(b"\x00")
            va = _u32(head, off + 12)
            if not name or (name not in _SECTION_NAMES and not name.startswith(b".")):
                break
            if va <= prev_va or va & 0xFFF:
                break
            prev_va = va
            n += 1
            off += 40
        # the table may start before .text (rare) — walk back while records stay plausible
        back = pos - 40
        while back >= 0 and head[back : back + 1] == b"." and _u32(head, back + 12) & 0xFFF == 0:
            back -= 40
            n += 1
        if n > best[1]:
            best = (back + 40, n)
        pos = head.find(b".text\x00\x00\x00", pos + 1)
    return best


def _phdrs(head: bytes, off: int, is64: bool) -> int:
    """How many consecutive plausible ELF program headers start at ``off``."""
    size = 56 if is64 else 32
    n, loads = 0, 0
    while off + size <= len(head) and n < 64:
        if is64:
            p_type, _flags, p_offset, p_vaddr, _pa, p_filesz, p_memsz, p_align = struct.unpack_from(
                "<IIQQQQQQ", head, off
            )
        else:
            p_type, p_offset, p_vaddr, _pa, p_filesz, p_memsz, _flags, p_align = struct.unpack_from(
                "<IIIIIIII", head, off
            )
        if p_type not in _PT_KNOWN or (p_filesz > p_memsz and p_type == 1):
            break
        if p_align and (
            p_align & (p_align - 1) or (p_type == 1 and p_offset % p_align != p_vaddr % p_align)
        ):
            break
        loads += p_type == 1
        n += 1
        off += size
    return n if loads else 0


def classify(head: bytes) -> HeaderInfo | None:
    """Classify the first bytes of a region (ideally one page) as an image header or remnant."""
    if len(head) < 64:
        return None
    # -- PE, intact
    if head[:2] == b"MZ":
        lfanew = _u32(head, 0x3C)
        if 0x40 <= lfanew <= len(head) - 26 and _nt_ok(head, lfanew):
            machine = PE_MACHINES[_u16(head, lfanew + 4)]
            return HeaderInfo(
                "pe",
                f"MZ/PE header ({machine}, {_u16(head, lfanew + 6)} sections)",
                lfanew,
                {"machine": machine},
            )
    # -- ELF, intact
    if head[:4] == b"\x7fELF" and head[4] in (1, 2) and head[5] == 1:
        is64 = head[4] == 2
        e_type, e_machine = _u16(head, 16), _u16(head, 18)
        phoff = struct.unpack_from("<Q" if is64 else "<I", head, 32 if is64 else 28)[0]
        nph = _phdrs(head, phoff, is64) if phoff < len(head) else 0
        if e_type in (2, 3, 4) and e_machine in ELF_MACHINES:
            kind = {2: "EXEC", 3: "DYN", 4: "CORE"}[e_type]
            return HeaderInfo(
                "elf",
                f"ELF header ({ELF_MACHINES[e_machine]}, {kind}, {nph} program headers)",
                details={"machine": ELF_MACHINES[e_machine], "type": kind, "phdrs": nph},
            )
    # -- remnants of a PE header
    remnants = []
    nt = -1
    for off in range(0x40, min(len(head) - 26, 0x400), 8):
        if _nt_ok(head, off):
            nt = off
            break
    if nt >= 0:
        remnants.append(f"NT header at +0x{nt:x} ({PE_MACHINES[_u16(head, nt + 4)]})")
    stub = head.find(_DOS_STUB, 0, 0x400)
    if stub >= 0:
        remnants.append(f"DOS stub at +0x{stub:x}")
    sec_off, nsec = _section_table(head)
    if nsec >= 2:
        remnants.append(f"section table of {nsec} at +0x{sec_off:x}")
    if head[:2] == b"MZ" and remnants:
        remnants.insert(0, "MZ without a valid NT header")
    if remnants and (nt >= 0 or len(remnants) >= 2 or nsec >= 3):
        wiped = "" if head[:2] == b"MZ" else "wiped DOS header; "
        return HeaderInfo(
            "pe-partial",
            wiped + ", ".join(remnants),
            nt if nt >= 0 else None,
            {"section_table": sec_off if nsec >= 2 else None},
        )
    # -- remnants of an ELF header: program headers right after a (wiped) ELF header
    for is64, off in ((True, 64), (False, 52)):
        n = _phdrs(head, off, is64)
        if n >= 2:
            return HeaderInfo(
                "elf-partial",
                f"wiped ELF identification; {n} program headers at +0x{off:x}",
                details={"phdrs": n, "class": 64 if is64 else 32},
            )
    return None


def _restore_dos(image: bytearray, nt_offset: int) -> None:
    """Write back the two DOS-header fields a loader needs: ``MZ`` and ``e_lfanew``."""
    image[0:2] = b"MZ"
    struct.pack_into("<I", image, 0x3C, nt_offset)


def reconstruct_pe(image: bytes, info: HeaderInfo) -> tuple[dict[str, Any], bytes] | None:
    """Parse a mapped PE image with ``pefile``; return its summary and a file-layout rebuild.

    The image is as mapped (section at its RVA). The rebuild sets every section's raw pointer
    and size to its virtual ones, which makes the memory layout a valid file layout (the
    approach of pe-sieve's "virtual" dumps) and restores a wiped DOS header.
    """
    try:
        import pefile
    except ImportError:  # the [memscan] extra is not installed: no reconstruction
        return None
    if info.nt_offset is None or len(image) < 0x40:  # no room for a DOS header
        return None
    buf = bytearray(image[:MAX_IMAGE])
    if buf[:2] != b"MZ" or _u32(bytes(buf[:0x40]), 0x3C) != info.nt_offset:
        _restore_dos(buf, info.nt_offset)
    try:
        pe = pefile.PE(data=bytes(buf), fast_load=True)
        for s in pe.sections:
            s.PointerToRawData = s.VirtualAddress
            s.SizeOfRawData = max(s.Misc_VirtualSize, s.SizeOfRawData)
        rebuilt = pe.write()
        # no pe.close(): built from bytes there is nothing to release, and close() runs a
        # full gc.collect() whose cost grows with the heap of a long scan
        pe = pefile.PE(data=bytes(rebuilt), fast_load=True)
        pe.parse_data_directories(
            directories=[
                pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_IMPORT"],
                pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_EXPORT"],
            ]
        )
    except Exception:  # pefile raises bare PEFormatError / struct errors on hostile input
        return None
    sections = []
    entry = pe.OPTIONAL_HEADER.AddressOfEntryPoint
    entry_section = None
    for s in pe.sections:
        name = s.Name.rstrip(b"\x00").decode("latin-1")
        sections.append(
            {
                "name": name,
                "rva": s.VirtualAddress,
                "size": s.Misc_VirtualSize,
                "characteristics": s.Characteristics,
            }
        )
        if s.VirtualAddress <= entry < s.VirtualAddress + max(s.Misc_VirtualSize, 1):
            entry_section = name
    imports = []
    for imp in getattr(pe, "DIRECTORY_ENTRY_IMPORT", [])[:64]:
        imports.append({"dll": imp.dll.decode("latin-1", "replace"), "functions": len(imp.imports)})
    exports = []
    exp = getattr(pe, "DIRECTORY_ENTRY_EXPORT", None)
    if exp is not None:
        for sym in exp.symbols[:64]:
            if sym.name:
                exports.append(sym.name.decode("latin-1", "replace"))
    loader = [e for e in exports if any(k in e.lower() for k in LOADER_EXPORTS)]
    summary = {
        "machine": PE_MACHINES.get(pe.FILE_HEADER.Machine, hex(pe.FILE_HEADER.Machine)),
        "dll": bool(pe.FILE_HEADER.Characteristics & 0x2000),
        "image_size": pe.OPTIONAL_HEADER.SizeOfImage,
        "entry_point": entry,
        "entry_section": entry_section,
        "sections": sections,
        "imports": imports,
        "exports": exports,
        "loader_exports": loader,
        "timestamp": pe.FILE_HEADER.TimeDateStamp,
    }
    return summary, bytes(rebuilt)


def image_size_hint(head: bytes, info: HeaderInfo) -> int | None:
    """SizeOfImage from an (intact or remnant) NT header, to know how much to read."""
    if info.nt_offset is None:
        return None
    size = _u32(head, info.nt_offset + 24 + 56)
    return size if 0 < size <= MAX_IMAGE else None
