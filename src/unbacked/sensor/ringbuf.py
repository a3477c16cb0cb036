"""Consume a BPF ring buffer map directly through mmap, many records per numpy view.

The kernel's ring buffer (``BPF_MAP_TYPE_RINGBUF``) exposes a consumer-position page (writable),
a producer-position page and the data area mapped twice in a row, so a record that wraps around
the end is still contiguous. Each record is an 8-byte header (length, with a BUSY and a DISCARD
bit) and its payload, padded to 8 bytes. The sensor writes records of one fixed size, so
``take`` views everything between the consumer and producer positions as one structured array,
stops at the first record still being written, copies the run out and only then advances the
consumer position: that is the acknowledgement, after which the kernel may overwrite the space.
"""

from __future__ import annotations

import mmap
import select
import struct

import numpy as np

from unbacked.errors import SensorError
from unbacked.sensor.layout import EVENT_SIZE, RECORD_DTYPE

BUSY_BIT = 1 << 31
DISCARD_BIT = 1 << 30
HDR_SIZE = 8
RECORD_SIZE = RECORD_DTYPE.itemsize


class RingBuffer:
    """One ring buffer map, consumed in bulk. Not thread safe: one consumer."""

    def __init__(self, map_fd: int, size: int) -> None:
        self.size = size
        self.mask = size - 1
        page = mmap.PAGESIZE
        try:
            self._cons = mmap.mmap(map_fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            self._prod = mmap.mmap(
                map_fd, page + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page
            )
        except OSError as exc:
            raise SensorError(f"cannot map the ring buffer: {exc}") from exc
        self._data = memoryview(self._prod)[page:]
        self._epoll = select.epoll()
        self._epoll.register(map_fd, select.EPOLLIN)

    def positions(self) -> tuple[int, int]:
        cons = struct.unpack_from("<Q", self._cons, 0)[0]
        prod = struct.unpack_from("<Q", self._prod, 0)[0]
        return int(cons), int(prod)

    def pending_bytes(self) -> int:
        cons, prod = self.positions()
        return prod - cons

    def wait(self, timeout: float) -> bool:
        """Block until the kernel signals data or ``timeout`` seconds pass; True if data waits.

        The eBPF program only signals once the ring is a quarter full (no wakeup per record),
        so callers poll: ``wait(0.05)`` returns after 50 ms with whatever arrived meanwhile.
        """
        if self.pending_bytes():
            return True
        self._epoll.poll(timeout)
        return self.pending_bytes() > 0

    def take(self, max_records: int = 1 << 16) -> np.ndarray:
        """Copy out up to ``max_records`` committed records and acknowledge them."""
        recs, pos = self.peek(max_records)
        self.ack(pos)
        return recs

    def ack(self, position: int) -> None:
        """Hand the ring space up to ``position`` (from ``peek``) back to the kernel."""
        struct.pack_into("<Q", self._cons, 0, position)

    def peek(self, max_records: int = 1 << 16) -> tuple[np.ndarray, int]:
        """Copy out up to ``max_records`` committed records without acknowledging them.

        Returns the records and the consumer position to ``ack`` once they are safe.
        """
        cons, prod = self.positions()
        avail = min(prod - cons, self.size, max_records * RECORD_SIZE)
        n = avail // RECORD_SIZE
        if n == 0:
            return np.empty(0, dtype=RECORD_DTYPE["ev"]), cons
        off = cons & self.mask
        view = np.frombuffer(self._data[off : off + n * RECORD_SIZE], dtype=RECORD_DTYPE)
        lens = view["hdr_len"]
        busy = np.flatnonzero(lens & BUSY_BIT)
        if busy.size:
            n = int(busy[0])
            view = view[:n]
            lens = lens[:n]
        if n and np.any((lens & ~np.uint32(BUSY_BIT | DISCARD_BIT)) != EVENT_SIZE):
            raise SensorError("ring buffer record of unexpected size: object and decoder differ")
        keep = (lens & DISCARD_BIT) == 0
        out = view["ev"][keep].copy()
        del view, lens
        return out, cons + n * RECORD_SIZE

    def close(self) -> None:
        self._epoll.close()
        self._data.release()
        self._prod.close()
        self._cons.close()
