#!/usr/bin/env bash
# Regenerate samples/linux/: captures (controls as JSON lines, benign runs as Parquet) of the positive controls and of the benign JIT suite,
# recorded by the live sensor (`unbacked record`). Needs root and the sensor's build tools
# (scripts/install-sensor-deps.sh). The tests fall back to these captures where the live sensor
# cannot run.
#
# Usage: scripts/record-samples.sh [OUT_DIR]     (default: samples/linux)
#        RUNS=3 scripts/record-samples.sh        (benign runs per program, default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-samples/linux}"
mkdir -p "$out"
export RUNS="${RUNS:-3}" OUT="$out"
PYTHONPATH="src:.${PYTHONPATH:+:$PYTHONPATH}" python3 - <<'PY'
import os
import subprocess
import sys
from pathlib import Path

from tests.support.controls import build_controls, control_command
from tests.support.jit_suite import jit_workloads

out = Path(os.environ["OUT"])
runs = int(os.environ["RUNS"])
build_controls()
controls = {
    "control-loader-wx": ("loader", "wx"),
    "control-loader-rwx": ("loader", "rwx"),
    "control-loader-syscall": ("loader", "syscall"),
    "control-loader-jit": ("loader", "jit"),
    "control-loader-wx-connect": ("loader", "wx", "--connect", "9"),
    "control-loader-py-wx": ("loader_py", "wx"),
    "control-shellcode-py-wx": ("shellcode_py", "wx"),
    "control-shellcode-py-rwx": ("shellcode_py", "rwx"),
    "control-memfd-exec": ("memfd_exec",),
    "control-memfd-dlopen": ("memfd_dlopen",),
}
jobs = [(f"{name}.jsonl", control_command(*spec)) for name, spec in controls.items()]
suite = jit_workloads(Path("/tmp/unbacked-jit-samples"))
for w in suite.workloads:
    for i in range(1, runs + 1):
        jobs.append((f"benign-{w.name}-{i}.parquet", list(w.argv)))
for name, argv in jobs:
    dest = out / name
    cmd = [sys.executable, "-m", "unbacked.cli.main", "record", "-q", "-o", str(dest), "--", *argv]
    subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=True)
    size = dest.stat().st_size
    print(f"{dest}  {size / 1024:.0f} KiB")
    if size > 1 << 20:
        sys.exit(f"{dest} is larger than 1 MiB: shorten the workload")
if suite.missing:
    print("not recorded (missing programs):", suite.missing)
PY
