"""Long mutation campaign over every parser of hostile input (the CI suite's longer sibling).

    python bench/fuzz_campaign.py [--inputs 100000] [--seed 17] [--targets NAME ...]
                                  [--limit 60] [--keep DIR] [--data ../shared/data]

Targets: every registered source (seeded with its examples; EVTX with the first chunks of a
real file from the shared data), the archive walker (zips of JSON-lines members, deflated or
stored, streamed, nested), the minidump parser (the scanner test scenario) and the baseline
loader (a small trained baseline). Each input is one mutant of a seed (tests/support/mutate.py),
fed to the production path; counted are untyped exceptions (crashes), hangs (no result after
``--limit`` seconds), read inputs whose records do not add up, and for baselines damaged ones
that loaded. Mutants that show a problem are written to ``--keep`` for reproduction.

Run from the repository root (``PYTHONPATH=src``). The machine is shared: the table reports
the load average and the time per input.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support import mutate as fz

from unbacked.sources import SOURCES


def _targets(data: Path | None) -> dict[str, object]:
    corpus = fz.source_corpus(data)
    out: dict[str, object] = {f"source:{n}": seeds for n, seeds in sorted(corpus.items())}
    out["archive"] = [s for n in ("sysmon-jsonl", "sysmon-winlogbeat", "ocsf-jsonl")
                      for s in corpus.get(n, [])]  # fmt: skip
    out["minidump"] = None
    out["baseline"] = None
    return out


def _make(target: str, seeds: object, rng: random.Random, work: Path, ctx: dict) -> tuple:
    """(a call running one mutant, the mutant's bytes): made first, so a hang can be kept."""
    if target.startswith("source:"):
        seed = rng.choice(seeds)  # type: ignore[arg-type]
        data = fz.mutate(seed, rng)
        cls = SOURCES[target.split(":", 1)[1]]
        return (lambda: fz.run_source(cls, data)), data
    if target == "archive":
        picks = [rng.choice(seeds) for _ in range(rng.randint(1, 4))]  # type: ignore[arg-type]
        mutate_members = rng.random() < 0.5
        members = [(f"d/m{i}.json", fz.mutate(p, rng) if mutate_members else p * 3)
                   for i, p in enumerate(picks)]  # fmt: skip
        data = fz.mutate(fz.build_archive(members, rng), rng, ops=rng.randint(1, 4))
        return (lambda: fz.run_archive(work / "fuzz.zip", data)), data
    if target == "minidump":
        data = fz.mutate(ctx["minidump"], rng)
        return (lambda: fz.run_minidump(work / "fuzz.dmp", data)), data
    damaged = work / "damaged"
    what = fz.mutate_baseline(ctx["baseline"], damaged, rng)
    return (lambda: fz.run_baseline(ctx["baseline"], damaged, what)), what.encode()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=int, default=100_000, help="mutants per target")
    ap.add_argument("--seed", type=int, default=17)
    ap.add_argument("--targets", nargs="*", help="only these (e.g. source:sysmon-jsonl archive)")
    ap.add_argument("--limit", type=float, default=60.0, help="seconds before a hang")
    ap.add_argument("--keep", type=Path, help="write problem mutants here")
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    args = ap.parse_args()

    data = args.data if args.data.is_dir() else None
    targets = _targets(data)
    if args.targets:
        targets = {k: v for k, v in targets.items() if k in set(args.targets)}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ctx: dict = {}
        from tests.memscan import scenario

        ctx["minidump"] = scenario.to_bytes()
        from tests.detect.test_baseline import _facts, _fleet

        from unbacked.detect import ProgramBaseline

        ctx["baseline"] = work / "baseline"
        ProgramBaseline().learn(_facts(_fleet(4, with_unbacked=1))).save(ctx["baseline"])

        print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
              f"Python {platform.python_version()}, seed {args.seed}, "
              f"{args.inputs:,} inputs per target, hang limit {args.limit:g} s")  # fmt: skip
        print(
            "| target | inputs | untyped exceptions | hangs | accounting violations "
            "| other problems | typed errors | records read | seconds | ms/input | load |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for target, seeds in targets.items():
            rng = random.Random(f"{args.seed}:{target}")
            kinds: Counter[str] = Counter()
            typed = records = 0
            t0 = time.perf_counter()
            for i in range(args.inputs):
                run, mutant = _make(target, seeds, rng, work, ctx)
                try:
                    with fz.time_limit(args.limit):
                        out = run()
                except fz.Hang:
                    kinds["hang"] += 1
                    print(f"  {target} #{i}: hang (no result after {args.limit:g} s)",
                          file=sys.stderr)  # fmt: skip
                    if args.keep:
                        args.keep.mkdir(parents=True, exist_ok=True)
                        (args.keep / f"{target.replace(':', '_')}-{i}-hang.bin").write_bytes(mutant)
                    continue
                typed += out.typed_errors
                records += out.records
                for p in out.problems:
                    kind = ("untyped" if "untyped" in p
                            else "accounting" if "do not add up" in p else "other")  # fmt: skip
                    kinds[kind] += 1
                    print(f"  {target} #{i}: {p}", file=sys.stderr)
                if out.problems and args.keep:
                    args.keep.mkdir(parents=True, exist_ok=True)
                    (args.keep / f"{target.replace(':', '_')}-{i}.bin").write_bytes(mutant)
            took = time.perf_counter() - t0
            print(f"| {target} | {args.inputs:,} | {kinds['untyped']} | {kinds['hang']} | "
                  f"{kinds['accounting']} | {kinds['other']} | {typed:,} | {records:,} | "
                  f"{took:.0f} | {1000 * took / max(args.inputs, 1):.1f} | "
                  f"{os.getloadavg()[0]:.1f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
