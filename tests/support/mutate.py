"""Mutation fuzzing of every parser of hostile input: the mutators and one harness per target.

Shared by the CI suite (``tests/fuzz``, Hypothesis drives the random choices, derandomized) and
the long campaign (``bench/fuzz_campaign.py``, a seeded ``random.Random``). Each harness feeds
mutants to the production path and returns, per mutant, what went wrong, if anything:

* an exception that is not an ``UnbackedError`` (an untyped exception: a crash);
* a read input whose records do not add up (``records != events + ignored + skipped``), or an
  input that discovery neither read nor listed as unread (a silent loss);
* for baselines, a damaged baseline that loads.

The ``*_batch`` harnesses take many mutants at once, as a run over a collection reads many
files (one discovery walk over a directory; a batching source's ``read_many``), and attribute
every counter to its mutant. ``run_batch`` times a batch, and when the batch as a whole fails
(an exception escaping a group read, a hang) re-runs each mutant alone to name the culprits.
The one-mutant harnesses (``run_source``, ``run_archive``) are batches of one.
"""

from __future__ import annotations

import copy
import io
import json
import random
import shutil
import signal
import tempfile
import time
import traceback
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unbacked.errors import BaselineError, UnbackedError
from unbacked.runreport import RunReport
from unbacked.sources import SOURCES, InputFile, Source, read_events

#: byte strings that parsers of text and binary formats tend to trip over
INTERESTING = (
    b"\x00",
    b"\xef\xbb\xbf",
    b"NaN",
    b"Infinity",
    b"-0",
    b"1e999",
    b"18446744073709551616",
    b"\n",
    b"\r\n",
    b"{",
    b"}",
    b"[",
    b'"',
    b"\\",
    b"\\u0000",
    b"\xff\xfe",
    b"\xc3\x28",
    b"PK\x03\x04",
    b"PK\x01\x02",
    b"ElfChnk\x00",
    b"ElfFile\x00",
    b"MDMP",
    b"PAR1",
    b"\xff\xff\xff\xff",
    b"\x7f\xff\xff\xff\xff\xff\xff\xff",
)


