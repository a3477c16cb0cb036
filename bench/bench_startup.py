"""Start-up: `unbacked --help` and `unbacked hunt` of a small file, whole processes, beside
the floors they stand on (the interpreter alone; importing the libraries a hunt needs).

    python bench/bench_startup.py [--runs 7] [FILE]

Interleaved runs, wall and CPU min / median / max (see bench/_proc.py), then
`python -X importtime` of both commands summed per package. FILE defaults to the smallest
bundled sample (`samples/linux/benign-java-1.parquet`, 16 events).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _proc import (
    REPO,
    importtime_summary,
    interleaved,
    loadavg,
    machine,
    print_runs,
    unbacked_command,
    versions,
)

LIBS = "import pyarrow, pyarrow.compute, pyarrow.parquet, duckdb, numpy, orjson, click, rich"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("file", nargs="?", default=str(REPO / "samples/linux/benign-java-1.parquet"))
    args = ap.parse_args()
    exe, note = unbacked_command()
    print(f"machine: {machine()}; {versions()}")
    print(f"unbacked: {note}; {args.runs} interleaved runs after one warm-up each")
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as d:
        out = str(Path(d) / "alerts.json")
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "python: import the libraries hunt needs": [sys.executable, "-c", LIBS],
            # as a command's process loads them (cli.main.keep_blas_single_threaded): OpenBLAS
            # otherwise starts a thread per core that spins for a while
            "python: the same, NumPy's BLAS on one thread": [
                "env",
                "OPENBLAS_NUM_THREADS=1",
                sys.executable,
                "-c",
                LIBS,
            ],
            # pyarrow imports pandas, when installed, on its first conversion of Python values
            "python: the same + pandas": [sys.executable, "-c", LIBS + ", pandas"],
            "unbacked --help": [*exe, "--help"],
            f"unbacked hunt {Path(args.file).name} -o OUT": [*exe, "hunt", args.file, "-o", out],
        }
        on_path = shutil.which("unbacked")
        if on_path and Path(on_path).resolve() != Path(exe[0]).resolve():
            commands[f"unbacked --help via PATH ({on_path})"] = [on_path, "--help"]
        print(f"load average before: {loadavg()}")
        print_runs(interleaved(commands, args.runs), "command")
        print(f"load average after: {loadavg()}")
        script = [exe[-1]] if exe[0] != sys.executable else ["-m", "unbacked.cli.main"]
        print("\n`unbacked --help`:")
        for line in importtime_summary([*script, "--help"], top=6):
            print(line)
        print(f"\n`unbacked hunt {Path(args.file).name}`:")
        for line in importtime_summary([*script, "hunt", args.file, "-o", out]):
            print(line)


if __name__ == "__main__":
    main()
