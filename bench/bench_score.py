"""Scoring rate: `unbacked detect --baseline` on a normalized Parquet event lake, whole process.

    python bench/bench_score.py [--events 1e6] [--runs 3] [--work DIR] [--memory-events N]
                                [--layout file|export]

A synthetic fleet of about ``--events`` events (``bench/generate_fleet.py``: real rows of the
project's captures resampled per process instance, zstd Parquet, cached in ``--work`` by its
size) is the lake; a baseline is trained on it once (``unbacked train``); then `unbacked
detect FLEET --baseline B -o OUT` runs ``--runs`` times as a user runs it. Reported: wall and
CPU (user + system) min / median / max, events per CPU second (the per-core rate; the target
is 10^6), events per wall second, peak RSS, and from one run with ``--report`` the stages
inside the process. 10^7 events take ~100 s a run and ~2 GB of spill on disk; the default
size is what a shared 2-core machine takes in a few minutes.

``--layout export``: the same events as `unbacked export --parquet` writes a lake (a directory
per host, the Spark engine's input), exported once from the generator's file into ``--work``
(the export itself timed once, as a whole process).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _proc import (
    child_env,
    fmt3,
    interleaved,
    loadavg,
    machine,
    run_once,
    unbacked_command,
    versions,
)

HERE = Path(__file__).resolve().parent


def _fleet(work: Path, events: float) -> tuple[Path, int]:
    out = work / f"fleet-{int(events)}"
    done = out / ".done"
    if not done.exists():
        out.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, str(HERE / "generate_fleet.py"), str(out), "--events", str(events)],
            check=True,
            env=child_env(),
        )
        done.write_text("ok")
    import pyarrow.parquet as pq

    # the lake is OUT/data: OUT also holds the generator's fleet.json and the labels
    lake = out / "data"
    n = sum(pq.ParquetFile(p).metadata.num_rows for p in sorted(lake.rglob("*.parquet")))
    return lake, n


def _exported(work: Path, fleet: Path, events: float, exe: list[str]) -> Path:
    """The fleet as ``unbacked export --parquet`` writes it (cached beside the fleet)."""
    lake = work / f"lake-{int(events)}-export"
    done = work / f"lake-{int(events)}-export.done"
    if not done.exists():
        import shutil

        shutil.rmtree(lake, ignore_errors=True)
        wall, cpu, rss, rc = run_once([*exe, "export", str(fleet), "--parquet", str(lake), "-q"])
        if rc:
            raise SystemExit(f"unbacked export exited {rc}")
        print(f"export (once): {wall:.2f} s wall, {cpu:.2f} s CPU, {rss:.0f} MiB peak")
        done.write_text("ok")
    return lake


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=float, default=1e6)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "unbacked-score")
    ap.add_argument("--memory-events", type=int, help="passed to detect (default: its own)")
    ap.add_argument(
        "--layout",
        choices=("file", "export"),
        default="file",
        help="the generator's Parquet file, or the lake `unbacked export` writes",
    )
    args = ap.parse_args()
    exe, note = unbacked_command()
    print(f"machine: {machine()}; {versions()}")
    print(f"unbacked: {note}")
    fleet, n = _fleet(args.work, args.events)
    baseline = args.work / f"baseline-{int(args.events)}"
    if not (baseline / "manifest.json").exists() and not any(baseline.glob("*")):
        run_once([*exe, "train", str(fleet), "-o", str(baseline), "-q"])
    if args.layout == "export":
        fleet = _exported(args.work, fleet, args.events, exe)
    extra = ["--memory-events", str(args.memory_events)] if args.memory_events is not None else []
    with tempfile.TemporaryDirectory(prefix="bench-score-") as d:
        tmp = Path(d)
        detect = [*exe, "detect", str(fleet), "--baseline", str(baseline), "-o",
                  str(tmp / "alerts.json"), *extra]  # fmt: skip
        rep = tmp / "report.json"
        run_once([*detect, "--report", str(rep)])
        report = json.loads(rep.read_text())
        print(f"lake: {fleet} ({n:,} events); load average before: {loadavg()}")
        res = interleaved({"unbacked detect --baseline": detect}, args.runs, warmup=False)
        r = res["unbacked detect --baseline"]
        wall, cpu = r.stat("wall"), r.stat("cpu")
        print(
            "| command | wall s (min / median / max) | CPU s (min / median / max) | peak RSS MiB |"
        )
        print("|---|---:|---:|---:|")
        print(f"| {r.name} | {fmt3(wall)} | {fmt3(cpu)} | {max(r.rss_mib):.0f} |")
        print(f"events per CPU second (median): **{n / cpu[1]:,.0f}**; per wall second: "
              f"{n / wall[1]:,.0f}; exit codes {sorted(set(r.returncodes))}")  # fmt: skip
        t = report.get("timings") or {}
        if t:
            total = sum(v for v in t.values() if isinstance(v, int | float))
            print("stages inside the process (s, one run, µs/event): " + ", ".join(
                f"{k} {v:.2f} ({v / n * 1e6:.2f})" for k, v in t.items()
                if isinstance(v, int | float)))  # fmt: skip
            print(f"sum of stages {total:.2f} s; alerts {report.get('alerts')}")
        print(f"load average after: {loadavg()}")


if __name__ == "__main__":
    main()
