"""Sources benchmark: raw parse rate vs unbacked's readers on the same inputs.

    python bench/bench_sources.py [--data ../shared/data] [--repeat 3]

Raw parse is what a minimal reader pays to look at every record once: for JSON lines, the
member streamed from its zip and ``orjson.loads`` per line; for EVTX, iterating the ``evtx``
parser's ``records_json`` (and the same plus ``orjson.loads`` of each record). unbacked's
reader does all of that plus the mapping to ``EVENT_SCHEMA``. Both are timed in the same
process, alternately, best of ``--repeat`` runs; wall and CPU (all threads) are reported,
with the load average, because the machine is shared.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import duckdb
import evtx
import orjson
import pyarrow as pa

from unbacked.runreport import RunReport
from unbacked.sources import iter_event_tables

PANACHE = (
    "windows/sbousseaden_EVTX-ATTACK-SAMPLES/AutomatedTestingTools/"
    "PanacheSysmon_vs_AtomicRedTeam01.evtx"
)
LSASS = (
    "windows/OTRF_Security-Datasets/datasets/compound/LSASS_campaign_01/"
    "metasploit_logonpasswords_lsass_memory_dump.zip"
)


def machine() -> str:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores ({model}), "
        f"Python {platform.python_version()}, pyarrow {pa.__version__}, "
        f"duckdb {duckdb.__version__}, evtx {metadata.version('evtx')}"
    )


def synth_evtx(src: Path, dst: Path, copies: int) -> int:
    """A large Sysmon EVTX: the file header of ``src`` and its valid chunks ``copies`` times.

    Chunks are self-contained (own string and template tables), so the parser reads the copies
    as it reads the original; the real samples are all small (at most 2 MB).
    """
    raw = src.read_bytes()
    chunks = [raw[i : i + 65536] for i in range(4096, len(raw) - 65535, 65536)]
    good = [c for c in chunks if c.startswith(b"ElfChnk\x00")]
    dst.write_bytes(raw[:4096] + b"".join(good * copies))
    return len(good) * copies


def best(fn: Callable[[], tuple[int, int]], repeat: int) -> tuple[float, float, int, int]:
    """(wall s, cpu s, records, events) of the fastest of ``repeat`` runs."""
    runs = []
    for _ in range(repeat):
        c0, w0 = time.process_time(), time.perf_counter()
        records, events = fn()
        runs.append((time.perf_counter() - w0, time.process_time() - c0, records, events))
    return min(runs)


def raw_zip_jsonl(path: Path) -> tuple[int, int]:
    n = 0
    with zipfile.ZipFile(path) as zf:
        member = next(i for i in zf.infolist() if not i.filename.startswith("__MACOSX/"))
        with zf.open(member) as fh:
            for line in fh:
                if line.strip():
                    orjson.loads(line)
                    n += 1
    return n, n


def raw_file_jsonl(path: Path) -> tuple[int, int]:
    n = 0
    with open(path, "rb") as fh:
        for line in fh:
            if line.strip():
                orjson.loads(line)
                n += 1
    return n, n


def raw_evtx(paths: list[Path], decode: bool) -> tuple[int, int]:
    n = 0
    for p in paths:
        it = evtx.PyEvtxParser(str(p)).records_json()
        while True:
            try:
                rec = next(it)
            except StopIteration:
                break
            except RuntimeError:
                continue
            if decode:
                orjson.loads(rec["data"])
            n += 1
    return n, n


def ours(paths: list[Path]) -> tuple[int, int]:
    report = RunReport()
    events = sum(t.num_rows for t in iter_event_tables(paths, report))
    return report.records, events


_COLD = r"""
import sys, time
kind, path = sys.argv[1], sys.argv[2]
import orjson, zipfile
from unbacked.runreport import RunReport
from unbacked.sources import iter_event_tables
c0, w0 = time.process_time(), time.perf_counter()
if kind == "raw":
    n = 0
    with zipfile.ZipFile(path) as zf:
        m = next(i for i in zf.infolist() if not i.filename.startswith("__MACOSX/"))
        with zf.open(m) as fh:
            for line in fh:
                if line.strip():
                    orjson.loads(line)
                    n += 1
    records = events = n
else:
    report = RunReport()
    events = sum(t.num_rows for t in iter_event_tables([path], report))
    records = report.records
