"""Build hook: compile the sensor's CO-RE eBPF object when the package is built.

The wheel then carries ``unbacked/sensor/bpf/unbacked.bpf.o`` and the sensor needs only the
kernel (BTF) and ``libbpf.so.1`` at run time, no compiler. ``vmlinux.h`` is generated here from
the build machine's BTF (``/sys/kernel/btf/vmlinux``) with bpftool; CO-RE relocations make the
object load on any x86-64 kernel with BTF. Without clang, bpftool or the libbpf headers the
package still builds (with a warning) and the sensor compiles on first use, as ``unbacked
sensor --build`` does. ``UNBACKED_BPF=require`` makes a missing tool fail the build;
``UNBACKED_BPF=skip`` skips the object.

The object is for x86-64 kernels (the register layout it reads syscall arguments from), so a
wheel that carries it is tagged ``py3-none-linux_x86_64`` and installs on x86-64 Linux only;
built without it (``UNBACKED_BPF=skip``, or elsewhere than x86-64) the wheel is the pure
``py3-none-any`` that every platform installs (hunting files needs no sensor). Its DWARF debug
sections are stripped (``llvm-strip -g``), keeping the BTF that CO-RE relocations need.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

try:  # setuptools >= 70.1 has it; older ones get it from the wheel package
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # pragma: no cover - depends on the build front-end's setuptools
    try:
        from wheel.bdist_wheel import bdist_wheel
    except ImportError:
        bdist_wheel = None

HERE = Path(__file__).resolve().parent
BPF_SRC = HERE / "src" / "unbacked" / "sensor" / "bpf"
BTF = Path("/sys/kernel/btf/vmlinux")
#: the machines the object is compiled for (``-D__TARGET_ARCH_x86``)
BPF_MACHINES = ("x86_64", "amd64")


def _tool(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/local/sbin")


def compile_bpf(out: Path) -> str | None:
    """Compile the object into ``out``; the reason it could not, or None."""
    if platform.machine().lower() not in BPF_MACHINES:
        return f"the sensor's object is built for x86-64, this is {platform.machine()}"
    clang, bpftool = _tool("clang"), _tool("bpftool")
    missing = [n for n, p in (("clang", clang), ("bpftool", bpftool)) if p is None]
    if not Path("/usr/include/bpf/bpf_helpers.h").exists():
        missing.append("libbpf-dev")
    if missing:
        return f"missing {', '.join(missing)}"
    if not BTF.exists():
        return f"no BTF at {BTF} to generate vmlinux.h from"
    with tempfile.TemporaryDirectory() as tmp:
        vmlinux = Path(tmp) / "vmlinux.h"
        with vmlinux.open("wb") as fh:
            proc = subprocess.run(
                [bpftool, "btf", "dump", "file", str(BTF), "format", "c"],
                stdout=fh,
                stderr=subprocess.PIPE,
                check=False,
            )
        if proc.returncode != 0:
            return f"bpftool failed: {proc.stderr.decode(errors='replace')[-500:]}"
        cmd = [clang, "-g", "-O2", "-target", "bpf", "-D__TARGET_ARCH_x86"]
        cmd += ["-I", tmp, "-I", str(BPF_SRC), "-c", str(BPF_SRC / "unbacked.bpf.c")]
        proc = subprocess.run([*cmd, "-o", str(out)], capture_output=True, check=False)
        if proc.returncode != 0:
            return f"clang failed: {proc.stderr.decode(errors='replace')[-1500:]}"
    strip = _tool("llvm-strip")
    if strip is not None:  # DWARF only: .BTF and .BTF.ext stay (CO-RE needs them)
        subprocess.run([strip, "-g", str(out)], capture_output=True, check=False)
    return None


class BuildPyWithBpf(build_py):
    def run(self) -> None:
        super().run()
        mode = os.environ.get("UNBACKED_BPF", "auto")
        if self.editable_mode:
            return
        out = Path(self.build_lib) / "unbacked" / "sensor" / "bpf" / "unbacked.bpf.o"
        # an object an earlier build left in build/ (or one compiled into the source tree) is
        # never shipped: it may be stale, and UNBACKED_BPF=skip promises a wheel without one
        out.unlink(missing_ok=True)
        if mode == "skip":
            return
        out.parent.mkdir(parents=True, exist_ok=True)
        why = compile_bpf(out)
        if why is None:
            print(f"unbacked: built the eBPF object {out}", file=sys.stderr)
            return
        if mode == "require":
            raise SystemExit(f"unbacked: cannot build the eBPF object: {why}")
        print(
            f"unbacked: WARNING: the eBPF object is not in this build ({why}); the sensor "
            "will compile it on first use (clang, bpftool, libbpf-dev)",
            file=sys.stderr,
        )


cmdclass: dict[str, type] = {"build_py": BuildPyWithBpf}
if bdist_wheel is not None:

    class WheelTaggedByObject(bdist_wheel):  # type: ignore[misc, valid-type]
        """``py3-none-linux_x86_64`` when the wheel carries the x86-64 eBPF object (pip on another
        machine then takes the sdist or a pure wheel), ``py3-none-any`` otherwise."""

        def get_tag(self) -> tuple[str, str, str]:
            python, abi, plat = super().get_tag()
            build_lib = Path(self.get_finalized_command("build_py").build_lib)
            ships = (build_lib / "unbacked" / "sensor" / "bpf" / "unbacked.bpf.o").exists()
            if ships and not getattr(self, "editable_mode", False):
                return "py3", "none", "linux_x86_64"
            return python, abi, plat

    cmdclass["bdist_wheel"] = WheelTaggedByObject

setup(cmdclass=cmdclass)
