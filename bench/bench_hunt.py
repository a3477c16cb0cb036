"""`unbacked hunt` as a user runs it, beside the raw parse of the same input, in one run set.

Every figure is a whole process: the command a user types (`unbacked hunt FILE -o OUT`) and
the raw parse as a script of its own (`bench/_raw.py`: `orjson.loads` of every line, out of the
zip or the plain file; for EVTX the `evtx` parser's records with and without the JSON decode),
each run several times, interleaved (A/B/C, B/C/A, ...), wall and CPU (user + system) as
min / median / max. The ratio is records/s of hunt over records/s of the raw parse from the
medians of the same run set (hunt reads every record the raw parse reads).

Inputs: the OTRF LSASS campaign 01 file as shipped (zip) and its JSON-lines member extracted
to a temporary directory; the EVTX-ATTACK-SAMPLES snapshot (every `.evtx` of it). Then one
`-X importtime` run and one run with `--report` for where the time goes inside the process.

    python bench/bench_hunt.py [--runs 5] [--only lsass-zip,lsass-json,evtx] [--zip FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _proc import (
    EVTX_DIRS,
    LSASS_ZIP,
    fmt3,
    importtime_summary,
    interleaved,
    loadavg,
    machine,
    run_once,
    unbacked_command,
    versions,
)

RAW = str(Path(__file__).resolve().parent / "_raw.py")


def _extract_json(zip_path: Path, into: Path) -> Path:
    with zipfile.ZipFile(zip_path) as zf:
        members = [n for n in zf.namelist() if not n.startswith("__MACOSX") and not n.endswith("/")]
        out = into / Path(members[0]).name
        with zf.open(members[0]) as src, out.open("wb") as dst:
            while block := src.read(1 << 20):
                dst.write(block)
    return out


def _count(argv: list[str]) -> int:
    out = Path(tempfile.mkstemp(suffix=".txt")[1])
    try:
        run_once(argv, stdout_path=str(out))
        return int(out.read_text().split()[-1])
    finally:
        out.unlink()


def _stages(hunt: list[str], tmp: Path) -> tuple[dict, int]:
    rep = tmp / "report.json"
    run_once([*hunt, "--report", str(rep)])
    data = json.loads(rep.read_text())
    return data.get("timings") or {}, int(data.get("records") or 0)


def bench_input(label: str, paths: list[str], raw_modes: list[str], runs: int, tmp: Path) -> None:
    exe, _ = unbacked_command()
    out = tmp / f"{label}.ocsf.json"
    hunt = [*exe, "hunt", *paths, "-o", str(out)]
    commands = {f"raw {m}": [sys.executable, RAW, m, *paths] for m in raw_modes}
    commands["unbacked hunt"] = hunt
    n_raw = _count(next(iter(commands.values())))
    timings, n_hunt = _stages(hunt, tmp)
    res = interleaved(commands, runs)
    alerts = sum(1 for line in out.read_text().splitlines() if line.strip())
    print(f"\n### {label}: {', '.join(Path(p).name for p in paths)}")
    print(f"records: raw parse {n_raw:,}, hunt read {n_hunt:,}; hunt alerts {alerts}")
    print(f"load average before: {loadavg()}")
    print("| command | wall s (min / median / max) | CPU s (min / median / max) | peak RSS MiB |")
    print("|---|---:|---:|---:|")
    for r in res.values():
        bad = [c for c in r.returncodes if c not in (0, 3)]
        note = f" (exit {bad[0]})" if bad else ""
        print(f"| {r.name}{note} | {fmt3(r.stat('wall'))} | {fmt3(r.stat('cpu'))} "
              f"| {max(r.rss_mib):.0f} |")  # fmt: skip
    h = res["unbacked hunt"]
    for m in raw_modes:
        raw = res[f"raw {m}"]
        # records/s over records/s, from the medians of this run set
        wall = (n_hunt / h.stat("wall")[1]) / (n_raw / raw.stat("wall")[1])
        cpu = (n_hunt / h.stat("cpu")[1]) / (n_raw / raw.stat("cpu")[1])
        print(f"hunt / raw {m}: **{wall:.2f}x** wall, {cpu:.2f}x CPU (medians)")
    if timings:
        print("hunt stages inside the process (s, one run): "
              + ", ".join(f"{k} {v:.3f}" for k, v in timings.items()))  # fmt: skip
    print(f"load average after: {loadavg()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--only", default="lsass-zip,lsass-json,evtx")
    ap.add_argument("--zip", default=str(LSASS_ZIP), help="the OTRF JSON-lines zip")
    ap.add_argument("--evtx", action="append", help="EVTX file or directory (repeatable)")
    args = ap.parse_args()
    only = set(args.only.split(","))
    exe, note = unbacked_command()
    print(f"machine: {machine()}; {versions()}")
    print(f"unbacked: {note}; {args.runs} interleaved runs per command after one warm-up")
    with tempfile.TemporaryDirectory(prefix="bench-hunt-") as d:
        tmp = Path(d)
        z = Path(args.zip)
        if only & {"lsass-zip", "lsass-json"}:
            if not z.is_file():
                print(f"skipped LSASS: {z} not found (../shared/data)")
            else:
                if "lsass-zip" in only:
                    bench_input("lsass-zip", [str(z)], ["jsonl"], args.runs, tmp)
                if "lsass-json" in only:
                    js = _extract_json(z, tmp)
                    bench_input("lsass-json", [str(js)], ["jsonl"], args.runs, tmp)
        if "evtx" in only:
            dirs = [Path(p) for p in (args.evtx or EVTX_DIRS) if Path(p).exists()]
            if not dirs:
                print("skipped EVTX: no EVTX-ATTACK-SAMPLES under ../shared/data")
            else:
                bench_input("evtx", [str(p) for p in dirs], ["evtx", "evtx-bare"], args.runs, tmp)
        if "lsass-zip" in only and z.is_file():
            print("\n### start-up: imports of `unbacked hunt` on the LSASS zip")
            script = exe[-1] if exe[0] != sys.executable else None
            argv = [script] if script else ["-m", "unbacked.cli.main"]
            for line in importtime_summary([*argv, "hunt", str(z), "-o", str(tmp / "i.json")]):
                print(line)


if __name__ == "__main__":
    main()
