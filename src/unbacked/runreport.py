"""What a run read, skipped and why: the issue sink every stage reports bad input to.

Per record: count and report, continue. Per file: record the error, go on to the next file.
``strict=True`` turns the first problem into an exception instead (``--strict``).
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
        }


class RunReport:
    """Thread-safe issue sink and run summary (``--report run.json``)."""

    def __init__(self, *, strict: bool = False) -> None:
        self.strict = strict
        self.files: dict[str, FileReport] = {}
        self.started = time.time()
        self.finished: float | None = None
        self.alerts = 0
        self.extra: dict[str, Any] = {}
        self._lock = threading.Lock()

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

    # -- summary ---------------------------------------------------------------------------
    @property
    def events(self) -> int:
        return sum(f.events for f in self.files.values())

    @property
    def records(self) -> int:
        return sum(f.records for f in self.files.values())

    @property
    def skipped(self) -> int:
        return sum(sum(f.skipped.values()) for f in self.files.values())

    def skipped_by_reason(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for f in self.files.values():
            total.update(f.skipped)
        return total

    @property
    def failed_files(self) -> list[FileReport]:
        return [f for f in self.files.values() if f.error is not None]

    def finish(self) -> None:
        self.finished = time.time()

    def to_dict(self) -> dict[str, Any]:
        end = self.finished or time.time()
        return {
            "files": len(self.files),
            "files_failed": len(self.failed_files),
            "records": self.records,
            "events": self.events,
            "skipped": self.skipped,
            "skipped_by_reason": dict(self.skipped_by_reason()),
            "alerts": self.alerts,
            "seconds": round(end - self.started, 3),
            "per_file": [f.to_dict() for f in self.files.values()],
            **self.extra,
        }
