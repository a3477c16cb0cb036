"""Whole-process timing shared by the benchmarks: the command a user types, run as a child
process, its wall time and its CPU time (user + system of the child and everything it waited
for, from ``wait4``), several runs interleaved with the other commands of the same set so that
the load of a shared machine falls on all of them alike.

Children run with bytecode caching on (an installed package has its ``.pyc`` files; a shell
with ``PYTHONDONTWRITEBYTECODE`` would otherwise compile every module on every start), the
cache kept outside the source tree (``PYTHONPYCACHEPREFIX``), and a warm-up run of each
command first (page cache, bytecode).
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
LSASS_ZIP = (
    SHARED
    / "windows/OTRF_Security-Datasets/datasets/compound/LSASS_campaign_01"
    / "metasploit_logonpasswords_lsass_memory_dump.zip"
)
#: the EVTX-ATTACK-SAMPLES snapshot: the files of the project's data set and every other one
EVTX_DIRS = (
    SHARED / "windows/sbousseaden_EVTX-ATTACK-SAMPLES",
    SHARED / "wide/sbousseaden_EVTX-ATTACK-SAMPLES",
)
PYCACHE = Path(tempfile.gettempdir()) / "unbacked-bench-pycache"


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    src = str(REPO / "src")
    if src not in env.get("PYTHONPATH", "").split(os.pathsep):
        env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    return env


def unbacked_command() -> tuple[list[str], str]:
    """How the user's ``unbacked`` starts: the console script pip installed beside this
    interpreter (what ``unbacked`` on PATH runs, less any version-manager shim in front of
    it), else ``python -m unbacked.cli.main``; and a note saying which."""
    script = Path(sys.executable).with_name("unbacked")
    if script.is_file():
        note = f"console script {script}"
        on_path = shutil.which("unbacked")
        if on_path and Path(on_path).resolve() != script.resolve():
            note += f" (PATH has {on_path}: a shim in front of it adds its own start-up)"
        return [str(script)], note
    return [sys.executable, "-m", "unbacked.cli.main"], "python -m unbacked.cli.main"


@dataclass
class Runs:
    name: str
    argv: list[str]
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    rss_mib: list[float] = field(default_factory=list)
    returncodes: list[int] = field(default_factory=list)

    def stat(self, what: str) -> tuple[float, float, float]:
        xs = getattr(self, what)
        return min(xs), statistics.median(xs), max(xs)


def run_once(
    argv: Sequence[str], *, stdout_path: str = os.devnull
) -> tuple[float, float, float, int]:
    """Wall s, CPU s (user + system, children included), peak RSS MiB and exit code of one run."""
    with open(stdout_path, "wb") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.DEVNULL, env=child_env())
        _, status, ru = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024, proc.returncode


def interleaved(
    commands: dict[str, list[str]], runs: int, *, warmup: bool = True
) -> dict[str, Runs]:
    """Each command ``runs`` times, A/B/C, B/C/A, ... (the order rotates every round)."""
    out = {name: Runs(name, argv) for name, argv in commands.items()}
    names = list(commands)
    if warmup:
        for name in names:
            run_once(commands[name])
    for r in range(runs):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            wall, cpu, rss, rc = run_once(commands[name])
            res = out[name]
            res.wall.append(wall)
            res.cpu.append(cpu)
            res.rss_mib.append(rss)
            res.returncodes.append(rc)
    return out


def print_runs(res: dict[str, Runs], first: str) -> None:
    """``res`` as a Markdown table: ``first`` (what the rows are), wall and CPU min / median /
    max."""
    print(f"| {first} | wall s (min / median / max) | CPU s (min / median / max) |")
    print("|---|---:|---:|")
    for r in res.values():
        print(f"| {r.name} | {fmt3(r.stat('wall'))} | {fmt3(r.stat('cpu'))} |")


def fmt3(t: tuple[float, float, float]) -> str:
    return f"{t[0]:.3f} / {t[1]:.3f} / {t[2]:.3f}"


def loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"Linux {platform.release()}"
    )


def versions() -> str:
    vals = []
    for mod in ("pyarrow", "duckdb", "orjson", "evtx", "numpy"):
        try:
            from importlib.metadata import version

            vals.append(f"{mod} {version(mod)}")
        except Exception:
            vals.append(f"{mod} ?")
    return ", ".join(vals)


_IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def importtime_summary(argv: Sequence[str], top: int = 12) -> list[str]:
    """``python -X importtime`` of the command: self time summed per top-level package
    (``unbacked.*`` per subpackage), most expensive first. ``argv`` starts with the script or
    ``-m``; the interpreter is this one."""
    cmd = [sys.executable, "-X", "importtime", *argv]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=child_env(), check=False)
    by: Counter[str] = Counter()
    total = 0
    for line in proc.stderr.splitlines():
        m = _IMPORT_LINE.match(line)
        if not m:
            continue
        name = m[4]
        parts = name.split(".")
        key = ".".join(parts[:2]) if parts[0] == "unbacked" else parts[0]
        by[key] += int(m[1])
        total += int(m[1])
    lines = [
        f"imports, self time summed: {total / 1000:.0f} ms (with -X importtime's own overhead)"
    ]
    lines += [f"  {v / 1000:7.1f} ms  {k}" for k, v in by.most_common(top)]
    return lines
