"""Indicators on executable-memory events (ETW-TI, Elastic Defend, the Linux sensor)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from unbacked import duck
from unbacked.detect.base import (
    DetectionContext,
    Rule,
    column_in,
    empty_signals,
    register_rule,
)
from unbacked.detect.features import JIT_STEMS_RE
from unbacked.model.jit import JIT_PROGRAMS
from unbacked.model.rows import from_numpy

#: Calling modules of JIT engines (``model.jit.JIT_ENGINES``, the table call traces use too:
#: their modules, Windows and Linux, and the executables that are engines, such as dotnet or
#: qemu-*) and libffi (closures allocate executable pages): executable memory they ask for is
#: expected churn. Matched against the calling module's path or name, with or without its
#: extension.
JIT_CALLER_RE = (
    rf"(?i)(^|[\\/])({JIT_STEMS_RE}|{'|'.join(JIT_PROGRAMS)}|libffi)(\.dll|\.so[.0-9]*|\.exe)?$"
)

_EXEC = """CASE WHEN os = 'linux' THEN (protection & 4) > 0 ELSE (protection & 240) > 0 END"""
_RWX = """CASE WHEN os = 'linux' THEN (protection & 6) = 6 ELSE (protection & 255) IN (64, 128)
          END"""
#: Linux sensor stacks: libffi reached mmap through an *indirect* call, i.e. its foreign-call
#: trampoline (ctypes calling libc's mmap for Python code), not its closure allocator (which
#: calls mmap directly): no JIT allowance then.
_FFI_TRAMPOLINE = r"""(os = 'linux' AND regexp_matches(coalesce(caller_module, ''), '^libffi')
                      AND regexp_matches(coalesce(call_trace, ''), '^libffi[^|]*\(indirect\)'))"""
_UNBACKED = """(backing_path IS NULL OR backing_path = '')
               AND coalesce(region_type, 'private') NOT IN ('image', 'file')"""


@register_rule
class ImageHeaderInUnbackedExec(Rule):
    """A PE or ELF header sits in executable memory that no file backs: a manually mapped
    image (reflective DLL, sRDI, Donut, manually mapped ELF)."""

    id = "UNB-M-001"
    title = "Executable image header in unbacked memory"
    description = (
        "An allocation or protection change made memory executable that no image or file backs, "
        "and the region starts with (or just below it lies) a PE (MZ..PE) or ELF header."
    )
    severity = 5
    score = 95.0
    attack = ("T1620",)
    references = ("https://attack.mitre.org/techniques/T1620/",)
    kinds = ("memory",)
    requires = ("header_kind", "protection")

    def evaluate(self, ctx: DetectionContext) -> pa.Table:
        if not ctx.has("memory"):
            return empty_signals()
        sql = f"""SELECT row FROM ev
                   WHERE kind = 'memory' AND header_kind IN ('pe', 'elf') AND {_EXEC}
                     AND {_UNBACKED}"""
        hit = ctx.query_rows(ctx.events, sql)
        return self.signals(
            hit,
            subject=pc.coalesce(hit["target_uid"], hit["process_uid"]),
            actor=_actor(hit),
            feature="mem.header",
            value=hit["header_kind"].cast(pa.string()),
            message=pc.binary_join_element_wise(
                pc.utf8_upper(hit["header_kind"].cast(pa.string())),
                " header in executable memory no file backs",
                "",
            ),
        )


@register_rule
class ExecMemoryFromUnbackedCaller(Rule):
    """Executable memory requested by code that itself lies in unbacked memory: a stage
    loading the next stage (shellcode -> reflective loader -> payload)."""

    id = "UNB-M-002"
    title = "Executable memory requested from unbacked code"
    description = (
        "The caller of VirtualAlloc/VirtualProtect/mmap/mprotect that made memory executable "
        "lies in no module (call stack summary 'Unbacked', sensor caller outside any mapping)."
    )
    severity = 4
    score = 85.0
    attack = ("T1620", "T1055")
    references = ("https://www.elastic.co/security-labs/hunting-memory",)
    kinds = ("memory",)
    requires = ("caller_unbacked", "protection")

    def evaluate(self, ctx: DetectionContext) -> pa.Table:
        if not ctx.has("memory"):
            return empty_signals()
        sql = f"""SELECT row FROM ev
                   WHERE kind = 'memory' AND caller_unbacked AND {_EXEC}"""
        hit = ctx.query_rows(ctx.events, sql)
        return self.signals(
            hit,
            subject=pc.coalesce(hit["target_uid"], hit["process_uid"]),
            actor=_actor(hit),
            feature="mem.caller",
            value=pa.array(["<unbacked>"] * hit.num_rows, pa.string()),
            message="executable memory requested by code in unbacked memory",
        )


@register_rule
class RwxPrivateFromNonJit(Rule):
    """Private/anonymous memory made readable, writable and executable by a caller that is not
    a JIT engine, in a program whose peers do not do it."""

    id = "UNB-M-003"
    title = "RWX private memory from a non-JIT caller"
    description = (
        "PAGE_EXECUTE_READWRITE / PROT_READ|WRITE|EXEC on private or anonymous memory, from a "
        "calling module that is not a known JIT engine. Scores lower when the program's peers "
        "commonly do the same (learned baseline)."
    )
    severity = 3
    score = 60.0
    attack = ("T1620",)
    references = ("https://attack.mitre.org/techniques/T1620/",)
    kinds = ("memory",)
    requires = ("protection",)

    def evaluate(self, ctx: DetectionContext) -> pa.Table:
        if not ctx.has("memory"):
            return empty_signals()
        sql = f"""SELECT row FROM ev
                   WHERE kind = 'memory' AND {_RWX} AND {_UNBACKED}
                     AND (NOT regexp_matches(coalesce(caller_module, ''), '{JIT_CALLER_RE}')
                          OR {_FFI_TRAMPOLINE})"""
        hit = ctx.query_rows(ctx.events, sql)
        if hit.num_rows == 0:
            return empty_signals()
        score, k, n = ctx.discount_common(
            hit, "mem.protection", ["RWX"] * hit.num_rows, np.full(hit.num_rows, self.score)
        )
        return self.signals(
            hit,
            subject=pc.coalesce(hit["target_uid"], hit["process_uid"]),
            actor=_actor(hit),
            score=score,
            feature="mem.protection",
            value=pa.array(["RWX"] * hit.num_rows, pa.string()),
            message="RWX private memory from a non-JIT caller",
            baseline_count=k,
            baseline_total=n,
            baseline_scope="program" if k is not None else None,
        )


@register_rule
class WrittenThenExecutable(Rule):
    """A private region was written, then flipped from writable to executable, and a thread
    started in it: the classic loader sequence (allocate RW -> write -> protect RX -> thread)."""

    id = "UNB-M-004"
    title = "Written region made executable and run"
    description = (
        "A protection change from a writable, non-executable protection to an executable one on "
        "private/anonymous memory, followed by a thread (local or remote) starting inside it."
    )
    severity = 4
    score = 85.0
    attack = ("T1620", "T1055")
    references = ("https://attack.mitre.org/techniques/T1620/",)
    kinds = ("memory", "thread")
    requires = ("old_protection", "protection")

    def evaluate(self, ctx: DetectionContext) -> pa.Table:
        if not ctx.has("memory") or not ctx.has("thread"):
            return empty_signals()
        threads = ctx.select(kind="thread")
        rows = duck.query(
            f"""
            WITH m AS (SELECT row, time, os::VARCHAR AS os, protection, old_protection,
                              coalesce(target_uid, process_uid) AS owner,
                              coalesce(alloc_base, base_address) AS lo,
                              coalesce(alloc_base, base_address)
                                + greatest(coalesce(reservation_size, region_size, 4096),
                                           coalesce(region_size, 4096)) AS hi,
                              region_type::VARCHAR AS region_type, backing_path
                         FROM mem WHERE kind::VARCHAR = 'memory'),
            flips AS (
              SELECT * FROM m
               WHERE old_protection IS NOT NULL AND {_EXEC}
                 AND CASE WHEN os = 'linux' THEN (old_protection & 6) = 2
                                                OR (old_protection & 6) = 3
                          ELSE (old_protection & 255) IN (4, 8) END
                 AND {_UNBACKED})
            SELECT DISTINCT ON (f.row) f.row
              FROM flips f JOIN thr t
                ON coalesce(t.target_uid, t.process_uid) = f.owner
               AND t.start_address >= f.lo AND t.start_address < f.hi
               AND t.time >= f.time
             ORDER BY f.row
            """,
            mem=ctx.events.select(_MEM_COLS),
            thr=threads.select(_THR_COLS),
        )
        if rows.num_rows == 0:
            return empty_signals()
        hit = ctx.events.take(rows["row"])
        return self.signals(
            hit,
            subject=pc.coalesce(hit["target_uid"], hit["process_uid"]),
            actor=_actor(hit),
            feature="mem.transition",
            value=pa.array(["writable -> executable, then a thread"] * hit.num_rows),
            message="private region written, made executable, and a thread started in it",
        )


_MEM_COLS = [
    "row",
    "kind",
    "time",
    "os",
    "protection",
    "old_protection",
    "process_uid",
    "target_uid",
    "alloc_base",
    "base_address",
    "region_size",
    "reservation_size",
    "region_type",
    "backing_path",
]
_THR_COLS = ["row", "time", "process_uid", "target_uid", "start_address"]


@register_rule
class MemfdExecution(Rule):
    """Code run from an anonymous in-memory file (memfd_create then execve/mmap PROT_EXEC)."""

    id = "UNB-M-005"
    title = "Code executed from an in-memory file (memfd)"
    description = (
        "A process executed (execve/execveat) or mapped executable a file that lives only in "
        "memory (memfd_create: '/memfd:' paths), the fileless ELF execution technique."
    )
    severity = 4
    score = 85.0
    attack = ("T1620", "T1027.011")
    references = ("https://attack.mitre.org/techniques/T1620/",)
    kinds = ("memory", "process")
    requires = ()
    os = ("linux",)

    def evaluate(self, ctx: DetectionContext) -> pa.Table:
        ev = ctx.events
        # kind, activity and os judged on their dictionaries' entries, not cast row by row
        exec_like = pc.and_(
            column_in(ev["kind"], ["process"]), column_in(ev["activity"], ["launch", "exec"])
        )
        os_linux = column_in(ev["os"], ["linux"])
        exec_prot = pc.greater(
            pc.bit_wise_and(pc.fill_null(ev["protection"], 0), pa.scalar(4, pa.uint32())),
            pa.scalar(0, pa.uint32()),
        )
        mapped = pc.and_(column_in(ev["kind"], ["memory"]), exec_prot)
        # the paths are matched on the events that could be hits only (launches and executable
        # mappings on Linux), and only the path each kind of event is about
        # masks as single arrays: pyarrow before 26 crashes on ``indices_nonzero`` of a
        # chunked array without chunks (an empty table's), and before 17 an array cannot be
        # filtered by a chunked mask
        img_rows = pc.indices_nonzero(pc.and_(os_linux, exec_like).combine_chunks())
        map_rows = pc.indices_nonzero(pc.and_(os_linux, mapped).combine_chunks())
        img = pc.fill_null(ev["image"].take(img_rows), "")
        backing = pc.fill_null(ev["backing_path"].take(map_rows), "")
        hit_rows = np.sort(
            np.concatenate(
                [
                    img_rows.filter(pc.match_substring(img, "/memfd:").combine_chunks()).to_numpy(),
                    map_rows.filter(
                        pc.match_substring(backing, "/memfd:").combine_chunks()
                    ).to_numpy(),
                ]
            )
        )
        hit = ev.take(from_numpy(hit_rows))
        return self.signals(
            hit,
            subject=hit["process_uid"],
            feature="process.image",
            value=pc.coalesce(hit["backing_path"], hit["image"]),
            message="code executed from a memfd (file that exists only in memory)",
        )


@register_rule
class SyscallOutsideLibc(Rule):
    """An executable-memory system call issued from outside the C library (raw syscall
    instruction in a loader or shellcode, not the libc wrapper)."""

    id = "UNB-M-006"
    title = "Executable-memory syscall issued outside libc"
    description = (
        "The syscall instruction of an mmap/mprotect with PROT_EXEC lies outside libc "
        "(statically linked programs and JIT engines are learned in the baseline)."
    )
    severity = 3
    score = 55.0
    attack = ("T1620", "T1106")
    references = ("https://attack.mitre.org/techniques/T1106/",)
    kinds = ("memory",)
    requires = ("syscall_outside_libc",)
    os = ("linux",)

    def evaluate(self, ctx: DetectionContext) -> pa.Table:
        if not ctx.has("memory"):
            return empty_signals()
        ev = ctx.events
        flag = pc.and_(
            column_in(ev["kind"], ["memory"]), pc.fill_null(ev["syscall_outside_libc"], False)
        )
        hit = ev.filter(pc.fill_null(flag, False))
        if hit.num_rows == 0:
            return empty_signals()
        score, _, _ = ctx.discount_common(
            hit, "mem.syscall", ["outside-libc"] * hit.num_rows, np.full(hit.num_rows, self.score)
        )
        return self.signals(
            hit,
            subject=hit["process_uid"],
            score=score,
            feature="mem.syscall",
            value=pa.array(["outside-libc"] * hit.num_rows),
            message="executable-memory syscall issued outside libc",
        )


def _actor(hit: pa.Table) -> pa.Array:
    """The actor is the caller when it acted on another process (remote allocation/protect)."""
    remote = pc.and_(
        pc.is_valid(hit["target_uid"]),
        pc.not_equal(pc.fill_null(hit["target_uid"], ""), pc.fill_null(hit["process_uid"], "")),
    )
    return pc.if_else(remote, hit["process_uid"], pa.scalar(None, pa.string()))
