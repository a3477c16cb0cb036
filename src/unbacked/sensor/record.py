"""Record one command and its descendants, or the whole system, into event files.

Both run the same pipeline: kernel ring buffer → ``SpoolingReader`` (acknowledges only what is
on disk) → bounded ``Spool`` → ``EventDecoder`` → ``EventWriter`` (Parquet or JSON lines of
``EVENT_SCHEMA``) and/or a callback (streaming detection). The sensor's counters (emitted, lost,
suppressed) come back in the result and end up in the run report, so a drop is always visible.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from unbacked.errors import SensorError
from unbacked.procenv import for_programs_started
from unbacked.sensor.decode import EventDecoder
from unbacked.sensor.live import Sensor, SensorOptions
from unbacked.sensor.spool import DEFAULT_MAX_BYTES, Spool, SpoolingReader

BatchFn = Callable[[pa.Table], None]

#: minimum time between two decoded batches (bounds the consumer's fixed cost per batch)
MIN_BATCH_S = 0.2
#: the event file gets a new row group after this long or this many rows
WRITE_EVERY_S = 2.0
WRITE_ROWS = 65_536

#: the gate: the wrapper stops itself until the sensor tracks it, then becomes the command
_GATE = 'kill -STOP $$; exec "$@"'


@dataclass(slots=True)
class RecordResult:
    """What a recording produced."""

    events: int = 0
    records: int = 0
    exit_code: int | None = None
    seconds: float = 0.0
    stats: dict[str, Any] = field(default_factory=dict)
    spool_high_water: int = 0
    output: Path | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "records": self.records,
            "exit_code": self.exit_code,
            "seconds": round(self.seconds, 3),
            "sensor": self.stats,
            "spool_high_water_bytes": self.spool_high_water,
            "output": str(self.output) if self.output else None,
        }


class _Pipeline:
    """Sensor + spool + reader + decoder + sinks, started and stopped together."""

    def __init__(
        self,
        options: SensorOptions,
        output: Path | None,
        on_batch: BatchFn | None,
        spool_dir: Path | None,
        spool_bytes: int,
    ) -> None:
        from unbacked.sources.native import EventWriter

        self.sensor = Sensor(options).start()
        self.decoder = EventDecoder(
            clock_offset_ns=self.sensor.clock_offset_ns,
            src_file=str(output) if output else None,
        )
        self.spool = Spool(spool_dir, max_bytes=spool_bytes)
        self.reader = SpoolingReader(self.sensor, self.spool)
        self.writer = EventWriter(output) if output is not None else None
        self.on_batch = on_batch
        self.result = RecordResult(output=output)
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._last_write = time.monotonic()
        self._last_sink = 0.0
        self.reader.start()

    def pump(self, timeout: float) -> int:
        """Decode and sink what the spool holds; the number of events it held.

        Batches are at least ``MIN_BATCH_S`` apart: decoding and detection have a fixed cost
        per call, so a busy system is handled in a few large batches rather than many small
        ones, and the sensor stays a small share of a CPU.
        """
        wait = MIN_BATCH_S - (time.monotonic() - self._last_sink)
        if wait > 0:
            time.sleep(min(wait, timeout))
            if time.monotonic() - self._last_sink < MIN_BATCH_S:
                return 0
        recs = self.spool.get_many(timeout)
        if recs is None:
            if self.reader.error is not None:
                raise SensorError(
                    f"sensor reader failed: {self.reader.error}"
                ) from self.reader.error
            return 0
        self._last_sink = time.monotonic()
        return self._sink(recs)

    def _sink(self, recs: Any) -> int:
        self.result.records += len(recs)
        table = self.decoder.to_table(recs)
        if table.num_rows:
            if self.writer is not None:
                self._pending.append(table)
                self._pending_rows += table.num_rows
                self._flush(force=False)
            if self.on_batch is not None:
                self.on_batch(table)
        self.result.events += table.num_rows
        return int(table.num_rows)

    def _flush(self, *, force: bool) -> None:
        """Write buffered batches as one Parquet row group / JSON-lines block once enough rows
        or time have gathered (small row groups cost more than they hold)."""
        if self.writer is None or not self._pending:
            return
        due = time.monotonic() - self._last_write >= WRITE_EVERY_S
        if force or due or self._pending_rows >= WRITE_ROWS:
            self.writer.write(pa.concat_tables(self._pending))
            self._pending.clear()
            self._pending_rows = 0
            self._last_write = time.monotonic()

    def finish(self) -> RecordResult:
        try:
            self.reader.stop()
            recs = self.spool.get_all()
            if len(recs):
                self._sink(recs)
            self._flush(force=True)
            self.result.stats = self.sensor.stats()
            self.result.spool_high_water = self.spool.high_water
        finally:
            if self.writer is not None:
                self.writer.close()
            self.spool.close()
            self.sensor.close()
        return self.result


def record_command(
    argv: Sequence[str],
    output: str | os.PathLike[str] | None,
    *,
    options: SensorOptions | None = None,
    on_batch: BatchFn | None = None,
    grace_s: float = 0.3,
    spool_dir: Path | None = None,
    spool_bytes: int = DEFAULT_MAX_BYTES,
    stdin: Any = None,
    stdout: Any = None,
    stderr: Any = None,
    timeout: float | None = None,
) -> RecordResult:
    """Run ``argv`` under the sensor; record it and its descendants into ``output``.

    The command starts gated: it is tracked in the kernel before it executes its first
    instruction, so its exec, every executable mapping of its loader and everything after is
    recorded. ``grace_s`` keeps recording after it exits (descendants, late records).
    """
    if not argv:
        raise SensorError("no command to record", hint="unbacked record -o out.parquet -- CMD ARGS")
    opts = options or SensorOptions(follow_tree=True)
    if not opts.follow_tree:
        raise SensorError("record_command needs SensorOptions(follow_tree=True)")
    out = Path(output) if output is not None else None
    t0 = time.monotonic()
    pipe = _Pipeline(opts, out, on_batch, spool_dir, spool_bytes)
    proc: subprocess.Popen[bytes] | None = None
    try:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", _GATE, "unbacked-record", *argv],
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            env=for_programs_started(),  # without the command's own settings (procenv)
        )
        _, status = os.waitpid(proc.pid, os.WUNTRACED)
        if not os.WIFSTOPPED(status):
            raise SensorError(f"the command wrapper ended before starting {argv[0]!r}")
        pipe.sensor.track(proc.pid)
        os.kill(proc.pid, signal.SIGCONT)
        deadline = None if timeout is None else t0 + timeout
        while proc.poll() is None:
            pipe.pump(0.1)
            if deadline is not None and time.monotonic() > deadline:
                proc.kill()
        end = time.monotonic() + grace_s
        while time.monotonic() < end:
            pipe.pump(0.05)
        pipe.result.exit_code = proc.returncode
    except BaseException:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        pipe.finish()
        raise
    result = pipe.finish()
    result.seconds = time.monotonic() - t0
    return result


def record_system(
    output: str | os.PathLike[str] | None,
    *,
    options: SensorOptions | None = None,
    on_batch: BatchFn | None = None,
    duration: float | None = None,
    should_stop: Callable[[], bool] | None = None,
    spool_dir: Path | None = None,
    spool_bytes: int = DEFAULT_MAX_BYTES,
) -> RecordResult:
    """Record the whole system until ``duration`` passes or ``should_stop()`` is true."""
    opts = options or SensorOptions()
    out = Path(output) if output is not None else None
    t0 = time.monotonic()
    pipe = _Pipeline(opts, out, on_batch, spool_dir, spool_bytes)
    try:
        while True:
            if duration is not None and time.monotonic() - t0 >= duration:
                break
            if should_stop is not None and should_stop():
                break
            pipe.pump(0.1)
    except KeyboardInterrupt:
        pass
    except BaseException:
        pipe.finish()
        raise
    result = pipe.finish()
    result.seconds = time.monotonic() - t0
    return result
