"""The sensor's eBPF object: shipped in the package, or built on first use.

A built package (wheel) carries ``bpf/unbacked.bpf.o``, compiled CO-RE when the package was
built (``setup.py``): at run time only the kernel's BTF and ``libbpf.so.1`` are needed. Without
it (a source checkout, or a package built without clang), or with ``--build``, the object is
compiled CO-RE against the running kernel's type information and cached under
``$UNBACKED_CACHE`` (default ``$XDG_CACHE_HOME/unbacked`` or ``~/.cache/unbacked``) in a
directory keyed by the hash of the sources and the kernel's BTF, so it is rebuilt exactly when
one of them changes (the ring-buffer size is set at load time, not compiled in). Nothing is
installed at run time: a missing tool is a ``SensorError`` that names the Debian package to
install (``scripts/install-sensor-deps.sh``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from importlib import resources
from pathlib import Path

from unbacked.errors import SensorError

BTF_PATH = Path("/sys/kernel/btf/vmlinux")
INSTALL_HINT = (
    "install the sensor's build tools: scripts/install-sensor-deps.sh "
    "(Debian: apt-get install clang llvm bpftool libbpf-dev libbpf1)"
)
_SOURCES = ("unbacked.bpf.c", "unbacked.h")


def cache_root() -> Path:
    """Where built objects live (``$UNBACKED_CACHE`` overrides)."""
    env = os.environ.get("UNBACKED_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "unbacked"


def find_tool(name: str, package: str) -> str:
    """Path of ``name`` on PATH or in /usr/sbin (bpftool lives there), else a SensorError."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/local/sbin")
    if found is None:
        raise SensorError(f"{name} is not installed", hint=f"{INSTALL_HINT} (missing: {package})")
    return found


def bpf_source_dir() -> Path:
    """The directory holding the eBPF C sources shipped in the package."""
    return Path(str(resources.files("unbacked.sensor") / "bpf"))


def packaged_object() -> Path | None:
    """The object compiled when the package was built, if this package carries one."""
    obj = bpf_source_dir() / "unbacked.bpf.o"
    return obj if obj.is_file() else None


def check_btf() -> None:
    if not BTF_PATH.exists():
        raise SensorError(
            "the kernel exposes no BTF type information (/sys/kernel/btf/vmlinux)",
            hint="run on a kernel built with CONFIG_DEBUG_INFO_BTF=y (Linux >= 5.17; Debian "
            "kernels are); see docs/sensor.md",
        )


def object_key() -> str:
    """Hash of what the object depends on: the sources and the kernel's BTF."""
    check_btf()
    h = hashlib.sha256()
    src = bpf_source_dir()
    for name in _SOURCES:
        h.update((src / name).read_bytes())
    h.update(BTF_PATH.read_bytes())
    return h.hexdigest()[:20]


def build_object(*, force: bool = False) -> Path:
    """The path of the eBPF object: the packaged one, else built (and cached) now.
    ``force`` (``unbacked sensor --build``) always compiles from the sources."""
    check_btf()
    shipped = packaged_object()
    if shipped is not None and not force:
        return shipped
    key = object_key()
    out_dir = cache_root() / "sensor" / key
    obj = out_dir / "unbacked.bpf.o"
    if obj.exists() and not force:
        return obj
    clang = find_tool("clang", "clang")
    bpftool = find_tool("bpftool", "bpftool")
    if not Path("/usr/include/bpf/bpf_helpers.h").exists():
        raise SensorError(
            "libbpf headers are missing", hint=f"{INSTALL_HINT} (missing: libbpf-dev)"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    vmlinux = out_dir / "vmlinux.h"
    if not vmlinux.exists() or force:
        _run([bpftool, "btf", "dump", "file", str(BTF_PATH), "format", "c"], stdout=vmlinux)
    src = bpf_source_dir()
    tmp = obj.with_name(f"unbacked.bpf.o.tmp{os.getpid()}")
    _run(
        [
            clang,
            "-g",
            "-O2",
            "-target",
            "bpf",
            "-D__TARGET_ARCH_x86",
            "-I",
            str(out_dir),
            "-I",
            str(src),
            "-c",
            str(src / "unbacked.bpf.c"),
            "-o",
            str(tmp),
        ]
    )
    tmp.replace(obj)
    return obj


def _run(cmd: list[str], stdout: Path | None = None) -> None:
    try:
        if stdout is not None:
            tmp = stdout.with_name(stdout.name + f".tmp{os.getpid()}")
            with tmp.open("wb") as fh:
                proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.PIPE, check=False)
            if proc.returncode == 0:
                tmp.replace(stdout)
            else:
                tmp.unlink(missing_ok=True)
        else:
            proc = subprocess.run(cmd, capture_output=True, check=False)
    except OSError as exc:
        raise SensorError(f"cannot run {cmd[0]}: {exc}", hint=INSTALL_HINT) from exc
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()[-2000:]
        raise SensorError(
            f"building the eBPF object failed ({Path(cmd[0]).name} exit {proc.returncode})",
            hint=f"compiler said: {err}",
        )
