"""The bounded spool: FIFO order, the bound holds, and what was acknowledged survives a restart."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from unbacked.sensor.decode import empty_records
from unbacked.sensor.layout import EVENT_SIZE
from unbacked.sensor.spool import Spool


def _recs(start: int, n: int) -> np.ndarray:
    r = empty_records(n)
    r["seq"] = np.arange(start, start + n)
    return r


def test_fifo_and_get_many(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "s")
    for i in range(3):
        assert sp.put(_recs(i * 10, 10))
    first = sp.get(timeout=0)
    assert first is not None and first["seq"].tolist() == list(range(10))
    rest = sp.get_many(timeout=0)
    assert rest is not None and rest["seq"].tolist() == list(range(10, 30))
    assert sp.get(timeout=0) is None
    assert sp.bytes == 0
    sp.close()


def test_bound_blocks_producer_until_consumer_frees(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "s", max_bytes=20 * EVENT_SIZE)
    assert sp.put(_recs(0, 15))
    assert not sp.put(_recs(15, 10), timeout=0.1)  # would exceed the bound: refused in time
    assert sp.bytes == 15 * EVENT_SIZE

    done = threading.Event()

    def producer() -> None:
        sp.put(_recs(15, 10))
        done.set()

    t = threading.Thread(target=producer)
    t.start()
    time.sleep(0.1)
    assert not done.is_set()  # still blocked: the spool is full
    got = sp.get(timeout=0)
    assert got is not None and len(got) == 15
    t.join(2)
    assert done.is_set()
    assert sp.high_water <= 20 * EVENT_SIZE
    sp.close()


def test_acknowledged_records_survive_a_restart(tmp_path: Path) -> None:
    d = tmp_path / "s"
    sp = Spool(d)
    sp.put(_recs(0, 5))
    sp.put(_recs(5, 5))
    sp.close()  # a directory given by the caller is kept
    again = Spool(d)
    assert again.get_all()["seq"].tolist() == list(range(10))
    again.put(_recs(10, 1))
    assert next(iter(sorted(d.glob("seg-*.rec")))).name == "seg-000000000002.rec"
    again.close()


def test_private_spool_cleans_up() -> None:
    sp = Spool()
    sp.put(_recs(0, 3))
    d = sp.dir
    sp.close()
    assert not d.exists()
