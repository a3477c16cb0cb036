"""From an address space to findings: which executable memory no file backs, and why it matters.

One pass per candidate unit (a Windows allocation, or a Linux mapping plus the anonymous
mappings just before it that may hold its header):

1. executable and unbacked?  (private / anonymous / section without image / memfd / deleted)
2. a PE or ELF header at the start, or its remnants; embedded images further in;
3. a PE that ``pefile`` can rebuild (sections, imports, entry point, loader exports);
4. threads that started there, are executing there, or have return addresses into it;
5. byte statistics (code-likeness, entropy) and optional YARA;
6. a JIT engine that explains the region (only when nothing in 2–5 is wrong with it).

Each indicator has a fixed weight (``WEIGHTS``); the region score is their capped sum, so every
score is explained by the indicators listed with it. Memory is bounded: bytes are read in
scanner-sized chunks, and only headers (one page) and reconstructed images (``MAX_IMAGE``) are
held whole.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from unbacked.memscan import headers, jit, stats
from unbacked.memscan.model import (
    Backing,
    Confidence,
    Indicator,
    Module,
    ProcessInfo,
    Region,
    RegionFinding,
    ScanFinding,
    Thread,
)
from unbacked.memscan.scanner import (
    ByteStats,
    Hit,
    ShellcodeScanner,
    SignatureScanner,
    iter_chunks,
)

#: indicator -> contribution to the region score (capped at 100)
WEIGHTS = {
    "exec_private": 30,  # executable private / anonymous memory
    "exec_mapped_no_image": 35,  # executable section view without an image
    "exec_memfd": 45,  # executable mapping of a memfd
    "exec_deleted": 40,  # executable mapping of a deleted file
    "image_not_listed": 25,  # MEM_IMAGE allocation no module list entry accounts for
    "rwx": 15,
    "pe_header": 45,
    "elf_header": 45,
    "pe_header_partial": 40,
    "elf_header_partial": 40,
    "embedded_image": 30,  # a full PE/ELF header further inside the region
    "pe_reconstructed": 10,
    "loader_export": 20,  # ReflectiveLoader & co.
    "thread_start": 40,
    "thread_ip": 25,
    "stack_return": 15,  # return addresses into the region on a thread's stack
    "code_like": 10,
    "shellcode_pattern": 30,  # PEB walk, API hashing, stager entry, /bin/sh
    "high_entropy": 5,
    "yara": 30,
}
_EXEC_KIND = {
    Backing.PRIVATE: "exec_private", Backing.ANONYMOUS: "exec_private",
    Backing.MAPPED: "exec_mapped_no_image", Backing.MEMFD: "exec_memfd",
    Backing.DELETED: "exec_deleted",
}  # fmt: skip
#: indicators that JIT churn never produces: with any of them a JIT region is still reported
_NOT_JIT = {"pe_header", "elf_header", "pe_header_partial", "elf_header_partial",
            "embedded_image", "loader_export", "thread_start", "yara", "exec_memfd",
            "shellcode_pattern",
            "exec_deleted"}  # fmt: skip
_STRONG = {
    "pe_header",
    "elf_header",
    "thread_start",
    "loader_export",
    "yara",
    "embedded_image",
    "shellcode_pattern",
}
#: what makes a region of unknown protection (minidump without MemoryInfoList) worth reporting
_EVIDENCE_UNKNOWN = {"pe_header", "elf_header", "thread_start", "thread_ip", "embedded_image"}
#: shellcode idioms are searched in the first bytes of each unit's executable part only: a
#: stager sits where its allocation starts, and the search is the costliest of the scan
SHELLCODE_WINDOW = 1 << 20
#: bytes of each thread's stack (from its stack pointer) searched for return addresses
STACK_BYTES = 32 << 10
#: most embedded-header candidates validated per unit (bounds work on hostile content)
MAX_CANDIDATES = 256


class AddressSpace(Protocol):
    """What the analysis needs from a dump or a live process."""

    system: str  # "windows" or "linux"
    process: ProcessInfo

    @property
    def source(self) -> str: ...

    def regions(self) -> list[Region]: ...
    def modules(self) -> list[Module]: ...
    def threads(self) -> list[Thread]: ...
    def runs(self, base: int, size: int) -> list[tuple[int, int]]: ...
    def read(self, address: int, size: int) -> bytes: ...


@dataclass(slots=True)
class Options:
    """Knobs of one scan (CLI flags map onto these)."""

    chunk_size: int = 4 << 20
    overlap: int = 0x1000
    max_region_bytes: int = 256 << 20  # bytes per unit scanned for statistics and embedded images
    yara_rules: Any = None
    dump_dir: str | None = None
    min_score: int = 0  # findings below are dropped


@dataclass(slots=True)
class ScanStats:
    """Counters of one scan (for the run report and the benchmark)."""

    regions: int = 0
    executable: int = 0
    candidates: int = 0
    jit_explained: int = 0
    empty: int = 0
    bytes_scanned: int = 0
    jit_engines: list[str] = field(default_factory=list)


@dataclass(slots=True)
class ScanResult:
    """Findings of one address space plus what the scan saw."""

    source: str
    process: ProcessInfo
    findings: list[RegionFinding]
    stats: ScanStats
    issues: list[str] = field(default_factory=list)
    os: str = "windows"

    def finding(self, hostname: str | None = None) -> ScanFinding | None:
        """The OCSF-renderable finding of this process, or None when nothing was found."""
        if not self.findings:
            return None
        return ScanFinding(
            self.source, self.process, tuple(self.findings), hostname=hostname, os=self.os
        )


@dataclass(slots=True)
class _Unit:
    base: int
    end: int
    regions: list[Region]

    @property
    def exec_regions(self) -> list[Region]:
        return [r for r in self.regions if r.executable or r.protection == "???"]


def _units(space: AddressSpace, regions: list[Region], modules: list[Module]) -> list[_Unit]:
    """Group regions into candidate units (see the module docstring)."""
    units: list[_Unit] = []
    if space.system == "windows":
        by_alloc: dict[int, list[Region]] = {}
        for r in regions:
            by_alloc.setdefault(
                r.allocation_base if r.allocation_base is not None else r.base, []
            ).append(r)
        listed = {m.base for m in modules}
        for base, rs in by_alloc.items():
            rs.sort(key=lambda r: r.base)
            execs = [r for r in rs if r.executable]
            unknown = [r for r in rs if r.backing is Backing.UNKNOWN]
            if (
                any(r.backing.unbacked for r in execs)
                or unknown
                or (
                    execs
                    and modules
                    and base not in listed
                    and all(r.backing is Backing.IMAGE for r in rs)
                )
            ):
                units.append(_Unit(base, rs[-1].end, rs))
        return units
    ordered = sorted(regions, key=lambda r: r.base)
    for i, r in enumerate(ordered):
        if not (r.executable and r.backing.unbacked):
            continue
        members = [r]
        j = i - 1
        while j >= 0 and len(members) < 5:
            p = ordered[j]
            if (
                p.end != members[0].base
                or p.executable
                or p.backing is not r.backing
                or (p.path != r.path)
            ):
                break
            members.insert(0, p)
            j -= 1
        units.append(_Unit(members[0].base, r.end, members))
    return units


def _add(inds: list[Indicator], name: str, evidence: str, offset: int | None = None) -> None:
    if name not in {i.name for i in inds}:
        inds.append(Indicator(name, evidence, WEIGHTS[name], offset))


def _confidence(names: set[str]) -> Confidence:
    if names & _STRONG:
        return Confidence.HIGH
    if (
        names & {"pe_header_partial", "elf_header_partial", "thread_ip", "exec_memfd"}
        or {"code_like", "rwx"} <= names
    ):
        return Confidence.MEDIUM
    return Confidence.LOW


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[-80:] or "dump"


class Analyzer:
    """Scans one address space. Stateless between ``run`` calls."""

    def __init__(self, options: Options | None = None) -> None:
        self.options = options or Options()

    def run(self, space: AddressSpace, only: Sequence[tuple[int, int]] | None = None) -> ScanResult:
        """Scan ``space``; with ``only``, just the units overlapping those (base, size) ranges."""
        opts = self.options
        regions = space.regions()
        modules = space.modules()
        threads = space.threads()
        hosted = jit.engines([m.path for m in modules])
        st = ScanStats(
            regions=len(regions),
            executable=sum(r.executable for r in regions),
            jit_engines=sorted(hosted),
        )
        units = _units(space, regions, modules)
        if only is not None:
            units = [u for u in units if any(u.base < b + s and b < u.end for b, s in only)]
        stacks = self._stacks(space, threads)
        findings: list[RegionFinding] = []
        for unit in units:
            st.candidates += 1
            f = self._unit(space, unit, modules, threads, stacks, hosted, st)
            if f is not None and f.score >= opts.min_score:
                findings.append(f)
        issues = list(getattr(getattr(space, "info", None), "issues", []) or [])
        return ScanResult(space.source, space.process, findings, st, issues, space.system)

    # -- helpers ------------------------------------------------------------------------------
    def _stacks(self, space: AddressSpace, threads: list[Thread]) -> dict[int, np.ndarray]:
        out: dict[int, np.ndarray] = {}
        for t in threads:
            if not t.stack_pointer:
                continue
            sp = t.stack_pointer & ~7
            data = space.read(sp, STACK_BYTES)
            if len(data) >= 8:
                out[t.tid] = np.frombuffer(data[: len(data) // 8 * 8], dtype="<u8")
        return out

    def _unit(
        self,
        space: AddressSpace,
        unit: _Unit,
        modules: list[Module],
        threads: list[Thread],
        stacks: dict[int, np.ndarray],
        hosted: frozenset[str],
        st: ScanStats,
    ) -> RegionFinding | None:
        opts = self.options
        inds: list[Indicator] = []
        execs = unit.exec_regions
        known_exec = [r for r in execs if r.protection != "???"]
        main = known_exec[0] if known_exec else (execs[0] if execs else unit.regions[0])
        for r in known_exec:
            if r.backing.unbacked:
                _add(
                    inds,
                    _EXEC_KIND[r.backing],
                    f"{r.protection} {r.backing} memory at 0x{r.base:x} (0x{r.size:x} bytes)"
                    + (
                        f" backed by {r.path}"
                        if r.path and r.backing is not Backing.ANONYMOUS
                        else ""
                    ),
                )
            elif r.backing is Backing.IMAGE:
                _add(
                    inds,
                    "image_not_listed",
                    f"image allocation at 0x{unit.base:x} is in no module list entry",
                )
            if r.protection == "rwx":
                _add(inds, "rwx", f"0x{r.base:x} is readable, writable and executable")
        # 2. headers at the start of the unit (Windows: the allocation base), else at the start
        #    of its executable part, else at the start of a mapping just before it (Linux)
        probes = (
            [unit.base, main.base]
            if space.system == "windows"
            else [main.base] + [r.base for r in reversed(unit.regions) if r.base < main.base]
        )
        info = None
        head = b""
        header_at = probes[0]
        for at in dict.fromkeys(probes):
            page = space.read(at, 4096)
            if not head:
                head = page
            got = headers.classify(page)
            if got is not None:
                info, head, header_at = got, page, at
                break
        start = unit.base if space.system == "windows" else (header_at if info else main.base)
        if info is not None:
            name = {
                "pe": "pe_header",
                "elf": "elf_header",
                "pe-partial": "pe_header_partial",
                "elf-partial": "elf_header_partial",
            }[info.kind]
            _add(inds, name, f"{info.evidence} at 0x{header_at:x}", header_at - start)
        # 3. statistics, embedded images and YARA over the executable part, chunk by chunk
        sections = [(r.base, r.size) for r in execs]
        hist = ByteStats()
        sig = SignatureScanner(
            kinds=("mz", "elf"), chunk_size=opts.chunk_size, overlap=opts.overlap
        )
        shell = ShellcodeScanner(chunk_size=opts.chunk_size, overlap=opts.overlap)
        shell_hits: list[Hit] = []
        cands: list[Hit] = []
        budget = opts.max_region_bytes
        for data, address, last in iter_chunks(space, sections, opts.chunk_size, opts.overlap):
            hist.update(data if last else data[: opts.chunk_size])
            if len(cands) < MAX_CANDIDATES:
                cands.extend(h for h in sig(data, address, last=last) if h.kind in ("mz", "elf"))
            if len(shell_hits) < 64 and address - main.base < SHELLCODE_WINDOW:
                shell_hits.extend(shell(data, address, last=last))
            budget -= min(len(data), opts.chunk_size)
            if budget <= 0:
                break
        st.bytes_scanned += hist.total
        rstats = stats.from_histogram(hist.hist, hist.total) if hist.total else None
        for h in cands[:MAX_CANDIDATES]:
            if h.address == header_at:
                continue
            emb = headers.classify(space.read(h.address, 4096))
            if emb is not None and emb.kind in ("pe", "elf"):
                _add(
                    inds,
                    "embedded_image",
                    f"{emb.evidence} at 0x{h.address:x} (+0x{h.address - start:x})",
                    h.address - start,
                )
                if info is None:
                    info, header_at = emb, h.address
                break
        if shell_hits:
            kinds = sorted({h.detail for h in shell_hits})
            _add(
                inds,
                "shellcode_pattern",
                f"{', '.join(kinds)} at 0x{shell_hits[0].address:x}"
                + (f" (+{len(shell_hits) - 1} more)" if len(shell_hits) > 1 else ""),
                shell_hits[0].address - start,
            )
        if rstats is not None and rstats.nonzero >= stats.MIN_CONTENT:
            if rstats.code_score >= stats.CODE_LIKE:
                _add(
                    inds,
                    "code_like",
                    f"code score {rstats.code_score:.2f} over {rstats.nonzero} non-zero bytes",
                )
            if rstats.entropy >= stats.HIGH_ENTROPY:
                _add(inds, "high_entropy", f"entropy {rstats.entropy:.2f} bits/byte")
        # 4. threads
        tids: list[int] = []
        lo_hi = [(r.base, r.end) for r in execs]

        def inside(a: int | None) -> bool:
            return a is not None and any(lo <= a < hi for lo, hi in lo_hi)

        for t in threads:
            if inside(t.start_address):
                _add(
                    inds,
                    "thread_start",
                    f"thread {t.tid} started at 0x{t.start_address:x}",
                    (t.start_address or 0) - start,
                )
                tids.append(t.tid)
            if inside(t.instruction_pointer):
                _add(
                    inds,
                    "thread_ip",
                    f"thread {t.tid} is executing at 0x{t.instruction_pointer:x}",
                    (t.instruction_pointer or 0) - start,
                )
                tids.append(t.tid)
        for tid, vals in stacks.items():
            hits = sum(int(((vals >= lo) & (vals < hi)).sum()) for lo, hi in lo_hi)
            if hits:
                _add(
                    inds,
                    "stack_return",
                    f"{hits} pointer(s) into the region on the stack of thread {tid}",
                )
                tids.append(tid)
        # 5. YARA, over suspicious units only
        yara_hits: list[str] = []
        if opts.yara_rules is not None and inds:
            from unbacked.memscan.scanner import scan
            from unbacked.memscan.yarascan import YaraScanner

            ys = YaraScanner(opts.yara_rules, chunk_size=opts.chunk_size, overlap=opts.overlap)
            for h in scan(space, ys, sections):
                if h.detail in yara_hits:
                    continue
                yara_hits.append(h.detail)
                _add(
                    inds,
                    "yara",
                    f"YARA rule {h.detail} matched at 0x{h.address:x}",
                    h.address - start,
                )
        # PE reconstruction
        pe_summary = None
        rebuilt = None
        if info is not None and info.kind.startswith("pe") and info.nt_offset is not None:
            size = headers.image_size_hint(head, info) or (unit.end - header_at)
            size = min(size, unit.end - header_at, headers.MAX_IMAGE)
            image = space.read(header_at, size)
            rebuilt_pe = headers.reconstruct_pe(image, info) if image else None
            if rebuilt_pe is not None:
                pe_summary, rebuilt = rebuilt_pe
                secs = ", ".join(s["name"] for s in pe_summary["sections"])
                _add(
                    inds,
                    "pe_reconstructed",
                    f"PE rebuilt: sections [{secs}], entry point RVA 0x"
                    f"{pe_summary['entry_point']:x} in {pe_summary['entry_section']}, "
                    f"{len(pe_summary['imports'])} imported DLLs",
                )
                if pe_summary["loader_exports"]:
                    _add(
                        inds,
                        "loader_export",
                        f"exports {', '.join(pe_summary['loader_exports'][:3])}",
                    )
        names = {i.name for i in inds}
        # 6. what explains it
        # unknown protection (no MemoryInfoList): only header or thread evidence counts
        if not names & (set(_EXEC_KIND.values()) | {"image_not_listed"} | _EVIDENCE_UNKNOWN):
            return None
        if not names & _NOT_JIT:
            empty = rstats is None or rstats.nonzero == 0
            if empty and not names & {"thread_ip", "stack_return"}:
                st.empty += 1
                return None
            engine = jit.explains(main, hosted, head)
            if engine is not None:
                st.jit_explained += 1
                return None
        score = min(100, sum(i.weight for i in inds))
        header_kind = info.kind if info is not None else None
        dumped: tuple[str, ...] = ()
        if opts.dump_dir:
            dumped = self._dump(space, start, unit.end, header_kind, rebuilt)
        return RegionFinding(
            base=start,
            size=unit.end - start,
            protection=main.protection,
            backing=main.backing,
            score=score,
            confidence=_confidence(names),
            indicators=tuple(sorted(inds, key=lambda i: -i.weight)),
            header=header_kind,
            stats=rstats,
            path=main.path if main.backing is not Backing.ANONYMOUS else None,
            pe=pe_summary,
            threads=tuple(sorted(set(tids))),
            yara=tuple(yara_hits),
            dumped=dumped,
        )

    def _dump(
        self,
        space: AddressSpace,
        start: int,
        end: int,
        header: str | None,
        rebuilt: bytes | None,
    ) -> tuple[str, ...]:
        """Write a region's captured bytes (gaps zero-filled) and a rebuilt PE, chunk by chunk."""
        assert self.options.dump_dir is not None
        os.makedirs(self.options.dump_dir, exist_ok=True)
        stem = _safe_name(f"{os.path.basename(space.source)}_{space.process.pid}_{start:x}")
        out = []
        ext = ".elf" if header and header.startswith("elf") else ".bin"
        path = os.path.join(self.options.dump_dir, stem + ext)
        with open(path, "wb") as fh:
            fh.truncate(end - start)
            for data, address, _last in iter_chunks(
                space, [(start, end - start)], self.options.chunk_size, 0
            ):
                fh.seek(address - start)
                fh.write(data)
        out.append(path)
        if rebuilt is not None:
            rpath = os.path.join(self.options.dump_dir, stem + ".rebuilt.pe")
            with open(rpath, "wb") as fh:
                fh.write(rebuilt)
            out.append(rpath)
        return tuple(out)


def scan_space(space: AddressSpace, options: Options | None = None) -> ScanResult:
    """Scan one address space with default or given options."""
    return Analyzer(options).run(space)


def scan_minidump(path: str | os.PathLike[str], options: Options | None = None) -> ScanResult:
    """Scan one Windows minidump (raises ``FormatError`` when it cannot be read)."""
    from unbacked.memscan.minidump import MinidumpSpace

    with MinidumpSpace(path) as space:
        return Analyzer(options).run(space)


def scan_pid(pid: int, options: Options | None = None) -> ScanResult:
    """Scan one live Linux process (raises ``ProcessGone`` if it exits before or during)."""
    from unbacked.memscan.live import LinuxProcessSpace, ProcessGone

    with LinuxProcessSpace(pid) as space:
        result = Analyzer(options).run(space)
        if not space.alive():
            raise ProcessGone(f"process {pid} exited during the scan", source=space.source)
        return result


def hostname() -> str:
    return socket.gethostname()


def iter_findings(results: Iterable[ScanResult], host: str | None) -> Iterable[ScanFinding]:
    for r in results:
        f = r.finding(host)
        if f is not None:
            yield f
