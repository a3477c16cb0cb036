"""Events on disk by host, read back as tables of whole hosts: how the embedded engine keeps its
memory flat when the input is larger than it wants to hold.

Every process lives on one host, so a host's events hold every process's whole history (and
both ends of an injection): detection over a group of whole hosts is detection over all events
restricted to those hosts (``engine.partitions`` learns one baseline from such groups). Events
are appended to one of ``buckets`` Arrow IPC streams (lz4) chosen by a stable hash of the host;
``groups`` packs consecutive buckets into tables of about ``group_rows`` events and returns
each in the embedded engine's canonical order (which, restricted to a subset of hosts, is the
same relative order as over all events). Strings that come dictionary-encoded (a lake's
Parquet, read as its dictionaries) are sorted by bucket as their indices and looked up once,
just before they are written.

Memory: the write buffer (``flush_rows`` events) while spilling; two groups while reading (one
detected, the next read ahead: ``read_ahead``). Disk:
the compressed events (a few hundred bytes per event); the directory is removed on ``close``.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import cast

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from unbacked.engine.order import canonical_order, concat_events, gather_events
from unbacked.errors import SpillError
from unbacked.model.rows import from_numpy
from unbacked.model.schema import EVENT_SCHEMA

#: hash buckets of hosts (groups are packed from consecutive buckets)
BUCKETS = 256
#: events buffered before they are split by bucket and written
FLUSH_ROWS = 262_144
#: how events go to local disk to be read back once or twice (the spill, an export's stage):
#: lz4, a tenth of zstd's cost to write here
SPILL_OPTIONS = ipc.IpcWriteOptions(compression="lz4")


def host_bucket(host: str | None, buckets: int = BUCKETS) -> int:
    """A host's bucket: CRC-32 of its name modulo ``buckets`` (stable across runs, machines and
    Python versions); events without a host are in bucket 0."""
    return 0 if host is None else zlib.crc32(host.encode()) % buckets


def pack_buckets(rows_per_bucket: np.ndarray, group_rows: int) -> list[list[int]]:
    """Consecutive non-empty buckets packed into groups of at most ``group_rows`` events (a
    bucket larger than that is a group of its own: hosts are never split)."""
    plan: list[list[int]] = []
    current: list[int] = []
    rows = 0
    for b in np.flatnonzero(rows_per_bucket):
        n = int(rows_per_bucket[b])
        if current and rows + n > group_rows:
            plan.append(current)
            current, rows = [], 0
        current.append(int(b))
        rows += n
    if current:
        plan.append(current)
    return plan


def host_buckets(hosts: pa.ChunkedArray | pa.Array, buckets: int = BUCKETS) -> np.ndarray:
    """The bucket of each row's host (``host_bucket``)."""
    if isinstance(hosts, pa.Array):
        hosts = pa.chunked_array([hosts])
    parts: list[np.ndarray] = []
    for chunk in hosts.chunks:
        if not pa.types.is_dictionary(chunk.type):
            chunk = chunk.dictionary_encode()
        names = chunk.dictionary.to_pylist()
        of_name = np.array([host_bucket(h, buckets) for h in names] or [0], dtype=np.int32)
        idx = chunk.indices.fill_null(0).to_numpy(zero_copy_only=False)
        b = of_name[idx] if len(names) else np.zeros(len(chunk), np.int32)
        if chunk.null_count:
            b = np.where(chunk.is_null().to_numpy(zero_copy_only=False), 0, b)
        parts.append(b.astype(np.int32, copy=False))
    return np.concatenate(parts) if parts else np.zeros(0, np.int32)


@contextlib.contextmanager
def _disk(what: str, where: str | Path) -> Iterator[None]:
    """Disk errors of the spill as a ``SpillError`` that says where and what to do."""
    try:
        yield
    except (OSError, pa.ArrowException) as exc:
        raise SpillError(
            f"cannot {what}: {exc}",
            source=str(where),
            hint="free space there, choose another place with --spill-dir DIR, or hold more "
            "events in memory with --memory-events N",
        ) from exc


def _read(path: Path) -> pa.Table:
    with pa.OSFile(str(path), "rb") as source:
        return ipc.open_stream(source).read_all()


def read_ahead(tables: Iterator[pa.Table]) -> Iterator[pa.Table]:
    """``tables``, each next one made on a thread of its own while the caller works on the one
    it has: reading a host group back overlaps detecting the one before (one more table held
    in memory; reading the input ahead of spilling it measured no faster). An error making a
    table is raised where the caller asks for it. When the caller stops early (an error,
    Ctrl-C) it does not wait for the table being made: the thread (a daemon) finishes that
    one, then closes ``tables`` and ends."""
    import queue
    import threading

    asks: queue.SimpleQueue[bool] = queue.SimpleQueue()  # True: make the next one; False: stop
    made: queue.SimpleQueue[tuple[object, BaseException | None]] = queue.SimpleQueue()
    end = object()

    def work() -> None:
        try:
            while asks.get():
                try:
                    table = next(tables, end)
                except BaseException as exc:  # handed to the caller's thread
                    made.put((None, exc))
                    return
                made.put((table, None))
                if table is end:
                    return
        finally:
            close = getattr(tables, "close", None)
            if close is not None:
                close()

    threading.Thread(target=work, name="unbacked-read-ahead", daemon=True).start()
    asks.put(True)
    try:
        while True:
            table, exc = made.get()
            if exc is not None:
                raise exc
            if table is end:
                return
            asks.put(True)
            yield cast(pa.Table, table)
    finally:
        asks.put(False)


