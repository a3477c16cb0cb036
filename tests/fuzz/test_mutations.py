"""Mutation fuzzing in CI: every source, the archive walker, the minidump parser and the
baseline loader, each on mutants of real seed inputs.

Derandomized (the same mutants every run) and bounded (``FUZZ_EXAMPLES`` mutants per target,
a time limit per mutant). Every mutant must give a result or a typed error, never an untyped
exception or a hang, and every read input must account for its records. The long campaign is
``bench/fuzz_campaign.py`` (results in docs/benchmarks.md).
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import SHARED_DATA
from tests.support import mutate as fz
from unbacked.runreport import RunReport
from unbacked.sources import SOURCES, InputFile

#: mutants per target (more with FUZZ_EXAMPLES=...)
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))
#: seconds one mutant may take before it counts as a hang
LIMIT = 30.0

SETTINGS = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,  # hangs are caught by fz.time_limit, a shared machine's jitter is not one
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)

CORPUS = fz.source_corpus(SHARED_DATA if SHARED_DATA.is_dir() else None)


def _check(out: fz.Outcome) -> None:
    assert out.ok, "\n".join(out.problems)


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_every_source_survives_mutants(name: str) -> None:
    if name not in CORPUS:
        pytest.skip(
            f"{name}: no seed input (it ships no examples"
            + (" and the shared data is absent)" if name == "sysmon-evtx" else ")")
        )
    seeds = CORPUS[name]

    @SETTINGS
    @given(rng=st.randoms(use_true_random=False), seed=st.sampled_from(seeds))
    def check(rng: random.Random, seed: bytes) -> None:
        with fz.time_limit(LIMIT):
            _check(fz.run_source(SOURCES[name], fz.mutate(seed, rng)))

    check()


def test_every_source_reads_its_seeds_exactly() -> None:
    # the harness is not vacuous: unmutated seeds are read, with events
    for name, seeds in CORPUS.items():
        for seed in seeds:
            out = fz.run_source(SOURCES[name], seed)
            assert out.ok and out.records > 0, (name, out)


_JSON_SEEDS = [s for n in ("sysmon-jsonl", "sysmon-winlogbeat", "ocsf-jsonl") for s in CORPUS[n]]


@SETTINGS
@given(
    rng=st.randoms(use_true_random=False),
    picks=st.lists(st.integers(0, len(_JSON_SEEDS) - 1), min_size=1, max_size=4),
    mutate_members=st.booleans(),
)
def test_archive_walker_survives_mutants(
    tmp_path: Path, rng: random.Random, picks: list[int], mutate_members: bool
) -> None:
    members = [
        (f"d/m{i}.json", fz.mutate(_JSON_SEEDS[k], rng) if mutate_members else _JSON_SEEDS[k] * 3)
        for i, k in enumerate(picks)
    ]
    data = fz.mutate(fz.build_archive(members, rng), rng, ops=rng.randint(1, 4))
    with fz.time_limit(LIMIT):
        _check(fz.run_archive(tmp_path / "fuzz.zip", data))


def _minidump_seed() -> bytes:
    from tests.memscan import scenario

    return scenario.to_bytes()


MINIDUMP = _minidump_seed()


@SETTINGS
@given(rng=st.randoms(use_true_random=False))
def test_minidump_parser_survives_mutants(tmp_path: Path, rng: random.Random) -> None:
    with fz.time_limit(LIMIT):
        _check(fz.run_minidump(tmp_path / "fuzz.dmp", fz.mutate(MINIDUMP, rng)))


@pytest.fixture(scope="module")
def baseline_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.detect.test_baseline import _facts, _fleet
    from unbacked.detect import ProgramBaseline

    d = tmp_path_factory.mktemp("fuzz-baseline") / "bl"
    ProgramBaseline().learn(_facts(_fleet(4, with_unbacked=1))).save(d)
    return d


@SETTINGS
@given(rng=st.randoms(use_true_random=False))
def test_baseline_loader_survives_mutants(
    tmp_path: Path, baseline_dir: Path, rng: random.Random
) -> None:
    damaged = tmp_path / "damaged"
    what = fz.mutate_baseline(baseline_dir, damaged, rng)
    with fz.time_limit(LIMIT):
        _check(fz.run_baseline(baseline_dir, damaged, what))


def test_the_mutator_is_deterministic() -> None:
    seed = CORPUS["sysmon-jsonl"][0]
    a = [fz.mutate(seed, random.Random(7)) for _ in range(3)]
    b = [fz.mutate(seed, random.Random(7)) for _ in range(3)]
    assert a == b and any(x != seed for x in a)


@pytest.mark.parametrize("name", ["sysmon-jsonl", "winevent-xml", "sysmon-evtx"])
def test_a_batch_counts_each_mutant_as_it_is_counted_alone(tmp_path: Path, name: str) -> None:
    # the campaign reads mutants in batches: batching must not change what a mutant shows
    if name not in CORPUS:
        pytest.skip(f"{name}: no seed input")
    rng = random.Random(3)
    datas = [fz.mutate(rng.choice(CORPUS[name]), rng) for _ in range(12)] + CORPUS[name][:1]
    batch = fz.run_source_batch(SOURCES[name], datas, tmp_path / "batch")
    assert not batch.failed, batch.whole
    for data, out in zip(datas, batch.outcomes, strict=True):
        alone = fz.run_source(SOURCES[name], data)
        assert (out.records, out.events, out.typed_errors, out.ok) == (
            alone.records,
            alone.events,
            alone.typed_errors,
            alone.ok,
        )
    assert batch.outcomes[-1].events > 0


def test_the_batch_harness_names_a_crashing_or_hanging_mutant(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the harness can fail: a source that crashes or hangs on one mutant of a batch is caught,
    # and the mutant is named
    cls = SOURCES["unbacked-jsonl"]
    good = CORPUS["unbacked-jsonl"][0]
    real_read, real_many = cls.read, cls.read_many

    def check(inp: InputFile) -> None:
        data = inp.read_bytes()
        if b"BOOM" in data:
            raise TypeError("boom")
        if b"SLOW" in data:
            time.sleep(30)

    def read(self: fz.Source, inp: InputFile, report: RunReport) -> Iterator[object]:
        check(inp)
        yield from real_read(self, inp, report)  # type: ignore[arg-type]

    def read_many(self: fz.Source, inputs: list[InputFile], report: RunReport) -> Iterator[object]:
        for inp in inputs:
            check(inp)
        yield from real_many(self, inputs, report)  # type: ignore[arg-type]

    monkeypatch.setattr(cls, "read", read)
    monkeypatch.setattr(cls, "read_many", read_many)

    def run(items: list[bytes]) -> fz.Batch:
        return fz.run_source_batch(cls, items, tmp_path / "batch")

    items = [good] * 5 + [good + b"BOOM\n"] + [good] * 2 + [good + b"SLOW\n"]
    outs, whole, reran = fz.run_batch(run, items, 1.0, 0.01)
    bad = {i: out.problems for i, out in enumerate(outs) if out.problems}
    assert reran and whole == [] and set(bad) == {5, 8}, bad
    assert "untyped TypeError" in bad[5][0] and bad[8][0].startswith("hang")
    # a batch that only hangs is caught by its time limit and re-run one by one
    outs, whole, reran = fz.run_batch(run, [good] * 3 + [good + b"SLOW\n"], 1.0, 0.01)
    assert reran and [bool(out.problems) for out in outs] == [False, False, False, True]
    assert outs[3].problems[0].startswith("hang")
