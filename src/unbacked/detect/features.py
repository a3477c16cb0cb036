"""Features: what a program's executable-memory behaviour looks like, one fact per event and
feature, computed in one DuckDB pass over the event table (no Python per event).

A *fact* is ``(row, process_uid, program, feature, value)``: "event ``row`` of process
``process_uid`` (an instance of ``program``) had ``feature = value``". Baselines count, per
program, how many instances showed each value; scoring asks how surprising a fact is for its
program.

Features (DESIGN.md §5):

=====================  ======================================================================
``mem.protection``     protection requested (``RWX``, ``R-X``, ...) for executable memory
``mem.transition``     old -> new protection of a protection change (``RW- -> R-X``)
``mem.size``           log2 bucket of the region size (``2^16``)
``mem.align``          base alignment: ``64k``, ``page`` or ``unaligned``
``mem.region``         region type and backing: ``private/none``, ``image/file``, ...
``mem.caller``         module of the calling code, ``<unbacked>`` when it lies in no module
``mem.header``         PE/ELF header found in the region
``mem.scope``          ``local`` or ``remote`` (into another process)
``mem.syscall``        ``outside-libc`` when the syscall instruction is not in the C library
``xproc.write``        Linux: a write through ptrace POKE, ``process_vm_writev`` or a mem file,
                       ``own``/``other`` process, ``code``/``data`` mapping, its type
                       (``other code/file``: into another process's program text)
``open.unbacked``      call-trace class: ``none``, ``kernel``, ``managed``, ``api``, ``only``,
                       ``other`` (see ``TRACE_CLASS_SQL``)
``open.trace_shape``   module sequence of the call trace, offsets stripped, repeats collapsed
``open.access``        access mask granted, with the target program
``thread.remote``      target program and start module (``<unbacked>`` when none)
``module.engine``      managed-code engine loaded (``clr``, ``powershell``, ``coreclr``, ...)
``network.connect``    direction of connections
``process.child``      program of each child launched
``process.seen``       one per instance (denominator of the absence-aware features)
``process.image``      Linux: the image path of each instance (where the program lives)
``process.file``       Linux: its ELF build-id or content hash (what the program is)
``seen.module``        one per instance with logged module loads
=====================  ======================================================================
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from unbacked import duck
from unbacked.model.jit import JIT_ENGINE_STEMS, JIT_ENGINES
from unbacked.sql import sql_str

#: The JIT engines' module-name stems (``model.jit.JIT_ENGINES``, the one table every JIT
#: allowance derives from): a module of one of these in a call trace explains unbacked frames as
#: generated code, and executable memory it asks for is expected churn.
JIT_STEMS_RE = "|".join(JIT_ENGINE_STEMS)

#: Modules whose presence in a call trace explains unbacked frames as managed/JIT code: the JIT
#: engines, plus .NET's own assemblies and native images and CPython ctypes / libffi callbacks
#: (frames of code a managed runtime called or was called by).
MANAGED_MODULE_RE = (
    r"^((mscoree|mscorlib(\.ni)?|system\.management\.automation(\.ni)?|"
    r"system(\.[a-z0-9]+)*(\.ni)?|[a-z0-9_.]+\.ni)\.dll"
    rf"|({JIT_STEMS_RE}|chrome_elf|code|_ctypes|libffi[-0-9]*)\.(dll|exe|pyd))$"
)
#: System DLLs through which user code calls the kernel.
SYSTEM_API_RE = r"^(ntdll|kernelbase|kernel32|wow64|wow64win|wow64cpu|win32u|user32)\.dll$"
#: A call-trace frame (lower case, before its basename is taken) in a module of the Windows
#: directory: part of the system, not of the program, whatever its name (gdi32full.dll calling
#: an EnumFonts callback, crypt32.dll a CertEnumSystemStore one). Matching a folder named so
#: elsewhere only makes a trace count as called from the system, i.e. scored, never excused.
SYSTEM_DIR_RE = (
    r"^(\\\\[?.]\\|\\\?\?\\)?([a-z]:)?\\(windows|systemroot)\\"
    r"(system32|syswow64|sysnative|winsxs)\\"
)
#: The PowerShell engine assembly: a managed-code engine load, though no JIT engine of its own.
POWERSHELL_MODULE_RE = r"system\.management\.automation(\.ni)?\.dll"
#: Engines whose load into a process means it runs managed code (module.engine): PowerShell's
#: assembly, then each JIT engine's ``loads``.
ENGINE_SQL = (
    "\nCASE\n"
    f"  WHEN regexp_matches(lower(module_path), '(^|\\\\){POWERSHELL_MODULE_RE}$')"
    " THEN 'powershell'\n"
    + "".join(
        f"  WHEN regexp_matches(lower(module_path), '(^|[\\\\/])({'|'.join(e.loads)})$')"
        f" THEN '{e.family}'\n"
        for e in JIT_ENGINES
        if e.loads
    )
    + "  ELSE NULL\nEND\n"
)

#: Matches every module path ``ENGINE_SQL`` names (a superset, tested first).
ENGINE_PREFILTER = "|".join(["automation", *(f for e in JIT_ENGINES for f in e.loads)])

_FRAMES_SQL = r"""
list_transform(string_split(call_trace, '|'), lambda f:
  CASE
    WHEN upper(f) LIKE 'UNKNOWN(FFFF%' THEN '<kernel>'
    WHEN upper(f) LIKE 'UNKNOWN%' THEN '<unbacked>'
    ELSE lower(regexp_replace(regexp_replace(f, '\+[0-9a-fA-Fx]+(\(wow64\))?$', ''),
                              '^.*[\\/]', ''))
  END)
