"""The JIT engines (code generators) unbacked knows: one table every JIT allowance derives from.

Each engine names its runtime's modules as file-name stems (Windows DLLs and Linux shared
objects alike), the executables that are the engine itself, and which of its module loads mean
"this process now runs managed code" (the ``module.engine`` feature). From it come the call-trace
pattern (``detect.features.MANAGED_MODULE_RE``), the engine loads (``features.ENGINE_SQL``), the
managed hosts of UNB-W-002 (``rules.windows.JIT_MODULE_RE``), the calling modules whose
executable memory is expected churn (``rules.memory.JIT_CALLER_RE``) and the program names whose
allowances a masquerading loader wants (``model.identity.JIT_PROGRAM_RE``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class JitEngine:
    #: the ``module.engine`` value of its loads
    family: str
    #: module-name stems (regular expressions, lower case, without extension)
    modules: tuple[str, ...]
    #: executable names that are the engine (regular expressions)
    programs: tuple[str, ...] = ()
    #: module file names (regular expressions) whose load is a managed-code engine load
    loads: tuple[str, ...] = ()


JIT_ENGINES: tuple[JitEngine, ...] = (
    # .NET Framework / .NET: runtime and JIT (libcoreclr.so / libclrjit.so on Linux)
    JitEngine("clr", ("clr", "mscorwks", "mscorsvr"), loads=(r"(clr|mscorwks|mscorsvr)\.dll",)),
    JitEngine("coreclr", ("coreclr", "libcoreclr"), ("dotnet",), loads=(r"coreclr\.dll",)),
    JitEngine("clrjit", ("clrjit", "mscorjit", "libclrjit"), loads=(r"(clrjit|mscorjit)\.dll",)),
    # V8 (in Node, Chromium, Edge, Electron, CEF apps; Chromium's own binary on Linux)
    JitEngine(
        "v8",
        (
            "node",
            "libnode",
            "v8",
            "libv8",
            "chrome",
            "chromium",
            "chromium-browser",
            "libchrome",
            "msedge",
            "libcef",
            "electron",
        ),
        ("node", "nodejs", "chrome", "chromium", "chromium-browser"),
        loads=(r"libnode\.so[.0-9]*",),
    ),
    # HotSpot
    JitEngine("hotspot", ("jvm", "libjvm", "java", "javaw"), ("java",), loads=(r"libjvm\.so",)),
    # SpiderMonkey, Chakra
    JitEngine(
        "spidermonkey",
        ("xul", "libxul", "mozjs", "libmozjs[-0-9.]*", "firefox"),
        ("firefox(-esr)?",),
    ),
    JitEngine("chakra", ("jscript9", "chakra", "edgehtml")),
    # LuaJIT, PyPy
    JitEngine(
        "luajit",
        ("lua51", "luajit", "libluajit[-0-9.]*"),
        ("luajit[-0-9.]*",),
        loads=(r"libluajit[-0-9.]*\.so[.0-9]*",),
    ),
    JitEngine("pypy", ("pypy3?", "libpypy[-0-9.a-z]*"), ("pypy3?[.0-9]*",)),
    # QEMU's TCG translates guest code into host code
    JitEngine("qemu", (), ("qemu-[a-z0-9_]+",)),
)

#: every engine's module-name stems
JIT_ENGINE_STEMS: tuple[str, ...] = tuple(m for e in JIT_ENGINES for m in e.modules)
#: every engine's executable names
JIT_PROGRAMS: tuple[str, ...] = tuple(p for e in JIT_ENGINES for p in e.programs)

__all__ = ["JIT_ENGINES", "JIT_ENGINE_STEMS", "JIT_PROGRAMS", "JitEngine"]
