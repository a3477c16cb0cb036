"""Live Linux processes: positive controls are found while they sleep, clean JIT runtimes are not.

The positive controls (``tests/support/controls.py``) perform the technique with benign payloads
and print their unbacked regions; every such region must overlap a finding. The clean-machine
gate runs python3, node and java doing JIT-heavy work and requires 0 findings in every process
they start (HollowsHunter's "clean machine = 0 suspicious").
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.controls import controls_or_skip, run_control
from unbacked.cli.main import main
from unbacked.memscan import (
    ProcessGone,
    VerificationStatus,
    scan_pid,
    verify_alert,
    verify_regions,
)
from unbacked.memscan.live import LinuxProcessSpace


def _can_ptrace() -> bool:
    if sys.platform != "linux":
        return False
    if os.geteuid() == 0:
        return True
    try:
        return Path("/proc/sys/kernel/yama/ptrace_scope").read_text().strip() == "0"
    except OSError:
        return True


pytestmark = pytest.mark.skipif(not _can_ptrace(), reason="reading /proc/PID/mem needs ptrace")

CONTROLS = [
    ("shellcode_py", "wx"),
    ("shellcode_py", "rwx"),
    ("loader", "wx"),
    ("loader", "rwx"),
    ("loader", "jit"),
    ("loader", "syscall"),
    ("loader_py", "wx"),
    ("memfd_exec", None),
    ("memfd_dlopen", None),
]


@pytest.fixture(scope="module")
def controls(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return controls_or_skip()


@pytest.mark.parametrize("name, mode", CONTROLS)
def test_control_regions_found(controls: dict[str, Path], name: str, mode: str | None) -> None:
    args = (mode,) if mode else ()
    with run_control(name, *args) as (_proc, info):
        result = scan_pid(int(info["pid"]))
    assert result.findings, f"{name} {mode}: nothing found"
    for reg in info.get("regions") or []:
        base, size = int(reg["base"]), int(reg["size"])
        assert any(f.base < base + size and base < f.base + f.size for f in result.findings), (
            f"{name} {mode}: region 0x{base:x}+0x{size:x} not found in "
            f"{[(hex(f.base), f.size) for f in result.findings]}"
        )
    if name.startswith("memfd"):
        assert any("exec_memfd" in f.kinds for f in result.findings)
    if name.startswith("loader") or name == "memfd_dlopen":
        assert any(f.header == "elf" for f in result.findings)


def test_cli_scan_pid_ocsf(controls: dict[str, Path], tmp_path: Path) -> None:
    with run_control("loader", "rwx") as (_proc, info):
        out = tmp_path / "f.jsonl"
        rc = main(["scan", "--pid", str(info["pid"]), "--format", "ocsf", "-o", str(out),
                   "--dump", str(tmp_path / "dump")])  # fmt: skip
    assert rc == 3
    doc = json.loads(out.read_text().splitlines()[0])
    assert doc["process"]["pid"] == info["pid"]
    assert doc["process"]["uid"].split(":")[1] == str(info["pid"])
    assert "T1620" in {a["technique"]["uid"] for a in doc["attacks"]}
    dumped = list((tmp_path / "dump").iterdir())
    assert any(p.suffix == ".elf" and p.read_bytes()[:4] == b"\x7fELF" for p in dumped)


def test_verify_regions(controls: dict[str, Path]) -> None:
    with run_control("shellcode_py", "wx") as (proc, info):
        pid = int(info["pid"])
        regions = [{"base": hex(r["base"]), "size": r["size"]} for r in info["regions"]]
        v = verify_regions(pid, regions)
        assert v.status is VerificationStatus.CONFIRMED and v.evidence
        assert v.to_dict()["status"] == "confirmed"
        # a range of the interpreter's own image: mapped, file-backed, nothing suspicious
        with LinuxProcessSpace(pid) as space:
            img = next(r for r in space.regions() if r.executable and r.path
                       and "python" in r.path)  # fmt: skip
            start = space.process.start_time_ns
        v2 = verify_regions(pid, [(img.base, img.size)])
        assert v2.status is VerificationStatus.NOT_CONFIRMED
        assert start is not None
        reused = verify_regions(pid, regions, start_time_ns=start - 10**10)
        assert reused.status is VerificationStatus.PROCESS_GONE
    proc.wait(timeout=10)
    gone = verify_regions(pid, regions)
    assert gone.status is VerificationStatus.PROCESS_GONE


def test_processes_exiting_mid_scan() -> None:
    """Short-lived processes: a result or ProcessGone, nothing else, whatever the timing."""
    outcomes = set()
    for delay in (0.0, 0.005, 0.01, 0.02, 0.05):
        child = subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({delay})"])
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:  # until it has exited (a zombie counts as gone)
                try:
                    scan_pid(child.pid)
                    outcomes.add("result")
                except ProcessGone:
                    outcomes.add("gone")
                    break
        finally:
            child.wait(timeout=10)
    assert outcomes <= {"result", "gone"} and "gone" in outcomes


# -- clean machine gate ------------------------------------------------------------------------

_PY = textwrap.dedent("""
    import ctypes, json, re, sys, threading
    cb = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)(lambda x: x + 1)
    total = sum(cb(i) for i in range(20000))
    words = [re.sub(r"[aeiou]", "", str(i)) for i in range(200000)]
    print("READY " + json.dumps({"pid": __import__("os").getpid()}), flush=True)
    sys.stdin.read()