"""

#: User-mode ``UNKNOWN`` frames of a call trace all lie in the x64 range where Windows maps
#: images (0x7FF0'0000'0000 and up): code the runtime placed next to its modules (.NET keeps
#: its code heaps and stubs within reach of clr.dll/coreclr.dll) or a module Sysmon had not
#: named yet. Memory an injector allocates without an address hint lies far below it.
_IMAGE_RANGE_SQL = r"""
(len(list_filter(regexp_extract_all(upper(call_trace), 'UNKNOWN\(([0-9A-F]+)\)', 1),
                 lambda a: NOT a LIKE 'FFFF%')) > 0
 AND len(list_filter(regexp_extract_all(upper(call_trace), 'UNKNOWN\(([0-9A-F]+)\)', 1),
                     lambda a: NOT a LIKE 'FFFF%'
                               AND NOT lpad(a, 16, '0') BETWEEN '00007FF000000000'
                                                            AND '00007FFFFFFFFFFF')) = 0)
"""

#: Classify a call trace by where its unbacked frames lie.
#:  none    no unbacked frame
#:  kernel  only kernel-address UNKNOWN frames (e.g. explorer -> child, benign)
#:  managed unbacked frames in a trace that also has managed-runtime modules (JIT code)
#:  only    every frame unbacked (direct syscall from unbacked code)
#:  image-range  every user-mode unbacked frame lies in the x64 image range
#:          (``_IMAGE_RANGE_SQL``): a runtime's code next to its modules, not an injector's
#:  api     an unbacked frame right above a system API DLL frame, and nothing but unbacked or
#:          system frames further out (shellcode calling Win32; not a hook trampoline, which
#:          has the application's own modules above it)
#:  truncated  only system API DLL frames, and no thread-start frames: the walk stopped at a
#:          caller it could not unwind (manually mapped code has no registered unwind data)
#:  hosted  every run of unbacked frames was called by one of the program's own modules:
#:          neither the kernel nor a system DLL (``SYSTEM_API_RE`` by name, or any module of
#:          the Windows directory by path, ``SYSTEM_DIR_RE``): a program calling code it
#:          generated or hosts (an embedded runtime, interop thunks into JIT code). Shellcode
#:          entered through a Windows DLL's callback (EnumFonts via gdi32full, crypt32's
#:          store enumeration, window procedures via user32) is ``other``
#:  other   unbacked frames elsewhere (hook trampolines of security products, callbacks)
TRACE_CLASS_SQL = rf"""
CASE
  WHEN call_trace IS NULL OR call_trace = '' THEN NULL
  WHEN NOT list_contains(frames, '<unbacked>') THEN
       CASE WHEN list_contains(frames, '<kernel>') THEN 'kernel'
            WHEN len(list_filter(frames, lambda f: NOT regexp_matches(f, '{SYSTEM_API_RE}'))) = 0
                 AND NOT (len(frames) >= 2 AND frames[-1] = 'ntdll.dll'
                          AND frames[-2] = 'kernel32.dll')
                 THEN 'truncated'
            ELSE 'none' END
  WHEN len(list_filter(frames, lambda f: f NOT IN ('<unbacked>', '<kernel>'))) = 0 THEN 'only'
  WHEN len(list_filter(frames, lambda f: regexp_matches(f, '{MANAGED_MODULE_RE}'))) > 0
       THEN 'managed'
  WHEN {_IMAGE_RANGE_SQL} THEN 'image-range'
  WHEN len(list_filter(list_zip(frames[2:], frames[1:len(frames) - 1]),
           lambda p: p[1] = '<unbacked>' AND regexp_matches(p[2], '{SYSTEM_API_RE}'))) > 0
       AND len(list_filter(frames[list_position(frames, '<unbacked>') + 1:],
           lambda f: f NOT IN ('<unbacked>', '<kernel>')
                     AND NOT regexp_matches(f, '{SYSTEM_API_RE}'))) = 0
       THEN 'api'
  WHEN frames[-1] != '<unbacked>'
       AND len(list_filter(list_zip(frames[1:len(frames) - 1], frames[2:],
                                    string_split(lower(call_trace), '|')[2:]),
           lambda p: p[1] = '<unbacked>' AND p[2] != '<unbacked>'
                     AND (p[2] = '<kernel>' OR regexp_matches(p[2], '{SYSTEM_API_RE}')
                          OR regexp_matches(p[3], '{SYSTEM_DIR_RE}')))) = 0
       THEN 'hosted'
  ELSE 'other'