print(time.perf_counter() - w0, time.process_time() - c0, records, events)
"""


def cold(kind: str, path: Path) -> tuple[int, int]:
    """Run one read in a fresh interpreter (as ``unbacked hunt`` does); imports not timed."""
    out = subprocess.run(
        [sys.executable, "-c", _COLD, kind, str(path)], capture_output=True, text=True, check=True
    ).stdout.split()
    _COLD_RUNS.append((float(out[0]), float(out[1])))
    return int(out[2]), int(out[3])


_COLD_RUNS: list[tuple[float, float]] = []


def best_cold(kind: str, path: Path, repeat: int) -> tuple[float, float, int, int]:
    runs = []
    for _ in range(repeat):
        records, events = cold(kind, path)
        wall, cpu = _COLD_RUNS[-1]
        runs.append((wall, cpu, records, events))
    return min(runs)


def row(name: str, res: tuple[float, float, int, int], ref: tuple[float, float, int, int]) -> str:
    wall, cpu, records, events = res
    ratio_w = (records / wall) / (ref[2] / ref[0])
    ratio_c = (records / cpu) / (ref[2] / ref[1]) if cpu and ref[1] else float("nan")
    return (
        f"| {name} | {records:,} | {events:,} | {wall:.3f} | {cpu:.3f} | "
        f"{records / wall:,.0f} | {events / wall:,.0f} | {ratio_w:.2f} | {ratio_c:.2f} |"
    )


HEADER = (
    "| reader | records | events | wall s | cpu s | records/s (wall) | events/s (wall) "
    "| × raw (wall) | × raw (cpu) |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(__file__).resolve().parents[1] / "../shared/data"
    ap.add_argument("--data", type=Path, default=default)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    data: Path = args.data.resolve()
    lsass = data / LSASS
    if not lsass.exists():
        raise SystemExit(f"{lsass} not found: pass --data pointing at shared/data")

    print(f"machine: {machine()}")
    print(f"load average at start: {os.getloadavg()}")
    ours([lsass])  # warm imports, the page cache and the connection pool

    print(f"\n### JSON lines: {lsass.name} (OTRF export flavour)\n\n{HEADER}")
    raw = best(lambda: raw_zip_jsonl(lsass), args.repeat)
    mine = best(lambda: ours([lsass]), args.repeat)
    print(row("raw: zip member + orjson per line", raw, raw))
    print(row("unbacked `sysmon-jsonl` (zip member)", mine, raw))
    raw_c = best_cold("raw", lsass, args.repeat)
    mine_c = best_cold("ours", lsass, args.repeat)
    print(row("raw, fresh process", raw_c, raw_c))
    print(row("unbacked, fresh process", mine_c, raw_c))
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / "lsass.json"
        with zipfile.ZipFile(lsass) as zf:
            member = next(i for i in zf.infolist() if not i.filename.startswith("__MACOSX/"))
            plain.write_bytes(zf.read(member))
        raw_p = best(lambda: raw_file_jsonl(plain), args.repeat)
        mine_p = best(lambda: ours([plain]), args.repeat)
        print(row("raw: plain file + orjson per line", raw_p, raw_p))
        print(row("unbacked `sysmon-jsonl` (plain file)", mine_p, raw_p))

    evtx_files = sorted(data.rglob("*.evtx"))
    largest = max(evtx_files, key=lambda p: p.stat().st_size)
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "big-sysmon.evtx"
        n_chunks = synth_evtx(data / PANACHE, big, copies=100)
        cases = [
            (f"synthetic large Sysmon EVTX ({n_chunks} chunks of {Path(PANACHE).name})", [big]),
            (f"largest real EVTX ({largest.name})", [largest]),
            (f"all {len(evtx_files)} real EVTX files together", evtx_files),
        ]
        for label, paths in cases:
            print(f"\n### EVTX: {label}\n\n{HEADER}")
            raw_e = best(lambda p=paths: raw_evtx(p, False), args.repeat)
            raw_d = best(lambda p=paths: raw_evtx(p, True), args.repeat)
            mine_e = best(lambda p=paths: ours(p), args.repeat)
            print(row("raw: evtx records_json", raw_e, raw_e))
            print(row("raw: records_json + orjson", raw_d, raw_e))
            print(row("unbacked `sysmon-evtx`", mine_e, raw_e))
    print(f"\nload average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
