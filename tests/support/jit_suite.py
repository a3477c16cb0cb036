"""The benign JIT suite: ordinary runs of JIT-heavy programs, for baselines and the benign gate.

Each workload is a short, deterministic, network-free run of a program whose engine creates
and flips executable memory all the time: CPython with ctypes/libffi callbacks, Node.js (V8),
Java (HotSpot C1/C2, a small program compiled at test time), LuaJIT, PyPy, and headless
Chromium (V8 in a renderer, several processes). They are what the Linux rules must *not* alert
on, and what per-program baselines learn from.

``jit_workloads(work_dir)`` returns the workloads available on this machine (missing programs
are listed in ``missing``, with the Debian package to install: scripts/install-sensor-deps.sh).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

PY_WORKLOAD = r"""
import ctypes, json, re
# libffi closures: ctypes callbacks are generated trampolines
CMP = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int))
libc = ctypes.CDLL(None)
arr = (ctypes.c_int * 2000)(*[(i * 7919) % 2003 for i in range(2000)])
libc.qsort(arr, len(arr), ctypes.sizeof(ctypes.c_int), CMP(lambda a, b: a[0] - b[0]))
assert list(arr) == sorted(arr)
data = json.dumps([{"k": i, "v": str(i) * 3} for i in range(20000)])
assert len(json.loads(data)) == 20000
assert len(re.findall(r"\d{3}", data)) > 1000
print("ok")
"""

JS_WORKLOAD = r"""
function fib(n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }
let s = 0;
for (let i = 0; i < 200; i++) s += fib(18);
const data = JSON.stringify(Array.from({length: 20000}, (_, i) => ({k: i, v: String(i)})));
const re = /\d{3}/g;
if ((data.match(re) || []).length < 1000) throw new Error("regex");
console.log("ok", s);
"""

JAVA_WORKLOAD = r"""
public class Hot {
    static long fib(int n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }
    public static void main(String[] a) {
        long s = 0;
        for (int i = 0; i < 300; i++) s += fib(20);
        StringBuilder b = new StringBuilder();
        for (int i = 0; i < 20000; i++) b.append(i).append(',');
        System.out.println("ok " + s + " " + b.length());
    }
}
"""

LUA_WORKLOAD = r"""
local function fib(n) if n < 2 then return n end return fib(n-1) + fib(n-2) end
local s = 0
for i = 1, 300 do s = s + fib(20) end
local t = {}
for i = 1, 200000 do t[i] = i * 2 end
print("ok", s, #t)
"""

PYPY_WORKLOAD = r"""
def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)
s = 0
for i in range(100):
    s += fib(20)
print("ok", s)
"""

HTML_PAGE = (
    "<html><body><script>"
    "function fib(n){return n<2?n:fib(n-1)+fib(n-2)}"
    "let s=0;for(let i=0;i<100;i++)s+=fib(20);"
    "document.body.textContent='ok '+s;"
    "</script></body></html>"
)


@dataclass(frozen=True, slots=True)
class Workload:
    """One benign run: a name (the program), argv, and the engine it exercises."""

    name: str
    argv: tuple[str, ...]
    engine: str
    timeout: float = 120.0


@dataclass(slots=True)
class JitSuite:
    workloads: list[Workload] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)  # program -> Debian package


def _which(name: str) -> str | None:
    return shutil.which(name)


def jit_workloads(work_dir: Path | str | None = None) -> JitSuite:
    """The workloads runnable here; Java is compiled into ``work_dir`` (a temp dir by default)."""
    wd = Path(work_dir or tempfile.mkdtemp(prefix="unbacked-jit-"))
    wd.mkdir(parents=True, exist_ok=True)
    suite = JitSuite()
    py = wd / "workload.py"
    py.write_text(PY_WORKLOAD)
    suite.workloads.append(Workload("python3", (sys.executable, str(py)), "cpython+libffi"))

    node = _which("node") or _which("nodejs")
    if node:
        js = wd / "workload.js"
        js.write_text(JS_WORKLOAD)
        suite.workloads.append(Workload("node", (node, str(js)), "v8"))
    else:
        suite.missing["node"] = "nodejs"

    java, javac = _which("java"), _which("javac")
    if java and javac:
        src = wd / "Hot.java"
        src.write_text(JAVA_WORKLOAD)
        if not (wd / "Hot.class").exists():
            subprocess.run([javac, "-d", str(wd), str(src)], check=True, capture_output=True)
        suite.workloads.append(
            Workload("java", (java, "-Xshare:auto", "-cp", str(wd), "Hot"), "hotspot")
        )
    else:
        suite.missing["java"] = "default-jdk-headless"

    luajit = _which("luajit")
    if luajit:
        lua = wd / "workload.lua"
        lua.write_text(LUA_WORKLOAD)
        suite.workloads.append(Workload("luajit", (luajit, str(lua)), "luajit"))
    else:
        suite.missing["luajit"] = "luajit"

    pypy = _which("pypy3")
    if pypy:
        pp = wd / "workload_pypy.py"
        pp.write_text(PYPY_WORKLOAD)
        suite.workloads.append(Workload("pypy3", (pypy, str(pp)), "pypy"))
    else:
        suite.missing["pypy3"] = "pypy3"

    chromium = _which("chromium")
    if chromium:
        page = wd / "page.html"
        page.write_text(HTML_PAGE)
        profile = wd / "chromium-profile"
        suite.workloads.append(
            Workload(
                "chromium",
                (
                    chromium,
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-dev-shm-usage",
                    f"--user-data-dir={profile}",
                    "--dump-dom",
                    page.as_uri(),
                ),
                "v8",
                timeout=180.0,
            )
        )
    else:
        suite.missing["chromium"] = "chromium"
    return suite


def run_workload(w: Workload) -> subprocess.CompletedProcess[str]:
    """Run one workload to completion (without the sensor); raises if it fails."""
    proc = subprocess.run(
        list(w.argv),
        capture_output=True,
        text=True,
        timeout=w.timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if proc.returncode != 0 or "ok" not in proc.stdout:
        raise RuntimeError(f"{w.name} failed ({proc.returncode}): {proc.stderr[-500:]}")
    return proc
