"""What a memory scan sees and what it concludes: regions, threads, findings, verifications.

The same types describe a Windows minidump and a live Linux process, so the analysis in
``analyze.py`` is written once. Everything is a frozen, slotted dataclass (STYLE.md "Data"):
findings are values that can be compared, hashed and rendered without touching the scanner.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Backing(StrEnum):
    """What stands behind a region's pages — the question reflective loading is about."""

    IMAGE = "image"  # Windows MEM_IMAGE; Linux mapping of a regular file that still exists
    MAPPED = "mapped"  # Windows MEM_MAPPED: a section view, no image
    PRIVATE = "private"  # Windows MEM_PRIVATE
    ANONYMOUS = "anonymous"  # Linux anonymous mapping (incl. [heap], [stack], [anon:...])
    MEMFD = "memfd"  # Linux /memfd:... — a file that exists only in memory
    DELETED = "deleted"  # Linux file mapping whose file was deleted
    SPECIAL = "special"  # [vdso], [vsyscall], [vvar]: kernel-provided
    UNKNOWN = "unknown"  # no region information (minidump without MemoryInfoList)

    @property
    def unbacked(self) -> bool:
        """True when no file on disk backs the pages (what DESIGN.md §1 calls unbacked)."""
        return self in _UNBACKED


_UNBACKED = frozenset(
    {Backing.MAPPED, Backing.PRIVATE, Backing.ANONYMOUS, Backing.MEMFD, Backing.DELETED}
)


@dataclass(frozen=True, slots=True)
class Region:
    """One run of pages with the same protection and backing.

    ``protection`` is normalised to ``rwx`` letters (``r-x``, ``rwx``, ``---``) so Windows
    ``PAGE_*`` and Linux ``PROT_*`` read alike; ``raw_protection`` keeps the original mask.
    ``allocation_base`` groups the regions of one Windows allocation (a reflectively loaded
    DLL is one allocation whose header page and code pages may differ in protection).
    """

    base: int
    size: int
    protection: str
    backing: Backing
    path: str | None = None
    raw_protection: int | None = None
    allocation_base: int | None = None
    allocation_protection: str | None = None
    resident: int | None = None  # bytes resident (Linux smaps Rss); None when unknown

    @property
    def end(self) -> int:
        return self.base + self.size

    @property
    def executable(self) -> bool:
        return "x" in self.protection

    @property
    def writable(self) -> bool:
        return "w" in self.protection

    def contains(self, address: int) -> bool:
        return self.base <= address < self.end

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "base": f"0x{self.base:x}",
            "size": self.size,
            "protection": self.protection,
            "backing": str(self.backing),
        }
        if self.path:
            out["path"] = self.path
        if self.allocation_base is not None:
            out["allocation_base"] = f"0x{self.allocation_base:x}"
        if self.allocation_protection:
            out["allocation_protection"] = self.allocation_protection
        return out


@dataclass(frozen=True, slots=True)
class Module:
    """A loaded image as the process (ModuleList, or a file mapping on Linux) lists it."""

    path: str
    base: int
    size: int

    @property
    def name(self) -> str:
        return self.path.replace("\\", "/").rsplit("/", 1)[-1]

    @property
    def end(self) -> int:
        return self.base + self.size


@dataclass(frozen=True, slots=True)
class Thread:
    """A thread and the two addresses that betray injected code: where it started, where it is.

    ``stack_pointer`` lets the scanner look for return addresses on a sleeping thread's stack.
    """

    tid: int
    start_address: int | None = None
    instruction_pointer: int | None = None
    stack_pointer: int | None = None


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    """The process a scan looked at (OCSF ``process``)."""

    pid: int | None
    name: str | None = None
    path: str | None = None
    cmd_line: str | None = None
    user: str | None = None
    uid: str | None = None  # process uid: ``host:pid:start-time-ns`` (DESIGN.md §3)
    start_time_ns: int | None = None


