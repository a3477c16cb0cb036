"""The embedded engine: one process, local files, the whole pipeline.

    sources -> events (Arrow) -> facts -> baseline (given, or learned from the same data)
            -> rules + baseline signals -> incidents -> alerts

``hunt`` without a baseline *self-baselines*: it learns per-program statistics from the data
itself and scores each process instance against its peers with that instance left out.

Memory: up to ``memory_events`` events (default ``MEMORY_EVENTS``) are held in one table. Beyond
that the run is *partitioned*: the events are spilled to disk by host (``engine.spill``; a
lake that `unbacked export` split by host is read group by group from its own files instead,
``engine.lake``), the baseline is learned per group of whole hosts and summed
(``engine.partitions``, what the Spark engine does on its executors), and each group is
detected against it in turn, so memory stays bounded by about ``memory_events`` events (two
groups of half as many: one detected, the next read) whatever the input size. Alerts are the
same either way (``tests/engine/test_partitioned.py``, ``tests/engine/test_lake.py``); only
``HuntResult.events`` is left empty, since the events are no longer held.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from unbacked.correlate.incidents import CorrelationConfig, correlate
from unbacked.detect import (
    DetectionContext,
    ProgramBaseline,
    learn_baseline,
    run_rules,
    sort_signals,
)
from unbacked.engine import partitions
from unbacked.engine.lake import HostLake
from unbacked.engine.order import canonical_order
from unbacked.engine.spill import HostSpill, read_ahead
from unbacked.model.alert import Alert, Alerts, sort_alerts
from unbacked.model.schema import EVENT_SCHEMA
from unbacked.runreport import RunReport

#: events in groups of whole hosts, for a partitioned run: spilled, or a lake's own files
HostGroups = HostSpill | HostLake
#: (file name, events so far, records so far: summed at most a quarter second before)
ProgressFn = Callable[[str, int, int], None]
StageFn = Callable[[str, str], None]  # (stage, detail): the passes of a partitioned run

#: events a run holds in memory before it partitions by host (peak RSS ~1.7 GiB either way)
MEMORY_EVENTS = 500_000
#: events per group of whole hosts in a partitioned run of the default ``MEMORY_EVENTS``
GROUP_EVENTS = MEMORY_EVENTS // 2


def group_size(memory_events: int) -> int:
    """Events per group of whole hosts when a run holds at most ``memory_events`` events: half
    of them, since the next group is read while one is detected (``GROUP_EVENTS`` when there
    is no limit: 0). A lower limit then lowers the peak too, for more per-group work."""
    return max(1, memory_events // 2) if memory_events > 0 else GROUP_EVENTS


@dataclass(slots=True, repr=False)
class HuntResult:
    """What one run produced."""

    alerts: Alerts
    signals: pa.Table
    #: every event read, in canonical order; empty when the run was partitioned
    events: pa.Table
    report: RunReport
    baseline: ProgramBaseline | None = None
    timings: dict[str, float] = field(default_factory=dict)
    #: groups of whole hosts the run was detected in (0: one table in memory). Signals' ``row``
    #: indexes ``events`` only when 0.
    partitions: int = 0

    def _summary(self) -> str:
        r = self.report
        return (
            f"{len(r.files)} files, {r.events:,} events, {self.signals.num_rows:,} signals, "
            f"{len(self.alerts)} alerts"
        )

    def __repr__(self) -> str:
        return f"<HuntResult: {self._summary()}; alerts: {self.alerts!r}>"

    def _repr_html_(self) -> str:
        from html import escape

        return f"<p><b>HuntResult</b>: {escape(self._summary())}</p>" + (
            self.alerts._repr_html_() if hasattr(self.alerts, "_repr_html_") else ""
        )

    def baseline_table(self, program: str | None = None) -> Any:  # -> pandas.DataFrame
        """What is normal, as a table: for ``program`` (an image name such as ``notepad.exe``)
        every feature value with how many of its instances showed it; without ``program`` the
        programs the baseline knows, most observed first.

        Why a method here: the baseline a hunt scored against (learned from the same data
        when none was given) is what every "0 of N" in an explanation refers to, and analysts
        check those numbers against the whole profile. ``self.baseline.profile()`` gives Arrow.
        """
        import difflib

        from unbacked.errors import BaselineError

        if self.baseline is None or not self.baseline.is_fitted:
            raise BaselineError(
                "this run has no baseline to show",
                hint="hunt without --baseline learns one from the data; or pass a trained one",
            )
        if program is None:
            totals = self.baseline.totals_
            assert totals is not None
            return (
                totals.to_pandas().groupby("program", as_index=False)
                .agg(instances=("instances", "max"), events=("events", "sum"))
                .sort_values(["instances", "events"], ascending=False, ignore_index=True)
            )  # fmt: skip
        known = self.baseline.programs()
        if program.lower() not in known:
            near = difflib.get_close_matches(program.lower(), known, n=3, cutoff=0.5)
            raise BaselineError(
                f"the baseline has never seen a program named {program!r}",
                hint=("did you mean " + ", ".join(near) + "?") if near
                else "baseline_table() without a program lists the programs it knows",
            )  # fmt: skip
        return self.baseline.profile(program).to_pandas()


def load_events(
    paths: Sequence[str | Path], report: RunReport, progress: ProgressFn | None = None
) -> pa.Table:
    """Read every input (auto-detected, directories walked, archives read in place) into one
    table in canonical order, however many events there are."""
    with read_inputs(paths, report, progress, memory_events=0) as events:
        assert isinstance(events, pa.Table)
        return events


@contextmanager
def read_inputs(
    paths: Sequence[str | Path],
    report: RunReport,
    progress: ProgressFn | None = None,
    *,
    memory_events: int = MEMORY_EVENTS,
    spill_dir: str | Path | None = None,
) -> Iterator[pa.Table | HostGroups]:
    """Every input, as one table in canonical order while there are at most ``memory_events``
    events (0: no limit), else as groups of whole hosts: the lake's own files when it is
    split by host already (a ``HostLake``, read group by group), or a ``HostSpill`` (removed
    when the context ends)."""
    from unbacked.sources import iter_event_tables

    if memory_events:
        lake = HostLake.find(paths, report, more_than=memory_events, spill_dir=spill_dir)
        if lake is not None:
            try:
                if lake.others:
                    lake.read_others(
                        None
                        if progress is None
                        else lambda name, n: progress(name, n, report.records_lately())
                    )
                yield lake
            finally:
                lake.close()
            return
    tables: list[pa.Table] = []
    spill: HostSpill | None = None
    n = 0
    try:
        # strings may come dictionary-encoded (a lake's Parquet): the spill and the canonical
        # order look each value up once, after putting the rows in order
        for table in iter_event_tables([str(p) for p in paths], report, encoded=True):
            n += table.num_rows
            if spill is not None:
                spill.add(table)
            else:
                tables.append(table)
                if memory_events and n > memory_events:
                    spill = HostSpill(spill_dir)
                    for held in tables:
                        spill.add(held)
                    tables = []
            if progress is not None:
                name = table["src_file"][0].as_py() if table.num_rows else ""
                progress(str(name or ""), n, report.records_lately())
        if spill is None:
            if not tables:
                yield EVENT_SCHEMA.empty_table()
            else:
                yield canonical_order(tables)
        else:
            spill.finish()
            yield spill
    finally:
        if spill is not None:
            spill.close()


def detect_events(
    events: pa.Table,
    *,
    baseline: ProgramBaseline | None = None,
    config: CorrelationConfig | None = None,
    report: RunReport | None = None,
    self_baselined: bool | None = None,
    precomputed: Mapping[str, pa.Table] | None = None,
) -> HuntResult:
    """Detect on events already read (the sensor's streaming path calls this per window).

    ``self_baselined`` says whether ``baseline`` was learned from data that includes these
    events (then each instance is left out of its own peer statistics). It defaults to True
    when no baseline is given (one is learned here) and False otherwise; a distributed engine
    that learned one baseline from every partition passes True. ``precomputed``: tables of
    ``DetectionContext.cache`` (``facts``, ``instance_facts``) already computed for exactly
    these events, by the pass that learned the baseline.
    """
    report = report or RunReport()
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    if self_baselined is None:
        self_baselined = baseline is None
    ctx = DetectionContext.build(events, baseline, self_baselined=self_baselined)
    try:
        ctx.cache.update(precomputed or {})
        if baseline is None:
            baseline = ProgramBaseline().learn(ctx.instance_facts, calibrate=False)
            ctx.baseline = baseline
        # what the baseline detector reads, computed here rather than when the first
        # detector asks, so that the stages say where the time goes (the same work either way)
        if ctx.instance_facts.num_rows:
            ctx.scored  # noqa: B018
        t1 = time.perf_counter()
        timings["features_baseline"] = t1 - t0
        signals = run_rules(ctx)
        t2 = time.perf_counter()
        timings["rules"] = t2 - t1
        alerts = correlate(ctx, signals, None, config)
        timings["correlate"] = time.perf_counter() - t2
    finally:
        ctx.close()
    report.alerts = len(alerts)
    return HuntResult(
        alerts=Alerts(alerts),
        signals=signals,
        events=events,
        report=report,
        baseline=baseline,
        timings=timings,
    )


#: what the learning pass keeps per group for the detection pass (not computed twice): the
#: group's events in canonical order, its instance facts and the event-by-event facts rules
#: declare (``DetectionContext.row_facts``; the other facts are never computed there)
_KEPT = ("events", "instance_facts", "row_facts")


def _learn_groups(
    spill: HostGroups, group_events: int, keep: Sequence[str], stage: StageFn | None = None
) -> ProgramBaseline:
    """The first pass over a spill: per group of whole hosts, the embedded learning
    (``learn_baseline``) as rows to sum (``engine.partitions``); the ``keep`` tables of each
    group's detection context are put back into the spill for the next pass."""
    rows = []
    n = len(spill.group_plan(group_events))
    for i, group in enumerate(read_ahead(spill.groups(group_events))):
        if stage is not None:
            stage("learning", f"host group {i + 1} of {n}")
        ctx = DetectionContext.build(group)
        part = ProgramBaseline().learn(ctx.instance_facts, calibrate=False)
        rows.append(partitions.rows_of(part, group))
        for name in keep:
            spill.put(i, name, group if name == "events" else getattr(ctx, name))
    return partitions.combine(rows)


def detect_partitioned(
    spill: HostGroups,
    *,
    baseline: ProgramBaseline | None = None,
    config: CorrelationConfig | None = None,
    report: RunReport | None = None,
    group_events: int = GROUP_EVENTS,
    stage: StageFn | None = None,
) -> HuntResult:
    """``detect_events`` over spilled events, one group of whole hosts at a time; without
    ``baseline`` one is learned over every group first (self-baselining, as in memory)."""
    report = report or RunReport()
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    self_baselined = baseline is None
    if baseline is None:
        baseline = _learn_groups(spill, group_events, keep=_KEPT, stage=stage)
        timings["baseline"] = time.perf_counter() - t0
        groups_again: Iterator[pa.Table] = (
            spill.get(i, "events") for i in range(len(spill.group_plan(group_events)))
        )
    else:
        groups_again = spill.groups(group_events)
    alerts: list[Alert] = []
    signals: list[pa.Table] = []
    groups = 0
    n = len(spill.group_plan(group_events))
    # waiting for host groups read back (in canonical order) while the one before is detected
    timings["spill_read"] = 0.0
    t_read = time.perf_counter()
    for i, group in enumerate(read_ahead(groups_again)):
        if stage is not None:
            stage("detecting", f"host group {i + 1} of {n}")
        kept = {name: spill.get(i, name) for name in _KEPT[1:]} if self_baselined else None
        timings["spill_read"] += time.perf_counter() - t_read
        part = detect_events(
            group,
            baseline=baseline,
            config=config,
            self_baselined=self_baselined,
            precomputed=kept,
        )
        alerts.extend(part.alerts)
        signals.append(part.signals)
        for step, seconds in part.timings.items():
            timings[step] = timings.get(step, 0.0) + seconds
        groups += 1
        t_read = time.perf_counter()
    report.alerts = len(alerts)
    report.extra["engine"] = {"name": "local", "partitions": groups, **_engine_extra(spill)}
    return HuntResult(
        alerts=Alerts(sort_alerts(alerts)),
        signals=sort_signals(pa.concat_tables(signals)),
        events=EVENT_SCHEMA.empty_table(),
        report=report,
        baseline=baseline,
        timings=timings,
        partitions=groups,
    )


def _engine_extra(groups: HostGroups) -> dict[str, int]:
    """Where a partitioned run's groups came from, for the run report."""
    if isinstance(groups, HostLake):
        extra = {"lake_events": groups.rows, "lake_files": groups.files}
        if groups.spilled:  # the other inputs
            extra |= {"spilled_events": groups.spilled, "spilled_bytes": groups.bytes_on_disk}
        return extra
    return {"spilled_events": groups.rows, "spilled_bytes": groups.bytes_on_disk}


def hunt(
    paths: Sequence[str | Path],
    *,
    baseline: ProgramBaseline | str | Path | None = None,
    report: RunReport | None = None,
    config: CorrelationConfig | None = None,
    progress: ProgressFn | None = None,
    memory_events: int = MEMORY_EVENTS,
    group_events: int | None = None,
    spill_dir: str | Path | None = None,
    stage: StageFn | None = None,
) -> HuntResult:
    """Read ``paths``, detect, correlate. ``baseline``: a learned baseline or its directory.
    Above ``memory_events`` events the run is partitioned by host (module docs) into groups of
    about ``group_events`` events (default ``group_size(memory_events)``); ``spill_dir`` is
    where the events go then (default: the system's temporary directory), and ``stage`` is
    told which pass over which host group is running."""
    report = report or RunReport()
    if group_events is None:
        group_events = group_size(memory_events)
    if isinstance(baseline, str | Path):
        baseline = ProgramBaseline.load(baseline)
    t0 = time.perf_counter()
    with read_inputs(
        paths, report, progress, memory_events=memory_events, spill_dir=spill_dir
    ) as data:
        t_read = time.perf_counter() - t0
        if not isinstance(data, pa.Table):
            result = detect_partitioned(
                data,
                baseline=baseline,
                config=config,
                report=report,
                group_events=group_events,
                stage=stage,
            )
        else:
            result = detect_events(data, baseline=baseline, config=config, report=report)
    result.timings = {"read": t_read, **result.timings}
    report.finish()
    return result


def train(
    paths: Sequence[str | Path],
    out_dir: str | Path | None = None,
    *,
    report: RunReport | None = None,
    progress: ProgressFn | None = None,
    memory_events: int = MEMORY_EVENTS,
    group_events: int | None = None,
    spill_dir: str | Path | None = None,
    stage: StageFn | None = None,
) -> ProgramBaseline:
    """Learn a calibrated baseline from benign telemetry; save it when ``out_dir`` is given.
    Above ``memory_events`` events it is learned per group of whole hosts (``hunt``'s) and
    summed (the same tables, ``engine.partitions``)."""
    report = report or RunReport()
    if group_events is None:
        group_events = group_size(memory_events)
    with read_inputs(
        paths, report, progress, memory_events=memory_events, spill_dir=spill_dir
    ) as data:
        if not isinstance(data, pa.Table):
            baseline = _learn_groups(data, group_events, keep=["instance_facts"], stage=stage)
            n = len(data.group_plan(group_events))

            def maxima(i: int) -> pa.Table:
                if stage is not None:
                    stage("calibrating", f"host group {i + 1} of {n}")
                facts = data.get(i, "instance_facts")
                return partitions.calibration_maxima(None, baseline, instance_facts=facts)

            partitions.set_thresholds(baseline, (maxima(i) for i in range(n)))
            report.extra["engine"] = {"name": "local", "partitions": n, **_engine_extra(data)}
        else:
            baseline = learn_baseline(data)
    if out_dir is not None:
        baseline.save(out_dir)
    report.finish()
    return baseline
