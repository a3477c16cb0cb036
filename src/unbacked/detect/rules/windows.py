"""Indicators on Windows process telemetry (Sysmon 1/7/8/10/25 and their ETW/Elastic twins)."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from unbacked.detect.base import DetectionContext, Rule, empty_signals, register_rule
from unbacked.detect.features import JIT_STEMS_RE, POWERSHELL_MODULE_RE
from unbacked.model.rows import from_numpy

#: Start addresses at or above this lie in kernel space on x64 (dwm -> csrss, csrss internals).
KERNEL_SPACE_X64 = 0xFFFF800000000000
#: Remote-thread start functions the OS itself uses (console control handler).
BENIGN_START_FUNCTIONS = ("CtrlRoutine", "CtrlRoutineEx")


@register_rule
class RemoteThreadUnbackedStart(Rule):
    """CreateRemoteThread whose start address lies in no module: the injector wrote code into
    private memory of the target and started it (reflective DLL injection, shellcode)."""

    id = "UNB-W-001"
    title = "Remote thread started in memory no module backs"
    description = (
        "Another process created a thread in this process whose start address lies in no loaded "
        "module (Sysmon 8 StartModule empty or '-', ETW-TI/EDR remote thread into private "
        "memory). Kernel-space start addresses and the console control routine are excluded."
    )
    severity = 4
    score = 85.0
    attack = ("T1055", "T1620")
    references = (
        "https://attack.mitre.org/techniques/T1055/",
        "https://www.elastic.co/security-labs/hunting-memory",
    )
    kinds = ("thread",)
    requires = ("start_address",)

    def evaluate(self, ctx: DetectionContext) -> pa.Table:
        ev = ctx.select(kind="thread", activity=["remote_thread"])
        if ev.num_rows == 0:
            return empty_signals()
        start_mod = ev["start_module"]
        no_module = pc.or_kleene(
            pc.is_null(start_mod), pc.equal(pc.utf8_trim_whitespace(start_mod), "")
        )
        addr = ev["start_address"]
        user_space = pc.and_(
            pc.is_valid(addr), pc.less(addr, pa.scalar(KERNEL_SPACE_X64, pa.uint64()))
        )
        func = pc.fill_null(ev["start_function"], "")
        not_ctrl = pc.invert(pc.is_in(func, pa.array(BENIGN_START_FUNCTIONS)))
        other = pc.fill_null(pc.not_equal(ev["target_uid"], ev["process_uid"]), True)
        hit = ev.filter(pc.and_(pc.and_(no_module, user_space), pc.and_(not_ctrl, other)))
        if hit.num_rows == 0:
            return empty_signals()
        addr_hex = pc.binary_join_element_wise("0x", pc.utf8_upper(_hex(hit["start_address"])), "")
        msg = pc.binary_join_element_wise(
            pc.fill_null(hit["program"], "?"),
            " started a thread in ",
            pc.fill_null(hit["target_program"], "?"),
            " at ",
            addr_hex,
            ", in memory no module backs",
            "",
        )
        return self.signals(
            hit,
            subject=hit["target_uid"],
            actor=hit["process_uid"],
            feature="thread.start_module",
            value=pa.array(["<unbacked>"] * hit.num_rows, pa.string()),
            message=msg,
        )


def _hex(values: pa.ChunkedArray) -> pa.Array:
    return pa.array([None if v is None else f"{v:x}" for v in values.to_pylist()], pa.string())


#: Score per call-trace class (``detect.features.TRACE_CLASS_SQL``).
#: ("other" is corroborating evidence only: security products' hook trampolines look like it)
TRACE_CLASS_SCORE = {"only": 90.0, "api": 80.0, "truncated": 70.0, "other": 40.0}
#: Targets whose opening from unbacked code is not excused by managed code (credential theft).
SENSITIVE_TARGETS = ("lsass.exe",)
#: Module loads that show a process hosts a JIT engine (``features.JIT_ENGINE_STEMS``).
JIT_MODULE_RE = rf"^({JIT_STEMS_RE})\.(dll|exe)$"
#: Engine modules of ``module.engine`` that are no JIT engine's (PowerShell's assembly).
ENGINE_MODULE_RE = rf"^{POWERSHELL_MODULE_RE}$"
#: Where a runtime's modules are installed (lower-case module path): the Windows directory (the
#: .NET Framework, the GAC, native images), Program Files (dotnet, Java, node, browsers), and
#: on Linux the system and package-manager trees.
RUNTIME_DIR_RE = (
    r"^(\\\\[?.]\\)?[a-z]:\\(windows|program files|program files \(x86\))\\"
    r"|^/(usr|opt|lib|lib64|snap|nix/store)/"
)
#: Factor for instances that run managed code (JIT frames explain unbacked frames too).
MANAGED_FACTOR = 0.4


@register_rule
class UnbackedCallerInCallTrace(Rule):
    """A process handle was opened from code that lies in no module: the call trace of the
    OpenProcess shows UNKNOWN (unbacked) frames right above the system DLLs, or only such
    frames (direct system call from shellcode)."""

    id = "UNB-W-002"
    title = "Process opened from code in unbacked memory"
    description = (
        "Sysmon 10 call trace with user-mode UNKNOWN frames that managed (JIT) code does not "
        "explain: 'only' (every frame unbacked: direct syscall), 'api' (an unbacked caller of "
        "ntdll/kernelbase/kernel32), 'truncated' (only system DLL frames: the walk stopped at a "
        "caller without unwind data), 'other'. Kernel-address frames, JIT frames ('managed'), "
        "frames in the x64 image range ('image-range') and unbacked code called by the "
        "program's own modules ('hosted') are not scored. Events of an instance after it loaded "
        "a JIT engine from a runtime's install location or signed (or ran a managed trace), "
        "unless the target is lsass, and programs whose peers commonly show the same class, "
        "score lower."
    )
    severity = 4
    score = 80.0
    attack = ("T1620", "T1055")
    references = (
        "https://www.elastic.co/security-labs/upping-the-ante-detecting-in-memory-threats-with-kernel-call-stacks",
        "https://github.com/SigmaHQ/sigma/blob/master/rules/windows/process_access/proc_access_win_susp_invalid_access_unknown_calltrace.yml",
    )
    kinds = ("process",)
    requires = ("call_trace",)
    row_facts = ("open.unbacked",)
    #: the scored classes, and "managed" for the instances running managed code
    row_fact_values: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "open.unbacked": (*TRACE_CLASS_SCORE, "managed")
    }

    def evaluate(self, ctx: DetectionContext) -> pa.Table:
        hits = ctx.facts_of("open.unbacked", values=TRACE_CLASS_SCORE)
        if hits.num_rows == 0:
            return empty_signals()
        ev = ctx.events.take(hits["row"])
        classes = hits["value"].to_numpy(zero_copy_only=False)
        score = np.array([TRACE_CLASS_SCORE[c] for c in classes], dtype=np.float64)
        sensitive = pc.fill_null(
            pc.is_in(ev["target_program"], pa.array(SENSITIVE_TARGETS)), False
        ).to_numpy(zero_copy_only=False)
        excused = _running_managed(ctx, ev) & ~sensitive
        score = np.where(excused, score * MANAGED_FACTOR, score)
        score, k, n = ctx.discount_common(hits, "open.unbacked", hits["value"], score)
        msg = pc.binary_join_element_wise(
            pc.fill_null(ev["program"], "?"),
            " opened ",
            pc.fill_null(ev["target_program"], "?"),
            " from unbacked code (call trace class '",
            hits["value"],
            "')",
            "",
        )
        return self.signals(
            ev,
            subject=ev["process_uid"],
            score=score,
            feature="open.unbacked",
            value=hits["value"],
            message=msg,
            baseline_count=k,
            baseline_total=n,
            baseline_scope="program" if ctx.baseline is not None else None,
        )


def managed_instances(ctx: DetectionContext) -> pa.Table:
    """Instances that run managed code, each with the time from which it does
    (``process_uid``, ``since``): known by what they loaded and ran, never by program names (a
    renamed host is known by its modules). A load counts when its module is a JIT engine's
    (``JIT_MODULE_RE``: the CLR, HotSpot's jvm.dll, V8 in node/chrome/msedge/libcef/electron,
    ...) or a CLR/PowerShell engine (``module.engine``) *and* comes from where runtimes are
    installed (``RUNTIME_DIR_RE``: the Windows directory with the .NET Framework and GAC, the
    Program Files folders with dotnet, Java and node) or carries a valid signature where the
    telemetry records one: a node.dll dropped beside a payload in a user folder makes no host.
    A call trace through managed-runtime modules (class ``managed``) counts from its event.
    Only events from ``since`` on are excused: code run before the runtime came is not JIT."""
    if "managed" not in ctx.cache:
        ev = ctx.events
        parts: list[pa.Table] = []
        traced = ctx.facts_of("open.unbacked", values=("managed",))
        if traced.num_rows:
            parts.append(
                pa.table(
                    {"process_uid": traced["process_uid"], "since": ev.take(traced["row"])["time"]}
                )
            )
        loads = ctx.select(kind="module", activity=["load"])
        if loads.num_rows:
            path = pc.utf8_lower(pc.fill_null(loads["module_path"], ""))
            base = pc.replace_substring_regex(path, r"^.*[\\/]", "")
            engine = pc.or_(
                pc.match_substring_regex(base, JIT_MODULE_RE),
                pc.match_substring_regex(base, ENGINE_MODULE_RE),
            )
            trusted = pc.or_(
                pc.match_substring_regex(path, RUNTIME_DIR_RE),
                pc.fill_null(
                    pc.and_(
                        pc.equal(loads["signed"], True),
                        pc.invert(pc.equal(pc.fill_null(loads["signature"], ""), "")),
                    ),
                    False,
                ),
            )
            hosts = loads.filter(pc.and_(engine, trusted))
            if hosts.num_rows:
                parts.append(
                    pa.table({"process_uid": hosts["process_uid"], "since": hosts["time"]})
                )
        if parts:
            table = pa.concat_tables([t.cast(_MANAGED_SCHEMA) for t in parts])
            table = table.filter(pc.is_valid(table["process_uid"]))
            table = table.group_by("process_uid").aggregate([("since", "min")])
            table = table.rename_columns(["process_uid", "since"])
        else:
            table = _MANAGED_SCHEMA.empty_table()
        ctx.cache["managed"] = table
    return ctx.cache["managed"]


def _running_managed(ctx: DetectionContext, ev: pa.Table) -> np.ndarray:
    """For each event: its instance runs managed code at the event's time."""
    managed = managed_instances(ctx)
    if managed.num_rows == 0 or ev.num_rows == 0:
        return np.zeros(ev.num_rows, dtype=bool)
    idx = pc.index_in(ev["process_uid"], value_set=managed["process_uid"])
    since = managed["since"].combine_chunks().take(idx)
    out: np.ndarray = pc.fill_null(pc.greater_equal(ev["time"], since), False).to_numpy(
        zero_copy_only=False
    )
    return out


