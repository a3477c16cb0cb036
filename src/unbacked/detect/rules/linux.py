"""Linux indicators on the live sensor's events (``os = "linux"``), beside the generic memory
rules (image header, unbacked caller, RWX, memfd, syscall outside libc) of ``memory.py``.

* ``UNB-L-001`` the loader / shellcode-runner shape: an *anonymous* region that was writable
  and not executable is flipped to executable by code that is not a JIT engine. JIT engines do
  flip their code pages (LuaJIT RW- -> R-X, HotSpot) or carve RWX out of large PROT_NONE
  reservations (V8 in node and Chromium: ``--- -> RWX``); their calling module says so. libffi
  is *not* a JIT here: as the caller of ``mprotect`` it is just ctypes' foreign-call
  trampoline, i.e. Python code flipping a page itself; libffi's own closures come from mmap.
* ``UNB-L-002`` connect after foreign code: a process connects out after an unbacked region
  became executable in it in a loader-shaped way (image header, unbacked caller, RW -> X from a
  non-JIT caller) or after it ran code from a memfd. Supporting evidence (T1105 / stage
  download, C2): weak alone, strong next to the others in the noisy-OR of the incident.

* ``UNB-L-003`` self-modification through ``/proc/self/mem``: a process writes into its own
  executable memory through its mem file (or ``process_vm_writev`` on itself). Into the text
  of a *file* (DDexec overwrites libc's code in the shell) it is the attack: debuggers write
  into their tracees, never into themselves. Into *anonymous* executable memory the process
  mapped itself it is also what a JIT does when it cannot double-map (Julia's memory manager,
  ``cgmemmgr.cpp`` ``SelfMemAllocator``, pwrites its code through /proc/self/mem), so that
  scores ``ANON_SELF_WRITE_SCORE``, supporting evidence only.
* ``UNB-L-004`` cross-process code write (Sysmon 8/10's question on Linux: who writes into
  whom, into which mapping): a process writes a run of at least ``CODE_RUN_BYTES`` contiguous
  bytes into an *executable* mapping of another process (ptrace POKETEXT/POKEDATA,
  ``process_vm_writev``, ``/proc/PID/mem``), and either the target is not its own child, or it
  redirects the target's instruction pointer into what it wrote (SETREGS/SETREGSET, POKEUSER
  on ``regs.rip``) or wrote it where the target thread resumes (its instruction pointer at
  the write: code poked at a stopped child's RIP runs on PTRACE_CONT). Debuggers behave
  otherwise: breakpoints are one byte (int3) per write, displaced stepping copies one
  instruction (< 16 bytes), and a debugger points the instruction pointer back at the
  program's own code. linux-inject writes a ~80-byte stub into the target's text and sets RIP
  into it; the target then maps the library.

Every rule ships with a true- and a false-positive fixture in ``tests/detect/rule_fixtures.py``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from unbacked.detect.base import (
    DetectionContext,
    Rule,
    column_in,
    empty_signals,
    register_rule,
)

#: Calling modules of JIT engines on Linux (basenames as the sensor reports them).
LINUX_JIT_CALLER_RE = (
    r"(?i)^(libjvm\.so|node|nodejs|libnode\.so[.0-9]*|chrome|chromium|libchrome[a-z_]*\.so|"
    r"libv8[a-z_]*\.so|luajit[-0-9.]*|libluajit[-0-9.]*\.so[.0-9]*|libpypy[-0-9.a-z]*\.so|"
    r"pypy3?[.0-9]*|libmozjs[-0-9.]*\.so|firefox(-esr)?|libxul\.so|qemu[-a-z0-9_]*|"
    r"libjit[a-z]*\.so[.0-9]*|libgccjit\.so[.0-9]*|libLLVM[-.0-9a-z]*\.so[.0-9]*|"
    r"libpcre2?-[0-9a-z]+\.so[.0-9]*|libmono[-0-9.a-z]*\.so[.0-9]*|dotnet|libcoreclr\.so|"
    r"libclrjit\.so)$"
)

_FLIP_SQL = """
    os = 'linux' AND kind = 'memory' AND activity = 'protect'
    AND region_type = 'anonymous'
    AND old_protection IS NOT NULL AND (old_protection & 2) = 2 AND (old_protection & 4) = 0
    AND (protection & 4) = 4
