"""Process, module and region state derived from a stream of events.

``StateTracker`` accumulates event tables (from files or the live sensor) and answers, for the
events seen so far: which process instances exist (image, command line, parent chain, start),
which modules each loaded, and what each executable region went through (allocation, protection
changes, threads started in it, writes into it, the backing file if any).

The bulk work is columnar: process identity is resolved with one DuckDB aggregation over every
reference to a process (actor, target, parent fields), not per event in Python. Per-process
lookups (``process``, ``regions``, ``modules``) are for the handful of processes an alert is about.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from unbacked import duck
from unbacked.model.rows import python_table, to_rows
from unbacked.model.schema import EVENT_SCHEMA, Activity, Kind, conform
from unbacked.model.winconst import is_executable, protection_name


def program_of(image: str | None) -> str | None:
    """Normalized program name: the lower-case basename of an image path (``C:\\x\\Foo.EXE`` ->
    ``foo.exe``; ``/usr/bin/python3.11`` -> ``python3.11``)."""
    if not image:
        return None
    base = image.replace("\\", "/").rsplit("/", 1)[-1].strip().lower()
    return base or None


def program_column(images: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Vectorized ``program_of`` over an image column (computed once per distinct image: a
    run has thousands of events per image)."""
    if pa.types.is_dictionary(images.type):
        images = images.cast(pa.string())
    if len(images) > 256:
        if isinstance(images, pa.ChunkedArray):
            images = images.combine_chunks()
        encoded = pc.dictionary_encode(images)
        if len(encoded.dictionary) < len(images):
            # once per distinct image; never recurse on a dictionary as long as its input
            return _program_of_strings(encoded.dictionary).take(encoded.indices)
    return _program_of_strings(images)