END
"""

#: Call-trace classes that say no foreign code ran: the benign side of ``open.unbacked``. A
#: program showing one its peers do not is no evidence of injection (the baseline detector
#: leaves them out; ``UNB-W-002`` scores only the others).
EXPLAINED_TRACE_CLASSES = ("none", "kernel", "managed", "image-range", "hosted")


@dataclass(frozen=True, slots=True)
class FactBranch:
    """The facts of one feature, one per event of ``source`` (a CTE of the facts query) for
    which ``where`` holds: ``value`` of the event, for the instance ``instance`` of program
    ``program`` (SQL over the source's columns). ``group``: the kind of events it needs (the
    branch runs only when they are present)."""

    group: str
    feature: str
    source: str
    value: str
    where: str = ""
    instance: str = "process_uid"
    program: str = "program"

    def row_sql(self, values: Collection[str] | None = None, *, grouped: bool = False) -> str:
        """One fact per event: ``(row, process_uid, program, feature, value)``; only those
        whose value is among ``values`` when given. ``grouped``: from the groups of the
        source's events (``_PREGROUPED``), each group's events."""
        conds = [self.where] if self.where else []
        if values is not None:
            conds.append(f"({self.value}) IN ({_sql_list(values)})")
        where = "\n   WHERE " + " AND ".join(f"({c})" for c in conds) if conds else ""
        row, source = "row", self.source
        if grouped:
            row, source = "unnest(rows)", _PREGROUPED[source][0]
        return (
            f"  SELECT {row}, {self.instance}, {self.program}, '{self.feature}',\n"
            f"         {self.value}\n    FROM {source}{where}"
        )


@dataclass(frozen=True, slots=True)
class InstanceBranch:
    """The fact of one feature per instance, aggregated by ``sql`` (``(row, process_uid,
    program, feature, value)``, ``row`` the instance's first event): one fact per instance,
    in either form of the query."""

    group: str
    feature: str
    sql: str

    def row_sql(self, values: Collection[str] | None = None) -> str:
        if values is None:
            return self.sql
        listed = _sql_list(values)
        return f"  SELECT * FROM (\n{self.sql}\n  ) AS f(r, u, p, ft, v) WHERE v IN ({listed})"


def _sql_list(values: Collection[str]) -> str:
    """``values`` as the items of a SQL ``IN (...)`` (``NULL`` for none: nothing is in it)."""
    return ", ".join(sql_str(v) for v in sorted(values)) or "NULL"


#: One branch per feature, tagged with the kind of event it needs: only the branches whose
#: events are present run (a Sysmon capture has no memory events, a sensor capture no opens).
_FACT_BRANCHES: tuple[FactBranch | InstanceBranch, ...] = (
    FactBranch("open", "open.unbacked", "opens", "trace_class"),
    FactBranch("open", "open.trace_shape", "opens", "trace_shape"),
    FactBranch(
        "open",
        "open.access",
        "opens",
        "coalesce(target_program, '?') || ':' || printf('0x%x', granted_access)",
        "granted_access IS NOT NULL",
    ),
    FactBranch(
        "thread",
        "thread.remote",
        "ev",
        r"""coalesce(target_program, '?') || ':' ||
         coalesce(lower(regexp_replace(start_module, '^.*[\\/]', '')), '<unbacked>')""",
        "kind = 'thread' AND activity = 'remote_thread'",
    ),
    FactBranch("module", "module.engine", "loads", "engine"),
    FactBranch(
        "network", "network.connect", "ev", "coalesce(direction, 'unknown')", "kind = 'network'"
    ),
    FactBranch(
        "launch",
        "process.child",
        "ev",
        "program",
        "kind = 'process' AND activity = 'launch' AND parent_uid IS NOT NULL",
        instance="parent_uid",
        program=r"lower(regexp_replace(coalesce(parent_image, ''), '^.*[\\/]', ''))",
    ),
    FactBranch("memory", "mem.protection", "mem", "p_new"),
    FactBranch("memory", "mem.transition", "mem", "p_old || ' -> ' || p_new", "p_old IS NOT NULL"),
    FactBranch(
        "memory",
        "mem.size",
        "mem",
        "'2^' || CAST(ceil(log2(greatest(region_size, 1))) AS INTEGER)",
        "region_size IS NOT NULL",
    ),
    FactBranch(
        "memory",
        "mem.align",
        "mem",
        """CASE WHEN base_address % 65536 = 0 THEN '64k'
              WHEN base_address % 4096 = 0 THEN 'page' ELSE 'unaligned' END""",
        "base_address IS NOT NULL",
    ),
    FactBranch(
        "memory",
        "mem.region",
        "mem",
        """coalesce(region_type, '?') || '/' ||
         CASE WHEN backing_path IS NULL OR backing_path = '' THEN 'none' ELSE 'file' END""",
    ),
    FactBranch(
        "memory",
        "mem.caller",
        "mem",
        r"""CASE WHEN caller_unbacked THEN '<unbacked>'
              ELSE coalesce(lower(regexp_replace(caller_module, '^.*[\\/]', '')), '?') END""",
        "caller_unbacked IS NOT NULL OR caller_module IS NOT NULL",
    ),
    FactBranch("memory", "mem.header", "mem", "header_kind", "header_kind IS NOT NULL"),
    FactBranch(
        "memory",
        "mem.scope",
        "mem",
        "CASE WHEN target_uid IS NULL OR target_uid = process_uid THEN 'local' ELSE 'remote' END",
    ),
    FactBranch(
        "memory",
        "xproc.write",
        "ev",
        """CASE WHEN target_uid IS NULL OR target_uid = process_uid THEN 'own' ELSE 'other' END
         || ' ' || CASE WHEN vm_flags & 4 = 4 THEN 'code' ELSE 'data' END
         || '/' || coalesce(region_type, '?')""",
        "os = 'linux' AND kind = 'memory' AND activity = 'write'",
    ),
    InstanceBranch(
        "always",
        "process.seen",
        r"""
  SELECT min(row), process_uid, arg_min(program, row) FILTER (program IS NOT NULL),
         'process.seen', 'yes'
    FROM ev WHERE process_uid IS NOT NULL GROUP BY process_uid
""",
    ),
    InstanceBranch(
        "always",
        "process.image",
        r"""
  SELECT min(row), process_uid, arg_min(program, row) FILTER (program IS NOT NULL),
         'process.image', lower(arg_min(image, row) FILTER (image IS NOT NULL))
    FROM ev WHERE process_uid IS NOT NULL AND os = 'linux' AND image IS NOT NULL
   GROUP BY process_uid
""",
    ),
    InstanceBranch(
        "always",
        "process.file",
        r"""
  SELECT min(row), process_uid, arg_min(program, row) FILTER (program IS NOT NULL),
         'process.file', arg_min(coalesce(image_build_id, image_hash), row)
                           FILTER (coalesce(image_build_id, image_hash) IS NOT NULL)
    FROM ev WHERE process_uid IS NOT NULL AND os = 'linux'
   GROUP BY process_uid
""",
    ),
    InstanceBranch(
        "module",
        "seen.module",
        r"""
  SELECT min(row), process_uid, arg_min(program, row) FILTER (program IS NOT NULL),
         'seen.module', 'yes'
    FROM ev WHERE process_uid IS NOT NULL AND kind = 'module' GROUP BY process_uid
""",
    ),
    FactBranch(
        "memory",
        "mem.syscall",
        "mem",
        "CASE WHEN syscall_outside_libc THEN 'outside-libc' ELSE 'libc' END",
        "syscall_outside_libc IS NOT NULL",
    ),
)

#: The event columns the facts are computed from (``ev``: a CTE of the facts query, or a view of
#: its connection for the query per instance, whose branches filter it each their own way)
_EV_SQL = """
  SELECT row, process_uid, program, host, kind::VARCHAR AS kind, activity::VARCHAR AS activity,
         os::VARCHAR AS os, call_trace, granted_access, target_program, start_module,
         module_path, direction::VARCHAR AS direction, protection, old_protection, region_size,
         base_address, region_type::VARCHAR AS region_type, backing_path, caller_module,
         caller_unbacked, header_kind::VARCHAR AS header_kind, target_uid,
         syscall_outside_libc, parent_uid, parent_image, image, image_build_id, image_hash,
         vm_flags
    FROM events
"""


def _protection_sql(column: str) -> str:
    """A protection as its letters: Linux ``PROT_*`` bits as ``RWX``, a Windows ``PAGE_*``
    constant as the same letters (``C``: copy-on-write), anything else in hex."""
    return f"""CASE WHEN os = 'linux' THEN
      (CASE WHEN {column} & 1 > 0 THEN 'R' ELSE '-' END) ||
      (CASE WHEN {column} & 2 > 0 THEN 'W' ELSE '-' END) ||
      (CASE WHEN {column} & 4 > 0 THEN 'X' ELSE '-' END)
    ELSE CASE {column} & 255 WHEN 1 THEN '---' WHEN 2 THEN 'R--' WHEN 4 THEN 'RW-'
      WHEN 8 THEN 'RC-' WHEN 16 THEN '--X' WHEN 32 THEN 'R-X' WHEN 64 THEN 'RWX'
      WHEN 128 THEN 'RCX' ELSE printf('0x%x', {column}) END
    END"""


#: a memory event's protections as letters: ``p_new`` (protection), ``p_old`` (the one before)
_PROT_SQL = f"""
    {_protection_sql("protection")} AS p_new,
    CASE WHEN old_protection IS NULL THEN NULL ELSE {_protection_sql("old_protection")}
    END AS p_old"""
#: the memory events the memory branches speak of: executable before or after
_EXEC_SQL = "p_new LIKE '%X%' OR p_old LIKE '%X%'"

#: the events of the open and memory sources, event by event or in groups (``_PREGROUPED``):
#: both forms of the query must read the same events
_OPEN_EVENTS = "kind = 'process' AND activity = 'open'"
_MEMORY_EVENTS = "kind = 'memory' AND protection IS NOT NULL"
#: the process opens, whose call traces are classified (the per-instance form reads them from
#: their groups, ``_OPENS_PRE``)
_OPENS = f"(SELECT call_trace FROM ev WHERE {_OPEN_EVENTS})"

_FACTS_TEMPLATE = rf"""
WITH {{ev}}{{opens_pre}}
traces AS (   -- each distinct call trace parsed once (a fleet repeats a few thousand shapes)
  SELECT call_trace, frames, {TRACE_CLASS_SQL} AS trace_class,
         array_to_string(list_filter(frames, lambda f, i: i = 1 OR f != frames[i - 1]), '|')
           AS trace_shape
    FROM (SELECT call_trace, {_FRAMES_SQL} AS frames
            FROM (SELECT DISTINCT call_trace FROM {{open_traces}}
                   WHERE call_trace IS NOT NULL AND call_trace != ''))
),
opens AS (
  SELECT e.*, t.trace_class, t.trace_shape
    FROM ev e LEFT JOIN traces t USING (call_trace)
   WHERE {_OPEN_EVENTS}
),
prot AS (
  SELECT *, {_PROT_SQL}
  FROM ev WHERE {_MEMORY_EVENTS}
),
mem AS (SELECT * FROM prot WHERE {_EXEC_SQL}),
-- the engine of each distinct module path (a fleet loads a few hundred paths), then the loads
paths AS MATERIALIZED (
  SELECT DISTINCT module_path FROM ev
   WHERE kind = 'module' AND activity = 'load' AND module_path IS NOT NULL
),
engines AS (
  SELECT * FROM (SELECT module_path, {ENGINE_SQL} AS engine FROM paths
                  -- one cheap test first: most paths are none of the engines
                  WHERE regexp_matches(lower(module_path), '{ENGINE_PREFILTER}'))
   WHERE engine IS NOT NULL
),
loads AS (
  SELECT e.*, g.engine FROM ev e JOIN engines g USING (module_path)
   WHERE e.kind = 'module' AND e.activity = 'load'
),
{{facts}}
)
{{select}}
"""

#: The per-instance form reads these sources as groups of their events (``_PREGROUPED``): a
#: group's ``row`` is its first event's, ``rows`` every event's, ``n`` their number. A fleet
#: repeats a few thousand combinations of what the branches read (118,000 opens of a
#: 207,000-event host group are 3,400 groups; 42,000 executable-memory events 10,600), so a
#: call trace is hashed, joined to its class and a value built once per group instead of once
#: per event, and the facts rules read one by one are the groups' rows (``unnest(rows)``). A
#: group shares every column a branch of its source reads, or, for a column read only through a
#: coarser expression (a size's power of two, an address's alignment, a path's presence,
#: whether the target is the process itself), that expression; the column then holds the
#: group's least value, of which the expression is the same. A branch that reads such a column
#: otherwise must add its expression to the group (``tests/detect/test_features.py`` compares
#: the two forms of the query on every pair of events that differ in one pooled value).
_OPENS_PRE = f"""
opens_pre AS (
  SELECT min(row) AS row, list(row) AS rows, count(*) AS n, process_uid, program, call_trace,
         granted_access, target_program
    FROM ev WHERE {_OPEN_EVENTS}
   GROUP BY process_uid, program, call_trace, granted_access, target_program
),"""
_PREGROUPED = {
    "opens": (
        "opens_g",
        """opens_g AS (
  SELECT o.*, t.trace_class, t.trace_shape FROM opens_pre o LEFT JOIN traces t USING (call_trace)
),
""",
    ),
    "mem": (
        "mem_g",
        f"""mem_g AS (
  SELECT * FROM (
    SELECT *, {_PROT_SQL}
      FROM (SELECT min(row) AS row, list(row) AS rows, count(*) AS n, process_uid, program,
                   os, protection, old_protection, min(region_size) AS region_size,
                   min(base_address) AS base_address, region_type,
                   min(backing_path) AS backing_path, caller_unbacked, caller_module,
                   header_kind, min(target_uid) AS target_uid, syscall_outside_libc
              FROM ev WHERE {_MEMORY_EVENTS}
             GROUP BY process_uid, program, os, protection, old_protection,
                      -- greatest() skips a NULL: a NULL size would join the sizes 0 and 1
                      region_size IS NULL, CAST(ceil(log2(greatest(region_size, 1))) AS INTEGER),
                      base_address % 65536 = 0, base_address % 4096 = 0,
                      region_type, backing_path IS NULL OR backing_path = '',
                      caller_unbacked, caller_module, header_kind,
                      target_uid IS NULL OR target_uid = process_uid, syscall_outside_libc)
  ) WHERE {_EXEC_SQL}
),
""",
    ),
}

#: a fact that names its instance, program and value
_VALID = "process_uid IS NOT NULL AND value IS NOT NULL AND program IS NOT NULL AND program != ''"

#: the facts as they are, one per event and feature
_FACTS_SELECT = f"SELECT row, process_uid, program, feature, value FROM facts\n WHERE {_VALID}"

#: the facts per instance, program, feature and value, from ``wfacts`` (facts of groups of
#: events that share their instance, program and values: the group's first ``row`` and its
#: ``n`` events): the first event's ``row`` and the number of events
#: (``detect.baseline.instance_facts`` of the facts: a (row, feature) pair is one fact, so the
#: order is total); then the facts of ``rfacts`` one by one (the features rules read event by
#: event), marked ``per_row``
_INSTANCE_SELECT = f"""SELECT * FROM (
  SELECT false AS per_row, min(row) AS row, process_uid, program, feature, value,
         CAST(sum(n) AS BIGINT) AS events
    FROM wfacts WHERE {_VALID}
   GROUP BY process_uid, program, feature, value
  UNION ALL
  SELECT true, row, process_uid, program, feature, value, 1 FROM rfacts WHERE {_VALID}
) ORDER BY per_row, row, feature"""

#: Features whose absence is informative, with the fact that counts the instances that could
#: have shown them: every instance seen for remote threads and children; for engines, only the
#: instances whose module loads are logged at all (Sysmon configurations log image loads for a
#: few programs only). "1 of 812 notepad instances with logged module loads loaded the CLR".
ABSENCE_AWARE: dict[str, str] = {
    "module.engine": "seen.module",
    "thread.remote": "process.seen",
    "process.child": "process.seen",
    "xproc.write": "process.seen",
}


#: a branch of the facts' columns and no rows (nothing asked for)
_NO_FACTS = "  SELECT NULL::BIGINT, NULL, NULL, NULL, NULL WHERE false"


def _weighted_sql(branches: list[FactBranch | InstanceBranch]) -> tuple[str, str]:
    """The CTEs of ``branches`` as facts of groups of events (``wfacts``: ``row`` the group's
    first event, ``n`` its events): the events of one source, instance and program are grouped
    by the value each branch gives them (a fleet repeats a few thousand combinations), so a
    fact is made once per group instead of once per event; a source of ``_PREGROUPED`` is read
    as its groups (their CTEs come first in what is returned)."""
    sources: dict[tuple[str, str, str], list[tuple[int, FactBranch]]] = {}
    facts: list[str] = []
    grouped: list[str] = []
    for i, branch in enumerate(branches):
        if isinstance(branch, InstanceBranch):
            facts.append(f"  SELECT *, 1 FROM ({branch.sql})")
        else:
            key = (branch.source, branch.instance, branch.program)
            sources.setdefault(key, []).append((i, branch))
    ctes: list[str] = []
    for g, ((source, instance, program), members) in enumerate(sources.items()):
        values = "".join(
            f",\n         CASE WHEN {b.where} THEN {b.value} END AS v{i}"
            if b.where
            else f",\n         {b.value} AS v{i}"
            for i, b in members
        )
        # the source's events at least one branch speaks of
        wheres = [b.where for _, b in members]
        where = "\n   WHERE " + " OR ".join(f"({w})" for w in wheres) if all(wheres) else ""
        n = "count(*)"
        if source in _PREGROUPED:
            source, cte = _PREGROUPED[source]
            if cte not in grouped:
                grouped.append(cte)
            n = "CAST(sum(n) AS BIGINT)"
        ctes.append(
            f"g{g} AS (\n  SELECT min(row) AS first_row, {n} AS n, {instance} AS g_uid,\n"
            f"         {program} AS g_program{values}\n    FROM {source}{where}\n   GROUP BY ALL\n)"
        )
        facts += [
            f"  SELECT first_row, g_uid, g_program, '{b.feature}', v{i}, n FROM g{g}"
            f" WHERE v{i} IS NOT NULL"
            for i, b in members
        ]
    if not facts:
        facts = [_NO_FACTS.replace(" WHERE", ", NULL::BIGINT WHERE")]
    return "".join(grouped) + ",\n".join(ctes), "\n  UNION ALL\n".join(facts)


def facts_sql(
    groups: set[str] | None = None,
    features: Collection[str] | None = None,
    *,
    per_instance: bool = False,
    row_features: Collection[str] = (),
    row_values: Mapping[str, Collection[str]] | None = None,
) -> str:
    """The facts query with the branches of ``groups`` (all when None) that produce
    ``features`` (all when None); ``per_instance``: aggregated per instance, program, feature and
    value (``_INSTANCE_SELECT``), with the facts of ``row_features`` one by one beside them
    (of a feature in ``row_values``, only those with one of its values), instead of one row
    per fact. The query per instance reads ``ev`` as a view of its
    connection (``_EV_SQL``), which each branch filters its own way."""
    chosen = [
        b
        for b in _FACT_BRANCHES
        if (groups is None or b.group == "always" or b.group in groups)
        and (features is None or b.feature in features)
    ]
    if not per_instance:
        parts = [b.row_sql() for b in chosen] or [_NO_FACTS]
        body = "facts(row, process_uid, program, feature, value) AS (\n" + "\n  UNION ALL\n".join(
            parts
        )
        return (
            _FACTS_TEMPLATE.replace("{ev}", f"ev AS ({_EV_SQL}),")
            .replace("{opens_pre}", "")
            .replace("{open_traces}", _OPENS)
            .replace("{facts}", body)
            .replace("{select}", _FACTS_SELECT)
        )
    grouped, weighted = _weighted_sql(chosen)
    narrowed = row_values or {}
    # a fact listed one by one of a grouped source comes from its groups' events (the groups
    # are made for the branch's own facts per instance: ``chosen`` holds it)
    per_row = [
        b.row_sql(narrowed.get(b.feature), grouped=True)
        if isinstance(b, FactBranch) and b.source in _PREGROUPED
        else b.row_sql(narrowed.get(b.feature))
        for b in chosen
        if b.feature in row_features
    ] or [_NO_FACTS]
    body = (
        (grouped + ",\n" if grouped else "")
        + "wfacts(row, process_uid, program, feature, value, n) AS (\n"
        + weighted
        + "\n),\nrfacts(row, process_uid, program, feature, value) AS (\n"
        + "\n  UNION ALL\n".join(per_row)
    )
    # the facts listed one by one (``rfacts``) come from the grouped sources too: the
    # sources event by event (``opens``, ``prot``, ``mem``) are left unused
    return (
        _FACTS_TEMPLATE.replace("{ev}", "")
        .replace("{opens_pre}", _OPENS_PRE)
        .replace("{open_traces}", "opens_pre")
        .replace("{facts}", body)
        .replace("{select}", _INSTANCE_SELECT)
    )


#: every branch (what the Spark engine and tests read)
FACTS_SQL = facts_sql()

FACT_SCHEMA = pa.schema(
    [
        ("row", pa.int64()),
        ("process_uid", pa.string()),
        ("program", pa.string()),
        ("feature", pa.string()),
        ("value", pa.string()),
    ]
)
#: facts per instance (``detect.baseline.instance_facts``): the first row and the event count
INSTANCE_FACT_SCHEMA = FACT_SCHEMA.append(pa.field("events", pa.int64()))

#: How much a surprising value of each feature says about foreign code (0-1).
FEATURE_WEIGHT: dict[str, float] = {
    "open.unbacked": 1.0,
    "mem.caller": 1.0,
    "mem.header": 1.0,
    "mem.protection": 0.8,
    "mem.transition": 0.8,
    "mem.scope": 0.7,
    "mem.region": 0.6,
    "mem.syscall": 0.8,
    "xproc.write": 0.7,
    "module.engine": 0.3,
    "thread.remote": 0.5,
    "mem.align": 0.4,
    "mem.size": 0.3,
    "open.trace_shape": 0.3,
    "open.access": 0.25,
    "network.connect": 0.25,
    "process.child": 0.3,
}


_GROUP_PRESENT: dict[str, Callable[[str, str], bool]] = {
    "open": lambda k, a: k == "process" and a == "open",
    "thread": lambda k, a: k == "thread" and a == "remote_thread",
    "module": lambda k, a: k == "module",
    "network": lambda k, a: k == "network",
    "launch": lambda k, a: k == "process" and a == "launch",
    "memory": lambda k, a: k == "memory",
}


def kind_pairs(events: pa.Table) -> set[tuple[str, str]]:
    """The distinct (kind, activity) pairs of ``events`` (a null activity as "", a null kind
    left out), as plain strings: found on each batch's dictionary indices (both columns are
    dictionaries in an event table, a few entries each) rather than on the strings of every
    event; chunks may carry differing dictionaries."""
    pairs: set[tuple[str, str]] = set()
    for batch in events.select(["kind", "activity"]).to_batches():
        kinds, kind_codes = _entries(batch.column(0))
        acts, act_codes = _entries(batch.column(1))
        width = len(acts) + 1
        codes = kind_codes * width + act_codes
        for code in np.flatnonzero(np.bincount(codes, minlength=1)).tolist():
            kind = kinds[code // width - 1] if code // width else None
            if kind is not None:
                act = acts[code % width - 1] if code % width else None
                pairs.add((kind, "" if act is None else act))
    return pairs


def _entries(column: pa.Array) -> tuple[list[str | None], np.ndarray]:
    """A string or dictionary column as its distinct values and, per row, 1 + the value's
    position among them (0 for a null)."""
    if not pa.types.is_dictionary(column.type):
        column = pc.dictionary_encode(column.cast(pa.string()))
    values = column.dictionary.cast(pa.string()).to_pylist()
    codes = pc.fill_null(pc.add(column.indices.cast(pa.int64()), 1), 0)
    return values, codes.to_numpy(zero_copy_only=False)


def _present_groups(events: pa.Table) -> set[str]:
    """The branch groups whose events are present."""
    present = kind_pairs(events)
    return {g for g, cond in _GROUP_PRESENT.items() if any(cond(k, a) for k, a in present)}


def _run_facts(
    events: pa.Table,
    features: Collection[str] | None,
    per_instance: bool,
    row_features: Collection[str] = (),
    row_values: Mapping[str, Collection[str]] | None = None,
) -> pa.Table:
    cols = [c for c in events.column_names if c not in ("time",)]
    sql = facts_sql(
        _present_groups(events),
        features,
        per_instance=per_instance,
        row_features=row_features,
        row_values=row_values,
    )
    with duck.session(events=events.select(cols)) as con:
        if per_instance:
            con.execute(f"CREATE TEMP VIEW ev AS {_EV_SQL}")
        return duck.sql(con, sql)


def extract_facts(events: pa.Table, features: Collection[str] | None = None) -> pa.Table:
    """Facts of every event of ``events`` (a ``DetectionContext.events`` table: with ``row``,
    ``program`` and ``target_program`` columns); only those of ``features`` when given (the
    other branches are not run)."""
    return _run_facts(events, features, per_instance=False).cast(FACT_SCHEMA)


def extract_instance_facts(
    events: pa.Table,
    row_features: Collection[str] = (),
    row_values: Mapping[str, Collection[str]] | None = None,
) -> tuple[pa.Table, pa.Table]:
    """``detect.baseline.instance_facts(extract_facts(events))`` and the facts of
    ``row_features`` (``extract_facts(events, row_features)``, in no particular order; of a
    feature in ``row_values``, only those with one of its values), in one DuckDB pass, without
    every fact leaving it (a fact per event and feature: several per event, mostly repeating
    their instance's strings)."""
    both = _run_facts(
        events, None, per_instance=True, row_features=row_features, row_values=row_values
    )
    per_row = both["per_row"]
    instances = both.filter(pc.invert(per_row)).drop_columns(["per_row"])
    rows = both.filter(per_row).drop_columns(["per_row", "events"])
    return instances.cast(INSTANCE_FACT_SCHEMA), rows.cast(FACT_SCHEMA)


def trace_class(call_traces: list[str | None]) -> list[str | None]:
    """``TRACE_CLASS_SQL`` for a few traces (tests, explanations)."""
    with duck.session(t=pa.table({"call_trace": pa.array(call_traces, pa.string())})) as con:
        rows = con.execute(
            f"SELECT {TRACE_CLASS_SQL} AS c FROM (SELECT *, {_FRAMES_SQL} AS frames FROM t)"
        ).fetchall()
    return [r[0] for r in rows]
