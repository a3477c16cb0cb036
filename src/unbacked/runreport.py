"""What a run read, skipped and why: the issue sink every stage reports bad input to.

Per record: count and report, continue. Per file: record the error, go on to the next file.
``strict=True`` turns the first problem into an exception instead (``--strict``).

Accounting: for every input a source read, ``records == events + ignored + skipped`` (each
record is produced, ignored as an event type unbacked does not use, or skipped with a reason;
an unreadable remainder, e.g. the tail after a read error, counts as one skipped record).
Inputs that were not read at all are listed in ``unread`` with why (empty, not a regular file,
not recognised, nested too deep, ...); ``lost`` marks those that held, or looked as if they
held, telemetry (an explicit file nobody recognises, a damaged archive member), and the
``error`` of an input that failed as a whole. ``notes`` keep damage that is not a record (a
CRC mismatch of an archive member whose data was read).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from unbacked.errors import InputError

#: How many example messages to keep per (file, reason).
_MAX_EXAMPLES = 3


@dataclass(slots=True)
class FileReport:
    """Counters for one input file (or archive member)."""

    path: str
    format: str | None = None
    records: int = 0  # records seen (readable or not)
    events: int = 0  # normalized events produced
    ignored: int = 0  # readable records of event types unbacked does not use
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> count of unreadable records
    examples: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None  # the whole file could not be read
    notes: list[str] = field(default_factory=list)  # damage that is not a record (bad CRC)

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    @property
    def accounted(self) -> bool:
        """Every record produced, ignored or skipped with a reason (the accounting identity)."""
        return self.records == self.events + self.ignored + self.skipped_total

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "records": self.records,
            "events": self.events,
            "ignored": self.ignored,
            "skipped": dict(self.skipped),
            "skipped_total": sum(self.skipped.values()),
            "examples": self.examples,
            "error": self.error,
            "notes": list(self.notes),
            "accounted": self.accounted,
        }


@dataclass(frozen=True, slots=True)
class Unread:
    """An input that was not read: where, why, and whether telemetry was lost with it."""

    path: str
    reason: str
    lost: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "reason": self.reason, "lost": self.lost}


class RunReport:
    """Thread-safe issue sink and run summary (``--report run.json``)."""

    def __init__(self, *, strict: bool = False) -> None:
        self.strict = strict
        self.files: dict[str, FileReport] = {}
        self.started = time.time()
        self.finished: float | None = None
        self.alerts = 0
        self.extra: dict[str, Any] = {}
        self.unread: list[Unread] = []
        self._lock = threading.Lock()
        self._records_at: tuple[float, int] | None = None

    def file(self, path: str, fmt: str | None = None) -> FileReport:
        with self._lock:
            rep = self.files.get(path)
            if rep is None:
                rep = self.files[path] = FileReport(path)
            if fmt is not None:
                rep.format = fmt
            return rep

    def skip(
        self,
        path: str,
        reason: str,
        count: int = 1,
        *,
        detail: str | None = None,
        offset: int | None = None,
    ) -> None:
        """Count ``count`` unreadable records of ``path`` for ``reason`` and go on.

        Raises ``InputError`` instead when the run is strict.
        """
        if count <= 0:
            return
        if self.strict:
            raise InputError(
                f"unreadable record ({reason}){': ' + detail if detail else ''}",
                source=path,
                offset=offset,
                hint="run without --strict to count and skip unreadable records",
            )
        rep = self.file(path)
        with self._lock:
            rep.skipped[reason] += count
            if detail is not None:
                ex = rep.examples.setdefault(reason, [])
                if len(ex) < _MAX_EXAMPLES:
                    ex.append(detail if offset is None else f"@{offset}: {detail}")

    def file_error(self, path: str, exc: BaseException) -> None:
        """The whole file could not be read: record it and go on (raise when strict)."""
        if self.strict:
            raise exc
        rep = self.file(path)
        rep.error = f"{type(exc).__name__}: {exc}"

    def not_read(self, path: str, reason: str, *, lost: bool = False) -> None:
        """``path`` was not read (``reason``); ``lost``: it held or looked like telemetry.

        A lost input raises ``InputError`` when the run is strict.
        """
        if lost and self.strict:
            raise InputError(
                f"input not read: {reason}",
                source=path,
                hint="run without --strict to list unread inputs and go on",
            )
        with self._lock:
            self.unread.append(Unread(path, reason, lost))

    def note(self, path: str, text: str) -> None:
        """Damage of ``path`` that is not a record (an archive member's CRC mismatch)."""
        rep = self.file(path)
        with self._lock:
            if text not in rep.notes:
                rep.notes.append(text)

    # -- summary ---------------------------------------------------------------------------
    # (summaries are taken under the lock the writers take: a reader on another thread may add
    # files and count skips while a progress line shows the totals)
    def _file_reports(self) -> list[FileReport]:
        with self._lock:
            return list(self.files.values())

    @property
    def events(self) -> int:
        return sum(f.events for f in self._file_reports())

    @property
    def records(self) -> int:
        return sum(f.records for f in self._file_reports())

    def records_lately(self, max_age: float = 0.25) -> int:
        """``records`` as summed at most ``max_age`` seconds ago: for progress shown while
        reading (summing every file's count after every table read made a run over thousands
        of files quadratic in them)."""
        now = time.monotonic()
        if self._records_at is None or now - self._records_at[0] > max_age:
            self._records_at = (now, self.records)
        return self._records_at[1]

    @property
    def skipped(self) -> int:
        return sum(self.skipped_by_reason().values())

    def skipped_by_reason(self) -> Counter[str]:
        total: Counter[str] = Counter()
        with self._lock:
            for f in self.files.values():
                total.update(f.skipped)
        return total

    @property
    def failed_files(self) -> list[FileReport]:
        return [f for f in self._file_reports() if f.error is not None]

    @property
    def lost(self) -> list[str]:
        """Inputs lost whole: failed files and unread inputs that held telemetry."""
        out = [f.path for f in self._file_reports() if f.error is not None]
        with self._lock:
            out += [u.path for u in self.unread if u.lost]
        return out

    @property
    def found_telemetry(self) -> bool:
        """Whether any input was recognised as telemetry (read, even if it held no events)."""
        return any(f.format is not None for f in self._file_reports())

    @property
    def unaccounted(self) -> list[FileReport]:
        """Read inputs whose records do not add up (should never happen; shown if it does)."""
        return [f for f in self._file_reports() if f.error is None and not f.accounted]

    def finish(self) -> None:
        self.finished = time.time()

    def to_dict(self) -> dict[str, Any]:
        end = self.finished or time.time()
        return {
            "files": len(self.files),
            "files_failed": len(self.failed_files),
            "inputs_lost": self.lost,
            "no_telemetry": not self.found_telemetry,
            "records": self.records,
            "events": self.events,
            "skipped": self.skipped,
            "skipped_by_reason": dict(self.skipped_by_reason()),
            "alerts": self.alerts,
            "seconds": round(end - self.started, 3),
            "per_file": [f.to_dict() for f in self._file_reports()],
            "unread": [u.to_dict() for u in self.unread],
            **self.extra,
        }