def _program_of_strings(images: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    lowered = pc.utf8_lower(pc.replace_substring(images, "\\", "/"))
    base = pc.replace_substring_regex(lowered, r"^.*/", "")
    return pc.if_else(pc.equal(base, ""), pa.scalar(None, pa.string()), base)


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    """One process instance as far as the telemetry tells."""

    uid: str
    host: str | None
    pid: int | None
    image: str | None
    cmd_line: str | None = None
    user: str | None = None
    parent_uid: str | None = None
    parent_pid: int | None = None
    parent_image: str | None = None
    parent_cmd_line: str | None = None
    start: datetime | None = None
    first_seen: datetime | None = None
    last_seen: datetime | None = None

    @property
    def program(self) -> str | None:
        return program_of(self.image)

    @property
    def name(self) -> str | None:
        if not self.image:
            return None
        return self.image.replace("\\", "/").rsplit("/", 1)[-1]


@dataclass(slots=True)
class RegionHistory:
    """What happened to one memory region of one process, in order."""

    process_uid: str
    base: int
    size: int | None = None
    backing_path: str | None = None
    region_type: str | None = None
    header_kind: str | None = None
    protections: list[tuple[datetime, str]] = field(default_factory=list)
    threads: list[tuple[datetime, int | None]] = field(default_factory=list)  # start time, tid
    writers: list[tuple[datetime, str | None]] = field(default_factory=list)  # time, actor uid
    executable: bool = False

    @property
    def unbacked(self) -> bool:
        return self.backing_path is None and self.region_type not in ("image", "file")


_PROCESS_SQL = """
WITH refs AS (
    SELECT process_uid AS uid, host, pid, image, cmd_line, user,
           parent_uid, parent_pid, parent_image, parent_cmd_line,
           CASE WHEN activity = 'launch' THEN coalesce(process_start, time) END AS start,
           time, CASE activity WHEN 'exec' THEN 4 WHEN 'launch' THEN 3 ELSE 1 END AS weight
      FROM ev WHERE process_uid IS NOT NULL
    UNION ALL
    SELECT target_uid, host, target_pid, target_image, NULL, NULL,
           NULL, NULL, NULL, NULL, NULL, time, 1
      FROM ev WHERE target_uid IS NOT NULL
    UNION ALL
    SELECT parent_uid, host, parent_pid, parent_image, parent_cmd_line, NULL,
           NULL, NULL, NULL, NULL, NULL, time, 1
      FROM ev WHERE parent_uid IS NOT NULL
)
SELECT uid,
       min(host) AS host,
       -- every pick is ordered (launch/exec first, then the latest, then the value itself) so
       -- that the same events give the same answer however DuckDB splits the work
       first(pid ORDER BY key DESC, pid) FILTER (WHERE pid IS NOT NULL) AS pid,
       -- the image it runs: what it exec'd last, else what it was launched as, else the
       -- latest name any event gave it
       first(image ORDER BY key DESC, image) FILTER (WHERE image IS NOT NULL) AS image,
       first(cmd_line ORDER BY key DESC, cmd_line) FILTER (WHERE cmd_line IS NOT NULL)
           AS cmd_line,
       first(user ORDER BY key DESC, user) FILTER (WHERE user IS NOT NULL) AS user,
       first(parent_uid ORDER BY key DESC, parent_uid) FILTER (WHERE parent_uid IS NOT NULL)
           AS parent_uid,
       first(parent_pid ORDER BY key DESC, parent_pid) FILTER (WHERE parent_pid IS NOT NULL)
           AS parent_pid,
       first(parent_image ORDER BY key DESC, parent_image)
           FILTER (WHERE parent_image IS NOT NULL) AS parent_image,
       first(parent_cmd_line ORDER BY key DESC, parent_cmd_line)
           FILTER (WHERE parent_cmd_line IS NOT NULL) AS parent_cmd_line,
       min(start) AS start,
       min(time) AS first_seen,
       max(time) AS last_seen
  FROM (SELECT *, weight * 1e18 + coalesce(epoch_ns(time), 0) AS key FROM refs)
 GROUP BY uid
"""


class StateTracker:
    """Accumulates events and answers questions about processes, modules and regions.

    ``max_events`` bounds memory for streams (oldest batches are dropped first, the process
    table keeps what it learned about them).
    """

    def __init__(self, *, max_events: int | None = None) -> None:
        self.max_events = max_events
        self._batches: list[pa.Table] = []
        self._rows = 0
        self._events: pa.Table | None = None
        self._processes: dict[str, ProcessInfo] = {}
        #: the latest process table's rows not yet turned into ``ProcessInfo`` (by uid, in
        #: table order): most runs ask about a few processes, not about every one
        self._pending: pa.Table | None = None
        self._pending_rows: dict[str, list[int]] = {}
        self._dirty = False
        self._lock = threading.RLock()

    # -- feeding ---------------------------------------------------------------------------
    def update(self, events: pa.Table | pa.RecordBatch) -> None:
        table = events if isinstance(events, pa.Table) else pa.Table.from_batches([events])
        if table.schema != EVENT_SCHEMA:
            table = conform(table)
        with self._lock:
            self._batches.append(table)
            self._rows += table.num_rows
            self._events = None
            self._dirty = True
            if self.max_events is not None:
                while self._rows > self.max_events and len(self._batches) > 1:
                    self._refresh_processes()  # keep identities learned from what is dropped
                    old = self._batches.pop(0)
                    self._rows -= old.num_rows
                    self._events = None

    @classmethod
    def from_events(cls, events: pa.Table) -> StateTracker:
        tracker = cls()
        tracker.update(events)
        return tracker

    @property
    def events(self) -> pa.Table:
        with self._lock:
            if self._events is None:
                self._events = (
                    pa.concat_tables(self._batches) if self._batches else EVENT_SCHEMA.empty_table()
                )
            return self._events

    # -- processes -------------------------------------------------------------------------
    def _refresh_processes(self) -> None:
        """Learn the processes of the events held now. The table's rows become
        ``ProcessInfo`` when asked for (``process``), each merged into what earlier tables
        taught exactly as if every row had been merged in table order right away."""
        if not self._dirty:
            return
        self._materialize_all()  # what the previous table taught comes first
        # timestamps as datetimes now, so rows need no pandas later (model.rows)
        table = python_table(process_table(self.events))
        rows: dict[str, list[int]] = {}
        for i, uid in enumerate(table.column("uid").to_pylist()):
            rows.setdefault(uid, []).append(i)
        self._pending, self._pending_rows = table, rows
        self._dirty = False

    def _materialize(self, uid: str) -> None:
        idx = self._pending_rows.pop(uid, None)
        if idx is None or self._pending is None:
            return
        for i in idx:
            row = self._pending.slice(i, 1).to_pylist()[0]
            old = self._processes.get(uid)
            info = ProcessInfo(**row)
            self._processes[uid] = _merge(old, info) if old is not None else info

    def _materialize_all(self) -> None:
        if self._pending is None:
            return
        if self._pending_rows:
            keep = sorted(i for idx in self._pending_rows.values() for i in idx)
            rest = self._pending.take(pa.array(keep, pa.int64()))
            for row in rest.to_pylist():
                old = self._processes.get(row["uid"])
                info = ProcessInfo(**row)
                self._processes[row["uid"]] = _merge(old, info) if old is not None else info
        self._pending, self._pending_rows = None, {}

    def processes(self) -> dict[str, ProcessInfo]:
        with self._lock:
            self._refresh_processes()
            self._materialize_all()
            return dict(self._processes)

    def process(self, uid: str) -> ProcessInfo | None:
        with self._lock:
            self._refresh_processes()
            self._materialize(uid)
            return self._processes.get(uid)

    def parent_chain(self, uid: str, limit: int = 16) -> list[ProcessInfo]:
        """The parents of ``uid``, nearest first, as far as known (cycles and depth bounded)."""
        chain: list[ProcessInfo] = []
        seen = {uid}
        current = self.process(uid)
        while current is not None and current.parent_uid and len(chain) < limit:
            if current.parent_uid in seen:
                break
            seen.add(current.parent_uid)
            parent = self.process(current.parent_uid)
            if parent is None:
                parent = ProcessInfo(
                    uid=current.parent_uid,
                    host=current.host,
                    pid=current.parent_pid,
                    image=current.parent_image,
                    cmd_line=current.parent_cmd_line,
                )
            chain.append(parent)
            current = parent
        return chain

    def children(self, uid: str) -> list[ProcessInfo]:
        return [p for p in self.processes().values() if p.parent_uid == uid]

    # -- modules and regions ---------------------------------------------------------------
    def modules(self, uid: str) -> pa.Table:
        ev = self.events
        mask = pc.and_(
            pc.equal(ev["process_uid"], uid), pc.equal(ev["kind"].cast(pa.string()), Kind.MODULE)
        )
        return ev.filter(mask).select(["time", "activity", "module_path", "module_base", "signed"])

    def regions(self, uid: str) -> list[RegionHistory]:
        """Region histories of process ``uid`` (see ``region_histories``)."""
        return region_histories(self.events, uid)


def region_histories(events: pa.Table, uid: str) -> list[RegionHistory]:
    """Region histories of process ``uid``: memory events where it owns the memory (its own, or
    the target of a remote act) and threads started in them, keyed by allocation base."""
    ev = events
    kind = ev["kind"].cast(pa.string())
    owner = pc.coalesce(ev["target_uid"], ev["process_uid"])
    mask = pc.and_(
        pc.equal(owner, uid),
        pc.or_(pc.equal(kind, Kind.MEMORY), pc.equal(kind, Kind.THREAD)),
    )
    cols = [
        "time",
        "kind",
        "activity",
        "os",
        "process_uid",
        "tid",
        "target_tid",
        "start_address",
        "start_module",
        "alloc_base",
        "base_address",
        "region_size",
        "backing_path",
        "region_type",
        "header_kind",
        "protection",
    ]
    rows = to_rows(ev.filter(mask).select(cols).sort_by("time"))
    regions: dict[int, RegionHistory] = {}
    for r in rows:
        is_thread = r["kind"] == Kind.THREAD
        addr = r["start_address"] if is_thread else (r["alloc_base"] or r["base_address"])
        if addr is None:
            continue
        reg = _find_region(regions, addr) if is_thread else regions.get(addr)
        if reg is None:
            if is_thread and (r["start_module"] or r["activity"] != Activity.REMOTE_THREAD):
                # a start inside a module, or a local thread outside any region we saw
                # allocated: not a region of interest on its own
                continue
            reg = regions[addr] = RegionHistory(process_uid=uid, base=addr)
        if is_thread:
            reg.threads.append((r["time"], r["target_tid"] or r["tid"]))
            continue
        if r["region_size"] and (reg.size is None or r["region_size"] > reg.size):
            reg.size = r["region_size"]
        reg.backing_path = reg.backing_path or r["backing_path"]
        reg.region_type = reg.region_type or r["region_type"]
        reg.header_kind = r["header_kind"] or reg.header_kind
        if r["activity"] == Activity.WRITE:
            reg.writers.append((r["time"], r["process_uid"]))
        elif r["protection"] is not None:
            reg.protections.append((r["time"], protection_name(r["protection"], r["os"])))
            reg.executable = reg.executable or is_executable(r["protection"], r["os"])
    return list(regions.values())


def _find_region(regions: dict[int, RegionHistory], addr: int) -> RegionHistory | None:
    for reg in regions.values():
        if reg.base <= addr < reg.base + (reg.size or 1):
            return reg
    return None


def _merge(old: ProcessInfo, new: ProcessInfo) -> ProcessInfo:
    values: dict[str, Any] = {}
    for name in ProcessInfo.__slots__:
        a, b = getattr(old, name), getattr(new, name)
        if name == "first_seen":
            values[name] = min((x for x in (a, b) if x is not None), default=None)
        elif name == "last_seen":
            values[name] = max((x for x in (a, b) if x is not None), default=None)
        else:
            values[name] = b if b is not None else a
    return ProcessInfo(**values)


def process_table(events: pa.Table) -> pa.Table:
    """One row per process instance referenced anywhere in ``events`` (columnar)."""
    cols = [
        "process_uid",
        "host",
        "pid",
        "image",
        "cmd_line",
        "user",
        "parent_uid",
        "parent_pid",
        "parent_image",
        "parent_cmd_line",
        "process_start",
        "activity",
        "time",
        "target_uid",
        "target_pid",
        "target_image",
    ]
    ev = events.select(cols)
    ev = ev.set_column(
        ev.schema.get_field_index("host"), "host", ev["host"].cast(pa.string())
    ).set_column(
        ev.schema.get_field_index("activity"), "activity", ev["activity"].cast(pa.string())
    )
    return duck.query(_PROCESS_SQL, ev=ev)
