"""`hunt` throughput on the largest OTRF file against the raw parse rate of the same input.

Raw parse = reading the JSON lines out of the zip and `orjson.loads` on each (what any Python
consumer must at least do). Hunt = the whole pipeline: read + normalize + features + baseline +
rules + correlation + alerts. Both measured in the same run, best of N.

    python bench/bench_hunt.py [FILE] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import zipfile
from pathlib import Path

import orjson

from unbacked.engine.local import hunt
from unbacked.runreport import RunReport

DEFAULT = (
    Path(__file__).resolve().parents[1]
    / "../shared/data/windows/OTRF_Security-Datasets/datasets/compound/LSASS_campaign_01"
    / "metasploit_logonpasswords_lsass_memory_dump.zip"
)


def raw_parse(path: Path) -> tuple[int, float]:
    t0 = time.perf_counter()
    n = 0
    with zipfile.ZipFile(path) as zf:
        for name in zf.namelist():
            if name.startswith("__MACOSX") or name.endswith("/"):
                continue
            with zf.open(name) as fh:
                for line in fh:
                    if line.strip():
                        orjson.loads(line)
                        n += 1
    return n, time.perf_counter() - t0


def run_hunt(path: Path) -> tuple[int, float, dict, int]:
    report = RunReport()
    t0 = time.perf_counter()
    result = hunt([path], report=report)
    return report.records, time.perf_counter() - t0, result.timings, len(result.alerts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("file", nargs="?", default=str(DEFAULT))
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    path = Path(args.file)
    raw = min((raw_parse(path) for _ in range(args.repeat)), key=lambda r: r[1])
    hunts = [run_hunt(path) for _ in range(args.repeat)]
    best = min(hunts, key=lambda r: r[1])
    raw_rate = raw[0] / raw[1]
    hunt_rate = best[0] / best[1]
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"input: {path.name} ({path.stat().st_size / 1e6:.1f} MB zip, {raw[0]:,} lines)")
    print(f"raw parse (zip + orjson per line): {raw[1]:.3f} s  {raw_rate:,.0f} lines/s")
    print(f"hunt (whole pipeline, {best[3]} alerts): {best[1]:.3f} s  {hunt_rate:,.0f} records/s")
    print("hunt stages (s): " + ", ".join(f"{k} {v:.3f}" for k, v in best[2].items()))
    print(f"hunt / raw parse: {hunt_rate / raw_rate:.2f}x")


if __name__ == "__main__":
    main()