""")
_NODE = textwrap.dedent("""
    let s = 0; for (let i = 0; i < 3e7; i++) { s += Math.sqrt(i) % 7; }
    const f = (x) => x * 2 + 1; for (let i = 0; i < 1e6; i++) s += f(i);
    const re = /a+b+c/; for (let i = 0; i < 1e5; i++) re.test("aaabbbc" + i);
    console.log("READY " + JSON.stringify({pid: process.pid}));
    process.stdin.resume(); process.stdin.on("end", () => process.exit(0));
""")
_JAVA = textwrap.dedent("""
    public class Gate {
      static long work(long n) {
        long s = 0; for (long i = 0; i < n; i++) s += (i * 31) % 7; return s;
      }
      public static void main(String[] a) throws Exception {
        long s = 0; for (int k = 0; k < 50; k++) s += work(2_000_000);
        java.util.List<String> l = new java.util.ArrayList<>();
        for (int i = 0; i < 200000; i++) l.add(Integer.toString(i).replace('1', 'x'));
        System.out.println("READY {\\"pid\\": " + ProcessHandle.current().pid() + "}");
        System.out.flush();
        System.in.read();
      }
    }
""")


_LUA = textwrap.dedent("""
    local s = 0 for i = 1, 3e7 do s = s + math.sqrt(i) % 7 end
    local f = function(x) return x * 2 + 1 end for i = 1, 1e6 do s = s + f(i) end
    io.write("READY {\\"pid\\": " .. io.open("/proc/self/stat"):read("*n") .. "}\\n")
    io.flush() io.read("*a")
""")
_PYPY = textwrap.dedent("""
    import json, os, sys
    s = 0
    for i in range(3 * 10**7): s += (i * 31) % 7
    print("READY " + json.dumps({"pid": os.getpid()}), flush=True)
    sys.stdin.read()