_MANAGED_SCHEMA = pa.schema(
    [pa.field("process_uid", pa.string()), pa.field("since", pa.timestamp("ns", tz="UTC"))]
)


#: In-memory loader idioms in a command line (lower-cased), each with a score.
_B64 = r"frombase64string"
_COMPRESS = r"(gzipstream|deflatestream|io\.compression|decompress)"
_EXECUTE = r"(scriptblock\]::create|invoke-expression|\biex\b|\|\s*iex|\.invoke\(\))"
_LOADER_IDIOMS: tuple[tuple[str, tuple[str, ...], float], ...] = (
    ("decode+decompress+execute", (_B64, _COMPRESS, _EXECUTE), 75.0),
    ("reflective assembly load", (r"reflection\.assembly\]::load(\(|file\()?",), 75.0),
    (
        "win32 memory API from a script",
        (
            r"\b(virtualalloc(ex)?|virtualprotect|createthread|rtlmovememory|"
            r"getdelegateforfunctionpointer|writeprocessmemory)\b",
        ),
        75.0,
    ),
    (
        "download and execute in memory",
        (r"(downloadstring|downloaddata|net\.webclient|invoke-webrequest)", _EXECUTE),
        45.0,
    ),
)
_PREFILTER = (
    r"(frombase64string|assembly\]::load|virtualalloc|virtualprotect|createthread|rtlmovememory|"
    r"getdelegateforfunctionpointer|writeprocessmemory|downloadstring|downloaddata|"
    r"\s[-/]e(nc?|ncodedcommand|c)?\s+[a-z0-9+/=]{40,})"
)
_ENCODED = re.compile(r"\s[-/]e(?:nc?|ncodedcommand|c)?\s+([A-Za-z0-9+/=]{40,})", re.IGNORECASE)


