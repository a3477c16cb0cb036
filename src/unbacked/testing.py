"""The conformance kit: the checks every plug-in of a kind must pass, for this package's own
plug-ins and for anyone else's (river's ``check_estimator`` / ``yield_checks``, scikit-learn's
``parametrize_with_checks``).

For each kind, ``yield_<kind>_checks(plugin)`` yields named :class:`Check` objects (call one to
run it; a failure raises ``AssertionError`` naming the plug-in and the check) and
``check_<kind>(plugin)`` runs them all::

    from unbacked.testing import check_source, yield_source_checks

    def test_my_source():
        check_source(MySource)

    @pytest.mark.parametrize("check", yield_source_checks(MySource), ids=str)
    def test_my_source_check(check):
        check()

The project's own tests parametrize the same checks over every plug-in of every registry
(``tests/test_plugins.py``); ``examples/plugin`` runs them on its own plug-ins.
"""

from __future__ import annotations

import re
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

    from unbacked.detect.base import DetectionContext, Detector
    from unbacked.memscan.scanner import Hit, ScannerInterface
    from unbacked.model.alert import Alert
    from unbacked.render.base import Renderer
    from unbacked.sources.base import Source

Rows = Sequence[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Check:
    """One named check of one plug-in; calling it runs it."""

    name: str
    plugin: str
    run: Callable[[], None]

    def __call__(self) -> None:
        self.run()

    def __str__(self) -> str:
        return f"{self.plugin}:{self.name}"


def _checks(plugin: str, funcs: Iterable[Callable[[], None]]) -> Iterator[Check]:
    for f in funcs:
        yield Check(f.__name__.lstrip("_").removeprefix("check_"), plugin, f)


# -- sources ---------------------------------------------------------------------------------

#: inputs no telemetry format may claim
JUNK: dict[str, bytes] = {
    "empty": b"",
    "yaml": b"title: Empire PSInject\nid: SDWIN-1\nauthor: x\n",
    "license": b"MIT License\n\nCopyright (c) 2020\n",
    "binary": bytes(range(256)) * 8,
    "zip": b"PK\x03\x04" + b"\x00" * 60,
    "elf": b"\x7fELF\x02\x01\x01" + b"\x00" * 60,
    "json-array": b'[{"EventID": 1}]\n',
    "csv": b"time,pid,image\n1,2,a.exe\n",
}


def accounted(rep: Any) -> bool:
    """Every record of a ``FileReport`` is an event, ignored or skipped: none vanishes."""
    return bool(rep.records == rep.events + rep.ignored + sum(rep.skipped.values()))


def _read(cls: type[Source], data: bytes) -> tuple[int, Any]:
    from unbacked.model import EVENT_SCHEMA
    from unbacked.runreport import RunReport
    from unbacked.sources.base import InputFile

    report = RunReport()
    rows = 0
    for table in cls().read(InputFile.from_bytes("sample", data), report):
        assert table.schema.equals(EVENT_SCHEMA, check_metadata=True), (cls.name, table.schema)
        assert table.num_rows > 0, f"{cls.name} yielded an empty table"
        rows += table.num_rows
    return rows, report


def yield_source_checks(cls: type[Source]) -> Iterator[Check]:
    """The source contract (``unbacked.sources.base.Source``), checked on ``cls``:

    * ``attributes``: ``name``, ``description``, ``priority`` and ``examples`` as documented;
    * ``rejects_junk``: empty input, junk and the examples of every other registered source
      are not claimed;
    * ``not_claimed_by_others``: no other registered source claims its examples at the same
      or a higher priority (only with ``examples``);
    * ``reads_examples``: its examples are claimed and read as tables of exactly
      ``EVENT_SCHEMA``, every record accounted for in the run report (only with ``examples``:
      ship some, or the kit can try junk only);
    * ``hostile_input``: empty, junk and damaged examples are counted or raise ``FormatError``,
      never anything else.
    """
    from unbacked.errors import FormatError
    from unbacked.sources.base import SNIFF_BYTES, SOURCES, InputFile, Source

    def others() -> list[type[Source]]:
        return [c for n, c in SOURCES.items() if c is not cls and n != cls.name]

    def attributes() -> None:
        assert isinstance(cls, type) and issubclass(cls, Source), f"{cls!r} is not a Source"
        assert isinstance(cls.name, str) and re.fullmatch(r"[a-z0-9][a-z0-9.-]*", cls.name), (
            f"{cls.name!r}: a source name is lower-case letters, digits, '-' and '.'"
        )
        assert isinstance(cls.description, str) and cls.description, "a one-line description"
        assert isinstance(cls.priority, int)
        assert isinstance(cls.examples, tuple), "examples: a tuple of bytes"
        assert all(isinstance(ex, bytes) and ex for ex in cls.examples), "examples are bytes"

    def rejects_junk() -> None:
        for label, data in JUNK.items():
            head = data[:SNIFF_BYTES]
            assert not cls.sniff(head, f"x.{label}"), (cls.name, "claims", label)
            assert not cls.accepts(InputFile.from_bytes(f"x.{label}", data), head), (
                cls.name,
                "accepts",
                label,
            )
        for other in others():
            for ex in other.examples:
                assert not cls.sniff(ex[:SNIFF_BYTES], "input"), (
                    cls.name,
                    "claims an example of",
                    other.name,
                )

    def not_claimed_by_others() -> None:
        for ex in cls.examples:
            inp = InputFile.from_bytes("sample", ex)
            for other in others():
                if other.accepts(inp, ex[:SNIFF_BYTES]):
                    assert other.priority < cls.priority, (
                        other.name,
                        "claims an example of",
                        cls.name,
                    )

    def reads_examples() -> None:
        for ex in cls.examples:
            assert cls.accepts(InputFile.from_bytes("sample", ex), ex[:SNIFF_BYTES]), (
                cls.name,
                "does not claim its own example",
            )
            rows, report = _read(cls, ex)
            rep = report.files["sample"]
            assert rows == rep.events > 0, (cls.name, rows, rep.to_dict())
            assert accounted(rep), (cls.name, rep.to_dict())

    def hostile_input() -> None:
        inputs = list(JUNK.values())
        for ex in cls.examples:
            inputs += [
                ex[: len(ex) // 2],
                ex[: len(ex) - 3],
                ex + ex[:7],
                ex.replace(b"1", b"\xff"),
            ]
        for data in inputs:
            try:
                _rows, report = _read(cls, data)
            except FormatError:
                continue
            rep = report.files.get("sample")
            if rep is not None:
                assert accounted(rep), (cls.name, data[:40], rep.to_dict())

    funcs: list[Callable[[], None]] = [attributes, rejects_junk]
    if getattr(cls, "examples", ()):  # without examples only junk can be tried
        funcs += [not_claimed_by_others, reads_examples]
    funcs.append(hostile_input)
    yield from _checks(getattr(cls, "name", repr(cls)), funcs)


def check_source(cls: type[Source]) -> None:
    """Run every source check on ``cls`` (``yield_source_checks``)."""
    for check in yield_source_checks(cls):
        check()


# -- detectors -------------------------------------------------------------------------------

T0 = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)


def _ns(t: datetime) -> int:
    """Nanoseconds since the epoch of an aware ``datetime`` (exact: no float)."""
    return (t - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000


def events(rows: Rows) -> pa.Table:
    """Rows (dicts of ``EVENT_SCHEMA`` columns) -> an event table. Defaults: time T0 + i s + 123 ns,
    host ``h1``, os ``windows``, src_format ``test``, src_file ``test.jsonl``, src_line i+1."""
    import pyarrow as pa

    from unbacked.model.schema import EVENT_SCHEMA, conform

    filled = [
        {
            # whole seconds and 123 ns: a rule that turns times into Python values other than
            # through ``model.rows`` fails here as it would on real sensor times
            "time": _ns(T0 + timedelta(seconds=i)) + 123,
            "host": "h1",
            "os": "windows",
            "src_format": "test",
            "src_file": "test.jsonl",
            "src_line": i + 1,
            **r,
        }
        for i, r in enumerate(rows)
    ]
    for r in filled:
        if isinstance(r["time"], datetime):
            r["time"] = _ns(r["time"])
    arrays = {}
    for field in EVENT_SCHEMA:
        typ = field.type.value_type if pa.types.is_dictionary(field.type) else field.type
        arrays[field.name] = pa.array([r.get(field.name) for r in filled], typ)
    return conform(pa.table(arrays))


def context(rows: Rows, *, baseline: bool = True) -> DetectionContext:
    """A detection context over ``rows``, self-baselined from them (as ``hunt`` does)."""
    from unbacked.detect.base import DetectionContext
    from unbacked.detect.baseline import ProgramBaseline

    ctx = DetectionContext.build(events(rows), self_baselined=baseline)
    if baseline:
        ctx.baseline = ProgramBaseline().learn(ctx.facts, calibrate=False)
    return ctx


def sample_rows() -> list[dict[str, Any]]:
    """A small mixed run: peer instances of two programs, one of which has a remote thread
    start in memory no module backs, an RWX allocation and a connection after it."""
    rows: list[dict[str, Any]] = []
    for i in range(4):
        uid = f"{{note-{i}}}"
        rows.append({"kind": "process", "activity": "launch", "process_uid": uid,
                     "pid": 100 + i, "image": r"C:\Windows\notepad.exe",
                     "cmd_line": "notepad.exe"})  # fmt: skip
        rows.append({"kind": "module", "activity": "load", "process_uid": uid, "pid": 100 + i,
                     "image": r"C:\Windows\notepad.exe",
                     "module_path": r"C:\Windows\System32\ntdll.dll"})  # fmt: skip
    rows.append({"kind": "process", "activity": "launch", "process_uid": "{ps}", "pid": 200,
                 "image": r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe",
                 "cmd_line": "powershell -nop -w hidden"})  # fmt: skip
    rows.append({"kind": "thread", "activity": "create_remote", "process_uid": "{note-0}",
                 "pid": 100, "image": r"C:\Windows\notepad.exe", "actor_uid": "{ps}",
                 "actor_image": r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe",
                 "start_address": 0x1C0000, "start_module": None})  # fmt: skip
    rows.append({"kind": "memory", "activity": "allocate", "process_uid": "{note-0}",
                 "pid": 100, "image": r"C:\Windows\notepad.exe", "base_address": 0x1C0000,
                 "region_size": 0x3A000, "protection": 0x40, "region_type": "private",
                 "caller_module": "unbacked"})  # fmt: skip
    rows.append({"kind": "network", "activity": "connect", "process_uid": "{note-0}",
                 "pid": 100, "image": r"C:\Windows\notepad.exe",
                 "remote_ip": "203.0.113.7", "remote_port": 443})  # fmt: skip
    return _only_known_columns(rows)


def _only_known_columns(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from unbacked.model.schema import EVENT_SCHEMA

    names = set(EVENT_SCHEMA.names)
    return [{k: v for k, v in r.items() if k in names} for r in rows]


def _attack_ok(ids: Iterable[str]) -> bool:
    return all(isinstance(t, str) and re.fullmatch(r"T\d{4}(\.\d{3})?", t) for t in ids)


def _assert_signals(det: type[Detector], out: pa.Table, n_events: int) -> None:
    import pyarrow.compute as pc

    from unbacked.detect.base import SIGNAL_SCHEMA

    assert out.schema.equals(SIGNAL_SCHEMA, check_metadata=False), (det.id, out.schema)
    if out.num_rows == 0:
        return
    assert out["subject_uid"].null_count == 0, (det.id, "a signal without a subject")
    assert set(out["detector"].to_pylist()) == {det.id}, (det.id, "signals name their detector")
    scores = out["score"].to_pylist()
    assert all(0 <= s <= 100 for s in scores), (det.id, "scores are 0-100", scores)
    sev = [s for s in out["severity_id"].to_pylist() if s is not None]
    assert all(1 <= s <= 5 for s in sev), (det.id, "severity_id is 1-5", sev)
    rows = out["row"].drop_null()
    if len(rows):
        assert pc.min(rows).as_py() >= 0 and pc.max(rows).as_py() < n_events, (
            det.id,
            "row is an index into the run's events",
        )


def yield_detector_checks(
    cls: type[Detector],
    *,
    positives: Iterable[Rows] = (),
    negatives: Iterable[Rows] = (),
) -> Iterator[Check]:
    """The detector contract (``unbacked.detect.base.Detector``; for rules ``Rule``), checked
    on ``cls``:

    * ``metadata``: id, title, description, severity 1-5, ATT&CK ids, os; for a rule also its
      score, the event kinds and the columns it reads;
    * ``init_takes_no_data``: ``cls()`` works (hyper-parameters only, as river's estimators);
    * ``empty_input``: no events, or no baseline, give an empty ``SIGNAL_SCHEMA`` table;
    * ``signals_are_well_formed``: on a small mixed run (``sample_rows``) the signals have the
      schema, a subject, the detector's id, scores 0-100 and rows that index the events;
    * ``scoring_never_learns``: evaluating leaves the events and the baseline as they were and
      gives the same signals twice;
    * ``fires_on_positives`` / ``quiet_on_negatives``: the given true-positive runs give at
      least one signal, the false-positive runs none (each a list of event rows).
    """
    from unbacked.detect.base import Detector, Rule
    from unbacked.model.schema import EVENT_SCHEMA

    positives = list(positives)
    negatives = list(negatives)
    name = getattr(cls, "id", repr(cls))

    def metadata() -> None:
        assert isinstance(cls, type) and issubclass(cls, Detector), f"{cls!r} is not a Detector"
        assert isinstance(cls.id, str) and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", cls.id)
        assert isinstance(cls.title, str) and cls.title, "a title"
        assert isinstance(cls.description, str) and cls.description, "a description"
        assert isinstance(cls.severity, int) and 1 <= cls.severity <= 5, "OCSF severity 1-5"
        assert cls.attack and _attack_ok(cls.attack), ("ATT&CK technique ids", cls.attack)
        assert isinstance(cls.references, tuple)
        assert cls.os and set(cls.os) <= {"windows", "linux"}, cls.os
        if issubclass(cls, Rule):
            assert 0 < cls.score <= 100, "a rule's base score is 0-100"
            kinds = {"process", "module", "memory", "thread", "network"}
            assert cls.kinds and set(cls.kinds) <= kinds, cls.kinds
            assert set(cls.requires) <= set(EVENT_SCHEMA.names), cls.requires

    def init_takes_no_data() -> None:
        det = cls()
        learned = [k for k in getattr(det, "__dict__", {}) if k.endswith("_")]
        assert not learned, (cls.id, "learned state before any data", learned)

    def empty_input() -> None:
        from unbacked.detect.base import DetectionContext

        for ctx in (DetectionContext.build(EVENT_SCHEMA.empty_table()), context([])):
            out = cls().evaluate(ctx)
            _assert_signals(cls, out, 0)
            assert out.num_rows == 0, (cls.id, "signals from no events")
        out = cls().evaluate(context(sample_rows(), baseline=False))
        _assert_signals(cls, out, len(sample_rows()))

    def signals_are_well_formed() -> None:
        for rows in (sample_rows(), *positives, *negatives):
            ctx = context(rows)
            _assert_signals(cls, cls().evaluate(ctx), ctx.events.num_rows)

    def scoring_never_learns() -> None:
        ctx = context(sample_rows())
        before = ctx.events
        assert ctx.baseline is not None
        tables = {k: v for k, v in vars(ctx.baseline).items() if k.endswith("_")}
        first = cls().evaluate(ctx)
        second = cls().evaluate(ctx)
        assert ctx.events.equals(before), (cls.id, "evaluate changed the events")
        after = {k: v for k, v in vars(ctx.baseline).items() if k.endswith("_")}
        assert after.keys() == tables.keys(), (cls.id, "evaluate changed the baseline")
        for k, v in tables.items():
            assert after[k] is v, (cls.id, "evaluate changed the baseline", k)
        assert first.equals(second), (cls.id, "two evaluations differ")

    def fires_on_positives() -> None:
        for rows in positives:
            out = cls().evaluate(context(rows))
            assert out.num_rows > 0, (cls.id, "no signal on a true positive")

    def quiet_on_negatives() -> None:
        for rows in negatives:
            out = cls().evaluate(context(rows))
            assert out.num_rows == 0, (cls.id, "signal on a false positive", out.to_pylist())

    funcs: list[Callable[[], None]] = [
        metadata,
        init_takes_no_data,
        empty_input,
        signals_are_well_formed,
        scoring_never_learns,
    ]
    if positives:
        funcs.append(fires_on_positives)
    if negatives:
        funcs.append(quiet_on_negatives)
    yield from _checks(name, funcs)


def check_detector(
    cls: type[Detector], *, positives: Iterable[Rows] = (), negatives: Iterable[Rows] = ()
) -> None:
    """Run every detector check on ``cls`` (``yield_detector_checks``)."""
    for check in yield_detector_checks(cls, positives=positives, negatives=negatives):
        check()


# -- renderers -------------------------------------------------------------------------------

#: values that break a renderer treating telemetry as markup (HTML, rich console markup)
HOSTILE = "</script><script>alert(1)</script>[/][link=x]\"'&<b>\x1b[31m"


def sample_alerts() -> list[Alert]:
    """Two alerts: one with every section filled and hostile telemetry in its strings, and a
    plain one of another host and severity."""
    from unbacked.model.alert import (
        Alert,
        Explanation,
        NetworkContact,
        ProcessRef,
        Provenance,
        RegionInfo,
        TimelineEntry,
    )

    def at(s: float) -> datetime:
        return T0 + timedelta(seconds=s)

    src = r"C:\logs\Sysmon.evtx"
    actor = ProcessRef(uid="{ps}", pid=6144, name=f"{HOSTILE}.exe", cmd_line=HOSTILE,
                       path=r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe",
                       created=at(-30))  # fmt: skip
    victim = ProcessRef(uid="{svchost}", pid=2288, name="svchost.exe",
                        path=r"C:\Windows\System32\svchost.exe", cmd_line="svchost.exe -k netsvcs",
                        user="NT AUTHORITY\\SYSTEM",
                        parent=ProcessRef(uid="{svc}", pid=712, name="services.exe"))  # fmt: skip
    rich = Alert(
        uid="7f3c2a10-1111-4222-8333-944455556666",
        title="PE image written into unbacked memory of another process",
        message=f"svchost.exe (2288): {HOSTILE} wrote a PE image and started a thread in it",
        risk_score=97,
        severity_id=5,
        first_seen=at(0),
        last_seen=at(12),
        hostname="WS-0042.corp.example",
        process=victim,
        actor=actor,
        techniques=("T1055.002", "T1620"),
        types=("Process Injection",),
        explanation=(
            Explanation(
                "alloc.protection",
                "PAGE_EXECUTE_READWRITE",
                "UNB-B-001",
                91.5,
                "svchost.exe: 0 of 18,422 executable allocations were RWX",
                baseline_count=0,
                baseline_total=18422,
                baseline_scope="program",
            ),
            Explanation("thread.start_module", "<unbacked>", "UNB-W-001", 85.0, HOSTILE),
        ),
        timeline=(
            TimelineEntry(at(0), "open", f"{HOSTILE} opened svchost.exe", Provenance(src, 101)),
            TimelineEntry(
                at(0.4), "allocate", "allocated 0x1c0000 RWX", Provenance(src, 102), "UNB-B-001"
            ),
            TimelineEntry(
                at(1.6),
                "thread",
                "thread started at 0x1c0000 (unbacked)",
                Provenance(src, 105),
                "UNB-W-001",
            ),
            TimelineEntry(at(4.0), "connect", "connect tcp 203.0.113.7:443", Provenance(src, 106)),
        ),
        regions=(RegionInfo(0x1C0000, 0x3A000, ("RW", "RX"), None, "PE", 1),),
        network=(NetworkContact("203.0.113.7:443", at(4.0)),),
        sources=({"file": src, "count": 4, "records": [101, 102, 105, 106]},),
        detectors=("UNB-B-001", "UNB-W-001"),
    )
    plain = Alert(
        uid="00000000-0000-4000-8000-000000000001",
        title="Remote thread loads a library",
        message="notepad.exe: remote LoadLibrary",
        risk_score=60,
        severity_id=3,
        first_seen=at(30),
        last_seen=at(31),
        hostname="h2",
        process=ProcessRef(uid="{n1}", pid=901, name="notepad.exe", cmd_line="notepad.exe"),
        techniques=("T1055.001",),
        detectors=("UNB-W-006",),
    )
    return [rich, plain]


def yield_renderer_checks(cls: type[Renderer]) -> Iterator[Check]:
    """The renderer contract (``unbacked.render.base.Renderer``), checked on ``cls``:

    * ``attributes``: ``name``, ``description``, ``to_path``, ``suffix``; ``cls()`` works;
    * ``no_alerts``: rendering no alerts works (and writes a file for a file renderer);
    * ``renders_alerts``: ``sample_alerts`` (hostile strings included) render, twice the same;
    * ``write_matches_render``: a stream renderer's file is what it renders to a stream; a
      file renderer's ``write`` returns the path of a non-empty file.
    """
    import io

    from unbacked.render.base import Renderer

    name = getattr(cls, "name", repr(cls))

    def rendered(alerts: Sequence[Alert]) -> str:
        buf = io.StringIO()
        cls().render(alerts, buf)
        return buf.getvalue()

    def attributes() -> None:
        assert isinstance(cls, type) and issubclass(cls, Renderer), f"{cls!r} is not a Renderer"
        assert isinstance(cls.name, str) and re.fullmatch(r"[a-z0-9][a-z0-9._-]*", cls.name)
        assert isinstance(cls.description, str) and cls.description, "a one-line description"
        assert isinstance(cls.to_path, bool) and isinstance(cls.suffix, str)
        assert isinstance(cls(), Renderer)

    def no_alerts() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            out = cls().write([], Path(tmp) / f"none{cls.suffix}")
            assert Path(out).is_file(), (cls.name, "no file written")
        if not cls.to_path:
            assert isinstance(rendered([]), str)

    def renders_alerts() -> None:
        alerts = sample_alerts()
        if cls.to_path:
            with tempfile.TemporaryDirectory() as tmp:
                a = Path(cls().write(alerts, Path(tmp) / f"a{cls.suffix}")).read_bytes()
                b = Path(cls().write(alerts, Path(tmp) / f"b{cls.suffix}")).read_bytes()
            assert a and b, (cls.name, "empty output")
            return
        first, second = rendered(alerts), rendered(alerts)
        assert first, (cls.name, "nothing rendered")
        assert first == second, (cls.name, "two renderings differ")

    def write_matches_render() -> None:
        alerts = sample_alerts()
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(cls().write(alerts, Path(tmp) / "sub" / f"alerts{cls.suffix}"))
            assert out.is_file() and out.stat().st_size > 0, (cls.name, "no file written")
            if not cls.to_path:
                text = out.read_text(encoding="utf-8")
                assert text == rendered(alerts), (cls.name, "file differs from the stream")

    yield from _checks(name, (attributes, no_alerts, renders_alerts, write_matches_render))


def check_renderer(cls: type[Renderer]) -> None:
    """Run every renderer check on ``cls`` (``yield_renderer_checks``)."""
    for check in yield_renderer_checks(cls):
        check()


# -- scanners --------------------------------------------------------------------------------


class BytesSpace:
    """A ``Readable`` over bytes at an address (what the scanner driver reads from)."""

    def __init__(self, data: bytes, base: int = 0x10000) -> None:
        self.data = data
        self.base = base

    def runs(self, base: int, size: int) -> list[tuple[int, int]]:
        lo, hi = max(base, self.base), min(base + size, self.base + len(self.data))
        return [(lo, hi - lo)] if hi > lo else []

    def read(self, address: int, size: int) -> bytes:
        off = address - self.base
        return self.data[max(off, 0) : max(off, 0) + size]


def _scan(scanner: ScannerInterface, data: bytes, base: int = 0x10000) -> list[Hit]:
    from unbacked.memscan.scanner import scan

    return list(scan(BytesSpace(data, base), scanner, [(base, len(data))]))


def yield_scanner_checks(cls: type[ScannerInterface]) -> Iterator[Check]:
    """The scanner contract (``unbacked.memscan.scanner.ScannerInterface``, volatility3's), on
    ``cls`` made by ``cls.sample(chunk_size=..., overlap=...)``:

    * ``attributes``: ``name``, ``description``, ``thread_safe``, ``examples``; a bad chunking
      (overlap larger than the chunk) is refused;
    * ``finds_examples``: at least one hit in each example, scanned whole;
    * ``same_hits_in_every_chunking``: chunk sizes from 512 bytes to the whole input give the
      same hits (none lost at a boundary, none reported twice from an overlap);
    * ``no_hit_in_overlap``: a chunk that is not its run's last reports no hit starting at or
      after ``chunk_size``;
    * ``hostile_input``: empty, tiny and random inputs raise nothing;
    * ``thread_safety``: a scanner declared thread-safe gives the same hits from 4 threads.
    """
    from unbacked.memscan.scanner import Hit, ScannerInterface

    name = getattr(cls, "name", repr(cls))
    overlap = 256

    def make(chunk_size: int) -> ScannerInterface:
        return cls.sample(chunk_size=chunk_size, overlap=min(overlap, chunk_size))

    def whole(data: bytes) -> list[Hit]:
        return _scan(make(max(len(data), 1)), data)

    def attributes() -> None:
        assert isinstance(cls, type) and issubclass(cls, ScannerInterface), f"{cls!r}"
        assert isinstance(cls.name, str) and re.fullmatch(r"[a-z0-9][a-z0-9._-]*", cls.name)
        assert isinstance(cls.description, str) and cls.description, "a one-line description"
        assert isinstance(cls.thread_safe, bool)
        assert cls.examples and all(isinstance(e, bytes) and e for e in cls.examples), (
            cls.name,
            "examples: bytes in which the scanner finds something",
        )
        try:
            cls.sample(chunk_size=16, overlap=32)
        except ValueError:
            pass
        else:
            raise AssertionError((cls.name, "accepted an overlap larger than the chunk"))

    def finds_examples() -> None:
        for ex in cls.examples:
            hits = whole(ex)
            assert hits, (cls.name, "no hit in an example")
            assert all(isinstance(h, Hit) for h in hits)
            assert all(0x10000 <= h.address < 0x10000 + len(ex) for h in hits), (
                cls.name,
                "a hit outside the scanned bytes",
            )

    def same_hits_in_every_chunking() -> None:
        for ex in cls.examples:
            # the example padded so that it spans several chunks at odd offsets
            data = b"\x00" * 333 + ex + b"\x00" * 1500
            want = whole(data)
            for size in (512, 700, 1024, 4096):
                got = _scan(make(size), data)
                assert got == want, (cls.name, "chunk size", size, got, want)

    def no_hit_in_overlap() -> None:
        sc = make(512)
        for ex in cls.examples:
            data = b"\x00" * 333 + ex + b"\x00" * 1500
            for start in range(0, len(data), 512):
                chunk = data[start : start + 512 + sc.overlap]
                for hit in sc(chunk, start, last=False):
                    assert hit.address - start < sc.chunk_size, (cls.name, "hit in overlap")

    def hostile_input() -> None:
        import random

        rng = random.Random(0)
        for data in (b"", b"\x00", b"\xff" * 7, bytes(rng.getrandbits(8) for _ in range(5000))):
            _scan(make(512), data)
            whole(data)

    def thread_safety() -> None:
        sc = make(512)
        data = b"\x00" * 333 + b"".join(cls.examples) + b"\x00" * 1500
        want = _scan(sc, data)
        results: list[list[Hit]] = []
        errors: list[BaseException] = []

        def work() -> None:
            try:
                for _ in range(5):
                    results.append(_scan(sc, data))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, (cls.name, errors)
        assert all(r == want for r in results), (cls.name, "hits differ across threads")

    funcs: list[Callable[[], None]] = [
        attributes,
        finds_examples,
        same_hits_in_every_chunking,
        no_hit_in_overlap,
        hostile_input,
    ]
    if getattr(cls, "thread_safe", False):
        funcs.append(thread_safety)
    yield from _checks(name, funcs)


def check_scanner(cls: type[ScannerInterface]) -> None:
    """Run every scanner check on ``cls`` (``yield_scanner_checks``)."""
    for check in yield_scanner_checks(cls):
        check()


# -- every plug-in of a registry -------------------------------------------------------------

YIELDERS: dict[str, Callable[[Any], Iterator[Check]]] = {
    "sources": yield_source_checks,
    "detectors": yield_detector_checks,
    "renderers": yield_renderer_checks,
    "scanners": yield_scanner_checks,
}


def yield_registry_checks(kind: str) -> Iterator[Check]:
    """Every check of every usable plug-in of ``kind`` (for ``pytest.mark.parametrize``)."""
    from unbacked.plugins import registry

    reg = registry(kind)
    for name in sorted(reg):
        yield from YIELDERS[kind](reg[name])


__all__ = [
    "HOSTILE",
    "JUNK",
    "YIELDERS",
    "BytesSpace",
    "Check",
    "accounted",
    "check_detector",
    "check_renderer",
    "check_scanner",
    "check_source",
    "context",
    "events",
    "sample_alerts",
    "sample_rows",
    "yield_detector_checks",
    "yield_registry_checks",
    "yield_renderer_checks",
    "yield_scanner_checks",
    "yield_source_checks",
]
