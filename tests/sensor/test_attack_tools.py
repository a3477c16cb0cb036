"""Positive controls from public tools nobody on this project wrote (../shared/attack-tools):
each is built and run live under ``record_command`` and must raise the expected alert; the
benign look-alikes (gdb and strace sessions, launching and attaching) must raise none.

* DDexec (``ddexec.sh`` with a binary on stdin, ``ddsc.sh -x`` with a shellcode made here): the
  shell writes a stager into its own code through /proc/self/mem -> UNB-L-003.
* linux-inject (``make x86_64`` in a temporary copy): ptrace attach to a running non-child,
  POKETEXT of a stub into its text, SETREGS into the stub, the target loads a library ->
  UNB-L-004, with the injector as actor.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.sensor.conftest import rows
from unbacked.engine.local import detect_events

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT.parent / "shared" / "attack-tools" / "linux"

pytestmark = pytest.mark.live

#: exit-free shellcode for ddsc.sh: write(1, "DDSC-OK\n", 8); exit_group(0)
SHELLCODE = (
    "488d351a000000"  # lea rsi, [rip + msg]
    "bf01000000"  # mov edi, 1
    "ba08000000"  # mov edx, 8
    "b801000000"  # mov eax, 1 (write)
    "0f05"  # syscall
    "31ff"  # xor edi, edi
    "b8e7000000"  # mov eax, 231 (exit_group)
    "0f05" + b"DDSC-OK\n".hex()  # syscall
)


def _tool(name: str) -> Path:
    path = TOOLS / name
    if not path.is_dir():
        pytest.skip(f"public attack tools absent: {path} (../shared/attack-tools/linux)")
    return path


def _record(tmp_path: Path, name: str, argv: list[str], stdin=subprocess.DEVNULL):
    from unbacked.sensor.live import SensorOptions
    from unbacked.sensor.record import record_command

    out = tmp_path / f"{name}.parquet"
    log = tmp_path / f"{name}.out"
    with open(log, "w") as fh:
        result = record_command(
            argv, out, options=SensorOptions(follow_tree=True), stdin=stdin, stdout=fh,
            stderr=subprocess.STDOUT, timeout=90,
        )  # fmt: skip
    return pq.read_table(out), log.read_text(), result


def _alerts(table: pa.Table):
    return detect_events(table).alerts


def test_ddexec_binary_from_stdin(live: None, tmp_path: Path) -> None:
    dd = _tool("DDexec")
    with open("/bin/echo", "rb") as binary:
        table, out, _ = _record(
            tmp_path, "ddexec", ["bash", str(dd / "ddexec.sh"), "echo", "DDEXEC-RAN"], binary
        )
    assert "DDEXEC-RAN" in out, out
    writes = rows(table, activity="write", event_code="linux:write_mem")
    assert writes and all(w["target_uid"] == w["process_uid"] for w in writes)
    assert any(w["region_type"] == "file" and w["vm_flags"] & 4 for w in writes)
    alerts = _alerts(table)
    hit = [a for a in alerts if "UNB-L-003" in a.detectors]
    assert hit, [(a.process.name, a.detectors) for a in alerts]
    assert hit[0].process.name == "bash"
    assert "T1055.009" in hit[0].techniques


def test_ddsc_shellcode(live: None, tmp_path: Path) -> None:
    dd = _tool("DDexec")
    sc = tmp_path / "sc.hex"
    sc.write_text(SHELLCODE + "\n")
    with open(sc, "rb") as fh:
        table, out, _ = _record(tmp_path, "ddsc", ["bash", str(dd / "ddsc.sh"), "-x"], fh)
    assert "DDSC-OK" in out, out
    alerts = _alerts(table)
    assert any("UNB-L-003" in a.detectors for a in alerts), [
        (a.process.name, a.detectors) for a in alerts
    ]


@pytest.fixture(scope="module")
def linux_inject(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """linux-inject built in a temporary copy (the shared folder is read-only)."""
    src = _tool("linux-inject")
    if shutil.which("make") is None or shutil.which("clang") is None:
        pytest.skip("building linux-inject needs make and clang")
    work = tmp_path_factory.mktemp("linux-inject") / "linux-inject"
    shutil.copytree(src, work)
    for p in work.iterdir():
        p.chmod(0o755 if p.is_dir() else 0o644)
    # glibc >= 2.34 (Debian 12): libc is libc.so.6, not libc-2.xx.so, and dlopen lives in libc
    # (__libc_dlopen_mode is no longer exported); the two lookups are adapted, the technique
    # (attach, poke a stub into the text, SETREGS into it, continue) is the tool's own.
    utils = work / "utils.c"
    utils.write_text(utils.read_text().replace('"libc-"', '"libc.so"'))
    inj = work / "inject-x86_64.c"
    inj.write_text(
        inj.read_text().replace(
            'getFunctionAddress("__libc_dlopen_mode")', 'getFunctionAddress("dlopen")'
        )
    )
    # `make x86_64` also tries 32-bit targets, which fail without multilib: expected
    subprocess.run(["make", "x86_64"], cwd=work, capture_output=True, check=False, timeout=300)
    for name in ("inject", "sample-target", "sample-library.so"):
        if not (work / name).exists():
            pytest.fail(f"linux-inject build did not produce {name}")
    return work


def test_linux_inject(live: None, linux_inject: Path, tmp_path: Path) -> None:
    script = tmp_path / "inject.sh"
    script.write_text(
        f"cd {linux_inject}\n"
        # linux-inject races its own target now and then (it prints "PTRACE_GETSIGINFO
        # failed" and gives up): up to three attempts, each on a fresh target
        "for attempt in 1 2 3; do\n"
        "  ./sample-target > /dev/null 2>&1 &\n"
        "  T=$!\n  sleep 0.3\n"
        f"  ./inject -p $T {linux_inject}/sample-library.so > out.$attempt 2>&1\n"
        "  cat out.$attempt\n  sleep 0.3\n  kill $T 2>/dev/null\n"
        "  grep -q 'successfully injected' out.$attempt && break\n"
        "done\n"
    )
    table, out, _ = _record(tmp_path, "inject", ["bash", str(script)])
    assert "successfully injected" in out, out
    pokes = rows(table, event_code="linux:ptrace_poketext")
    assert len(pokes) >= 4
    assert {p["target_image"].rsplit("/", 1)[-1] for p in pokes} == {"sample-target"}
    # the target then mapped the library
    maps = rows(table, activity="map_view")
    assert any((m["backing_path"] or "").endswith("sample-library.so") for m in maps)
    alerts = _alerts(table)
    hit = [a for a in alerts if "UNB-L-004" in a.detectors]
    assert hit, [(a.process.name, a.detectors) for a in alerts]
    assert hit[0].process.name == "sample-target"
    assert hit[0].actor is not None and hit[0].actor.name == "inject"
    assert "T1055.008" in hit[0].techniques


def test_debuggers_raise_nothing(live: None, tmp_path: Path) -> None:
    """gdb and strace launching a program (their own child) and attaching to a running
    non-child, with breakpoints, stepping and registers read: no alert."""
    gdb, strace = shutil.which("gdb"), shutil.which("strace")
    if gdb is None or strace is None:
        pytest.skip("gdb and strace are needed (scripts/install-sensor-deps.sh)")
    script = tmp_path / "debug.sh"
    script.write_text(
        "set -e\n"
        f"{gdb} -q -nx -batch -ex 'set breakpoint pending on' -ex 'break write' -ex run -ex bt "
        "-ex 'info registers rip' -ex stepi -ex continue --args /bin/echo gdb-child\n"
        "sleep 2 & S=$!\n"
        f"{gdb} -q -nx -batch -p $S -ex 'break clock_nanosleep' -ex stepi "
        "-ex 'info registers rip' -ex detach\n"
        f"{strace} -f -o /dev/null /bin/ls / > /dev/null\n"
        "sleep 2 & S=$!\n"
        f"timeout -s INT 0.5 {strace} -o /dev/null -p $S || true\n"
        "wait\n"
    )
    table, out, result = _record(tmp_path, "debuggers", ["bash", str(script)])
    assert result.exit_code == 0, out
    codes = set(table["event_code"].cast(pa.string()).to_pylist())
    assert "linux:ptrace_attach" in codes or "linux:ptrace_seize" in codes, codes
    # gdb did write into its tracees' code (one-byte breakpoints; displaced stepping copies an
    # instruction of up to 16 bytes to the entry point and sets RIP there) and set their
    # registers: the look-alike acts. (It also probes its own stack through /proc/self/mem.)
    writes = rows(table, activity="write")
    assert any(w["target_uid"] != w["process_uid"] and w["vm_flags"] & 4 for w in writes), codes
    assert rows(table, activity="set_context"), codes
    alerts = _alerts(table)
    assert alerts == [], [(a.process.name, a.detectors, a.message) for a in alerts]
