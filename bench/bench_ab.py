"""Before and after: the same user commands run by an earlier commit's code and by this tree's,
interleaved in one run set (whole processes, wall and CPU medians).

    python bench/bench_ab.py [--base main] [--runs 5]
                             [--only help,small,lsass,evtx,detect,lake,many]

The earlier code is `git archive BASE src` unpacked into a temporary directory and put first on
PYTHONPATH (the installed console script then imports it); this tree's `src/` is the other side.
`detect` uses the lake and baseline `bench/bench_score.py --events 1e6` leaves in its work
directory (skipped when absent) and runs 2 times a side; `lake` (not run unless asked for) the
same on the lake `bench_score.py --events 1e6 --layout export` leaves there. `many` (not run
unless asked for) hunts 5,000 small JSON-lines files cut from the LSASS file into the run's
temporary directory.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _proc import EVTX_DIRS, LSASS_ZIP, REPO, child_env, loadavg, machine, unbacked_command


def _run(argv: list[str], src: str) -> tuple[float, float]:
    env = child_env()
    env["PYTHONPATH"] = src
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    _, _, ru = os.wait4(proc.pid, 0)
    return time.perf_counter() - t0, ru.ru_utime + ru.ru_stime


def _small_files(folder: Path, files: int = 5_000, per_file: int = 2) -> None:
    """``files`` JSON-lines files of ``per_file`` Sysmon records each, cut from the LSASS
    campaign file (a collection of many small exports: what discovery and the readers pay per
    file). Made in the run's temporary directory from ``../shared/data``, never kept."""
    import zipfile

    folder.mkdir()
    with zipfile.ZipFile(LSASS_ZIP) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".json"))
        with zf.open(name) as fh:
            lines = [line for line in fh if b"Microsoft-Windows-Sysmon" in line]
    for i in range(files):
        part = lines[i * per_file : (i + 1) * per_file]
        (folder / f"part-{i:05d}.json").write_bytes(b"".join(part))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", default="main")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--only", default="help,small,lsass,evtx,detect")
    ap.add_argument(
        "--score-work", type=Path, default=Path(tempfile.gettempdir()) / "unbacked-score"
    )
    args = ap.parse_args()
    exe, note = unbacked_command()
    with tempfile.TemporaryDirectory(prefix="bench-ab-") as d:
        out = str(Path(d) / "alerts.json")
        blob = subprocess.run(["git", "-C", str(REPO), "archive", args.base, "src"],
                              capture_output=True, check=True).stdout  # fmt: skip
        with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
            tar.extractall(d, filter="data")
        sides = {args.base: str(Path(d) / "src"), "this tree": str(REPO / "src")}
        fleet = args.score_work / "fleet-1000000" / "data"  # the lake (beside fleet.json, labels)
        base = args.score_work / "baseline-1000000"
        lake = args.score_work / "lake-1000000-export"  # as `unbacked export` writes it
        cases = {
            "help": ("`unbacked --help`", [*exe, "--help"]),
            "small": ("`unbacked hunt benign-java-1.parquet`",
                      [*exe, "hunt", str(REPO / "samples/linux/benign-java-1.parquet"), "-o", out]),
            "lsass": ("`unbacked hunt` LSASS zip", [*exe, "hunt", str(LSASS_ZIP), "-o", out]),
            "evtx": ("`unbacked hunt` EVTX-ATTACK-SAMPLES",
                     [*exe, "hunt", *(str(p) for p in EVTX_DIRS if p.exists()), "-o", out]),
            "detect": ("`unbacked detect --baseline`, 10^6 events",
                       [*exe, "detect", str(fleet), "--baseline", str(base), "-o", out]),
            "lake": ("`unbacked detect --baseline`, 10^6 events exported by host",
                     [*exe, "detect", str(lake), "--baseline", str(base), "-o", out]),
            "many": ("`unbacked hunt` 5,000 small JSON-lines files",
                     [*exe, "hunt", str(Path(d) / "many"), "-o", out]),
        }  # fmt: skip
        if "many" in args.only.split(","):
            _small_files(Path(d) / "many")
        print(f"machine: {machine()}; unbacked: {note}; load average {loadavg()}")
        print(
            f"| command | {args.base}: wall / CPU s (medians) | this tree: wall / CPU s (medians) |"
        )
        print("|---|---:|---:|")
        for key in args.only.split(","):
            label, argv = cases[key]
            needs = {"detect": (fleet, ""), "lake": (lake, " --layout export")}.get(key)
            if needs and not needs[0].exists():
                first = f"bench/bench_score.py --events 1e6{needs[1]}"
                print(f"| {label} | skipped: run {first} first | |")
                continue
            runs = 2 if needs else args.runs
            res: dict[str, list[tuple[float, float]]] = {k: [] for k in sides}
            for src in sides.values():
                _run(argv, src)  # warm-up
            for i in range(runs):
                order = list(sides) if i % 2 == 0 else list(sides)[::-1]
                for k in order:
                    res[k].append(_run(argv, sides[k]))
            cells = []
            for k in sides:
                wall = statistics.median(x[0] for x in res[k])
                cpu = statistics.median(x[1] for x in res[k])
                cells.append(f"{wall:.3f} / {cpu:.3f}")
            print(f"| {label} | {cells[0]} | {cells[1]} |", flush=True)
        print(f"load average after: {loadavg()}")


if __name__ == "__main__":
    main()
