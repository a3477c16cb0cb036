"""Long mutation campaign over every parser of hostile input (the CI suite's longer sibling).

    python bench/fuzz_campaign.py [--inputs 100000] [--seed 17] [--targets NAME ...]
                                  [--batch 1024] [--limit 60] [--per-input 0.05]
                                  [--seconds S] [--until HH:MM] [--start N] [--keep DIR]
                                  [--data ../shared/data]

Targets: every registered source (seeded with its examples; EVTX with the first chunks of a
real file from the shared data), the archive walker (zips of JSON-lines members, deflated or
stored, streamed, nested), the minidump parser (the scanner test scenario) and the baseline
loader (a small trained baseline). Each input is one mutant of a seed (tests/support/mutate.py).

Mutants go through the production path in batches of ``--batch``, as a run reads a collection:
a source's mutants are files of one directory read by one discovery walk (small inputs of a
batching source share one query), then fed to the source directly, grouped as discovery groups
them; an archive target's mutants are the zips of one directory; minidumps and baselines are
read one by one. Every counter is attributed to its mutant. A batch that fails as a whole (an
exception escaping a group read) or takes longer than ``--limit + --per-input x batch`` seconds
is re-run one mutant at a time, each with ``--limit`` seconds, to name the culprits.

Counted per mutant: untyped exceptions (crashes), hangs, accounting violations (records that
do not add up, or an input neither read nor listed as unread), for baselines damaged ones that
loaded, and typed errors (inputs the direct read refused whole). Problem mutants are written
to ``--keep``. ``--seconds`` (per target) and ``--until`` (a UTC time) stop a target early,
after the batch running then: the table shows how many inputs each target got; ``--start N``
continues such a run (the first N mutants are made, not run: the rest are the same mutants a
whole run gets). Mutants are written as files under ``$TMPDIR`` (a tmpfs such as /dev/shm
keeps a disk out of the timing). Run from the repository root (``PYTHONPATH=src``). The
machine is shared: the table reports the load average and the time per input.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

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


def _make(target: str, seeds: object, rng: random.Random, ctx: dict, slot: Path) -> object:
    """One mutant (a baseline's is a damaged copy in ``slot`` and what was done to it)."""
    if target.startswith("source:"):
        return fz.mutate(rng.choice(seeds), rng)  # type: ignore[arg-type]
    if target == "archive":
        picks = [rng.choice(seeds) for _ in range(rng.randint(1, 4))]  # type: ignore[arg-type]
        mutate_members = rng.random() < 0.5
        members = [(f"d/m{i}.json", fz.mutate(p, rng) if mutate_members else p * 3)
                   for i, p in enumerate(picks)]  # fmt: skip
        return fz.mutate(fz.build_archive(members, rng), rng, ops=rng.randint(1, 4))
    if target == "minidump":
        return fz.mutate(ctx["minidump"], rng)
    return slot, fz.mutate_baseline(ctx["baseline"], slot, rng)


def _runner(target: str, ctx: dict, work: Path) -> Callable[[list[Any]], fz.Batch]:
    if target.startswith("source:"):
        cls = SOURCES[target.split(":", 1)[1]]
        return lambda items: fz.run_source_batch(cls, items, work / "batch")
    if target == "archive":
        return lambda items: fz.run_archive_batch(items, work / "batch")
    if target == "minidump":
        return lambda items: fz.run_minidump_batch(items, work / "batch")
    return lambda items: fz.run_baseline_batch(ctx["baseline"], items)


def _keep(keep: Path, stem: str, item: object) -> None:
    keep.mkdir(parents=True, exist_ok=True)
    if isinstance(item, bytes):
        (keep / f"{stem}.bin").write_bytes(item)
    else:  # a damaged baseline: the directory and what was done
        slot, what = item  # type: ignore[misc]
        shutil.copytree(slot, keep / stem, dirs_exist_ok=True)
        (keep / stem / "WHAT.txt").write_text(what + "\n")


def _kind(problem: str) -> str:
    if problem.startswith("hang"):
        return "hang"
    if "untyped" in problem:
        return "untyped"
    if "do not add up" in problem:
        return "accounting"
    return "other"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=int, default=100_000, help="mutants per target")
    ap.add_argument("--seed", type=int, default=17)
    ap.add_argument("--targets", nargs="*", help="only these, in this order (e.g. archive)")
    ap.add_argument("--batch", type=int, default=1024, help="mutants read together")
    ap.add_argument("--limit", type=float, default=60.0, help="seconds before one input hangs")
    ap.add_argument(
        "--per-input", type=float, default=0.05, help="seconds a batch may add per input"
    )
    ap.add_argument("--seconds", type=float, help="stop a target after this many seconds")
    ap.add_argument("--until", help="stop every target at this UTC time (HH:MM)")
    ap.add_argument("--start", type=int, default=0, help="make, not run, the first N mutants")
    ap.add_argument("--keep", type=Path, help="write problem mutants here")
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    args = ap.parse_args()

    data = args.data if args.data.is_dir() else None
    until = None
    if args.until:
        now = datetime.now(UTC)
        hh, mm = map(int, args.until.split(":"))
        until = now.replace(hour=hh, minute=mm, second=0, microsecond=0)
        if until < now:
            until += timedelta(days=1)
    targets = _targets(data)
    if args.targets:
        targets = {k: targets[k] for k in args.targets if k in targets}  # in the order given
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
              f"{args.inputs:,} inputs per target (at most), batches of {args.batch}, hang limit "
              f"{args.limit:g} s per input alone, {args.limit:g} s + {args.per_input:g} s "
              "per input per batch")  # fmt: skip
        print(
            "| target | inputs | untyped exceptions | hangs | accounting violations "
            "| other problems | typed errors | records read | batches re-run one by one "
            "| seconds | ms/input | load |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for target, seeds in targets.items():
            rng = random.Random(f"{args.seed}:{target}")
            run = _runner(target, ctx, work)
            kinds: Counter[str] = Counter()
            typed = records = reruns = done = 0
            t0 = time.perf_counter()
            loads = []
            stem = target.replace(":", "_")
            for _ in range(args.start):
                _make(target, seeds, rng, ctx, work / "bl" / "0")
            for first in range(args.start, args.inputs, args.batch):
                if (args.seconds and time.perf_counter() - t0 >= args.seconds) or (
                    until and datetime.now(UTC) >= until
                ):
                    break
                n = min(args.batch, args.inputs - first)
                items = [_make(target, seeds, rng, ctx, work / "bl" / str(j)) for j in range(n)]
                outs, batch_only, reran = fz.run_batch(run, items, args.limit, args.per_input)
                reruns += reran
                done += n
                for j, out in enumerate(outs):
                    typed += out.typed_errors
                    records += out.records
                    for p in out.problems:
                        kinds[_kind(p)] += 1
                        print(f"  {target} #{first + j}: {p}"[:2000], file=sys.stderr)
                    if out.problems and args.keep:
                        _keep(args.keep, f"{stem}-{first + j}", items[j])
                for p in batch_only:
                    kinds["other"] += 1
                    print(f"  {target} batch #{first}-{first + n - 1}: {p}", file=sys.stderr)
                    if args.keep:
                        for j, item in enumerate(items):
                            _keep(args.keep, f"{stem}-batch{first}-{first + j}", item)
                loads.append(os.getloadavg()[0])
                print(f"  {target}: {first + n:,} inputs, {time.perf_counter() - t0:.0f} s",
                      file=sys.stderr, flush=True)  # fmt: skip
            took = time.perf_counter() - t0
            print(f"| {target} | {done:,} | {kinds['untyped']} | {kinds['hang']} | "
                  f"{kinds['accounting']} | {kinds['other']} | {typed:,} | {records:,} | "
                  f"{reruns} | {took:.0f} | {1000 * took / max(done, 1):.1f} | "
                  f"{min(loads, default=0):.1f}–{max(loads, default=0):.1f} |",
                  flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
