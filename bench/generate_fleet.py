"""Generate synthetic fleet telemetry fitted from the real captures (``unbacked.evaluate.synth``).

    python bench/generate_fleet.py OUT --events 1000000 [--attack-rate 0.001] [--days 1]
        [--hosts N] [--linux-share 0.5] [--seed 0] [--format parquet|jsonl] [--no-shared]

Writes ``OUT/data/part-*.parquet``, ``OUT/labels/data/part-*.json`` (shared label format) and
``OUT/fleet.json`` (parameters, counts, fitted per-program figures). Measure it with

    unbacked eval OUT/data --labels OUT/labels --data-root OUT

For benchmarks and base-rate arithmetic only: the rows are real rows resampled, so the fleet says
nothing about detection quality that the real labelled corpora do not (docs/detection.md).
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

from unbacked.evaluate.synth import Corpus, default_corpora, fit, generate

REPO = Path(__file__).resolve().parents[1]


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--events", type=float, default=1e6, help="about this many events")
    ap.add_argument("--attack-rate", type=float, default=1e-3, help="share of instances attacked")
    ap.add_argument("--days", type=int, default=1)
    ap.add_argument("--hosts", type=int, help="default: one per 20,000 events")
    ap.add_argument("--linux-share", type=float, default=0.5, help="share of Linux hosts")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--format", choices=("parquet", "jsonl"), default="parquet")
    ap.add_argument("--chunk-events", type=float, default=1e6, help="events per output file")
    ap.add_argument(
        "--no-shared", action="store_true", help="fit from the project's own corpora only"
    )
    args = ap.parse_args(argv)
    corpora: list[Corpus] = default_corpora(REPO)
    if args.no_shared:
        corpora = corpora[:1]
    t0 = time.perf_counter()
    model = fit(corpora)
    t_fit = time.perf_counter() - t0
    result = generate(
        model,
        args.out,
        events=int(args.events),
        hosts=args.hosts,
        days=args.days,
        attack_rate=args.attack_rate,
        linux_share=args.linux_share,
        seed=args.seed,
        chunk_events=int(args.chunk_events),
        fmt=args.format,
    )
    print(
        json.dumps(
            {
                "fit_s": round(t_fit, 2),
                "generate_s": round(result.seconds, 2),
                "cpu_s": round(_cpu(), 2),
                "events": result.events,
                "instances": result.instances,
                "attacks": result.attacks,
                "hosts": result.hosts,
                "files": len(result.files),
                "benign_pool_rows": model.pool.num_rows,
                "programs": model.programs,
                "attack_shapes": len(model.attacks),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