""")


@contextmanager
def _runtime(argv: list[str], cwd: Path) -> Iterator[int]:
    proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("READY "), line
        yield int(json.loads(line[6:])["pid"])
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _descendants(pid: int) -> list[int]:
    out = [pid]
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                ppid = Path(f"/proc/{p}/stat").read_bytes().rsplit(b")", 1)[1].split()[1]
            except (OSError, IndexError):
                continue
            if int(ppid) == pid:
                out.extend(_descendants(int(p)))
    return out


@pytest.mark.slow
def test_clean_machine_gate(tmp_path: Path) -> None:
    runtimes: list[list[str]] = [[sys.executable, "-c", _PY]]
    node, java, javac = shutil.which("node"), shutil.which("java"), shutil.which("javac")
    if node:
        runtimes.append([node, "-e", _NODE])
    if java and javac:
        (tmp_path / "Gate.java").write_text(_JAVA)
        subprocess.run([javac, "Gate.java"], cwd=tmp_path, check=True)
        runtimes.append([java, "-cp", str(tmp_path), "Gate"])
    elif java:
        (tmp_path / "Gate.java").write_text(_JAVA)
        runtimes.append([java, str(tmp_path / "Gate.java")])
    if len(runtimes) < 3:
        pytest.skip("node and java are needed for the gate (Debian nodejs, default-jre-headless)")
    # further JIT runtimes when installed (scripts/install-sensor-deps.sh brings them)
    luajit, pypy = shutil.which("luajit"), shutil.which("pypy3")
    if luajit:
        runtimes.append([luajit, "-e", _LUA])
    if pypy:
        runtimes.append([pypy, "-c", _PYPY])
    suspicious = []
    scanned = 0
    engines: set[str] = set()
    for argv in runtimes:
        with _runtime(argv, tmp_path) as pid:
            time.sleep(0.5)
            for p in _descendants(pid):
                try:
                    res = scan_pid(p)
                except ProcessGone:
                    continue
                scanned += 1
                engines.update(res.stats.jit_engines)
                suspicious += [(res.process.name, hex(f.base), f.kinds) for f in res.findings]
    assert scanned >= 3
    assert {"v8", "hotspot", "libffi"} <= engines
    assert ("luajit" in engines) == bool(luajit) and ("pypy" in engines) == bool(pypy)
    assert suspicious == []


def test_verify_alert_from_a_scan_finding(controls: dict[str, Path]) -> None:
    """An alert (here: the scan's own finding, as the shared Alert and as OCSF) verifies."""
    import dataclasses

    with run_control("loader", "wx") as (_proc, info):
        finding = scan_pid(int(info["pid"])).finding("testhost")
        assert finding is not None
        alert = finding.to_alert()
        v = verify_alert(alert)
        assert v.status is VerificationStatus.CONFIRMED
        doc = finding.to_ocsf()
        assert verify_alert(doc).status is VerificationStatus.CONFIRMED
        attached = dataclasses.replace(alert, verification=v.to_dict())
        assert attached.to_ocsf()["unmapped"]["unbacked"]["verification"]["status"] == "confirmed"


@pytest.mark.slow
def test_clean_machine_gate_chromium(tmp_path: Path) -> None:
    """Every process of a headless Chromium running a JIT-heavy page: 0 findings."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed")
    page = tmp_path / "jit.html"
    page.write_text("<script>let s=0; for (let i=0; i<3e7; i++) s += Math.sqrt(i) % 7;"
                    "document.title='done'+s;</script>")  # fmt: skip
    proc = subprocess.Popen(
        [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--user-data-dir={tmp_path / 'profile'}", "--remote-debugging-port=0", page.as_uri()],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        renderers: list[int] = []
        while time.monotonic() < deadline and not renderers:
            time.sleep(1)
            renderers = [p for p in _descendants(proc.pid)
                         if b"--type=renderer" in _cmdline(p)]  # fmt: skip
        if not renderers:
            pytest.skip("chromium started no renderer here")
        time.sleep(3)  # let the page's loop get compiled
        suspicious, engines, scanned = [], set(), 0
        for p in _descendants(proc.pid):
            try:
                res = scan_pid(p)
            except ProcessGone:
                continue
            scanned += 1
            engines.update(res.stats.jit_engines)
            suspicious += [(res.process.name, hex(f.base), f.kinds) for f in res.findings]
        assert scanned >= 2 and "v8" in engines
        assert suspicious == []
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_cli_all_and_missing_pid(tmp_path: Path) -> None:
    rep = tmp_path / "run.json"
    rc = main(["scan", "--all", "--fail-on", "none", "--report", str(rep), "-o",
               str(tmp_path / "all.txt")])  # fmt: skip
    assert rc == 0
    d = json.loads(rep.read_text())
    assert d["files"] >= 2 and d["records"] > 0  # kernel threads and processes, regions seen
    missing = 2**22 + 12345  # above the default pid_max: never a live process
    assert main(["scan", "--pid", str(missing)]) == 1
