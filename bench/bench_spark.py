"""Spark ``local[N]`` against the embedded engine: ``hunt`` (self-baselined) on the same lake.

The lake is generated: the shared Windows telemetry (``../shared/data/windows``, ~45k events of
~10 hosts) replicated onto synthetic hosts until it holds the wanted number of events. Replica
``c`` of host ``H`` becomes host ``H#c`` and every process uid (and parent/target uid) gets the
prefix ``c:``, so each replica is a separate fleet member with its own processes. It is written
with the export's ``LakeWriter`` (one Parquet file per host).

    python bench/bench_spark.py --events 1e6 --events 1e7 [--master 'local[2]'] [--engines ...]

Per size it reports events/s of each engine (reading the lake included; the Spark JVM start is
not), whether the two produced identical alerts, and Spark's shuffle and broadcast volumes (from
the application's stage metrics in the Spark REST API). ``--json FILE`` keeps the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from unbacked.cli.export import LakeWriter
from unbacked.engine import local
from unbacked.runreport import RunReport

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO / "../shared/data/windows"
_UID_COLUMNS = ("process_uid", "parent_uid", "target_uid")


def replicate_lake(out: Path, events: int, source: Path = SHARED) -> dict[str, Any]:
    """Write a lake of about ``events`` events; returns what it holds."""
    base = local.load_events([source], RunReport())
    copies = max(1, round(events / base.num_rows))
    host = base.column("host").cast(pa.string())
    writer = LakeWriter(out)
    t0 = time.perf_counter()
    for c in range(copies):
        cols = {name: base.column(name) for name in base.column_names}
        cols["host"] = pc.binary_join_element_wise(
            pc.fill_null(host, "nohost"), pa.scalar(str(c)), "#"
        )
        for name in _UID_COLUMNS:
            col = base.column(name)
            cols[name] = pc.if_else(
                pc.is_valid(col), pc.binary_join_element_wise(f"{c}", col, ":"), col
            )
        writer.write(pa.table(cols))
    writer.close()
    return {
        "events": writer.rows,
        "copies": copies,
        "hosts": copies * len(pc.unique(host)),
        "bytes": sum(p.stat().st_size for p in out.rglob("*.parquet")),
        "write_seconds": round(time.perf_counter() - t0, 1),
    }


def stage_metrics(spark: Any) -> dict[str, int]:
    """Shuffle and input volumes of every completed stage so far (Spark REST API)."""
    url = spark.sparkContext.uiWebUrl
    app = spark.sparkContext.applicationId
    with urllib.request.urlopen(f"{url}/api/v1/applications/{app}/stages?status=complete") as r:
        stages = json.load(r)
    keys = ("inputBytes", "shuffleWriteBytes", "shuffleReadBytes", "shuffleWriteRecords")
    return {k: sum(int(s.get(k, 0)) for s in stages) for k in keys} | {"stages": len(stages)}


def run_spark(lake: Path, master: str, partitions: int) -> dict[str, Any]:
    from unbacked.engine import spark as engine

    conf = {
        "spark.sql.shuffle.partitions": str(partitions),
        "spark.driver.memory": os.environ.get("BENCH_SPARK_MEMORY", "6g"),
        "spark.ui.showConsoleProgress": "false",
    }
    t0 = time.perf_counter()
    spark = engine.spark_session(master, conf, app_name="unbacked-bench")
    spark.sparkContext.setLogLevel("ERROR")
    startup = time.perf_counter() - t0
    # warm-up on a one-host slice: JVM code generation and the Python workers' imports are
    # paid once per application, not per run
    t0 = time.perf_counter()
    engine.hunt([next(lake.iterdir())], spark=spark)
    warmup = time.perf_counter() - t0
    before = stage_metrics(spark)
    t0 = time.perf_counter()
    result = engine.hunt([lake], spark=spark)
    seconds = time.perf_counter() - t0
    after = stage_metrics(spark)
    payload = engine._baseline_payload(result.baseline)
    spark.stop()
    return {
        "seconds": round(seconds, 1),
        "startup_seconds": round(startup, 1),
        "warmup_seconds": round(warmup, 1),
        "events_per_s": round(result.events / seconds),
        "alerts": [a.to_ocsf() for a in result.alerts],
        "timings": {k: round(v, 1) for k, v in result.timings.items()},
        "shuffle": {k: after[k] - before[k] for k in after},
        "broadcast_bytes": sum(len(b) for b in payload["tables"].values()),
    }


def run_local(lake: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    result = local.hunt([lake])
    seconds = time.perf_counter() - t0
    return {
        "seconds": round(seconds, 1),
        "events_per_s": round(result.report.events / seconds),
        "alerts": [a.to_ocsf() for a in result.alerts],
        "timings": {k: round(v, 1) for k, v in result.timings.items()},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--events", type=float, action="append", help="lake size (repeatable)")
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--partitions", type=int, default=8, help="spark.sql.shuffle.partitions")
    ap.add_argument("--engines", default="local,spark")
    ap.add_argument("--work", type=Path, help="where to write the lakes (default: a temp dir)")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args(argv)
    sizes = [int(e) for e in (args.events or [1e6])]
    engines = args.engines.split(",")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
          f"Python {platform.python_version()}, pyarrow {pa.__version__}")  # fmt: skip
    rows = []
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        for n in sizes:
            lake = Path(tmp) / f"lake-{n}"
            info = replicate_lake(lake, n)
            print(f"lake: {info}", flush=True)
            row: dict[str, Any] = {"lake": info}
            if "spark" in engines:
                row["spark"] = run_spark(lake, args.master, args.partitions)
                s = row["spark"]
                print(f"  spark {args.master}: {s['seconds']} s, {s['events_per_s']:,} events/s, "
                      f"{s['timings']}, shuffle {s['shuffle']}, "
                      f"broadcast {s['broadcast_bytes']:,} B", flush=True)  # fmt: skip
            if "local" in engines:
                row["local"] = run_local(lake)
                loc = row["local"]
                print(f"  local: {loc['seconds']} s, {loc['events_per_s']:,} events/s, "
                      f"{loc['timings']}", flush=True)  # fmt: skip
            if "local" in row and "spark" in row:
                row["identical_alerts"] = row["local"]["alerts"] == row["spark"]["alerts"]
                print(f"  alerts: {len(row['local']['alerts'])}, identical: "
                      f"{row['identical_alerts']}", flush=True)  # fmt: skip
            for r in ("local", "spark"):
                if r in row:
                    row[r]["alerts"] = len(row[r]["alerts"])
            rows.append(row)
            _rm(lake)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


def _rm(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
