"""Steps of detection on one host group, timed inside one process: what the before/after
figures of single steps in docs/benchmarks.md come from.

    python bench/bench_detect_steps.py [--events 1e6] [--rows 250000] [--runs 5] [--work DIR]

The events are the first ``--rows`` of `bench/bench_score.py`'s synthetic lake (cached in
``--work``), in canonical order, in a detection context as the embedded engine builds one; the
baseline is learned from them. Each step runs ``--runs`` times (min / median, ms). To time an
earlier commit's steps, put its `src` first on PYTHONPATH (`git archive REV src | tar -x -C D`,
then `PYTHONPATH=D/src python bench/bench_detect_steps.py`): every step exists since c86e312.
The whole commands are timed by bench_score.py and bench_ab.py.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _proc import loadavg, machine, versions
from bench_score import _fleet


def _time(step: Callable[[], object], runs: int) -> tuple[float, float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return min(times) * 1000, statistics.median(times) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=float, default=1e6)
    ap.add_argument("--rows", type=int, default=250_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "unbacked-score")
    args = ap.parse_args()
    lake, _ = _fleet(args.work, args.events)

    import pyarrow.parquet as pq

    import unbacked
    from unbacked import duck
    from unbacked.detect import RULES, DetectionContext, ProgramBaseline, load_rules
    from unbacked.detect.base import declared_row_features
    from unbacked.detect.features import extract_instance_facts, kind_pairs
    from unbacked.engine.order import canonical_order
    from unbacked.model.schema import conform

    load_rules()
    first = sorted(lake.rglob("*.parquet"))[0]
    events = canonical_order([conform(pq.read_table(first).slice(0, args.rows))])
    ctx = DetectionContext.build(events)
    ev = ctx.events
    row_features = declared_row_features()
    try:  # as DetectionContext.instance_facts asks (an earlier commit's src may not know it)
        from unbacked.detect.base import declared_row_values

        narrowed: dict[str, object] = {"row_values": declared_row_values()}
    except ImportError:
        narrowed = {}

    def facts() -> tuple[object, object]:
        return extract_instance_facts(ev, row_features, **narrowed)  # type: ignore[arg-type]

    instance_facts, _ = extract_instance_facts(ev, row_features)
    baseline = ProgramBaseline().learn(instance_facts, calibrate=False)

    def select() -> None:
        ctx.cache.pop("select:process:open", None)
        ctx.select(kind="process", activity="open")

    def queries() -> None:  # a fresh context's first 8 queries, as the rules of a group ask
        fresh = DetectionContext(events=ev)
        try:
            for _ in range(8):
                fresh.query(ev, "SELECT row FROM ev WHERE false")
        finally:
            fresh.close()

    def one_thread_facts() -> None:
        con = duck.connect()
        try:
            con.execute("SET threads = 1")
            facts()
        finally:
            con.execute("RESET threads")
            con.close()

    steps: dict[str, Callable[[], object]] = {
        "facts per instance (extract_instance_facts)": facts,
        "the same, DuckDB on one thread": one_thread_facts,
        "(kind, activity) pairs (kind_pairs)": lambda: kind_pairs(ev),
        "ctx.select(kind='process', activity='open')": select,
        "8 rule queries selecting nothing (ctx.query)": queries,
        "scoring against a trained baseline (score)": lambda: baseline.score(instance_facts),
        "UNB-M-005 (memfd) evaluate": lambda: RULES["UNB-M-005"]().evaluate(ctx),
    }
    print(f"machine: {machine()}; {versions()}; unbacked from {Path(unbacked.__file__).parent}")
    print(f"{ev.num_rows:,} events of {first}; load average before: {loadavg()}")
    print("| step | ms (min / median) |")
    print("|---|---:|")
    for name, step in steps.items():
        step()  # warm-up
        lo, med = _time(step, args.runs)
        print(f"| {name} | {lo:.1f} / {med:.1f} |")
    print(f"load average after: {loadavg()}")


if __name__ == "__main__":
    main()