def decode_encoded_command(cmd_line: str) -> str | None:
    """The script of a PowerShell ``-EncodedCommand`` argument (UTF-16LE base64), if any."""
    m = _ENCODED.search(cmd_line)
    if not m:
        return None
    data = m.group(1)
    try:
        raw = base64.b64decode(data + "=" * (-len(data) % 4), validate=False)
    except (binascii.Error, ValueError):
        return None
    text = raw.decode("utf-16-le", errors="ignore")
    return text


def loader_idiom(cmd_line: str) -> tuple[str, float] | None:
    """The strongest in-memory-loader idiom in a command line (decoding -EncodedCommand)."""
    texts = [cmd_line.lower()]
    decoded = decode_encoded_command(cmd_line)
    if decoded:
        texts.append(decoded.lower())
    best: tuple[str, float] | None = None
    for text in texts:
        for name, patterns, score in _LOADER_IDIOMS:
            if all(re.search(p, text) for p in patterns) and (best is None or score > best[1]):
                via = " (in -EncodedCommand)" if text is not texts[0] else ""
                best = (name + via, score)
    return best


@register_rule
class InMemoryLoaderCommandLine(Rule):
    """A process was started with a command line that decodes code and runs it in memory
    (PowerShell stagers of Metasploit/Empire/Cobalt Strike, reflective assembly loads)."""

    id = "UNB-W-003"
    title = "Process started to load code in memory"
    description = (
        "The command line (or the script inside -EncodedCommand) decodes and decompresses a "
        "payload and executes it, loads a .NET assembly from bytes, or calls Win32 memory APIs "
        "(VirtualAlloc, CreateThread, GetDelegateForFunctionPointer) from a script."
    )
    severity = 4
    score = 75.0
    attack = ("T1620", "T1059.001", "T1027")
    references = (
        "https://attack.mitre.org/techniques/T1620/",
        "https://github.com/elastic/detection-rules",
    )
    kinds = ("process",)
    requires = ("cmd_line",)

    def evaluate(self, ctx: DetectionContext) -> pa.Table:
        ev = ctx.select(kind="process", activity=["launch"])
        if ev.num_rows == 0:
            return empty_signals()
        cmd = pc.utf8_lower(pc.fill_null(ev["cmd_line"], ""))
        cand = ev.filter(pc.match_substring_regex(cmd, _PREFILTER))
        if cand.num_rows == 0:
            return empty_signals()
        idioms = [loader_idiom(c or "") for c in cand["cmd_line"].to_pylist()]
        keep = np.array([f is not None for f in idioms])
        if not keep.any():
            return empty_signals()
        hit = cand.filter(from_numpy(keep))
        found = [f for f in idioms if f is not None]
        names = pa.array([f[0] for f in found], pa.string())
        msg = pc.binary_join_element_wise(
            pc.fill_null(hit["program"], "?"), " started with an in-memory loader: ", names, ""
        )
        return self.signals(
            hit,
            subject=hit["process_uid"],
            actor=None,
            score=np.array([f[1] for f in found]),
            feature="process.cmd_line",
            value=names,
            message=msg,
        )


