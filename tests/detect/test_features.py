"""Call-trace classes and feature facts."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.events import events, launch, memory, module_load, open_process
from unbacked.detect import DetectionContext
from unbacked.detect.features import trace_class

W = r"C:\Windows\System32"


@pytest.mark.parametrize(
    "trace, expected",
    [
        # shellcode calling OpenProcess through kernelbase, then thread-start frames
        (rf"{W}\ntdll.dll+1|{W}\KERNELBASE.dll+2|UNKNOWN(01770343)|UNKNOWN(0176FF9D)|"
         rf"{W}\kernel32.dll+4|{W}\ntdll.dll+5", "api"),
        (rf"{W}\ntdll.dll+1|{W}\KERNELBASE.dll+2|UNKNOWN(000002BAA10DAD1E)", "api"),
        ("UNKNOWN(000001F3C35A0014)", "only"),  # direct syscall from unbacked code
        (rf"{W}\ntdll.dll+4595c|{W}\KERNELBASE.dll+8185", "truncated"),
        # a hook trampoline called back from a system DLL, away from the image range
        (rf"{W}\ntdll.dll+1|UNKNOWN(12345678)|{W}\KERNELBASE.dll+2|C:\app\app.exe+3|"
         rf"{W}\kernel32.dll+4|{W}\ntdll.dll+5", "other"),
        # the same next to the modules (trampolines and JIT code heaps are placed there)
        (rf"{W}\ntdll.dll+1|UNKNOWN(7FF812345678)|{W}\KERNELBASE.dll+2|C:\app\app.exe+3|"
         rf"{W}\kernel32.dll+4|{W}\ntdll.dll+5", "image-range"),
        # an Exchange service's JIT code opening its worker (16-digit Sysmon x64 address)
        (rf"{W}\ntdll.dll+a6084|{W}\KERNELBASE.dll+221bd|UNKNOWN(00007FFE7CEE9C00)",
         "image-range"),
        # image range only when every user-mode unbacked frame is there
        (rf"{W}\ntdll.dll+1|{W}\KERNELBASE.dll+2|UNKNOWN(00007FFE7CEE9C00)|"
         "UNKNOWN(000002BAA10DAD1E)", "api"),
        # a service's own binary calling into generated code, which starts a process
        (rf"{W}\ntdll.dll+1|{W}\KERNELBASE.dll+2|{W}\KERNEL32.DLL+3|UNKNOWN(24F64B7B7A1)|"
         rf"UNKNOWN(24F64B7B7A1)|C:\P\agent.exe+4|C:\P\agent.exe+5|{W}\sechost.dll+6|"
         rf"{W}\KERNEL32.DLL+7|{W}\ntdll.dll+8", "hosted"),
        # exploit shellcode run from a window-message callback (user32 calls it): not hosted
        (rf"{W}\ntdll.dll+1|{W}\kernel32.dll+2|UNKNOWN(966AF6DA)|UNKNOWN(82678E06)|"
         rf"{W}\user32.DLL+3|C:\P\IEFRAME.dll+4|C:\P\iertutil.dll+5", "other"),
        # shellcode run as a callback of any Windows-directory DLL (EnumFonts through
        # gdi32full, CertEnumSystemStore through crypt32, a WinSxS comctl32): not hosted
        (rf"{W}\ntdll.dll+1|{W}\KERNELBASE.dll+2|UNKNOWN(1A2B3C40010)|{W}\gdi32full.dll+3|"
         rf"{W}\GDI32.dll+4|C:\P\a.exe+5|{W}\KERNEL32.DLL+6|{W}\ntdll.dll+7", "other"),
        (rf"{W}\ntdll.dll+1|{W}\KERNELBASE.dll+2|UNKNOWN(02A70044)|"
         rf"C:\Windows\SysWOW64\CRYPT32.dll+3|C:\P\a.exe+4", "other"),
        (rf"{W}\ntdll.dll+1|UNKNOWN(02A70044)|C:\WINDOWS\WinSxS\amd64_microsoft.windows."
         rf"common-controls_6595b64144ccf1df_6.0.19041.1110_none\COMCTL32.dll+3|C:\P\a.exe+4",
         "other"),
        (rf"{W}\ntdll.dll+1|UNKNOWN(02A70044)|\\?\C:\Windows\System32\crypt32.dll+3|"
         rf"C:\P\a.exe+4", "other"),
        # a DLL of the program's own, outside the Windows directory, whatever its name: hosted
        (rf"{W}\ntdll.dll+1|{W}\KERNELBASE.dll+2|UNKNOWN(1A2B3C40010)|"
         rf"C:\Program Files\App\gdi32full.dll+3|C:\Program Files\App\a.exe+4|"
         rf"{W}\KERNEL32.DLL+6|{W}\ntdll.dll+7", "hosted"),
        # unbacked code at the outer end of the walk (nothing called it that Sysmon saw)
        (rf"{W}\ntdll.dll+1|{W}\KERNELBASE.dll+2|C:\W\advapi32.dll+3|UNKNOWN(0338CA29)",
         "other"),
        # JIT code of .NET, V8
        (rf"{W}\ntdll.dll+1|{W}\KERNELBASE.dll+2|C:\n\clr.dll+3|UNKNOWN(7FFF31F61C82)", "managed"),
        (rf"{W}\ntdll.dll+1|{W}\KERNELBASE.dll+2|C:\c\chrome.dll+3|UNKNOWN(2022934003D)",
         "managed"),
        (rf"{W}\ntdll.dll+1|UNKNOWN(FFFFF80012345678)", "kernel"),
        (rf"{W}\ntdll.dll+1|{W}\KERNELBASE.dll+2|C:\app\app.exe+3|{W}\kernel32.dll+4|"
         rf"{W}\ntdll.dll+5", "none"),
        (None, None),
        ("", None),
    ],
)  # fmt: skip
def test_trace_class(trace, expected):
    assert trace_class([trace]) == [expected]


def test_facts_cover_memory_and_process_features():
    rows = [
        launch("p", r"C:\x\doc.exe", parent="gp", parent_image=r"C:\Windows\explorer.exe"),
        module_load("p", r"C:\x\doc.exe", r"C:\Windows\Microsoft.NET\Framework64\clr.dll"),
        open_process("p", r"C:\x\doc.exe", "t", "lsass.exe", "UNKNOWN(1234)", access=0x1010),
        memory("p", r"C:\x\doc.exe", "protect", 0x30000, 0x3A000, 0x20, old=0x04,
               caller_unbacked=True, header_kind="pe"),
    ]  # fmt: skip
    facts = DetectionContext.build(events(rows)).facts.to_pylist()
    got = {(f["process_uid"], f["feature"], f["value"]) for f in facts}
    for expected in [
        ("gp", "process.child", "doc.exe"),
        ("p", "module.engine", "clr"),
        ("p", "open.unbacked", "only"),
        ("p", "open.access", "lsass.exe:0x1010"),
        ("p", "mem.protection", "R-X"),
        ("p", "mem.transition", "RW- -> R-X"),
        ("p", "mem.size", "2^18"),
        ("p", "mem.align", "64k"),
        ("p", "mem.region", "private/none"),
        ("p", "mem.caller", "<unbacked>"),
        ("p", "mem.header", "pe"),
        ("p", "mem.scope", "local"),
        ("p", "process.seen", "yes"),
        ("p", "seen.module", "yes"),
    ]:
        assert expected in got, expected


@pytest.mark.parametrize(
    "path, engine",
    [
        (r"C:\Windows\assembly\NativeImages\System.Management.Automation.ni.dll", "powershell"),
        (r"C:\Windows\Microsoft.NET\Framework64\v4.0.30319\clr.dll", "clr"),
        (r"C:\Windows\Microsoft.NET\Framework\v2.0.50727\mscorwks.dll", "clr"),
        (r"C:\Program Files\dotnet\shared\Microsoft.NETCore.App\8.0.0\coreclr.dll", "coreclr"),
        (r"C:\Windows\Microsoft.NET\Framework64\v4.0.30319\clrjit.dll", "clrjit"),
        ("/usr/lib/jvm/java-17/lib/server/libjvm.so", "hotspot"),
        ("/usr/lib/x86_64-linux-gnu/libnode.so.108", "v8"),
        ("/usr/lib/x86_64-linux-gnu/libluajit-5.1.so.2", "luajit"),
        (r"C:\Windows\System32\kernel32.dll", None),
        (r"C:\app\clrcompression.dll", None),
    ],
)
def test_engine_of_a_module_load(path, engine):
    rows = [launch("p", r"C:\x\host.exe"), module_load("p", r"C:\x\host.exe", path)]
    facts = DetectionContext.build(events(rows)).facts.to_pylist()
    got = [f["value"] for f in facts if f["feature"] == "module.engine"]
    assert got == ([engine] if engine else [])


@pytest.mark.parametrize(
    "caller, jit",
    [
        ("chromium", True),  # Debian/Ubuntu: V8 inside /usr/lib/chromium/chromium
        ("/usr/lib/chromium/chromium", True),
        ("chrome.dll", True),
        ("libjvm.so", True),
        (r"C:\x\clrjit.dll", True),
        # .NET on Linux, and engines that are their own executables
        ("libcoreclr.so", True),
        ("/usr/share/dotnet/shared/Microsoft.NETCore.App/8.0.1/libclrjit.so", True),
        ("dotnet", True),
        ("nodejs", True),
        ("qemu-x86_64", True),
        ("libxul.so", True),
        ("libcoreclr-evil.so", False),
        ("qemu", False),
        ("chromium-loader", False),
        ("libevil.so", False),
        ("acrord32.exe", False),
        ("", False),
    ],
)
def test_jit_callers(caller, jit):
    import re

    from unbacked.detect.rules.memory import JIT_CALLER_RE

    assert bool(re.search(JIT_CALLER_RE, caller)) is jit


@pytest.mark.parametrize(
    "path, engine",
    [
        (r"C:\Windows\Microsoft.NET\Framework64\v4.0.30319\clr.dll", "clr"),
        (r"C:\Windows\Microsoft.NET\Framework\v2.0.50727\mscorwks.dll", "clr"),
        (r"C:\Program Files\dotnet\shared\Microsoft.NETCore.App\8.0.1\coreclr.dll", "coreclr"),
        (r"C:\Windows\Microsoft.NET\Framework64\v4.0.30319\clrjit.dll", "clrjit"),
        (r"C:\Windows\assembly\NativeImages_v4.0.30319_64\System.Manaa57fc8cc#"
         r"\System.Management.Automation.ni.dll", "powershell"),
        ("/usr/lib/jvm/java-17-openjdk-amd64/lib/server/libjvm.so", "hotspot"),
        ("/usr/lib/x86_64-linux-gnu/libnode.so.108", "v8"),
        ("/usr/lib/x86_64-linux-gnu/libluajit-5.1.so.2.1.0", "luajit"),
        (r"C:\Windows\System32\kernel32.dll", None),
        (r"C:\x\myclr.dll", None),
        ("/usr/lib/x86_64-linux-gnu/libjvmti.so", None),
    ],
)  # fmt: skip
def test_engine_loads(path, engine):
    rows = [module_load("p", r"C:\a\a.exe", path)]
    facts = DetectionContext.build(events(rows)).facts
    got = [f["value"] for f in facts.to_pylist() if f["feature"] == "module.engine"]
    assert got == ([engine] if engine else [])


def test_every_jit_list_derives_from_the_one_table():
    """Module stems, engine executables and engine loads of ``model.jit`` appear in every
    pattern built from them: no list names an engine the others do not."""
    from unbacked.detect.features import ENGINE_PREFILTER, ENGINE_SQL, MANAGED_MODULE_RE
    from unbacked.detect.rules.memory import JIT_CALLER_RE
    from unbacked.detect.rules.windows import JIT_MODULE_RE
    from unbacked.model.identity import JIT_PROGRAM_RE
    from unbacked.model.jit import JIT_ENGINES

    for e in JIT_ENGINES:
        for m in e.modules:
            assert all(
                m in pattern for pattern in (JIT_CALLER_RE, MANAGED_MODULE_RE, JIT_MODULE_RE)
            )
        for p in e.programs:
            assert p in JIT_PROGRAM_RE and p in JIT_CALLER_RE
        for load in e.loads:
            assert load in ENGINE_SQL and load in ENGINE_PREFILTER
            assert f"'{e.family}'" in ENGINE_SQL


def test_rwx_from_a_linux_jit_engine_is_churn_and_a_lookalike_is_not():
    from tests.detect.rule_fixtures import FIXTURES
    from unbacked.detect.rules.memory import RwxPrivateFromNonJit

    fx = FIXTURES["UNB-M-003"]
    out = RwxPrivateFromNonJit().evaluate(DetectionContext.build(events(fx["tp"] + fx["fp"])))
    assert set(out["subject_uid"].to_pylist()) == {"r1", "r2"}


REPO = Path(__file__).resolve().parents[2]
_SORT = [(c, "ascending") for c in ("row", "process_uid", "program", "feature", "value")]


def _contexts(paths: list[Path]) -> list[DetectionContext]:
    from unbacked.engine.local import load_events
    from unbacked.runreport import RunReport

    return [DetectionContext.build(load_events([p], RunReport())) for p in paths]


def _assert_one_pass_is_facts_then_instances(ctx: DetectionContext) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    from unbacked.detect.base import declared_row_features, declared_row_values
    from unbacked.detect.baseline import instance_facts
    from unbacked.detect.features import extract_facts, extract_instance_facts

    facts = extract_facts(ctx.events)
    assert facts.num_rows
    declared = declared_row_features()
    assert declared >= {"open.unbacked", "module.engine", "mem.transition"}
    narrowed = declared_row_values()
    assert set(narrowed) == {"open.unbacked"} and "none" not in narrowed["open.unbacked"]
    one_pass, rows = extract_instance_facts(ctx.events, declared, narrowed)
    assert one_pass.equals(instance_facts(facts))  # values, types and order
    declared_facts = facts.filter(pc.is_in(facts["feature"], pa.array(sorted(declared))))
    # the declared features' facts, of open.unbacked only those of the values rules read
    listed = pc.or_(
        pc.not_equal(declared_facts["feature"], "open.unbacked"),
        pc.is_in(declared_facts["value"], pa.array(sorted(narrowed["open.unbacked"]))),
    )
    assert rows.sort_by(_SORT).equals(declared_facts.filter(listed).sort_by(_SORT))
    whole, _ = extract_instance_facts(ctx.events, declared)
    assert whole.equals(one_pass)
    # a context above SMALL_QUERY_ROWS takes the one pass and never computes every fact
    assert ctx.instance_facts.equals(one_pass)
    cases: list[tuple[tuple[str, ...], tuple[str, ...] | None]] = [
        (("module.engine",), None),
        (("open.unbacked",), ("api", "managed")),  # among the values declared: the one pass
        (("mem.transition", "process.seen"), None),
        (("open.unbacked",), None),  # every value: a query of its own
    ]
    for features, values in cases:
        want = facts.filter(pc.is_in(facts["feature"], pa.array(list(features))))
        if values is not None:
            want = want.filter(pc.is_in(want["value"], pa.array(list(values))))
        got = ctx.facts_of(*features, values=values)
        assert got.sort_by(_SORT).equals(want.sort_by(_SORT)), features
        assert ("facts:open.unbacked" in ctx.cache) == (values is None and features == cases[3][0])
    assert "facts" not in ctx.cache
    # undeclared, or a declared feature's values beyond those declared: a query of their own
    assert "facts:mem.transition\x1fprocess.seen" in ctx.cache
    assert "facts:open.unbacked" in ctx.cache
    assert not [
        k
        for k in ctx.cache
        if k.startswith("facts:")
        and k not in ("facts:mem.transition\x1fprocess.seen", "facts:open.unbacked")
    ]
    ctx.facts  # noqa: B018 - once every fact is there, facts_of filters them
    assert (
        ctx.facts_of("module.engine")
        .sort_by(_SORT)
        .equals(facts.filter(pc.equal(facts["feature"], "module.engine")).sort_by(_SORT))
    )


def test_instance_facts_in_one_pass_are_the_facts_aggregated(monkeypatch):
    """The facts per instance computed in one DuckDB pass (what a hunt or detect learns from
    and scores, above ``SMALL_QUERY_ROWS`` events: lowered here so that the samples take that
    path) are exactly those aggregated from every fact, and the declared features' facts come
    with them; ``facts_of`` of other features runs only their branches."""
    import unbacked.detect.base as base

    monkeypatch.setattr(base, "SMALL_QUERY_ROWS", 0)
    for ctx in _contexts([REPO / "samples" / "linux", REPO / "tests" / "fixtures" / "windows"]):
        _assert_one_pass_is_facts_then_instances(ctx)


def test_instance_facts_of_repeated_events_count_every_event_once(monkeypatch):
    """The pass per instance makes each fact once per group of events sharing instance,
    program and values: events that repeat, differ in one feature only, leave a value empty,
    launch children (the parent is the instance) or load an engine through several paths count
    exactly as the facts aggregated one by one do (first row, number of events)."""
    import unbacked.detect.base as base
    from tests.support.events import (
        API_TRACE,
        CLEAN_TRACE,
        connect,
        remote_thread,
    )
    from unbacked.detect.base import declared_row_features, declared_row_values
    from unbacked.detect.baseline import instance_facts
    from unbacked.detect.features import extract_facts, extract_instance_facts

    monkeypatch.setattr(base, "SMALL_QUERY_ROWS", 0)
    app, doc = r"C:\x\app.exe", r"C:\x\doc.exe"
    rows = [
        *[memory("p", app, "allocate", 0x30000, 0x1000, 0x40) for _ in range(3)],
        memory("p", app, "allocate", 0x31000, 0x1000, 0x40),  # another alignment only
        memory("p", app, "protect", 0x30000, 0x2000, 0x20, old=0x04),
        memory("p", app, "protect", 0x30000, None, 0x20, old=0x04),  # no size
        memory("q", app, "allocate", 0x30000, 0x1000, 0x40, caller_unbacked=True),
        *[open_process("p", app, "t", doc, API_TRACE) for _ in range(2)],
        open_process("p", app, "t", doc, CLEAN_TRACE, access=None),
        open_process("q", app, "t", doc, API_TRACE, access=0x1410),
        *[launch(f"c{i}", doc, parent="p", parent_image=app) for i in range(3)],
        launch("c9", r"C:\x\other.exe", parent="q", parent_image=app),
        module_load("p", app, r"C:\Windows\Microsoft.NET\Framework64\v4\clr.dll"),
        module_load("p", app, r"C:\Windows\Microsoft.NET\Framework\v4\clr.dll"),
        module_load("q", app, r"C:\Windows\System32\ntdll.dll"),
        remote_thread("p", app, "t", doc, 0x1000),
        connect("p", app),
        connect("p", app),
    ]
    ctx = DetectionContext.build(events(rows))
    facts = extract_facts(ctx.events)
    one_pass, per_row = extract_instance_facts(
        ctx.events, declared_row_features(), declared_row_values()
    )
    assert one_pass.equals(instance_facts(facts))
    assert one_pass.num_rows < facts.num_rows  # repeats were counted, not listed
    counts = {
        (r["process_uid"], r["feature"], r["value"]): r["events"] for r in one_pass.to_pylist()
    }
    assert counts[("p", "mem.protection", "RWX")] == 4
    assert counts[("p", "mem.align", "64k")] == 5 and counts[("p", "mem.align", "page")] == 1
    assert counts[("p", "mem.transition", "RW- -> R-X")] == 2
    assert counts[("p", "process.child", "doc.exe")] == 3
    assert counts[("p", "module.engine", "clr")] == 2
    assert counts[("p", "network.connect", "outbound")] == 2
    # transitions, engine loads, and the opens of the classes rules read (not the clean one)
    assert per_row.num_rows == 2 + 2 + 3


def test_a_small_run_aggregates_its_facts():
    """Up to ``SMALL_QUERY_ROWS`` events, the facts are computed once, whole, and the instance
    facts and every ``facts_of`` come from them (one query instead of several)."""
    (ctx,) = _contexts([REPO / "tests" / "fixtures" / "windows"])
    ctx.instance_facts  # noqa: B018
    assert "facts" in ctx.cache
    assert ctx.facts_of("process.seen").num_rows
    assert not [k for k in ctx.cache if k.startswith("facts:")]


@pytest.mark.shared_data
def test_instance_facts_in_one_pass_on_real_telemetry(shared_data):
    for ctx in _contexts([shared_data / "windows", shared_data / "wide"]):
        assert ctx.events.num_rows > 8192  # the one pass, without lowering the threshold
        _assert_one_pass_is_facts_then_instances(ctx)


def test_every_facts_branch_names_one_feature_and_each_is_selectable():
    from unbacked.detect.features import (
        _FACT_BRANCHES,
        FEATURE_WEIGHT,
        facts_sql,
    )

    features = [b.feature for b in _FACT_BRANCHES]
    assert len(features) == len(set(features))
    assert set(FEATURE_WEIGHT) <= set(features)
    for branch in _FACT_BRANCHES:  # each branch's SQL names its own feature, and only that one
        named = [f for f in features if f"'{f}'" in branch.row_sql()]
        assert named == [branch.feature], (branch.feature, named)
    only = facts_sql(features={"mem.header"})
    assert "'mem.header'" in only and "'mem.caller'" not in only
    empty = facts_sql(features=set())
    from unbacked import duck
    from unbacked.detect.features import FACT_SCHEMA

    rows = DetectionContext.build(events([launch("p", "/usr/bin/x")])).events
    got = duck.query(empty, events=rows.drop_columns(["time"])).cast(FACT_SCHEMA)
    assert got.num_rows == 0 and got.schema.equals(FACT_SCHEMA)


def test_pruning_branch_groups_never_changes_the_facts():
    """The facts query runs only the branches whose events are present; an event without an
    activity still counts for the groups that look at its kind alone (a memory event whose
    activity the source left empty has memory facts, as the full query gives it)."""
    import pyarrow as pa

    from unbacked import duck
    from unbacked.detect.features import FACT_SCHEMA, FACTS_SQL, extract_facts

    rows = [
        memory("p", r"C:\x\doc.exe", "protect", 0x30000, 0x3A000, 0x20, old=0x04),
        launch("q", r"C:\x\y.exe", parent="p", parent_image=r"C:\x\doc.exe"),
    ]
    table = events(rows)
    i = table.schema.get_field_index("activity")
    no_activity = pa.chunked_array(
        [pa.array([None, "launch"]).dictionary_encode().cast(table.schema.field(i).type)]
    )
    ctx = DetectionContext.build(table.set_column(i, table.schema.field(i), no_activity))
    assert ctx.has("memory") and not ctx.has("memory", "protect") and ctx.has("process", "launch")
    pruned = extract_facts(ctx.events)
    full = duck.query(FACTS_SQL, events=ctx.events.drop_columns(["time"])).cast(FACT_SCHEMA)
    assert pruned.sort_by(_SORT).equals(full.sort_by(_SORT))
    assert "mem.protection" in pruned["feature"].to_pylist()


def test_kind_pairs_on_dictionaries_that_differ_by_chunk_and_on_plain_strings():
    """The distinct (kind, activity) pairs: a null activity as "", a null kind left out, chunks
    with dictionaries of their own (and an unused entry) and plain string columns alike."""
    import pyarrow as pa

    from unbacked.detect.features import kind_pairs

    def dict_chunk(values, dictionary):
        codes = [None if v is None else dictionary.index(v) for v in values]
        return pa.DictionaryArray.from_arrays(pa.array(codes, pa.int32()), pa.array(dictionary))

    kind = pa.chunked_array(
        [
            dict_chunk(["memory", None, "process"], ["process", "memory", "thread"]),
            dict_chunk(["process", "thread", "thread"], ["thread", "process"]),
        ]
    )
    activity = pa.chunked_array(
        [
            dict_chunk(["map_view", "open", None], ["open", "map_view"]),
            dict_chunk(["open", None, "remote_thread"], ["remote_thread", "open"]),
        ]
    )
    want = {
        ("memory", "map_view"),
        ("process", ""),
        ("process", "open"),
        ("thread", ""),
        ("thread", "remote_thread"),
    }
    assert kind_pairs(pa.table({"kind": kind, "activity": activity})) == want
    plain = pa.table({"kind": kind.cast(pa.string()), "activity": activity.cast(pa.string())})
    assert kind_pairs(plain) == want
    assert kind_pairs(plain.slice(0, 0)) == set()


def test_declared_row_values_narrow_a_feature_only_where_every_declaring_detector_does(
    monkeypatch,
):
    import unbacked.detect.base as base

    class Few:
        row_facts = ("a", "b")
        row_fact_values: ClassVar[dict[str, tuple[str, ...]]] = {"a": ("x",), "b": ("y",)}

    class Others:
        row_facts = ("a",)
        row_fact_values: ClassVar[dict[str, tuple[str, ...]]] = {"a": ("z",)}

    class Whole:
        row_facts = ("b",)

    monkeypatch.setattr(base, "DETECTORS", {"F": Few, "O": Others, "W": Whole})
    assert base.declared_row_features() == {"a", "b"}
    # a: read in two detectors, each a few values (their union); b: one reads it whole
    assert base.declared_row_values() == {"a": {"x", "z"}}
    assert base._in_row_facts(["a"], ["x"]) and base._in_row_facts(["a", "b"], ["z"])
    assert not base._in_row_facts(["a"], None) and not base._in_row_facts(["a"], ["x", "q"])
    assert base._in_row_facts(["b"], None) and not base._in_row_facts(["c"], None)


def test_row_sql_of_some_values_lists_only_those():
    import pyarrow as pa

    from unbacked import duck
    from unbacked.detect.features import FactBranch, InstanceBranch

    ev = pa.table({"row": [1, 2, 3], "process_uid": ["p", "p", "q"], "program": ["a"] * 3,
                   "v": ["x", "it's", "y"]})  # fmt: skip
    fact = FactBranch("always", "f", "ev", "v", "row > 0")
    inst = InstanceBranch(
        "always",
        "g",
        "  SELECT min(row), process_uid, min(program), 'g', min(v) FROM ev GROUP BY 2",
    )
    for branch, values, want in [
        (fact, None, ["x", "it's", "y"]),
        (fact, ["it's", "y"], ["it's", "y"]),
        (fact, [], []),
        (inst, None, ["it's", "y"]),
        (inst, ["y"], ["y"]),
    ]:
        got = duck.query(branch.row_sql(values), ev=ev)
        assert sorted(got.column(4).to_pylist()) == sorted(want), (branch.feature, values)


_MEMORY_POOLS: dict[str, list[object]] = {
    "base": [None, 0, 0x1000, 0x10000, 0x10001, (1 << 64) - 4096],
    "size": [None, 0, 1, 4095, 4096, 4097, 1 << 20, (1 << 64) - 1],
    "prot": [0x04, 0x20, 0x40, 0x80, 0x10, 0x104, 7, 5, 3, 4, 0x1000],
    "old": [None, 0x04, 0x20, 0x40, 3, 7, 0x1000],
    "os": ["windows", "linux"],
    "region_type": ["private", "anonymous", "image", "file", None],
    "backing_path": [None, "", "/lib/x.so"],
    "target_uid": [None, "p", "t"],
    "caller_unbacked": [None, True, False],
    "caller_module": [None, "libc.so.6", "/usr/lib/jvm/libjvm.so"],
    "header_kind": [None, "elf", "pe", "none"],
    "syscall_outside_libc": [None, True, False],
}


@st.composite
def _odd_events(draw: st.DrawFn) -> list[dict[str, object]]:
    """Memory events and opens from pools of odd values (nulls, the edges of the size and
    alignment classes, unknown protections): each a copy of one of a few drawn events with one
    or two values changed, so that groups of alike events form and differ in one value."""
    from tests.support.events import API_TRACE, CLEAN_TRACE

    pools = _MEMORY_POOLS
    protos = [
        {k: draw(st.sampled_from(v)) for k, v in pools.items()}
        for _ in range(draw(st.integers(1, 3)))
    ]
    rows: list[dict[str, object]] = []
    for _ in range(draw(st.integers(1, 40))):
        uid = draw(st.sampled_from(["p", "q"]))
        if draw(st.integers(0, 3)):
            m = dict(draw(st.sampled_from(protos)))
            for key in draw(st.lists(st.sampled_from(sorted(pools)), max_size=2)):
                m[key] = draw(st.sampled_from(pools[key]))
            base, size, prot, old = m.pop("base"), m.pop("size"), m.pop("prot"), m.pop("old")
            activity = "protect" if old is not None else "allocate"
            rows.append(memory(uid, "/usr/bin/app", activity, base, size, prot, old, **m))
        else:
            trace = draw(st.sampled_from([API_TRACE, CLEAN_TRACE, "", None]))
            access = draw(st.sampled_from([None, 0x1410, 0x1FFFFF]))
            target = draw(st.sampled_from([r"C:\x\doc.exe", None]))
            rows.append(open_process(uid, r"C:\x\app.exe", "t", target, trace, access=access))
    return rows


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_odd_events())
def test_facts_of_groups_of_odd_events_are_the_facts_of_each(rows):
    """The pass per instance reads opens and memory events as groups of alike events
    (``features._PREGROUPED``): on any mix of odd values its facts per instance, and the facts
    rules read one by one, are those of every event taken alone."""
    _assert_grouped_facts_are_each_events(events(rows))


def _assert_grouped_facts_are_each_events(table) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    from unbacked.detect.base import declared_row_features, declared_row_values
    from unbacked.detect.baseline import instance_facts
    from unbacked.detect.features import extract_facts, extract_instance_facts

    ctx = DetectionContext.build(table)
    facts = extract_facts(ctx.events)
    declared, narrowed = declared_row_features(), declared_row_values()
    one_pass, listed = extract_instance_facts(ctx.events, declared, narrowed)
    assert one_pass.equals(instance_facts(facts))
    want = facts.filter(pc.is_in(facts["feature"], pa.array(sorted(declared))))
    want = want.filter(
        pc.or_(
            pc.not_equal(want["feature"], "open.unbacked"),
            pc.is_in(want["value"], pa.array(sorted(narrowed["open.unbacked"]))),
        )
    )
    assert listed.sort_by(_SORT).equals(want.sort_by(_SORT))


@pytest.mark.parametrize("os", ["windows", "linux"])
def test_events_alike_but_for_one_value_keep_their_own_facts(os):
    """Every pair of memory events, or of opens, that differ in one value of its pool (and
    nothing else; a process of their own) has the facts per instance of the two events taken
    alone: the groups of alike events never merge what a value tells apart."""
    proto = {
        "base": 0x10000, "size": 4096, "prot": 0x40 if os == "windows" else 7, "old": None,
        "os": os, "region_type": "private", "backing_path": None, "target_uid": None,
        "caller_unbacked": None, "caller_module": None, "header_kind": None,
        "syscall_outside_libc": None,
    }  # fmt: skip
    rows = []
    for column, pool in _MEMORY_POOLS.items():
        for i, first in enumerate(pool):
            for second in pool[i + 1 :]:
                uid = f"{column}:{first}:{second}"
                for value in (first, second):
                    m = {**proto, column: value}
                    if column == "target_uid" and value == "p":
                        m[column] = uid  # the process itself
                    base, size, prot, old = (m.pop(k) for k in ("base", "size", "prot", "old"))
                    activity = "protect" if old is not None else "allocate"
                    rows.append(memory(uid, "/usr/bin/app", activity, base, size, prot, old, **m))
    from tests.support.events import API_TRACE, CLEAN_TRACE

    opens: dict[str, list[object]] = {
        "trace": [API_TRACE, CLEAN_TRACE, "", None],
        "access": [None, 0x1410, 0x1FFFFF],
        "target_image": [r"C:\x\doc.exe", r"C:\x\DOC.exe", None],
    }
    for column, pool in opens.items():
        for i, first in enumerate(pool):
            for second in pool[i + 1 :]:
                uid = f"open {column}:{first}:{second}"
                for value in (first, second):
                    o = {
                        "trace": API_TRACE,
                        "access": 0x1410,
                        "target_image": "x.exe",
                        column: value,
                    }
                    rows.append(
                        open_process(uid, "/usr/bin/app", "t", o["target_image"], o["trace"],
                                     access=o["access"], os=os)
                    )  # fmt: skip
    _assert_grouped_facts_are_each_events(events(rows))
