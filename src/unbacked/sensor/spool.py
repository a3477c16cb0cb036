"""A bounded on-disk spool between the ring-buffer reader and a slower consumer.

The reader thread drains the kernel ring buffer as fast as it can and appends the raw records
to segment files; only once a segment is on disk does it advance the ring's consumer position
(the acknowledgement). The consumer (decoding, writing, detection) takes segments oldest first
at its own pace and deletes each after use. So a slow consumer never loses an acknowledged
record, and the spool never grows past ``max_bytes``: when full the reader stops draining, the
ring buffer fills, and the kernel counts what it cannot store (``lost`` in the sensor stats),
which keeps every loss visible.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from unbacked.sensor.layout import EVENT_DTYPE, EVENT_SIZE

DEFAULT_MAX_BYTES = 512 << 20


class Spool:
    """FIFO of record segments in ``directory`` (a private temporary one by default)."""

    def __init__(
        self,
        directory: Path | str | None = None,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        fsync: bool = False,
    ) -> None:
        self._own = directory is None
        self.dir = Path(directory or tempfile.mkdtemp(prefix="unbacked-spool-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.fsync = fsync
        self._cond = threading.Condition()
        self._next = 0
        self._bytes = 0
        self._segments: list[Path] = []
        self.closed = False
        self.high_water = 0
        self.blocked_s = 0.0
        # resume what an earlier run left behind (records acknowledged but not consumed)
        for seg in sorted(self.dir.glob("seg-*.rec")):
            self._segments.append(seg)
            self._bytes += seg.stat().st_size
            self._next = max(self._next, int(seg.stem.split("-")[1]) + 1)

    @property
    def bytes(self) -> int:
        return self._bytes

    def put(self, recs: np.ndarray, *, timeout: float | None = None) -> bool:
        """Append a segment; blocks while the spool is full. False if it timed out or closed."""
        if len(recs) == 0:
            return True
        size = len(recs) * EVENT_SIZE
        t0 = time.monotonic()
        with self._cond:
            while self._bytes + size > self.max_bytes and self._bytes > 0 and not self.closed:
                left = None if timeout is None else timeout - (time.monotonic() - t0)
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left if left is not None else 0.5)
            if self.closed:
                return False
            seq = self._next
            self._next += 1
        self.blocked_s += time.monotonic() - t0
        path = self.dir / f"seg-{seq:012d}.rec"
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            fh.write(np.ascontiguousarray(recs, dtype=EVENT_DTYPE).tobytes())
            if self.fsync:
                fh.flush()
                os.fsync(fh.fileno())
        tmp.replace(path)
        with self._cond:
            self._segments.append(path)
            self._segments.sort()
            self._bytes += size
            self.high_water = max(self.high_water, self._bytes)
            self._cond.notify_all()
        return True

    def wait_for_room(self, timeout: float) -> None:
        """Wait until the consumer frees some space (or ``timeout`` passes)."""
        with self._cond:
            if self._bytes >= self.max_bytes and not self.closed:
                self._cond.wait(timeout)

    def get(self, timeout: float = 0.5) -> np.ndarray | None:
        """The oldest segment's records (removed from the spool), or None after ``timeout``."""
        with self._cond:
            if not self._segments:
                self._cond.wait(timeout)
            if not self._segments:
                return None
            path = self._segments.pop(0)
        recs = np.fromfile(path, dtype=EVENT_DTYPE)
        size = path.stat().st_size
        path.unlink()
        with self._cond:
            self._bytes -= size
            self._cond.notify_all()
        return recs

    def get_many(self, timeout: float = 0.5, max_records: int = 1 << 17) -> np.ndarray | None:
        """Every segment available now (waiting up to ``timeout`` for the first), concatenated.

        A consumer that is slower than the reader catches up in one step instead of paying its
        per-batch cost (a detection pass) once per segment.
        """
        first = self.get(timeout)
        if first is None:
            return None
        parts, n = [first], len(first)
        while n < max_records and (more := self.get(timeout=0)) is not None:
            parts.append(more)
            n += len(more)
        return np.concatenate(parts) if len(parts) > 1 else first

    def get_all(self) -> np.ndarray:
        """Every spooled record, oldest first (used once the reader has stopped)."""
        parts = []
        while (recs := self.get(timeout=0)) is not None:
            parts.append(recs)
        return np.concatenate(parts) if parts else np.empty(0, dtype=EVENT_DTYPE)

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()
        if self._own:
            for seg in self.dir.glob("seg-*"):
                seg.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                self.dir.rmdir()


class SpoolingReader(threading.Thread):
    """Background thread: sensor ring buffer -> spool, acknowledging only spooled records."""

    def __init__(self, sensor: object, spool: Spool, *, batch_s: float = 0.05) -> None:
        super().__init__(name="unbacked-sensor-reader", daemon=True)
        self.sensor = sensor
        self.spool = spool
        self.batch_s = batch_s
        self._stop_evt = threading.Event()
        self.error: BaseException | None = None
        self.records = 0

    def run(self) -> None:
        from unbacked.sensor.live import Sensor

        sensor = self.sensor
        assert isinstance(sensor, Sensor)
        try:
            while not self._stop_evt.is_set():
                if not sensor.wait(self.batch_s):
                    continue
                self._pump(sensor)
            self._pump(sensor)  # what arrived before stop
        except BaseException as exc:  # reported by the consumer via .error
            self.error = exc

    def _pump(self, sensor: object) -> None:
        from unbacked.sensor.live import Sensor

        assert isinstance(sensor, Sensor)
        while True:
            # only as much as the spool can take: the rest stays (unacknowledged) in the ring
            free = max(self.spool.max_bytes - self.spool.bytes, 0) // EVENT_SIZE
            if free == 0:
                self.spool.wait_for_room(0.05)
                if self._stop_evt.is_set() or self.spool.closed:
                    return
                continue
            recs, pos = sensor.peek(max_records=min(free, 1 << 16))
            if len(recs) == 0:
                sensor.ack(pos, 0)  # skip discarded records, if any
                return
            if not self.spool.put(recs):
                return  # spool closed: leave them unacknowledged
            sensor.ack(pos, len(recs))
            self.records += len(recs)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop_evt.set()
        self.join(timeout)
