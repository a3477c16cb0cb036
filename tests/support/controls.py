"""Build and run the positive controls of ``tests/controls/``.

The controls perform the technique unbacked detects (reflective ELF loading, shellcode pages,
memfd execution) with benign payloads of our own. Every control, once its act is done, prints
one line ``READY {json}`` (at least ``pid``, ``mode`` and ``regions``: the unbacked executable
regions as ``{"base", "size", "prot"}``) and then sleeps until its stdin closes, so the live
sensor tests and the memory scanner can look at it while it is alive.

Controls (``name`` → what ``run_control(name, *args)`` runs):

========================  ========================================================================
``loader``                C reflective loader; args ``wx`` | ``rwx`` | ``syscall`` | ``jit``
                          and optionally ``--connect PORT``
``loader_py``             the same loader via Python ctypes; args ``wx`` | ``rwx`` [--connect P]
``shellcode_py``          ctypes shellcode page (``mov eax,42; ret``); args ``wx`` | ``rwx``
``memfd_exec``            memfd_create + fexecve of an embedded ELF (``ready_child``)
``memfd_dlopen``          memfd_create + dlopen of the embedded payload shared object
``flood``                 load generator: args ``EVENTS SECONDS`` exec-memory mprotect calls
========================  ========================================================================

``build_controls`` compiles the C parts with gcc into a cache directory keyed by the hash of
the sources, so repeated test runs compile once. Without gcc it raises ``ControlsUnavailable``
whose message is a ready-made skip reason (``controls_or_skip`` turns it into a pytest skip).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CONTROLS_DIR = Path(__file__).resolve().parent.parent / "controls"

#: Python controls: run with the current interpreter; loader_py gets the payload path first.
PY_CONTROLS = {"loader_py": "loader_py.py", "shellcode_py": "shellcode_py.py"}

#: C controls: output name -> (source, extra gcc arguments; {payload}/{child} are filled in).
_C_BUILDS: dict[str, tuple[str, list[str]]] = {
    "ready_child": ("ready_child.c", []),
    "loader": ("loader.c", ['-DPAYLOAD_PATH="{payload}"']),
    "memfd_exec": ("memfd_exec.c", ['-DCHILD_PATH="{child}"']),
    "memfd_dlopen": ("memfd_dlopen.c", ['-DPAYLOAD_PATH="{payload}"', "-ldl"]),
    "flood": ("flood.c", []),
}
_PAYLOAD_FLAGS = [
    "-shared",
    "-fPIC",
    "-nostdlib",
    "-O2",
    "-fvisibility=hidden",
    "-Wl,-e,unbacked_payload_entry",
    "-Wl,--hash-style=sysv",
    "-Wl,-z,max-page-size=4096",
]

#: How long a control may take to print READY.
READY_TIMEOUT = 30.0

_build_lock = threading.Lock()


class ControlsUnavailable(RuntimeError):
    """The controls cannot be built here (no compiler, wrong architecture); str() is a reason."""


def default_cache_dir() -> Path:
    """``$UNBACKED_CONTROLS_DIR`` or a per-user directory under the system temp dir."""
    env = os.environ.get("UNBACKED_CONTROLS_DIR")
    if env:
        return Path(env)
    return Path(tempfile.gettempdir()) / f"unbacked-controls-{os.getuid()}"


def _sources_digest() -> str:
    h = hashlib.sha256()
    for path in sorted(CONTROLS_DIR.glob("*.c")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    h.update(" ".join(_PAYLOAD_FLAGS).encode())
    return h.hexdigest()[:16]


def build_controls(cache_dir: Path | str | None = None) -> dict[str, Path]:
    """Compile the C controls (once per source hash); return name -> executable or script path.

    The result also holds ``payload`` (the benign shared object) and the Python controls.
    Raises ``ControlsUnavailable`` when gcc is missing or the machine is not x86-64 Linux.
    """
    if sys.platform != "linux" or os.uname().machine != "x86_64":
        raise ControlsUnavailable("positive controls need x86-64 Linux")
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise ControlsUnavailable("positive controls need gcc (Debian package gcc)")
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    out = root / _sources_digest()
    with _build_lock:
        out.mkdir(parents=True, exist_ok=True)
        payload = out / "payload.so"
        if not payload.exists():
            _compile([gcc, *_PAYLOAD_FLAGS, "-o", str(payload), str(CONTROLS_DIR / "payload.c")])
        built: dict[str, Path] = {"payload": payload}
        for name in ("ready_child", "loader", "memfd_exec", "memfd_dlopen", "flood"):
            src, extra = _C_BUILDS[name]
            exe = out / name
            if not exe.exists():
                args = [a.format(payload=payload, child=out / "ready_child") for a in extra]
                libs = [a for a in args if a.startswith("-l")]
                defs = [a for a in args if not a.startswith("-l")]
                _compile(
                    [gcc, "-O2", "-Wall", *defs, "-o", str(exe), str(CONTROLS_DIR / src), *libs]
                )
            built[name] = exe
    for name, script in PY_CONTROLS.items():
        built[name] = CONTROLS_DIR / script
    return built


def _compile(cmd: list[str]) -> None:
    """Compile to a temporary name and rename, so a killed build never leaves a half binary."""
    target = Path(cmd[cmd.index("-o") + 1])
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    cmd = [*cmd]
    cmd[cmd.index("-o") + 1] = str(tmp)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ControlsUnavailable(f"building {target.name} failed: {proc.stderr.strip()[:500]}")
    tmp.replace(target)


def controls_or_skip(cache_dir: Path | str | None = None) -> dict[str, Path]:
    """``build_controls`` for tests: a pytest skip with the reason when they cannot be built."""
    import pytest

    try:
        return build_controls(cache_dir)
    except ControlsUnavailable as exc:
        pytest.skip(str(exc))


def control_command(name: str, *args: str, cache_dir: Path | str | None = None) -> list[str]:
    """The argv that runs control ``name`` with ``args`` (Python controls via this interpreter)."""
    built = build_controls(cache_dir)
    if name not in built or name in ("payload", "ready_child"):
        raise KeyError(f"unknown control {name!r}; known: {sorted(built)}")
    if name == "loader_py":
        return [sys.executable, str(built[name]), str(built["payload"]), *args]
    if name in PY_CONTROLS:
        return [sys.executable, str(built[name]), *args]
    return [str(built[name]), *args]


def parse_ready(line: str) -> dict[str, Any]:
    """The JSON object of a ``READY {json}`` line."""
    if not line.startswith("READY "):
        raise ValueError(f"not a READY line: {line!r}")
    info = json.loads(line[len("READY ") :])
    if not isinstance(info, dict) or "pid" not in info:
        raise ValueError(f"READY line without pid: {line!r}")
    return info


@contextlib.contextmanager
def run_control(
    name: str,
    *args: str,
    cache_dir: Path | str | None = None,
    timeout: float = READY_TIMEOUT,
    command: list[str] | None = None,
) -> Iterator[tuple[subprocess.Popen[str], dict[str, Any]]]:
    """Start control ``name``, wait for its READY line, yield ``(process, ready_info)``.

    On exit the control's stdin is closed (it then exits by itself); if it does not within a few
    seconds it is killed by its PID. ``command`` overrides the argv (e.g. to run the control
    under ``unbacked record``); it must still end with the control printing READY.
    """
    argv = command if command is not None else control_command(name, *args, cache_dir=cache_dir)
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        info = _wait_ready(proc, timeout)
        yield proc, info
    finally:
        _stop(proc)


def _wait_ready(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    assert proc.stdout is not None
    result: dict[str, Any] = {}
    lines: list[str] = []

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("READY "):
                result["info"] = parse_ready(line.strip())
                return

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    t.join(timeout)
    if "info" not in result:
        stderr = ""
        if proc.poll() is not None and proc.stderr is not None:
            stderr = proc.stderr.read()
        raise RuntimeError(
            f"control {proc.args!r} printed no READY line within {timeout}s "
            f"(exit {proc.poll()}; stdout {''.join(lines)[-500:]!r}; stderr {stderr[-500:]!r})"
        )
    info: dict[str, Any] = result["info"]
    return info


def _stop(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(OSError, ValueError):
        if proc.stdin is not None:
            proc.stdin.close()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
    for stream in (proc.stdout, proc.stderr):
        with contextlib.suppress(OSError, ValueError):
            if stream is not None:
                stream.close()