"""
_NON_JIT = f"NOT regexp_matches(coalesce(caller_module, ''), '{LINUX_JIT_CALLER_RE}')"


_COLS = [
    "row",
    "time",
    "os",
    "kind",
    "activity",
    "process_uid",
    "program",
    "region_type",
    "protection",
    "old_protection",
    "caller_module",
    "caller_unbacked",
    "header_kind",
    "backing_path",
    "image",
    "event_code",
    "remote_ip",
    "remote_port",
]


def _has_linux(ctx: DetectionContext) -> bool:
    """Whether any event is a Linux one (found once per context, on the column's entries)."""
    if "has:linux" not in ctx.cache:
        ctx.cache["has:linux"] = bool(pc.any(column_in(ctx.events["os"], ["linux"])).as_py())
    return bool(ctx.cache["has:linux"])


def _rows(ctx: DetectionContext, sql: str, cols: list[str] = _COLS) -> pa.Table:
    """The Linux events ``sql`` selects (by ``row``) over the columns ``cols``."""
    if not _has_linux(ctx):
        return ctx.events.slice(0, 0)
    return ctx.query_rows(ctx.columns(cols), sql)


def _rows_with(ctx: DetectionContext, sql: str, cols: list[str]) -> tuple[pa.Table, pa.Table]:
    """The Linux events ``sql`` selects and, row for row, the columns it computed beside."""
    if not _has_linux(ctx):
        return ctx.events.slice(0, 0), pa.table({"row": pa.array([], pa.int64())})
    found = ctx.query(ctx.columns(cols), sql)
    if found.num_rows == 0:
        return ctx.events.slice(0, 0), found
    return ctx.events.take(found["row"]), found


@register_rule
class AnonymousWriteToExecFlip(Rule):
    """Anonymous memory that was writable is made executable by a non-JIT caller."""

    id = "UNB-L-001"
    title = "Writable anonymous memory made executable by non-JIT code"
    description = (
        "mprotect/pkey_mprotect turned an anonymous region that was writable and not executable "
        "into executable memory, called from a module that is not a JIT engine (or from "
        "unbacked code): the loader and shellcode-runner pattern (allocate RW, write, flip to "
        "R-X). JIT engines are recognised by calling module; programs whose peers commonly do "
        "the same score lower (learned baseline)."
    )
    severity = 3
    score = 65.0
    attack = ("T1620", "T1055")
    references = (
        "https://attack.mitre.org/techniques/T1620/",
        "https://aquasecurity.github.io/tracee/latest/docs/events/builtin/signatures/",
    )
    kinds = ("memory",)
    requires = ("old_protection", "protection", "region_type")
    row_facts = ("mem.transition",)
    os = ("linux",)

    def evaluate(self, ctx: DetectionContext) -> pa.Table:
        hit = _rows(ctx, f"SELECT row FROM ev WHERE {_FLIP_SQL} AND {_NON_JIT} ORDER BY row")
        if hit.num_rows == 0:
            return empty_signals()
        score = np.full(hit.num_rows, self.score)
        k = n = None
        caller = pc.fill_null(hit["caller_module"], "<unbacked>")
        if ctx.baseline is not None:
            # "normal for this program" = its peers flip pages the same way (the transition),
            # not merely use the same library (python's libffi also allocates ctypes closures)
            facts = ctx.facts_of("mem.transition")
            transitions = facts.filter(pc.is_in(facts["row"], hit["row"]))
            by_row = dict(
                zip(transitions["row"].to_pylist(), transitions["value"].to_pylist(), strict=True)
            )
            values = [by_row.get(r, "?") for r in hit["row"].to_pylist()]
            score, k, n = ctx.discount_common(hit, "mem.transition", values, score)
        return self.signals(
            hit,
            subject=hit["process_uid"],
            score=score,
            feature="mem.transition",
            value=pc.binary_join_element_wise(
                pa.array(["writable -> executable by "] * hit.num_rows), caller, ""
            ),
            message=pc.binary_join_element_wise(
                pa.array(["anonymous RW memory flipped to executable by "] * hit.num_rows),
                caller,
                "",
            ),
            baseline_count=k,
            baseline_total=n,
            baseline_scope="program" if k is not None else None,
        )


#: how long after the foreign code a connect still counts
CONNECT_WINDOW_S = 300


@register_rule
class ConnectAfterForeignCode(Rule):
    """The process connects out after foreign code became executable in it."""

    id = "UNB-L-002"
    title = "Outbound connection after unbacked executable memory"
    description = (
        "A process connected out (IPv4/IPv6) within five minutes after, in the same process, "
        "an anonymous region became executable with an ELF/PE header in it, from unbacked code, "
        "or by a writable-to-executable flip from non-JIT code, or after it ran from a memfd: "
        "a stage calling home or fetching the next stage."
    )
    severity = 3
    score = 50.0
    attack = ("T1620", "T1071")
    references = ("https://attack.mitre.org/techniques/T1071/",)
    kinds = ("memory", "network", "process")
    requires = ()
    os = ("linux",)

    def evaluate(self, ctx: DetectionContext) -> pa.Table:
        if not ctx.has("network", "connect"):
            return empty_signals()
        sql = f"""
        WITH foreign_code AS (
            SELECT process_uid, min(epoch_ns(time)) AS t0 FROM ev
             WHERE os = 'linux' AND (
                   (kind = 'memory' AND region_type = 'anonymous' AND (protection & 4) = 4
                    AND (header_kind IN ('elf', 'pe') OR coalesce(caller_unbacked, false)))
                OR ({_FLIP_SQL} AND {_NON_JIT})
                OR (kind = 'process' AND activity = 'exec' AND image LIKE '/memfd:%'))
             GROUP BY process_uid)
        SELECT min(c.row) AS row
          FROM ev c JOIN foreign_code f ON c.process_uid = f.process_uid
         WHERE c.os = 'linux' AND c.kind = 'network' AND c.activity = 'connect'
           AND epoch_ns(c.time) >= f.t0
           AND epoch_ns(c.time) <= f.t0 + {CONNECT_WINDOW_S * 1_000_000_000}
         GROUP BY c.process_uid
         ORDER BY row
        """
        hit = _rows(ctx, sql)
        if hit.num_rows == 0:
            return empty_signals()
        dest = pc.binary_join_element_wise(
            pc.fill_null(hit["remote_ip"], "?"),
            pc.fill_null(hit["remote_port"].cast(pa.string()), "?"),
            ":",
        )
        return self.signals(
            hit,
            subject=hit["process_uid"],
            feature="network.connect",
            value=dest,
            message=pc.binary_join_element_wise(
                pa.array(["connected to "] * hit.num_rows),
                dest,
                pa.array([" after foreign code became executable"] * hit.num_rows),
                "",
            ),
        )


#: a write run into executable memory at least this long is code, not a breakpoint
CODE_RUN_BYTES = 32
#: SETREGS into the written run within this many seconds of the write
REDIRECT_WINDOW_S = 30
#: UNB-L-003 on code written into the process's own anonymous executable memory (a JIT without
#: double mapping does it; below the alert threshold alone)
ANON_SELF_WRITE_SCORE = 40.0

_VIA = """CASE
    WHEN event_code IN ('linux:ptrace_poketext', 'linux:ptrace_pokedata') THEN 'ptrace POKE'
    WHEN event_code = 'linux:process_vm_writev' THEN 'process_vm_writev'
    ELSE '/proc/PID/mem' END"""
_MAPPING = """CASE
    WHEN region_type = 'file' THEN 'the text of ' || coalesce(backing_path, '?')
    WHEN region_type = 'stack' THEN 'the stack'
    WHEN region_type IS NULL THEN 'unknown memory'
    ELSE region_type || ' executable memory' END"""
_XCOLS = [
    *_COLS,
    "pid",
    "target_uid",
    "target_pid",
    "target_image",
    "target_parent_pid",
    "base_address",
    "region_size",
    "vm_flags",
    "start_address",
]


@register_rule
class SelfCodeWriteProcMem(Rule):
    """A process writes into its own executable memory through its mem file."""

    id = "UNB-L-003"
    title = "Process wrote into its own code through /proc/self/mem"
    description = (
        "A write through /proc/self/mem (or /proc/PID/mem of itself, or process_vm_writev on "
        "itself) landed in an executable mapping of the writing process: code patched in place "
        "behind the page protections (DDexec-style in-memory execution: the shell overwrites "
        "its own code with a loader stub). Into a file's text it is the attack (debuggers "
        "write into their tracees, not themselves); into anonymous executable memory it is "
        "also what a JIT without double mapping does (Julia), so that is supporting evidence."
    )
    severity = 5
    score = 92.0
    attack = ("T1055.009", "T1620")
    references = (
        "https://attack.mitre.org/techniques/T1055/009/",
        "https://github.com/arget13/DDexec",
    )
    kinds = ("memory",)
    requires = ("vm_flags",)
    os = ("linux",)

    def evaluate(self, ctx: DetectionContext) -> pa.Table:
        if not ctx.has("memory", "write"):
            return empty_signals()
        sql = f"""SELECT row, {_VIA} AS via, {_MAPPING} AS mapping,
                         coalesce(region_size, 0) AS bytes, region_type = 'file' AS file_text
                    FROM ev
                   WHERE os = 'linux' AND kind = 'memory' AND activity = 'write'
                     AND target_uid = process_uid AND (vm_flags & 4) = 4
                   ORDER BY row"""
        hit, found = _rows_with(ctx, sql, _XCOLS)
        if hit.num_rows == 0:
            return empty_signals()
        d = found.to_pylist()
        # a file's text overwritten (DDexec: libc's) is the attack; code written into anonymous
        # memory the process mapped itself is what a JIT without double mapping does (Julia's
        # memory manager pwrites its code through /proc/self/mem): supporting evidence only
        score = np.array([self.score if r["file_text"] else ANON_SELF_WRITE_SCORE for r in d])
        values = [f"self:{r['mapping']}" for r in d]
        via = ["/proc/self/mem" if r["via"] == "/proc/PID/mem" else r["via"] for r in d]
        return self.signals(
            hit,
            subject=hit["process_uid"],
            score=score,
            feature="xproc.write",
            value=pa.array(values, pa.string()),
            message=pa.array(
                [
                    f"wrote {r['bytes']} bytes into {r['mapping']} of its own process through {v}"
                    for r, v in zip(d, via, strict=True)
                ],
                pa.string(),
            ),
        )


@register_rule
class CrossProcessCodeWrite(Rule):
    """A process writes code into another process's executable memory (ptrace injection)."""

    id = "UNB-L-004"
    title = "Code written into another process's executable memory"
    description = (
        f"A process wrote a run of at least {CODE_RUN_BYTES} contiguous bytes into an "
        "executable mapping (file text or anonymous) of another process through ptrace "
        "POKETEXT/POKEDATA, process_vm_writev or /proc/PID/mem, and either the target is not "
        "its own child or it set the target's instruction pointer into what it wrote (or "
        "wrote it where the target resumes) (linux-inject, ptrace shellcode injectors). "
        "Debuggers write one-byte breakpoints and point the instruction pointer at the "
        "program's own code."
    )
    severity = 5
    score = 88.0
    attack = ("T1055.008", "T1055.009", "T1620")
    references = (
        "https://attack.mitre.org/techniques/T1055/008/",
        "https://github.com/gaffe23/linux-inject",
    )
    kinds = ("memory",)
    requires = ("target_uid",)
    os = ("linux",)

    def evaluate(self, ctx: DetectionContext) -> pa.Table:
        if not ctx.has("memory", "write"):
            return empty_signals()
        sql = f"""
        WITH w AS (
            SELECT row, time, process_uid, pid, target_uid, target_parent_pid,
                   start_address AS tip, base_address AS lo,
                   base_address + coalesce(region_size, 0) AS hi,
                   {_VIA} AS via, {_MAPPING} AS mapping
              FROM ev
             WHERE os = 'linux' AND kind = 'memory' AND activity = 'write'
               AND target_uid IS NOT NULL AND target_uid != process_uid
               AND (vm_flags & 4) = 4 AND base_address IS NOT NULL),
        starts AS (
            SELECT *, CASE WHEN lo <= max(hi) OVER (
                               PARTITION BY process_uid, target_uid ORDER BY lo, row
                               ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
                           THEN 0 ELSE 1 END AS fresh
              FROM w),
        runs AS (
            SELECT *, sum(fresh) OVER (PARTITION BY process_uid, target_uid ORDER BY lo, row)
                        AS run
              FROM starts),
        spans AS (
            SELECT process_uid, target_uid, run, min(row) AS row, min(lo) AS lo, max(hi) AS hi,
                   min(time) AS t0, max(time) AS t1, any_value(pid) AS pid,
                   any_value(target_parent_pid) AS tppid, arg_min(via, row) AS via,
                   arg_min(mapping, row) AS mapping
              FROM runs GROUP BY process_uid, target_uid, run),
        ctxs AS (
            SELECT process_uid, target_uid, start_address, time FROM ev
             WHERE os = 'linux' AND kind = 'thread' AND activity = 'set_context'
               AND start_address IS NOT NULL)
        SELECT s.row, s.hi - s.lo AS bytes, s.via, s.mapping,
               EXISTS (SELECT 1 FROM ctxs c
                        WHERE c.process_uid = s.process_uid AND c.target_uid = s.target_uid
                          AND c.start_address >= s.lo AND c.start_address < s.hi
                          AND c.time >= s.t0 - INTERVAL {REDIRECT_WINDOW_S} SECOND
                          AND c.time <= s.t1 + INTERVAL {REDIRECT_WINDOW_S} SECOND)
               OR EXISTS (SELECT 1 FROM runs r
                           WHERE r.process_uid = s.process_uid AND r.target_uid = s.target_uid
                             AND r.run = s.run AND r.tip >= s.lo AND r.tip < s.hi)
                 AS redirected,
               coalesce(s.tppid, -1) = s.pid AS own_child
          FROM spans s
         WHERE s.hi - s.lo >= {CODE_RUN_BYTES}
        """
        con_sql = f"""WITH found AS ({sql})
                      SELECT * FROM found WHERE redirected OR NOT own_child ORDER BY row"""
        hit, found = _rows_with(ctx, con_sql, _XCOLS)
        if hit.num_rows == 0:
            return empty_signals()
        msgs, vals, scores = [], [], []
        # the columns the message needs (a whole row holds nanosecond times: model.rows)
        shown = hit.select(["target_image", "target_pid"]).to_pylist()
        for r, d in zip(shown, found.to_pylist(), strict=True):
            target = (r["target_image"] or "?").rsplit("/", 1)[-1]
            msg = (
                f"wrote {d['bytes']} bytes into {d['mapping']} of {target} "
                f"(pid {r['target_pid']}) through {d['via']}"
            )
            if d["redirected"]:
                msg += " and set its instruction pointer into them (or it resumes there)"
            msgs.append(msg)
            vals.append(f"{target}:{d['mapping']}")
            scores.append(self.score + (7.0 if d["redirected"] else 0.0))
        return self.signals(
            hit,
            subject=hit["target_uid"],
            actor=hit["process_uid"],
            score=np.array(scores),
            feature="xproc.write",
            value=pa.array(vals, pa.string()),
            message=pa.array(msgs, pa.string()),
        )


@register_rule
class ForeignProgramImage(Rule):
    """An executable takes a known program's name from another file (masquerading)."""

    id = "UNB-L-005"
    title = "Executable takes a known program's name from another file"
    description = (
        "The process's image has the name of a program the baseline knows (or of a JIT engine) "
        "but another path or other contents (ELF build-id / content hash): it is a different "
        "program, gets no baseline and no JIT allowance of that name. Supporting evidence "
        "(T1036.005): weak alone, it explains why a JIT-like caller was not trusted."
    )
    severity = 2
    score = 30.0
    attack = ("T1036.005",)
    references = ("https://attack.mitre.org/techniques/T1036/005/",)
    kinds = ("memory", "process", "network")
    requires = ()
    os = ("linux",)

    def evaluate(self, ctx: DetectionContext) -> pa.Table:
        from unbacked.model.identity import SEP, known_identities

        sql = f"""SELECT min(row) AS row FROM ev
                   WHERE os = 'linux' AND contains(program, '{SEP}')
                   GROUP BY process_uid ORDER BY row"""
        hit = _rows(ctx, sql)
        if hit.num_rows == 0:
            return empty_signals()
        paths, _ = known_identities(ctx.baseline)
        known: dict[str, list[str]] = {}
        for prog, path in zip(
            paths["program"].to_pylist(), paths["value"].to_pylist(), strict=True
        ):
            known.setdefault(prog, []).append(path)
        msgs, vals = [], []
        for r in hit.select(["program", "image"]).to_pylist():
            name = r["program"].split(SEP, 1)[0]
            where = known.get(name)
            seen = (
                f"the {name} the baseline knows is {', '.join(sorted(where)[:3])}"
                if where
                else (f"{name} is a JIT engine's name, run from a temporary directory")
            )
            msgs.append(f"image {r['image']} takes the name {name}; {seen}")
            vals.append(r["image"] or "?")
        return self.signals(
            hit,
            subject=hit["process_uid"],
            feature="process.image",
            value=pa.array(vals, pa.string()),
            message=pa.array(msgs, pa.string()),
        )


LINUX_RULES: tuple[type[Rule], ...] = (
    AnonymousWriteToExecFlip,
    ConnectAfterForeignCode,
    SelfCodeWriteProcMem,
    CrossProcessCodeWrite,
    ForeignProgramImage,
)