class Confidence(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


@dataclass(frozen=True, slots=True)
class Indicator:
    """One reason a region is suspicious, with the evidence an analyst can check.

    ``weight`` is the indicator's contribution to the region score (0–100 after capping);
    weights live in ``analyze.WEIGHTS`` so the scoring is explainable by construction.
    """

    name: str
    evidence: str
    weight: int
    offset: int | None = None  # offset in the region the evidence points at

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "evidence": self.evidence, "weight": self.weight}
        if self.offset is not None:
            out["offset"] = self.offset
        return out


@dataclass(frozen=True, slots=True)
class RegionStats:
    """Byte statistics of a region's captured content (vectorised, see ``stats.py``)."""

    bytes_scanned: int
    nonzero: int
    entropy: float  # bits per byte over non-zero content
    code_score: float  # share of bytes that are common x86 opcode/ModRM bytes (0..1)
    printable: float  # share of printable ASCII bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            "bytes_scanned": self.bytes_scanned,
            "nonzero": self.nonzero,
            "entropy": round(self.entropy, 3),
            "code_score": round(self.code_score, 3),
            "printable": round(self.printable, 3),
        }


@dataclass(frozen=True, slots=True)
class RegionFinding:
    """A suspicious region: the unit of evidence of a scan.

    ``regions`` are the raw regions that make up the unit (one Windows allocation, or a Linux
    mapping with the anonymous mappings just before it that hold its header).
    """

    base: int
    size: int
    protection: str
    backing: Backing
    score: int
    confidence: Confidence
    indicators: tuple[Indicator, ...]
    header: str | None = None  # "pe", "pe-partial", "elf", "elf-partial" or None
    stats: RegionStats | None = None
    path: str | None = None
    pe: dict[str, Any] | None = None  # reconstructed PE summary (pefile)
    threads: tuple[int, ...] = ()
    yara: tuple[str, ...] = ()
    dumped: tuple[str, ...] = ()

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(i.name for i in self.indicators)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "base": f"0x{self.base:x}",
            "size": self.size,
            "protection": self.protection,
            "backing": str(self.backing),
            "path": self.path,
            "header_kind": self.header or "none",
            "score": self.score,
            "confidence": str(self.confidence),
            "indicators": [i.to_dict() for i in self.indicators],
        }
        if self.stats is not None:
            out["stats"] = self.stats.to_dict()
        if self.pe is not None:
            out["pe"] = self.pe
        if self.threads:
            out["threads"] = list(self.threads)
        if self.yara:
            out["yara"] = list(self.yara)
        if self.dumped:
            out["dumped"] = list(self.dumped)
        return out


def severity_for(score: int) -> int:
    """OCSF severity_id from a 0–100 score, exactly as alerts get theirs."""
    from unbacked.model.alert import severity_from_risk

    return severity_from_risk(score)


SEVERITY_NAMES = {1: "informational", 2: "low", 3: "medium", 4: "high", 5: "critical"}


