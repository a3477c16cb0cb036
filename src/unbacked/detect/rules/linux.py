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

Both rules ship with a true- and a false-positive fixture in ``tests/detect/rule_fixtures.py``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from unbacked.detect.base import DetectionContext, Rule, empty_signals, register_rule

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


def _rows(ctx: DetectionContext, sql: str) -> pa.Table:
    ev = ctx.events
    if ev.num_rows == 0 or "linux" not in set(pc.unique(ev["os"].cast(pa.string())).to_pylist()):
        return ev.slice(0, 0)
    return ctx.query_rows(ev.select(_COLS), sql)


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
            transitions = ctx.facts.filter(
                pc.and_(
                    pc.equal(ctx.facts["feature"], "mem.transition"),
                    pc.is_in(ctx.facts["row"], hit["row"]),
                )
            )
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


LINUX_RULES: tuple[type[Rule], ...] = (AnonymousWriteToExecFlip, ConnectAfterForeignCode)
