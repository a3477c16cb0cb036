"""Mutation fuzzing of every parser of hostile input: the mutators and one harness per target.

Shared by the CI suite (``tests/fuzz``, Hypothesis drives the random choices, derandomized) and
the long campaign (``bench/fuzz_campaign.py``, a seeded ``random.Random``). Each harness feeds
one mutant to the production path and returns what went wrong, if anything:

* an exception that is not an ``UnbackedError`` (an untyped exception: a crash);
* a read input whose records do not add up (``records != events + ignored + skipped``);
* for baselines, a damaged baseline that loads.

Hangs are caught by the callers (``deadline``): a harness runs one input only.
"""

from __future__ import annotations

import copy
import io
import json
import random
import shutil
import signal
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unbacked.errors import BaselineError, UnbackedError
from unbacked.runreport import RunReport
from unbacked.sources import SOURCES, InputFile, Source, read_events
from unbacked.sources.base import SNIFF_BYTES
from unbacked.sources.discovery import _choose, _guard

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


class Hang(Exception):
    """One input took longer than its time limit."""


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


def _identity(report: RunReport, out: Outcome) -> None:
    for f in report.files.values():
        if f.error is None and not f.accounted:
            out.problems.append(
                f"records do not add up for {f.path}: {f.records} records, {f.events} events, "
                f"{f.ignored} ignored, {dict(f.skipped)} skipped"
            )
    out.records += report.records
    out.events += report.events


def _untyped(exc: BaseException, what: str, out: Outcome) -> None:
    if isinstance(exc, Hang):
        raise exc
    if isinstance(exc, UnbackedError):
        out.typed_errors += 1
    else:
        out.problems.append(f"{what}: untyped {type(exc).__name__}: {exc}"[:500])


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


def run_source(target: type[Source], data: bytes, name: str = "fuzz.input") -> Outcome:
    """One mutant through discovery as a run reads it (the source that claims it), and
    through ``target`` directly (a source must survive input it would not claim too)."""
    out = Outcome()
    report = RunReport()
    inp = InputFile.from_bytes(name, data)
    try:
        cls = _choose(inp, inp.head(SNIFF_BYTES))
        if cls is not None:
            report.file(name, cls.name)
            for _ in _guard(cls().read(inp, report), name, report):
                pass
    except BaseException as exc:
        _untyped(exc, f"discovery/{cls.name if cls else '?'}", out)
    _identity(report, out)
    direct = RunReport()
    try:
        for _ in target().read(InputFile.from_bytes(name, data), direct):
            pass
    except BaseException as exc:
        _untyped(exc, f"{target.name} direct", out)
    _identity(direct, out)
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


def run_archive(path: Path, data: bytes) -> Outcome:
    """One (mutated) archive read from disk as a run reads it."""
    out = Outcome()
    path.write_bytes(data)
    report = RunReport()
    try:
        read_events([path], report)
    except BaseException as exc:
        _untyped(exc, "archive", out)
    _identity(report, out)
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


def run_baseline(original: Path, damaged: Path, what: str) -> Outcome:
    """Load a damaged baseline: a ``BaselineError``, or (only when nothing that matters
    changed) the same model as the original."""
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
    reference = ProgramBaseline.load(original)
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