@register_rule
class EngineInUnusualHost(Rule):
    """The CLR or the PowerShell engine was loaded into a process whose program does not
    normally load it: unmanaged PowerShell / execute-assembly injected into a native host."""

    id = "UNB-W-004"
    title = "Managed-code engine loaded into an unusual host"
    description = (
        "Sysmon 7 (or any module load) of clr.dll / mscorwks.dll / coreclr.dll / "
        "System.Management.Automation into a process whose program's peer instances rarely load "
        "it (at least three peer instances with logged module loads, at most 10% of them "
        "loading the engine)."
    )
    severity = 2
    #: supporting evidence only: Sysmon configurations log image loads selectively, so "its
    #: peers never loaded the CLR" is often an artefact of the configuration; alone it stays
    #: below the alert threshold and below the foreign-code evidence level
    score = 35.0
    attack = ("T1620", "T1055")
    references = ("https://github.com/leechristensen/UnmanagedPowerShell",)
    kinds = ("module",)
    requires = ("module_path",)
    row_facts = ("module.engine",)
    #: at most this share of the program's peers may load the engine for the rule to fire
    max_share = 0.1
    #: peer instances with logged module loads needed: without peers, whether a program
    #: normally hosts managed code is unknown (population rates say nothing about powershell)
    min_peers = 3

    def evaluate(self, ctx: DetectionContext) -> pa.Table:
        hits = ctx.facts_of("module.engine")
        if hits.num_rows == 0 or ctx.baseline is None:
            return empty_signals()
        # one signal per (instance, engine): the first load
        table = hits.group_by(["process_uid", "program", "feature", "value"]).aggregate(
            [("row", "min")]
        )
        table = table.rename_columns(["process_uid", "program", "feature", "value", "row"])
        scored = table.sort_by("row")
        k, n = ctx.peer_counts(scored)
        share = np.where(n > 0, k / np.maximum(n, 1), 0.0)
        unusual = (share <= self.max_share) & (n >= self.min_peers)
        scored = scored.append_column("k", from_numpy(k)).append_column("n", from_numpy(n))
        scored = scored.filter(from_numpy(unusual))
        if scored.num_rows == 0:
            return empty_signals()
        ev = ctx.events.take(scored["row"])
        msg = pc.binary_join_element_wise(
            pc.fill_null(ev["program"], "?"),
            " loaded the ",
            scored["value"],
            " engine, which its program rarely loads",
            "",
        )
        return self.signals(
            ev,
            subject=ev["process_uid"],
            feature="module.engine",
            value=scored["value"],
            message=msg,
            baseline_count=scored["k"],
            baseline_total=scored["n"],
            baseline_scope="program",
        )


