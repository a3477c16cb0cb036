"""Scaling of ``unbacked train`` and ``unbacked hunt`` (embedded engine) from 10^5 to 10^7 events,
and precision at low base rates, on synthetic fleets fitted from the real captures.

    python bench/bench_scale.py [--sizes 1e5,1e6,1e7] [--work DIR] [--attack-rate 0.001]
        [--eval-sizes 1e6] [--json out.json]
    python bench/bench_scale.py --stages 1e6     # where hunt's memory goes, stage by stage

Per size: a fleet is generated (``unbacked.evaluate.synth``, cached in ``--work`` by its
parameters), then each command runs **as the CLI runs it, in a subprocess of its own**, through a
small wrapper interpreter that reports ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` of that one child,
so the peak RSS is the command's own and not the maximum over every run of this script. Wall
time is measured around the subprocess; the hunt's own stage timings come from ``--report``.

``--eval-sizes`` runs ``unbacked eval`` on those fleets: alerts against the injected attacks
(precision, recall, false alerts per 10,000 benign instances). One measurement per size and
command (the machine's 2 cores are shared: run it when the machine is otherwise quiet and
treat ±20 % as noise).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

#: Runs the command, watches its RSS (the machine is shared: above the cap, or when less than
#: 1 GiB is left on the machine, the command is stopped by its PID rather than pushing the
#: machine into the OOM killer) and prints its own
#: peak RSS (RUSAGE_CHILDREN of this wrapper = that one child), exit code, whether it was capped.
_WRAPPER = """
import resource, subprocess, sys, time
cap_kib = int(sys.argv[1])
p = subprocess.Popen(sys.argv[2:], stdout=subprocess.DEVNULL)
capped = 0
while p.poll() is None:
    try:
        with open(f"/proc/{p.pid}/status") as fh:
            rss = next(int(x.split()[1]) for x in fh if x.startswith("VmRSS"))
    except (OSError, StopIteration):
        rss = 0
    try:
        with open("/proc/meminfo") as fh:
            avail = next(int(x.split()[1]) for x in fh if x.startswith("MemAvailable"))
    except (OSError, StopIteration):
        avail = 1 << 40
    if (cap_kib and rss > cap_kib) or avail < 1 << 20:  # or under 1 GiB left on the machine
        p.kill()
        p.wait()
        capped = 1
        break
    time.sleep(0.2)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, p.returncode, capped)
"""
RSS_CAP_GIB = 18.0


def measure(argv: list[str], cap_gib: float = RSS_CAP_GIB) -> dict[str, Any]:
    """Wall time and peak RSS (MiB) of ``argv`` run alone in a fresh process tree."""
    t0 = time.perf_counter()
    cap = str(int(cap_gib * 2**20))
    proc = subprocess.run(
        [sys.executable, "-c", _WRAPPER, cap, *argv], capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - t0
    last = proc.stdout.strip().splitlines()[-1].split()
    rss_kib, rc, capped = int(last[0]), int(last[1]), bool(int(last[2]))
    out = {"seconds": round(wall, 2), "peak_rss_mib": round(rss_kib / 1024, 1), "rc": rc}
    if capped:
        out["stopped_at_rss_cap_gib"] = cap_gib
    elif rc not in (0, 3):
        raise RuntimeError(f"{argv[:3]} exited {rc}: {proc.stderr[-2000:]}")
    return out


def fleet(work: Path, events: int, attack_rate: float, seed: int) -> tuple[Path, dict[str, Any]]:
    """Generate (or reuse) the fleet of ``events`` events."""
    out = work / f"fleet-{events}-{attack_rate:g}-{seed}"
    manifest = out / "fleet.json"
    if manifest.exists():
        return out, json.loads(manifest.read_text())["result"]
    cmd = [
        sys.executable,
        str(ROOT / "bench" / "generate_fleet.py"),
        str(out),
        "--events",
        str(events),
        "--attack-rate",
        str(attack_rate),
        "--seed",
        str(seed),
    ]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    res = json.loads(manifest.read_text())["result"]
    res["wall_with_fit_s"] = round(time.perf_counter() - t0, 2)
    return out, res


_STAGES = r"""
import json, resource, sys, time
import pyarrow as pa
from unbacked.correlate.incidents import correlate
from unbacked.detect import DetectionContext, ProgramBaseline, run_rules
from unbacked.engine.local import load_events
from unbacked.model.state import StateTracker
from unbacked.runreport import RunReport

