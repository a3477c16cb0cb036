"""Options, progress and summaries shared by the subcommands."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import click
from rich.console import Console

from unbacked.model.alert import SEVERITY_NAMES, Alert, parse_severity
from unbacked.runreport import RunReport

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_USAGE = 2
EXIT_ALERTS = 3


def severity_option(default: str = "high") -> Callable:
    return click.option(
        "--fail-on",
        "fail_on",
        default=default,
        show_default=True,
        metavar="SEVERITY",
        help="Exit 3 when an alert is at/above this severity "
        "(informational, low, medium, high, critical; 'none' never).",
    )


def parse_fail_on(value: str) -> int | None:
    if value.strip().lower() == "none":
        return None
    try:
        return parse_severity(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--fail-on") from None


def exit_code(alerts: Sequence[Alert], fail_on: int | None) -> int:
    if fail_on is not None and any(a.severity_id >= fail_on for a in alerts):
        return EXIT_ALERTS
    return EXIT_OK


@contextmanager
def output_stream(path: str | None):
    if path is None or path == "-":
        yield sys.stdout
        return
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as fh:
        yield fh


class Progress:
    """A one-line progress display on stderr (files, events, rate), only on a terminal."""

    def __init__(self, enabled: bool) -> None:
        self.console = Console(stderr=True)
        self.enabled = enabled and self.console.is_terminal
        self.start = time.perf_counter()
        self._status = None
        self.files: set[str] = set()

    def __enter__(self) -> Progress:
        if self.enabled:
            self._status = self.console.status("reading…")
            self._status.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._status is not None:
            self._status.__exit__(*exc)

    def __call__(self, name: str, events: int, records: int) -> None:
        self.files.add(name.split("!")[0])
        if self._status is not None:
            rate = events / max(time.perf_counter() - self.start, 1e-9)
            self._status.update(
                f"{len(self.files)} files · {events:,} events · {rate:,.0f} events/s · {name[-60:]}"
            )


def print_summary(report: RunReport, alerts: Sequence[Alert], stream: IO[str] | None = None) -> None:
    """The one-screen summary after a run (stderr)."""
    console = Console(file=stream or sys.stderr, highlight=False)
    d = report.to_dict()
    console.print(
        f"[bold]unbacked[/]: {d['files']} files, {d['records']:,} records, "
        f"{d['events']:,} events, {d['skipped']:,} skipped, {len(alerts)} alerts "
        f"in {d['seconds']:.1f}s"
    )
    for reason, n in sorted(d["skipped_by_reason"].items(), key=lambda x: -x[1]):
        console.print(f"  skipped {n:,} × {reason}")
    for f in report.failed_files:
        console.print(f"  [red]unreadable file[/] {f.path}: {f.error}")
    bad = [f for f in report.files.values() if f.skipped]
    for f in bad[:10]:
        console.print(f"  {f.path}: {sum(f.skipped.values()):,} unreadable records")
    if len(bad) > 10:
        console.print(f"  … and {len(bad) - 10} more files with unreadable records")
    if alerts:
        by_sev: dict[str, int] = {}
        for a in alerts:
            name = SEVERITY_NAMES.get(a.severity_id, "?")
            by_sev[name] = by_sev.get(name, 0) + 1
        console.print("  alerts: " + ", ".join(f"{n} {s.lower()}" for s, n in by_sev.items()))


def write_run_report(path: str | None, report: RunReport, **extra: Any) -> None:
    if not path:
        return
    data = report.to_dict()
    data.update(extra)
    Path(path).write_text(json.dumps(data, indent=2, default=str))