@dataclass(frozen=True, slots=True)
class ScanFinding:
    """All suspicious regions of one scanned process: one OCSF Detection Finding (class 2004).

    A finding per process instance mirrors the alert contract (DESIGN.md §6), so a scan result
    and a telemetry alert about the same process can be joined and rendered alike.
    """

    source: str  # dump path or ``pid:N``
    process: ProcessInfo
    regions: tuple[RegionFinding, ...]
    hostname: str | None = None
    time_ns: int = field(default_factory=time.time_ns)
    os: str = "windows"
    verification: dict[str, Any] | None = None

    @property
    def score(self) -> int:
        """Highest region score, nudged up for each further suspicious region."""
        if not self.regions:
            return 0
        top = max(r.score for r in self.regions)
        return min(100, top + 2 * (len(self.regions) - 1))

    @property
    def severity_id(self) -> int:
        return severity_for(self.score)

    @property
    def techniques(self) -> tuple[str, ...]:
        """ATT&CK: reflective loading (T1620) when a PE/ELF image is found, else injection."""
        out = []
        if any(r.header or r.pe for r in self.regions):
            out.append("T1620")
        out.append("T1055")
        return tuple(out)

    @property
    def uid(self) -> str:
        key = "|".join(
            [self.source, str(self.process.uid or self.process.pid)]
            + [f"{r.base:x}" for r in self.regions]
        )
        return hashlib.sha256(key.encode()).hexdigest()[:32]

    @property
    def title(self) -> str:
        headers = [r for r in self.regions if r.header]
        name = self.process.name or self.source
        if headers:
            return f"{headers[0].header} header in unbacked executable memory of {name}"
        return f"unbacked executable memory in {name}"

    @property
    def message(self) -> str:
        parts = []
        for r in sorted(self.regions, key=lambda r: -r.score)[:3]:
            parts.append(
                f"0x{r.base:x}+0x{r.size:x} {r.protection} {r.backing} ({', '.join(r.kinds)})"
            )
        more = f" and {len(self.regions) - 3} more" if len(self.regions) > 3 else ""
        return f"{self.title}: " + "; ".join(parts) + more

    def to_alert(self) -> Any:
        """This finding as the project's shared ``Alert`` (``unbacked.model.alert``).

        Contract ``regions[]`` carry base, size, protection, backing, header kind and thread
        count; the scanner's per-region detail (indicators with evidence, statistics, the
        rebuilt PE) goes to ``unmapped.unbacked.memscan`` and each indicator becomes an
        ``explanation`` entry (feature = indicator, value = evidence).
        """
        from datetime import UTC, datetime

        from unbacked.model.alert import Alert, Explanation, ProcessRef, RegionInfo

        when = datetime.fromtimestamp(self.time_ns / 1e9, tz=UTC)
        p = self.process
        created = datetime.fromtimestamp(p.start_time_ns / 1e9, tz=UTC) if p.start_time_ns else None
        return Alert(
            uid=self.uid,
            title=self.title,
            message=self.message,
            risk_score=self.score,
            severity_id=self.severity_id,
            first_seen=when,
            last_seen=when,
            hostname=self.hostname,
            process=ProcessRef(
                uid=p.uid,
                pid=p.pid,
                name=p.name,
                path=p.path,
                cmd_line=p.cmd_line,
                user=p.user,
                created=created,
            ),
            techniques=self.techniques,
            types=self.types,
            explanation=tuple(
                Explanation(
                    feature=i.name,
                    value=i.evidence,
                    detector="memscan",
                    score=i.weight / 100,
                    message=i.evidence,
                )
                for r in self.regions
                for i in r.indicators
            ),
            regions=tuple(
                RegionInfo(
                    base=r.base,
                    size=r.size,
                    protections=(r.protection,),
                    backing=r.backing.value if r.path is None else f"{r.backing.value}:{r.path}",
                    header_kind=r.header or "none",
                    threads=len(r.threads),
                )
                for r in self.regions
            ),
            verification=self.verification,
            sources=({"file": self.source},),
            detectors=("memscan",),
            extra={"memscan": [r.to_dict() for r in self.regions]},
        )

    @property
    def types(self) -> tuple[str, ...]:
        return ("memory-scan", *sorted({k for r in self.regions for k in r.kinds}))

    def to_ocsf(self) -> dict[str, Any]:
        """Render as an OCSF 1.x Detection Finding, through the shared alert model."""
        return dict(self.to_alert().to_ocsf())


class VerificationStatus(StrEnum):
    CONFIRMED = "confirmed"
    NOT_CONFIRMED = "not_confirmed"
    PROCESS_GONE = "process_gone"


@dataclass(frozen=True, slots=True)
class Verification:
    """What memory says now about an alert's regions (``unmapped.unbacked.verification``)."""

    status: VerificationStatus
    pid: int
    checked_ns: int
    evidence: tuple[str, ...]
    regions: tuple[RegionFinding, ...] = ()

    @property
    def confirmed(self) -> bool:
        return self.status is VerificationStatus.CONFIRMED

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": str(self.status),
            "pid": self.pid,
            "time": self.checked_ns // 1_000_000,
            "evidence": list(self.evidence),
            "regions": [r.to_dict() for r in self.regions],
        }