out = []
t0 = time.perf_counter()
def mark(stage, keep):
    out.append({"stage": stage, "s": round(time.perf_counter() - t0, 2),
                "arrow_mib": round(pa.total_allocated_bytes() / 2**20),
                "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                "table_mib": round(keep.nbytes / 2**20) if keep is not None else None})
events = load_events([sys.argv[1]], RunReport()); mark("events read (one table)", events)
ctx = DetectionContext.build(events, None, self_baselined=True)
mark("context (+program cols)", ctx.events)
facts = ctx.facts; mark("facts", facts)
ctx.baseline = ProgramBaseline().learn(facts, calibrate=False); mark("baseline", None)
signals = run_rules(ctx); mark("rules (+scored facts)", ctx.cache.get("scored"))
state = StateTracker.from_events(events); mark("state tracker", None)
alerts = correlate(ctx, signals, state, None); mark("correlate", None)
print(json.dumps(out))
"""


def stages(data: str) -> list[dict[str, Any]]:
    """hunt's stages in one fresh process: time, Arrow memory held, peak RSS after each."""
    proc = subprocess.run(
        [sys.executable, "-c", _STAGES, data], capture_output=True, text=True, check=True
    )
    return list(json.loads(proc.stdout.strip().splitlines()[-1]))


def _sizes(text: str) -> list[int]:
    return [int(float(x)) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--sizes", default="1e5,3e5,1e6,3e6,1e7")
    ap.add_argument("--eval-sizes", default="1e6", help="sizes to run `unbacked eval` on")
    ap.add_argument("--attack-rate", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "unbacked-scale")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--skip", default="", help="comma list of commands to skip: train,hunt")
    ap.add_argument("--stages", type=float, help="only: hunt's memory by stage at this size")
    ap.add_argument(
        "--memory-events",
        type=int,
        help="pass --memory-events N to train and hunt (default: the CLI's default)",
    )
    ap.add_argument(
        "--rss-cap-gib", type=float, default=RSS_CAP_GIB, help="stop a command above this RSS"
    )
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    if args.stages:
        out, gen = fleet(args.work, int(args.stages), args.attack_rate, args.seed)
        rows_st = stages(str(out / "data"))
        print(f"{gen['events']:,} events")
        print("| stage | elapsed | Arrow memory held | peak RSS | table size |")
        print("|---|---:|---:|---:|---:|")
        for r in rows_st:
            print(
                f"| {r['stage']} | {r['s']} s | {r['arrow_mib']} MiB | {r['peak_rss_mib']} MiB "
                f"| {r['table_mib'] if r['table_mib'] is not None else '-'} MiB |"
            )
        return 0
    skip = set(args.skip.split(","))
    unbacked = [sys.executable, "-m", "unbacked.cli.main"]
    engine = [] if args.memory_events is None else ["--memory-events", str(args.memory_events)]
    rows = []
    for n in _sizes(args.sizes):
        out, gen = fleet(args.work, n, args.attack_rate, args.seed)
        data = str(out / "data")
        row: dict[str, Any] = {"target_events": n, "events": gen["events"], "generate": gen}
        if "train" not in skip:
            row["train"] = measure(
                [*unbacked, "train", data, "-o", str(out / "baseline"), "-q", *engine],
                args.rss_cap_gib,
            )
        if "hunt" not in skip:
            report = out / "hunt-report.json"
            row["hunt"] = measure(
                [
                    *unbacked,
                    "hunt",
                    data,
                    "-q",
                    "--fail-on",
                    "none",
                    "-o",
                    str(out / "alerts.jsonl"),
                    "--report",
                    str(report),
                    *engine,
                ],
                args.rss_cap_gib,
            )
            if report.exists() and "stopped_at_rss_cap_gib" not in row["hunt"]:
                rep = json.loads(report.read_text())
                row["hunt"]["stages_s"] = {k: round(v, 2) for k, v in rep["timings"].items()}
                row["hunt"]["alerts"] = rep["alerts"]
                row["hunt"]["partitions"] = (rep.get("engine") or {}).get("partitions", 0)
        if n in _sizes(args.eval_sizes):
            ev_json = out / "eval.json"
            row["eval"] = measure(
                [
                    *unbacked,
                    "eval",
                    data,
                    "--labels",
                    str(out / "labels"),
                    "--data-root",
                    str(out),
                    "-q",
                    "-o",
                    str(ev_json),
                    "--markdown",
                    str(out / "eval.md"),
                ],
                args.rss_cap_gib,
            )
            if ev_json.exists():
                row["eval"]["totals"] = json.loads(ev_json.read_text())["totals"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    info = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {platform.system()} {platform.release()}",
        "attack_rate": args.attack_rate,
        "seed": args.seed,
        "rows": rows,
    }
    if args.json:
        args.json.write_text(json.dumps(info, indent=1) + "\n")
    print(markdown(info))
    return 0


_STAGE_KEYS = ("read", "baseline", "features_baseline", "rules", "correlate")


def markdown(info: dict[str, Any]) -> str:
    lines = [
        "| events | generate | train | train peak RSS | hunt | hunt peak RSS | hunt events/s "
        "| hunt host groups | hunt stages (read / baseline / features+baseline / rules / "
        "correlate) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in info["rows"]:
        tr, hu = r.get("train", {}), r.get("hunt", {})
        st = hu.get("stages_s", {})
        rate = f"{r['events'] / hu['seconds']:,.0f}" if hu and "rc" in hu else "-"
        for d in (tr, hu):
            if "stopped_at_rss_cap_gib" in d:
                d["peak_rss_mib"] = f"> {d['stopped_at_rss_cap_gib'] * 1024:.0f} (stopped)"
        lines.append(
            f"| {r['events']:,} | {r['generate']['seconds']:.1f} s "
            f"| {tr.get('seconds', '-')} s | {tr.get('peak_rss_mib', '-')} MiB "
            f"| {hu.get('seconds', '-')} s | {hu.get('peak_rss_mib', '-')} MiB | {rate} "
            f"| {hu.get('partitions', '-')} "
            f"| {' / '.join(str(st.get(k, '-')) for k in _STAGE_KEYS)} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