class HostSpill:
    """A temporary, host-partitioned store of events (see module docs). Use as a context
    manager, or call ``close`` (removes the files)."""

    def __init__(
        self,
        directory: str | Path | None = None,
        *,
        buckets: int = BUCKETS,
        flush_rows: int = FLUSH_ROWS,
    ) -> None:
        with _disk("create the spill directory", directory or tempfile.gettempdir()):
            self.path = Path(tempfile.mkdtemp(prefix="unbacked-spill-", dir=directory))
        self.buckets = buckets
        self.flush_rows = flush_rows
        self.rows = 0
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._writers: dict[int, tuple[ipc.RecordBatchStreamWriter, pa.NativeFile]] = {}
        self._rows_per_bucket = np.zeros(buckets, np.int64)
        self._finished = False

    # -- writing ---------------------------------------------------------------------------
    def add(self, table: pa.Table) -> None:
        """Buffer ``table`` (``EVENT_SCHEMA``; string columns may come dictionary-encoded, as a
        source's ``read_encoded`` gives them)."""
        if self._finished:
            raise RuntimeError("spill already finished")
        if table.schema.names != EVENT_SCHEMA.names:
            raise ValueError(f"not an event table: columns {table.schema.names[:5]}...")
        self._pending.append(table)
        self._pending_rows += table.num_rows
        self.rows += table.num_rows
        if self._pending_rows >= self.flush_rows:
            with _disk("write events to the spill", self.path):
                self._flush()

    def _flush(self) -> None:
        if not self._pending_rows:
            return
        table = concat_events(self._pending)
        self._pending, self._pending_rows = [], 0
        bucket = host_buckets(table.column("host"), self.buckets)
        # strings that come dictionary-encoded are sorted as their indices, then looked up
        table = gather_events(table, from_numpy(np.argsort(bucket, kind="stable")))
        counts = np.bincount(bucket, minlength=self.buckets)
        self._rows_per_bucket += counts
        start = 0
        for b in np.flatnonzero(counts):
            n = int(counts[b])
            self._writer(int(b)).write_table(table.slice(start, n), max_chunksize=65_536)
            start += n

    def _writer(self, bucket: int) -> ipc.RecordBatchStreamWriter:
        if bucket not in self._writers:
            sink = pa.OSFile(str(self._file(bucket)), "wb")
            writer = ipc.new_stream(sink, EVENT_SCHEMA, options=SPILL_OPTIONS)
            self._writers[bucket] = (writer, sink)
        return self._writers[bucket][0]

    def _file(self, bucket: int) -> Path:
        return self.path / f"bucket-{bucket:04d}.arrows"

    def finish(self) -> None:
        """Write what is buffered and close the files (no more ``add``)."""
        if self._finished:
            return
        with _disk("write events to the spill", self.path):
            self._flush()
            for writer, sink in self._writers.values():
                writer.close()
                sink.close()
        self._writers.clear()
        self._finished = True

    @property
    def bytes_on_disk(self) -> int:
        return sum(p.stat().st_size for p in self.path.glob("*.arrows"))

    # -- reading ---------------------------------------------------------------------------
    def group_plan(self, group_rows: int) -> list[list[int]]:
        """The spilled buckets packed into groups of whole hosts (``pack_buckets``)."""
        self.finish()
        return pack_buckets(self._rows_per_bucket, group_rows)

    @property
    def rows_per_bucket(self) -> np.ndarray:
        """Events spilled per bucket."""
        return self._rows_per_bucket.copy()

    def bucket_tables(self, buckets: Sequence[int]) -> list[pa.Table]:
        """The events of ``buckets`` (those that hold any), as spilled: in no particular order
        (``canonical_order`` puts them in order with others)."""
        self.finish()
        with _disk("read events back from the spill", self.path):
            return [_read(self._file(b)) for b in buckets if self._rows_per_bucket[b]]

    def groups(self, group_rows: int) -> Iterator[pa.Table]:
        """Tables of whole hosts, each in canonical order, every event exactly once (the same
        groups in the same order for the same ``group_rows``)."""
        self.finish()
        for buckets in self.group_plan(group_rows):
            yield canonical_order(self.bucket_tables(buckets))

    # -- what a pass computed per group, for the next pass ---------------------------------
    def put(self, group: int, name: str, table: pa.Table) -> None:
        """Keep ``table`` (e.g. a group's facts) on disk for a later pass over the groups."""
        path = self.path / f"group-{group:05d}.{name}.arrows"
        with (
            _disk("write to the spill", self.path),
            pa.OSFile(str(path), "wb") as sink,
            ipc.new_stream(sink, table.schema, options=SPILL_OPTIONS) as writer,
        ):
            writer.write_table(table)

    def get(self, group: int, name: str) -> pa.Table:
        with _disk("read back from the spill", self.path):
            return _read(self.path / f"group-{group:05d}.{name}.arrows")

    # -- lifetime --------------------------------------------------------------------------
    def close(self) -> None:
        for writer, sink in self._writers.values():
            with contextlib.suppress(OSError, pa.ArrowException):
                writer.close()
            sink.close()
        self._writers.clear()
        self._finished = True
        shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self) -> HostSpill:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