def mutate(data: bytes, rng: random.Random, ops: int | None = None) -> bytes:
    """``data`` changed by 1-8 random edits (bit flips, byte and chunk replacement, insertion
    of interesting bytes, deletion, duplication, truncation, line shuffles, long runs)."""
    buf = bytearray(data)
    for _ in range(ops if ops is not None else rng.randint(1, 8)):
        n = len(buf)
        op = rng.randrange(11)
        pos = rng.randrange(n + 1) if n else 0
        if op == 0 and n:  # flip one bit
            i = rng.randrange(n)
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1 and n:  # random bytes over a span
            k = rng.randint(1, 16)
            buf[pos : pos + k] = bytes(rng.randrange(256) for _ in range(k))
        elif op == 2:  # insert something interesting
            buf[pos:pos] = rng.choice(INTERESTING)
        elif op == 3:  # replace with something interesting
            s = rng.choice(INTERESTING)
            buf[pos : pos + len(s)] = s
        elif op == 4 and n:  # delete a span
            k = rng.randint(1, max(1, n // 8))
            del buf[pos : pos + k]
        elif op == 5 and n:  # duplicate a span
            k = rng.randint(1, max(1, min(n, 4096)))
            buf[pos:pos] = buf[pos : pos + k]
        elif op == 6 and n:  # truncate
            del buf[rng.randrange(n) :]
        elif op == 7:  # a long run (long lines, huge tokens)
            buf[pos:pos] = bytes([rng.choice(b"A0{ \x00")]) * rng.choice((100, 5000, 300_000))
        elif op == 8 and n:  # shuffle lines
            lines = bytes(buf).split(b"\n")
            rng.shuffle(lines)
            buf = bytearray(b"\n".join(lines))
        elif op == 9 and n:  # an interesting integer in little-endian over 4 or 8 bytes
            width = rng.choice((4, 8))
            value = rng.choice((0, 1, 2**31 - 1, 2**32 - 1, 2**63 - 1, 2**64 - 1))
            buf[pos : pos + width] = value.to_bytes(8, "little")[:width]
        elif op == 10 and n:  # zero a span
            k = rng.randint(1, max(1, n // 4))
            buf[pos : pos + k] = bytes(min(k, n - pos))
    return bytes(buf)


@dataclass
class Outcome:
    """What one mutant did: the problems found (empty: fine) and what was read."""

    problems: list[str] = field(default_factory=list)
    records: int = 0
    events: int = 0
    typed_errors: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


class Hang(BaseException):
    """An input (or a batch) took longer than its time limit.

    A ``BaseException``, as ``KeyboardInterrupt`` is: code under test that catches
    ``Exception`` (a sniffer's guard) must not swallow it.
    """


@dataclass
class Batch:
    """What a batch of mutants did: one ``Outcome`` per mutant, and what went wrong with the
    batch as a whole (an exception escaping a group read: its members' counters are lost)."""

    outcomes: list[Outcome]
    whole: Outcome = field(default_factory=Outcome)

    @property
    def failed(self) -> bool:
        return bool(self.whole.problems or self.whole.typed_errors)


def run_batch(
    run: Callable[[list[Any]], Batch], items: Sequence[Any], limit: float, per_item: float
) -> tuple[list[Outcome], list[str], bool]:
    """Run ``items`` as one batch (time limit ``limit + per_item * len(items)``); when the
    batch fails as a whole or hangs, run each item alone (time limit ``limit``) to name the
    culprits. Returns one ``Outcome`` per item (a hang is a problem starting with "hang"), the
    batch's problems when no item alone shows an untyped exception or a hang, and whether the
    items were re-run one by one."""
    items = list(items)
    budget = limit + per_item * len(items)
    t0 = time.perf_counter()
    try:
        with time_limit(budget):
            batch = run(items)
        why = batch.whole.problems or [f"typed error escaping a batch: {batch.whole}"]
        if time.perf_counter() - t0 > budget:  # the alarm was swallowed on the way
            why = [f"hang: no result after {budget:g} s"]
        elif not batch.failed:
            return batch.outcomes, [], False
        if len(items) == 1:
            out = batch.outcomes[0]
            out.problems += batch.whole.problems
            out.typed_errors += batch.whole.typed_errors
            if why[0].startswith("hang"):
                out.problems.append(why[0])
            return [out], [], False
    except Hang:
        why = [f"hang: no result after {budget:g} s"]
        if len(items) == 1:
            return [Outcome(problems=why)], [], False
    outs = [run_batch(run, [item], limit, 0.0)[0][0] for item in items]
    if any(p.startswith("hang") or "untyped" in p for o in outs for p in o.problems):
        return outs, [], True  # a culprit named
    return outs, [f"only in a batch of {len(items)}: {p}" for p in why], True


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise ``Hang`` in the main thread after ``seconds`` (SIGALRM; a no-op elsewhere)."""

    def fire(signum: int, frame: Any) -> None:
        raise Hang(f"no result after {seconds} s")

    try:
        old = signal.signal(signal.SIGALRM, fire)
    except ValueError:  # not the main thread
        yield
        return
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _untyped(exc: BaseException, what: str, out: Outcome) -> None:
    if isinstance(exc, Hang):
        raise exc
    if isinstance(exc, UnbackedError):
        out.typed_errors += 1
    else:
        frames = traceback.extract_tb(exc.__traceback__)
        where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
        out.problems.append(f"{what}: untyped {type(exc).__name__}{where}: {exc}"[:500])


# -- sources ------------------------------------------------------------------------------------
def source_corpus(shared: Path | None = None) -> dict[str, list[bytes]]:
    """Seed inputs per source: its shipped examples (a real EVTX file from shared data)."""
    corpus = {name: list(cls.examples) for name, cls in SOURCES.items() if cls.examples}
    if "ocsf-parquet" not in corpus and "ocsf-jsonl" in corpus:
        corpus["ocsf-parquet"] = [_ocsf_parquet(b"".join(corpus["ocsf-jsonl"]))]
    if shared is not None:
        evtx = (
            shared
            / "windows/sbousseaden_EVTX-ATTACK-SAMPLES/AutomatedTestingTools"
            / "PanacheSysmon_vs_AtomicRedTeam01.evtx"
        )
        if evtx.is_file():
            corpus["sysmon-evtx"] = [evtx.read_bytes()[: 4096 + 2 * 65536]]
    return corpus


def _ocsf_parquet(jsonl: bytes) -> bytes:
    """OCSF JSON lines as Security Lake Parquet (the event time a timestamp column)."""
    import pyarrow as pa
    import pyarrow.json as pj
    import pyarrow.parquet as pq

    table = pj.read_json(io.BytesIO(jsonl))
    i = table.schema.get_field_index("time")
    table = table.set_column(i, "time", table["time"].cast(pa.timestamp("ms", tz="UTC")))
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def _write_batch(directory: Path, datas: Sequence[bytes], suffix: str) -> list[str]:
    """The mutants as files ``000000<suffix>``... of an emptied ``directory``; their names."""
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    names = []
    for i, data in enumerate(datas):
        path = directory / f"{i:06d}{suffix}"
        path.write_bytes(data)
        names.append(str(path))
    return names


def _attribute(
    report: RunReport, names: Sequence[str], outs: list[Outcome], whole: Outcome
) -> None:
    """Counters and the identity per mutant (its file, or its archive's members); a mutant
    neither read nor listed as unread is a silent loss; a report entry no mutant owns (an
    error recorded for a whole group) fails the batch."""
    owner = {name: k for k, name in enumerate(names)}
    seen: set[int] = set()
    for f in report.files.values():
        k = owner.get(f.path.split("!", 1)[0])
        if k is None:
            whole.problems.append(f"a report entry no input owns: {f.path} ({f.error})")
            continue
        seen.add(k)
        out = outs[k]
        if f.error is None and not f.accounted:
            out.problems.append(
                f"records do not add up for {f.path}: {f.records} records, {f.events} events, "
                f"{f.ignored} ignored, {dict(f.skipped)} skipped"
            )
        out.records += f.records
        out.events += f.events
    for u in report.unread:
        k = owner.get(u.path.split("!", 1)[0])
        if k is None:
            whole.problems.append(f"an unread entry no input owns: {u.path} ({u.reason})")
        else:
            seen.add(k)
    if whole.problems:  # the batch failed: its members' counters are lost with it
        return
    for k in set(range(len(names))) - seen:
        outs[k].problems.append(
            f"records do not add up for {names[k]}: neither read nor listed as unread"
        )


def _groups(cls: type[Source], inputs: Sequence[InputFile]) -> Iterator[list[InputFile]]:
    """``inputs`` grouped as discovery groups consecutive inputs of a batching source."""
    group: list[InputFile] = []
    size_sum = 0
    for inp in inputs:
        size = inp.size or 0
        if not cls.batch_bytes or size > cls.batch_bytes:
            if group:
                yield group
                group, size_sum = [], 0
            yield [inp]
            continue
        if group and (len(group) >= cls.batch_files or size_sum + size > cls.batch_bytes):
            yield group
            group, size_sum = [], 0
        group.append(inp)
        size_sum += size
    if group:
        yield group


def run_source_batch(target: type[Source], datas: Sequence[bytes], directory: Path) -> Batch:
    """Mutants through discovery as a run reads a directory of them (each claimed by the
    source that recognises it; small inputs of a batching source read together), and through
    ``target`` directly, grouped as discovery would group them (a source must survive input
    it would not claim too). Typed errors: mutants the direct read refused whole."""
    outs = [Outcome() for _ in datas]
    whole = Outcome()
    names = _write_batch(directory, datas, ".input")
    report = RunReport()
    try:
        read_events([directory], report)
    except BaseException as exc:
        _untyped(exc, "discovery", whole)
    _attribute(report, names, outs, whole)

    direct = RunReport()
    dnames = [f"direct-{i:06d}.input" for i in range(len(datas))]
    owner = {name: k for k, name in enumerate(dnames)}
    inputs = [InputFile.from_bytes(n, d) for n, d in zip(dnames, datas, strict=True)]
    for group in _groups(target, inputs):
        try:
            if len(group) == 1:
                for _ in target().read(group[0], direct):
                    pass
            else:
                for _ in target().read_many(group, direct):
                    pass
        except BaseException as exc:
            if len(group) == 1:
                _untyped(exc, f"{target.name} direct", outs[owner[group[0].name]])
            else:
                _untyped(exc, f"{target.name} direct read_many of {len(group)}", whole)
    refused = {owner[f.path] for f in direct.files.values() if f.error is not None}
    for k in refused:
        outs[k].typed_errors += 1
    _attribute_direct(direct, owner, outs, whole)
    return Batch(outs, whole)


def _attribute_direct(
    report: RunReport, owner: dict[str, int], outs: list[Outcome], whole: Outcome
) -> None:
    for f in report.files.values():
        k = owner.get(f.path)
        if k is None:
            whole.problems.append(f"a report entry no input owns: {f.path} ({f.error})")
            continue
        if f.error is None and not f.accounted:
            outs[k].problems.append(
                f"records do not add up for {f.path}: {f.records} records, {f.events} events, "
                f"{f.ignored} ignored, {dict(f.skipped)} skipped"
            )
        outs[k].records += f.records
        outs[k].events += f.events


def run_source(target: type[Source], data: bytes) -> Outcome:
    """One mutant through ``run_source_batch`` (a batch of one in a temporary directory)."""
    with tempfile.TemporaryDirectory() as tmp:
        batch = run_source_batch(target, [data], Path(tmp) / "in")
    out = batch.outcomes[0]
    out.problems += batch.whole.problems
    out.typed_errors += batch.whole.typed_errors
    return out


# -- archives -----------------------------------------------------------------------------------
def build_archive(members: list[tuple[str, bytes]], rng: random.Random) -> bytes:
    """A zip of ``members`` (deflated or stored, sometimes streamed with data descriptors,
    sometimes one nested inside another zip)."""
    buf = io.BytesIO()
    method = rng.choice((zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED))
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in members:
            if rng.random() < 0.3:
                with zf.open(name, "w") as fh:  # streamed: sizes in a data descriptor
                    fh.write(data)
            else:
                zf.writestr(name, data)
    out = buf.getvalue()
    if rng.random() < 0.25:
        outer = io.BytesIO()
        with zipfile.ZipFile(outer, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("inner.zip", out)
            zf.writestr("side.json", members[0][1])
        out = outer.getvalue()
    return out


def run_archive_batch(datas: Sequence[bytes], directory: Path) -> Batch:
    """(Mutated) archives read from a directory as a run reads it (members of consecutive
    archives grouped for a batching source, as in a collection of zips)."""
    outs = [Outcome() for _ in datas]
    whole = Outcome()
    names = _write_batch(directory, datas, ".zip")
    report = RunReport()
    try:
        read_events([directory], report)
    except BaseException as exc:
        _untyped(exc, "archive", whole)
    _attribute(report, names, outs, whole)
    return Batch(outs, whole)


def run_archive(path: Path, data: bytes) -> Outcome:
    """One (mutated) archive, a batch of one in the directory ``path`` names."""
    batch = run_archive_batch([data], path.with_suffix(".d"))
    out = batch.outcomes[0]
    out.problems += batch.whole.problems
    out.typed_errors += batch.whole.typed_errors
    return out


# -- minidumps ----------------------------------------------------------------------------------
def run_minidump(path: Path, data: bytes) -> Outcome:
    from unbacked.memscan import scan_minidump

    out = Outcome()
    path.write_bytes(data)
    try:
        scan_minidump(path)
    except BaseException as exc:
        _untyped(exc, "minidump", out)
    return out


def run_minidump_batch(datas: Sequence[bytes], directory: Path) -> Batch:
    """Each mutant scanned in turn (a scan reads one dump: nothing is shared)."""
    directory.mkdir(parents=True, exist_ok=True)
    return Batch([run_minidump(directory / "fuzz.dmp", d) for d in datas])


# -- baselines ----------------------------------------------------------------------------------
_VALUES: tuple[Any, ...] = (
    0,
    -5,
    1,
    2.5,
    1e308,
    2**64,
    -(2**63),
    "abc",
    "NaN",
    "",
    None,
    True,
    False,
    [],
    [1, 2],
    {},
    {"file": "x"},
    "../manifest.json",
    "0" * 64,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*prefix, i))


def mutate_baseline(src: Path, dst: Path, rng: random.Random) -> str:
    """Copy the baseline ``src`` to ``dst`` and damage it; returns what was done."""
    from unbacked.detect.baseline import _sha256, manifest_checksum

    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    mpath = dst / "manifest.json"
    kind = rng.randrange(4)
    if kind == 0:  # bytes of the manifest text
        mpath.write_bytes(mutate(mpath.read_bytes(), rng))
        return "manifest bytes"
    if kind == 3:  # bytes of a table (its checksum updated half the time)
        table = rng.choice(sorted(dst.glob("*.parquet")))
        table.write_bytes(mutate(table.read_bytes(), rng, ops=rng.randint(1, 3)))
        if rng.random() < 0.5:
            m = json.loads(mpath.read_text())
            m["tables"][table.stem]["sha256"] = _sha256(table)
            m["checksum"] = manifest_checksum(m)
            mpath.write_text(json.dumps(m))
            return f"table {table.name} bytes, resealed"
        return f"table {table.name} bytes"
    m = json.loads(mpath.read_text())
    done = []
    for _ in range(rng.randint(1, 3)):
        paths = [p for p in _paths(m) if p and p[-1] != "checksum"]
        p = rng.choice(paths)
        parent: Any = m
        for k in p[:-1]:
            parent = parent[k]
        if rng.random() < 0.2 and isinstance(parent, dict):
            del parent[p[-1]]
            done.append(f"del {'.'.join(map(str, p))}")
        else:
            value = copy.deepcopy(rng.choice(_VALUES))
            parent[p[-1]] = value
            done.append(f"{'.'.join(map(str, p))}={value!r}")
    if kind == 2:  # a consistent forgery: the checksum recomputed after the edit
        with suppress(ValueError):
            m["checksum"] = manifest_checksum(m)
    mpath.write_text(json.dumps(m))
    return ("resealed " if kind == 2 else "") + ", ".join(done)


#: originals loaded once: (path, manifest bytes) -> model
_REFERENCES: dict[tuple[Path, bytes], Any] = {}


def run_baseline(original: Path, damaged: Path, what: str) -> Outcome:
    """Load a damaged baseline: a ``BaselineError``, or (only when nothing that matters
    changed) the same model as the original (loaded once per original)."""
    from unbacked.detect import ProgramBaseline
    from unbacked.detect.baseline import TABLE_SCHEMAS, validate_hyper_parameters

    out = Outcome()
    try:
        model = ProgramBaseline.load(damaged)
    except BaselineError:
        out.typed_errors += 1
        return out
    except BaseException as exc:
        _untyped(exc, f"baseline load ({what})", out)
        return out
    key = (original, (original / "manifest.json").read_bytes())
    reference = _REFERENCES.get(key)
    if reference is None:
        reference = _REFERENCES[key] = ProgramBaseline.load(original)
    try:
        validate_hyper_parameters(model.hyper_parameters())
    except BaselineError as exc:
        out.problems.append(f"a baseline with invalid settings loaded ({what}): {exc}")
    # a resealed edit with valid values is a consistent forgery (a checksum is no signature);
    # anything else that changed must not load
    forged = "resealed" in what
    for name in TABLE_SCHEMAS:
        a, b = getattr(model, name + "_"), getattr(reference, name + "_")
        if not forged and not a.equals(b):
            out.problems.append(f"table {name} changed and still loaded ({what})")
    if not forged and model.hyper_parameters() != reference.hyper_parameters():
        out.problems.append(f"changed settings loaded without a reseal ({what})")
    return out


def run_baseline_batch(original: Path, items: Sequence[tuple[Path, str]]) -> Batch:
    """Damaged baselines (``(directory, what was done)``, from ``mutate_baseline``) loaded
    in turn."""
    return Batch([run_baseline(original, d, what) for d, what in items])
