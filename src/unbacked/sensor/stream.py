"""Streaming detection for the live sensor: a sliding window of events, detected as it grows.

Each decoded batch joins a bounded window (the last ``window_s`` seconds, at most ``max_rows``
events); at most every ``interval_s`` seconds the engine's ``detect_events`` runs over the
window, and every process instance whose alert is new, or whose risk rose, is written at once.
A window rather than the whole history keeps each pass cheap and the alert latency bounded;
what the window forgets is what a live sensor may forget (the alerts are already out).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.compute as pc

from unbacked.model.alert import Alert

AlertFn = Callable[[list[Alert]], None]


class StreamingDetector:
    """Feed it decoded batches (``__call__``); it calls ``on_alerts`` with new or risen alerts."""

    def __init__(
        self,
        on_alerts: AlertFn,
        *,
        baseline: Any = None,
        window_s: float = 120.0,
        max_rows: int = 200_000,
        interval_s: float = 0.25,
        verify: bool = False,
    ) -> None:
        self.on_alerts = on_alerts
        #: scan each new alert's regions in the still-running process (memscan) and attach it
        self.verify = verify
        self.baseline = baseline
        self.window_s = window_s
        self.max_rows = max_rows
        self.interval_s = interval_s
        self._tables: deque[pa.Table] = deque()
        self._rows = 0
        self._last_run = 0.0
        self._dirty = False
        self._seen: dict[str, int] = {}
        self._new_uids: set[str | None] = set()
        self.latencies_s: list[float] = []
        self.pass_s: list[float] = []
        self.passes = 0
        self.alerts = 0
        self._warm_up()

    def _warm_up(self) -> None:
        """Import and exercise the engine once, so the first live event does not pay for it."""
        from unbacked.engine.local import detect_events
        from unbacked.model.schema import EVENT_SCHEMA

        detect_events(EVENT_SCHEMA.empty_table(), baseline=self.baseline)

    def __call__(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        self._tables.append(table)
        self._rows += table.num_rows
        self._dirty = True
        self._new_uids.update(pc.unique(table["process_uid"]).to_pylist())
        self._trim()
        if time.monotonic() - self._last_run >= self.interval_s:
            self.run()

    def _trim(self) -> None:
        newest = self._tables[-1]["time"][-1].value
        horizon = newest - int(self.window_s * 1e9)
        while len(self._tables) > 1 and (
            self._rows > self.max_rows or self._tables[0]["time"][-1].value < horizon
        ):
            self._rows -= self._tables.popleft().num_rows

    def run(self) -> list[Alert]:
        """Detect over the current window now; returns the alerts it reported."""
        from unbacked.engine.local import detect_events

        if not self._dirty or not self._tables:
            return []
        self._last_run = time.monotonic()
        self._dirty = False
        events = pa.concat_tables(list(self._tables)).combine_chunks()
        if self.baseline is not None:
            events = self._affected(events)
        self._new_uids.clear()
        t0 = time.perf_counter()
        result = detect_events(events, baseline=self.baseline)
        self.pass_s.append(time.perf_counter() - t0)
        self.passes += 1
        fresh = []
        for alert in result.alerts:
            key = (alert.process.uid if alert.process is not None else None) or alert.uid
            prev = self._seen.get(key)
            if prev is not None and prev >= alert.risk_score:
                continue
            self._seen[key] = alert.risk_score
            fresh.append(alert)
            if prev is None and alert.last_seen is not None:
                # first report of this process: how long after its newest event
                self.latencies_s.append(time.time() - alert.last_seen.timestamp())
        if fresh and self.verify:
            from unbacked.memscan.verify import verify_local_alerts

            fresh = verify_local_alerts(fresh)
        if fresh:
            self.alerts += len(fresh)
            self.on_alerts(fresh)
        return fresh

    def _affected(self, events: pa.Table) -> pa.Table:
        """With a learned baseline each process is scored on its own: only the processes that
        had new events since the last pass (and their parents' events, for the alert's process
        chain) need detecting again, not the whole window."""
        uids = pa.array([u for u in self._new_uids if u is not None], pa.string())
        mine = pc.is_in(events["process_uid"], value_set=uids)
        parents = pc.unique(events.filter(mine)["parent_uid"].drop_null())
        keep = pc.or_(mine, pc.is_in(events["process_uid"], value_set=parents.cast(pa.string())))
        return events.filter(keep)

    def flush(self) -> list[Alert]:
        self._dirty = True
        return self.run()


def ocsf_appender(path: Path | str | None, stream: IO[str] | None = None) -> AlertFn:
    """An ``on_alerts`` that appends OCSF Detection Finding lines to ``path`` (or ``stream``)."""
    from unbacked.render.ocsf import write_ocsf

    def write(alerts: list[Alert]) -> None:
        if path is not None:
            with open(path, "a", encoding="utf-8") as fh:
                write_ocsf(alerts, fh)
        if stream is not None:
            write_ocsf(alerts, stream)
            stream.flush()

    return write


def memory_rows(table: pa.Table) -> pa.Table:
    """Only the memory events of ``table`` (tests and summaries)."""
    return table.filter(pc.equal(table["kind"].cast(pa.string()), "memory"))