@register_rule
class ImageTampered(Rule):
    """Sysmon 25: the process image was replaced in memory (hollowing, herpaderping)."""

    id = "UNB-W-005"
    title = "Process image replaced in memory"
    description = "Sysmon 25 ProcessTampering 'Image is replaced' (process hollowing/herpaderping)."
    severity = 4
    score = 75.0
    attack = ("T1055.012",)
    references = ("https://attack.mitre.org/techniques/T1055/012/",)
    kinds = ("process",)
    requires = ()

    def evaluate(self, ctx: DetectionContext) -> pa.Table:
        ev = ctx.select(kind="process", activity=["tamper"])
        if ev.num_rows == 0:
            return empty_signals()
        replaced = pc.match_substring(
            pc.utf8_lower(pc.fill_null(ev["description"], "")), "replaced"
        )
        hit = ev.filter(replaced)
        return self.signals(
            hit,
            subject=hit["process_uid"],
            feature="process.tamper",
            value=hit["description"].cast(pa.string()),
            message="process image replaced in memory",
        )


#: Functions a remote thread starts at to make the target load a DLL from disk.
LIBRARY_LOADERS = ("LoadLibraryA", "LoadLibraryW", "LoadLibraryExA", "LoadLibraryExW", "LdrLoadDll")
#: Directories ordinary users can write to: a module there started by another process is foreign.
USER_WRITABLE_RE = (
    r"(?i)^([a-z]:)?\\(users|programdata|windows\\temp|perflogs|\$recycle\.bin)\\"
    r"|\\appdata\\|\\temp\\|^/(tmp|dev/shm|var/tmp)/"
)


@register_rule
class RemoteThreadLoadsLibrary(Rule):
    """Classic DLL injection: a remote thread started at LoadLibrary (the injector wrote a DLL
    path into the target), or at code of a module loaded from a user-writable directory."""

    id = "UNB-W-006"
    title = "Remote thread loads a library into another process"
    description = (
        "Sysmon 8 / remote thread whose start function is LoadLibrary*/LdrLoadDll, or whose "
        "start module lies in a user-writable directory (Users, ProgramData, Temp)."
    )
    severity = 3
    score = 65.0
    attack = ("T1055.001",)
    references = ("https://attack.mitre.org/techniques/T1055/001/",)
    kinds = ("thread",)
    requires = ("start_function",)

    def evaluate(self, ctx: DetectionContext) -> pa.Table:
        ev = ctx.select(kind="thread", activity=["remote_thread"])
        if ev.num_rows == 0:
            return empty_signals()
        func = pc.fill_null(ev["start_function"], "")
        loader = pc.is_in(func, pa.array(LIBRARY_LOADERS))
        module = pc.fill_null(ev["start_module"], "")
        writable = pc.match_substring_regex(module, USER_WRITABLE_RE)
        other = pc.fill_null(pc.not_equal(ev["target_uid"], ev["process_uid"]), True)
        hit = ev.filter(pc.and_(pc.or_(loader, writable), other))
        if hit.num_rows == 0:
            return empty_signals()
        what = pc.if_else(
            pc.is_in(pc.fill_null(hit["start_function"], ""), pa.array(LIBRARY_LOADERS)),
            pc.binary_join_element_wise("at ", hit["start_function"], ""),
            pc.binary_join_element_wise("in ", pc.fill_null(hit["start_module"], "?"), ""),
        )
        msg = pc.binary_join_element_wise(
            pc.fill_null(hit["program"], "?"),
            " started a thread in ",
            pc.fill_null(hit["target_program"], "?"),
            " ",
            what,
            "",
        )
        return self.signals(
            hit,
            subject=hit["target_uid"],
            actor=hit["process_uid"],
            feature="thread.start",
            value=what,
            message=msg,
        )
