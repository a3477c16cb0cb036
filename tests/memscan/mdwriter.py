"""A small minidump *writer*, used only to make test fixtures with known injected regions.

It writes the streams the scanner reads — SystemInfo, ModuleList, ThreadList (with AMD64
CONTEXT records), ThreadInfoList, MemoryInfoList, Memory64List, MiscInfo — plus vendor streams
(Wine's 0xFFF0, Breakpad's 0x47670001) that a reader must skip. Memory can be given as bytes or
as a size with an optional fill function, so the benchmark can write a multi-GiB dump
sparsely without holding it in memory.

Also here: ``build_pe``, a minimal but valid PE32+ DLL (two sections, an export directory and
an import directory), laid out with file alignment = section alignment so the file image and
the mapped image are the same bytes — what a reflective loader leaves in memory.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

PAGE = 0x1000
MEM_COMMIT, MEM_RESERVE = 0x1000, 0x2000
MEM_IMAGE, MEM_MAPPED, MEM_PRIVATE = 0x1000000, 0x40000, 0x20000
PAGE_NOACCESS, PAGE_READONLY, PAGE_READWRITE = 0x01, 0x02, 0x04
PAGE_EXECUTE, PAGE_EXECUTE_READ, PAGE_EXECUTE_READWRITE = 0x10, 0x20, 0x40
PAGE_WRITECOPY, PAGE_EXECUTE_WRITECOPY = 0x08, 0x80
CONTEXT_SIZE = 0x4D0


@dataclass
class Mem:
    """One MemoryInfoList entry and, when captured, its bytes."""

    base: int
    size: int
    protect: int
    type: int
    data: bytes | None = None  # None: zeros (written sparsely) unless ``fill`` is given
    fill: Callable[[int, int], bytes] | None = None  # (offset, length) -> bytes
    alloc_base: int | None = None
    alloc_protect: int | None = None
    state: int = MEM_COMMIT
    captured: bool = True


@dataclass
class ThreadSpec:
    tid: int
    start: int
    rip: int
    rsp: int = 0
    teb: int = 0


@dataclass
class Minidump:
    """Everything a fixture dump holds."""

    pid: int = 4242
    modules: list[tuple[str, int, int]] = field(default_factory=list)
    threads: list[ThreadSpec] = field(default_factory=list)
    memory: list[Mem] = field(default_factory=list)
    vendor_streams: list[tuple[int, bytes]] = field(
        default_factory=lambda: [(0xFFF0, b"wine-vendor-stream\x00" * 4),
                                 (0x47670001, b"breakpad\x00" * 8)]
    )  # fmt: skip
    with_memory_info: bool = True

    def write(self, out: BinaryIO) -> None:
        w = _Writer(out)
        w.write(self)


def _string(text: str) -> bytes:
    raw = text.encode("utf-16-le")
    return struct.pack("<I", len(raw)) + raw + b"\x00\x00"


class _Writer:
    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.blob = bytearray()  # stream area, placed right after header+directory
        self.base = 0

    def _add(self, data: bytes, align: int = 8) -> int:
        while (self.base + len(self.blob)) % align:
            self.blob.append(0)
        rva = self.base + len(self.blob)
        self.blob += data
        return rva

    def write(self, md: Minidump) -> None:
        nstreams = 6 + len(md.vendor_streams) + (1 if md.with_memory_info else 0)
        self.base = 32 + 12 * nstreams
        directory: list[tuple[int, int, int]] = []

        def stream(stype: int, data: bytes) -> None:
            directory.append((stype, len(data), self._add(data)))

        csd = self._add(_string("Service Pack 0"))
        sysinfo = struct.pack("<HHHBBIIIIIHH", 9, 6, 0x9E0A, 2, 1, 10, 0, 19045, 2, csd, 0, 0)
        stream(7, sysinfo + b"\x00" * 24)
        names = [self._add(_string(n)) for n, _, _ in md.modules]
        mods = struct.pack("<I", len(md.modules))
        for (_, base, size), name_rva in zip(md.modules, names, strict=True):
            mods += struct.pack("<QIIII", base, size, 0, 0x5F000000, name_rva)
            mods += struct.pack("<I", 0xFEEF04BD) + b"\x00" * 48 + b"\x00" * 32
        stream(4, mods)
        captured = sorted((m for m in md.memory if m.captured), key=lambda m: m.base)
        # thread contexts and stacks
        thread_rows = []
        for t in md.threads:
            ctx = bytearray(CONTEXT_SIZE)
            struct.pack_into("<I", ctx, 0x30, 0x10001F)  # CONTEXT_ALL (AMD64)
            struct.pack_into("<Q", ctx, 0x98, t.rsp)
            struct.pack_into("<Q", ctx, 0xF8, t.rip)
            ctx_rva = self._add(bytes(ctx), 16)
            thread_rows.append((t, ctx_rva))
        info = struct.pack("<IIQ", 16, 64, len(md.threads))
        for t in md.threads:
            info += struct.pack("<IIIIQQQQQQ", t.tid, 0, 0, 0x103, 0, 0, 0, 0, t.start, 1)
        stream(17, info)
        misc = struct.pack("<IIIIII", 24, 1, md.pid, 0x60000000, 0, 0)
        stream(15, misc)
        if md.with_memory_info:
            mi = struct.pack("<IIQ", 16, 48, len(md.memory))
            for m in sorted(md.memory, key=lambda m: m.base):
                mi += struct.pack(
                    "<QQIIQIIII",
                    m.base,
                    m.alloc_base if m.alloc_base is not None else m.base,
                    m.alloc_protect if m.alloc_protect is not None else m.protect,
                    0,
                    m.size,
                    m.state,
                    m.protect,
                    m.type,
                    0,
                )
            stream(16, mi)
        for stype, data in md.vendor_streams:
            stream(stype, data)
        # the Memory64List descriptor block, and where the raw memory will start
        m64_head_size = 16 + 16 * len(captured)
        m64_rva = self._add(b"\x00" * m64_head_size)
        # thread list last among streams (its stack descriptors need memory rvas)
        tl_size = 4 + 48 * len(thread_rows)
        tl_rva = self._add(b"\x00" * tl_size)
        directory.append((3, tl_size, tl_rva))
        directory.append((9, m64_head_size, m64_rva))
        data_rva = self.base + len(self.blob)
        data_rva += (-data_rva) % PAGE
        offsets = {}
        rva = data_rva
        for m in captured:
            offsets[m.base] = rva
            rva += m.size
        m64 = struct.pack("<QQ", len(captured), data_rva)
        for m in captured:
            m64 += struct.pack("<QQ", m.base, m.size)
        self.blob[m64_rva - self.base : m64_rva - self.base + len(m64)] = m64
        tl = struct.pack("<I", len(thread_rows))
        for t, ctx_rva in thread_rows:
            stack_rva, stack_size = 0, 0
            for m in captured:
                if m.base <= t.rsp < m.base + m.size:
                    stack_rva = offsets[m.base] + (t.rsp - m.base)
                    stack_size = m.base + m.size - t.rsp
            tl += struct.pack(
                "<IIIIQQIIII",
                t.tid,
                0,
                0x20,
                0,
                t.teb,
                t.rsp,
                stack_size,
                stack_rva,
                CONTEXT_SIZE,
                ctx_rva,
            )
        self.blob[tl_rva - self.base : tl_rva - self.base + len(tl)] = tl
        assert len(directory) == nstreams, (len(directory), nstreams)
        head = struct.pack("<4sIIIIIQ", b"MDMP", 0xA793, nstreams, 32, 0, 0x60000000, 0x2)
        out = self.out
        out.write(head)
        for stype, size, srva in directory:
            out.write(struct.pack("<III", stype, size, srva))
        out.write(bytes(self.blob))
        out.write(b"\x00" * (data_rva - self.base - len(self.blob)))
        for m in captured:
            if m.data is not None:
                out.write(m.data[: m.size].ljust(m.size, b"\x00"))
            elif m.fill is not None:
                step = 1 << 22
                for off in range(0, m.size, step):
                    out.write(m.fill(off, min(step, m.size - off)))
            else:
                out.seek(m.size, 1)
        out.truncate()


# -- a minimal PE32+ DLL ---------------------------------------------------------------------

DOS_STUB = (
    b"\x0e\x1f\xba\x0e\x00\xb4\x09\xcd\x21\xb8\x01\x4c\xcd\x21"
    b"This program cannot be run in DOS mode.\r\r\n$"
)
#: x86-64 code: function prologues, calls, movs, rets — what a DLL's .text looks like
CODE = bytes.fromhex(
    "4053 4883ec20 488bd9 e800000000 85c0 7410 488b4b08 ff1500000000 8bc3 eb02 33c0"
    " 4883c420 5b c3 cccc 48895c2408 57 4883ec30 488bfa 488bd9 e800000000 4885c0 7412"
    " 488bd7 488bc8 e800000000 488b5c2440 4883c430 5f c3 cccc".replace(" ", "")
)


def build_pe(
    exports: tuple[str, ...] = ("ReflectiveLoader",),
    dll_name: str = "payload.dll",
    imports: tuple[str, ...] = ("VirtualAlloc", "LoadLibraryA", "GetProcAddress"),
    code: bytes = CODE * 40,
) -> bytes:
    """A valid PE32+ DLL: .text (code, entry point) and .rdata (exports, imports)."""
    text_rva, rdata_rva, size_of_image = 0x1000, 0x2000, 0x3000
    # .rdata: export directory, names, import descriptor, ILT/IAT, hint/names
    rd = bytearray(PAGE)
    name_off = 0x100
    names_offs = []
    pos = name_off
    for n in (dll_name, *exports):
        names_offs.append(pos)
        rd[pos : pos + len(n) + 1] = n.encode() + b"\x00"
        pos += len(n) + 1
    funcs_off, names_tab, ords_off = 0x40, 0x60, 0x80
    struct.pack_into("<IIHHIIIIIII", rd, 0, 0, 0, 0, 0, rdata_rva + names_offs[0], 1,
                     len(exports), len(exports), rdata_rva + funcs_off, rdata_rva + names_tab,
                     rdata_rva + ords_off)  # fmt: skip
    for i in range(len(exports)):
        struct.pack_into("<I", rd, funcs_off + 4 * i, text_rva + 0x10 * (i + 1))
        struct.pack_into("<I", rd, names_tab + 4 * i, rdata_rva + names_offs[i + 1])
        struct.pack_into("<H", rd, ords_off + 2 * i, i)
    imp_off, ilt_off, iat_off, hn_off = 0x300, 0x340, 0x380, 0x400
    kname = 0x3E0
    rd[kname : kname + 13] = b"KERNEL32.dll\x00"
    struct.pack_into("<IIIII", rd, imp_off, rdata_rva + ilt_off, 0, 0, rdata_rva + kname,
                     rdata_rva + iat_off)  # fmt: skip
    p = hn_off
    for i, fn in enumerate(imports):
        struct.pack_into("<Q", rd, ilt_off + 8 * i, rdata_rva + p)
        struct.pack_into("<Q", rd, iat_off + 8 * i, rdata_rva + p)
        rd[p : p + 2 + len(fn) + 1] = struct.pack("<H", i) + fn.encode() + b"\x00"
        p += 2 + len(fn) + 1 + ((len(fn) + 1) % 2)
    text = code[:PAGE].ljust(PAGE, b"\xcc")
    # headers
    hdr = bytearray(PAGE)
    hdr[0:2] = b"MZ"
    struct.pack_into("<I", hdr, 0x3C, 0x80)
    hdr[0x40 : 0x40 + len(DOS_STUB)] = DOS_STUB
    struct.pack_into("<4sHHIIIHH", hdr, 0x80, b"PE\x00\x00", 0x8664, 2, 0x60000000, 0, 0, 0xF0,
                     0x2022)  # fmt: skip
    opt = struct.pack(
        "<HBBIIIIIQIIHHHHHHIIIIHHQQQQII",
        0x20B,
        14,
        0,
        PAGE,
        PAGE,
        0,
        text_rva + 0x10,
        text_rva,
        0x180000000,
        PAGE,
        PAGE,
        6,
        0,
        0,
        0,
        6,
        0,
        0,
        size_of_image,
        PAGE,
        0,
        2,
        0x160,
        0x100000,
        0x1000,
        0x100000,
        0x1000,
        0,
        16,
    )
    dirs = [(0, 0)] * 16
    dirs[0] = (rdata_rva, 0x300)
    dirs[1] = (rdata_rva + imp_off, 40)
    dirs[12] = (rdata_rva + iat_off, 8 * (len(imports) + 1))
    opt += b"".join(struct.pack("<II", a, s) for a, s in dirs)
    hdr[0x98 : 0x98 + len(opt)] = opt
    sec = 0x98 + 0xF0
    for i, (name, rva, ch) in enumerate(
        ((b".text", text_rva, 0x60000020), (b".rdata", rdata_rva, 0x40000040))
    ):
        struct.pack_into("<8sIIIIIIHHI", hdr, sec + 40 * i, name, PAGE, rva, PAGE, rva, 0, 0, 0,
                         0, ch)  # fmt: skip
    return bytes(hdr) + text + bytes(rd)
