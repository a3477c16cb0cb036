"""Options, progress and summaries shared by the subcommands."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import click

if TYPE_CHECKING:  # rich is imported when it draws on a terminal, not by every run
    from rich.console import Console
    from rich.progress import Progress as RichProgress
    from rich.progress import TaskID

from unbacked.model.alert import SEVERITY_NAMES, Alert, parse_severity
from unbacked.runreport import RunReport

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_USAGE = 2
EXIT_ALERTS = 3
#: an input was lost whole (a file or archive member that could not be read) or no telemetry
#: was found at all; alerts (3) take precedence, ``--tolerate-loss`` accepts lost inputs
EXIT_INPUT_LOST = 4


if TYPE_CHECKING:
    _Choice = click.Choice[str]
else:  # click.Choice takes a type parameter from click 8.2 on; pyproject allows 8.1
    _Choice = click.Choice


class PluginChoice(_Choice):
    """A ``click.Choice`` of the names in a plug-in registry (``unbacked.plugins``), listed
    when first needed (help, a wrong value): naming a plug-in that is already registered
    loads no other (``hunt --format ocsf`` imports neither the HTML report nor entry points).

    ``registry`` is ``"module:attribute"`` of the registry, imported on first use;
    ``predicate`` keeps some of its plug-ins (``--format``: the stream renderers)."""

    def __init__(self, registry: str, predicate: Callable[[Any], bool] = lambda _p: True) -> None:
        self._where = registry
        self._predicate = predicate
        super().__init__((), case_sensitive=True)

    def _registry(self) -> Any:
        from unbacked.plugins import import_module

        module, _, attr = self._where.partition(":")
        return getattr(import_module(module), attr)

    @property  # typed as click >= 8.2 types the attribute (a tuple); a list before that
    def choices(self) -> tuple[str, ...]:  # type: ignore[override,unused-ignore]
        return tuple(sorted(n for n, p in self._registry().items() if self._predicate(p)))

    @choices.setter
    def choices(self, _value: Sequence[str]) -> None:
        pass  # click.Choice.__init__ sets it; the registry is the list

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        plugin = self._registry().get(value) if isinstance(value, str) else None
        if plugin is not None and self._predicate(plugin):
            return value
        return super().convert(value, param, ctx)


def tolerate_loss_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--tolerate-loss",
        is_flag=True,
        help=f"Do not exit {EXIT_INPUT_LOST} when a file or archive member could not be read "
        "(it is still listed in the summary and --report).",
    )(f)


def _is_terminal(stream: IO[str]) -> bool:
    """Whether ``stream`` is drawn on (a terminal, or colour forced as rich honours it)."""
    if os.environ.get("FORCE_COLOR"):
        return True
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class _Say:
    """Lines for stderr: styled through rich on a terminal; elsewhere (a log file, a pipe, a
    test) plain text as it is, neither wrapped at 80 columns nor escaped, with rich never
    imported (30 ms of every run's start). ``style`` marks a constant part, ``text`` passes
    words from the input (file names, error texts), which are never markup."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr
        self.console: Console | None = None
        if _is_terminal(self.stream):
            from rich.console import Console

            self.console = Console(file=self.stream, highlight=False)

    def style(self, style: str, words: str) -> str:
        return f"[{style}]{words}[/]" if self.console is not None else words

    def text(self, words: str) -> str:
        if self.console is None:
            return words
        from rich.markup import escape

        return escape(words)

    def __call__(self, line: str) -> None:
        if self.console is not None:
            self.console.print(line)
        else:
            self.stream.write(line + "\n")
            self.stream.flush()


def loss_status(
    report: RunReport, tolerate_loss: bool = False, stream: IO[str] | None = None
) -> int | None:
    """``EXIT_INPUT_LOST`` when the run found no telemetry at all, or lost an input whole and
    is not told to tolerate it; says so on stderr (even with ``--quiet``). None otherwise."""
    say = _Say(stream)
    if not report.found_telemetry:
        unread = len(report.unread) + len(report.failed_files)
        say(
            say.style("bold red", "unbacked: no telemetry found")
            + (f" ({unread} inputs, none recognised or readable)" if unread else " (no inputs)")
            + "; docs/sources.md lists the formats read"
        )
        return EXIT_INPUT_LOST
    lost = report.lost
    if not lost:
        return None
    what = f"{len(lost)} input{'s' if len(lost) != 1 else ''} lost whole"
    if tolerate_loss:
        say(f"unbacked: {what} (tolerated: --tolerate-loss)")
        return None
    say(
        say.style("bold red", f"unbacked: {what}") + f": {say.text(lost[0])}"
        + (f" and {len(lost) - 1} more" if len(lost) > 1 else "")
        + f"; see the summary or --report (exit {EXIT_INPUT_LOST}; --tolerate-loss accepts it)"
    )  # fmt: skip
    return EXIT_INPUT_LOST


def severity_option(default: str = "high") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
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
def output_stream(path: str | None) -> Iterator[IO[str]]:
    if path is None or path == "-":
        yield sys.stdout
        return
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as fh:
        yield fh


def _input_files(paths: Sequence[str]) -> list[tuple[str, int]]:
    """Files under ``paths`` with their sizes, in the order the sources read them (directories
    walked sorted, as ``sources.discovery`` does)."""
    out: list[tuple[str, int]] = []
    for p in paths:
        if os.path.isdir(p):
            for root, dirs, names in os.walk(p):
                dirs.sort()
                for n in sorted(names):
                    with suppress(OSError):
                        f = os.path.join(root, n)
                        out.append((os.path.normpath(f), os.stat(f).st_size))
        else:
            with suppress(OSError):
                out.append((os.path.normpath(p), os.stat(p).st_size))
    return out


def _command_paths() -> list[str] | None:
    """The ``paths`` argument of the running click command (hunt, train, detect), if any."""
    ctx = click.get_current_context(silent=True)
    value = ctx.params.get("paths") if ctx is not None else None
    return [str(v) for v in value] if value else None


class Progress:
    """Progress of a run on stderr, only on a terminal: a bar over the input bytes with files,
    events and rate, or (when the input size is unknown, e.g. a stream) a pulsing bar.

    Why bytes and not records: the total number of records is unknown until everything is read,
    but sizes of the inputs cost one ``stat`` each. The bar moves as files finish (a file is done
    when the sources, which read in sorted order, move past it); events and rate move with every
    batch. ``paths`` defaults
    to the running command's ``paths`` argument so every subcommand gets the bar unchanged.
    """

    def __init__(
        self, enabled: bool, paths: Sequence[str] | None = None, *, console: Console | None = None
    ) -> None:
        self.console = console
        if console is None and enabled and _is_terminal(sys.stderr):
            from rich.console import Console

            self.console = Console(stderr=True)
        self.enabled = enabled and self.console is not None and self.console.is_terminal
        self.start = time.perf_counter()
        self.files: set[str] = set()
        self.paths = list(paths) if paths is not None else _command_paths()
        self.total_bytes: int | None = None
        self.total_files: int | None = None
        self._before: dict[str, int] = {}  # file -> bytes of the inputs read before it
        if self.enabled and self.paths:
            files = _input_files(self.paths)
            offset = 0
            for f, size in files:
                self._before[f] = offset
                offset += size
            self.total_bytes, self.total_files = offset, len(files)
        self.done_bytes = 0
        self.events = 0
        self._current: str | None = None
        self._bar: RichProgress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> Progress:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                TaskProgressColumn,
                TextColumn,
                TimeElapsedColumn,
            )
            from rich.progress import Progress as RichProgress

            columns: list[Any] = [
                TextColumn("[bold]{task.description}[/]"),
                BarColumn(bar_width=30),
                TaskProgressColumn(),
                TextColumn("{task.fields[files]}"),
                TextColumn("{task.fields[events]} events"),
                TextColumn("{task.fields[rate]} events/s"),
                TimeElapsedColumn(),
            ]
            if self.total_bytes:
                columns.insert(3, DownloadColumn(binary_units=True))
            columns.append(TextColumn("{task.fields[name]}", style="dim"))
            self._bar = RichProgress(*columns, console=self.console, transient=True)
            self._bar.__enter__()
            self._task = self._bar.add_task(
                "reading", total=self.total_bytes or None, files=self._files_text(), events="0",
                rate="0", name="",
            )  # fmt: skip
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
            self._bar = None

    def _files_text(self) -> str:
        of = f" of {self.total_files:,}" if self.total_files else ""
        return f"{len(self.files):,}{of} files with events"

    def stage(self, what: str, detail: str = "") -> None:
        """A stage after reading (a large run's passes over host groups): the bar's label and
        the text beside it change; the byte count stays where reading left it."""
        if self._bar is not None and self._task is not None:
            from rich.markup import escape

            self._bar.update(self._task, description=escape(what), name=escape(detail))

    def __call__(self, name: str, events: int, records: int) -> None:
        outer = name.split("!")[0]
        if outer != self._current:
            # a new file: every input before it is done, including those that held no events
            before = self._before.get(os.path.normpath(outer))
            if before is not None:
                self.done_bytes = max(self.done_bytes, before)
            elif self._current is not None:
                with suppress(OSError):
                    self.done_bytes += os.stat(self._current).st_size
            self._current = outer
        self.files.add(outer)
        self.events = events
        if self._bar is not None and self._task is not None:
            from rich.markup import escape

            rate = events / max(time.perf_counter() - self.start, 1e-9)
            done = min(self.done_bytes, self.total_bytes) if self.total_bytes else self.done_bytes
            self._bar.update(
                self._task, completed=done, files=self._files_text(), events=f"{events:,}",
                rate=f"{rate:,.0f}", name=escape(name[-50:]),
            )  # fmt: skip


def print_summary(
    report: RunReport, alerts: Sequence[Alert], stream: IO[str] | None = None
) -> None:
    """The one-screen summary after a run (stderr). File names and error texts come from the
    input and are printed as text, never as markup."""
    say = _Say(stream)
    esc = say.text
    d = report.to_dict()
    say(
        f"{say.style('bold', 'unbacked')}: {d['files']} files, {d['records']:,} records, "
        f"{d['events']:,} events, {d['skipped']:,} skipped, {len(alerts)} alerts "
        f"in {d['seconds']:.1f}s"
    )
    engine = report.extra.get("engine") or {}
    if engine.get("name") == "local" and engine.get("partitions"):
        k = engine["partitions"]
        groups = f"{k} host group{'s' if k != 1 else ''}"
        if "lake_events" in engine:  # a lake split by host: its files read group by group
            n = engine["lake_files"]
            more = engine.get("spilled_events")
            say(
                f"  {engine['lake_events']:,} events (over --memory-events) read in {groups} "
                f"from {n:,} lake file{'s' if n != 1 else ''} of one host each"
                + (f", with {more:,} events of the other inputs spilled to disk" if more else "")
            )
        else:
            say(
                f"  {engine['spilled_events']:,} events spilled to disk (over --memory-events), "
                f"detected in {groups}"
            )
    for reason, n in sorted(d["skipped_by_reason"].items(), key=lambda x: -x[1]):
        say(f"  skipped {n:,} × {esc(reason)}")
    failed = report.failed_files
    for f in failed[:10]:
        say(f"  {say.style('red', 'unreadable file')} {esc(f.path)}: {esc(str(f.error))}")
    if len(failed) > 10:
        say(f"  … and {len(failed) - 10} more unreadable files (see --report)")
    lost = [u for u in report.unread if u.lost]
    for u in lost[:10]:
        say(f"  {say.style('red', 'not read')} {esc(u.path)}: {esc(u.reason)}")
    if len(lost) > 10:
        say(f"  … and {len(lost) - 10} more inputs not read (see --report)")
    other = len(report.unread) - len(lost)
    if other:
        reasons: dict[str, int] = {}
        for u in report.unread:
            if not u.lost:
                reasons[u.reason] = reasons.get(u.reason, 0) + 1
        say(
            f"  {other:,} inputs not telemetry: "
            + ", ".join(f"{n:,} {esc(r)}" for r, n in sorted(reasons.items(), key=lambda x: -x[1]))
        )
    for f in report.files.values():
        for text in f.notes:
            say(f"  {say.style('yellow', 'damaged')} {esc(f.path)}: {esc(text)}")
    for f in report.unaccounted[:10]:
        say(
            f"  {say.style('red', 'records do not add up')} {esc(f.path)}: {f.records:,} "
            f"records, {f.events:,} events, {f.ignored:,} ignored, {f.skipped_total:,} skipped"
        )
    bad = [f for f in report.files.values() if f.skipped]
    for f in bad[:10]:
        say(f"  {esc(f.path)}: {sum(f.skipped.values()):,} unreadable records")
    if len(bad) > 10:
        say(f"  … and {len(bad) - 10} more files with unreadable records")
    if alerts:
        by_sev: dict[str, int] = {}
        for a in alerts:
            name = SEVERITY_NAMES.get(a.severity_id, "?")
            by_sev[name] = by_sev.get(name, 0) + 1
        say("  alerts: " + ", ".join(f"{n} {s.lower()}" for s, n in by_sev.items()))


def write_run_report(path: str | None, report: RunReport, **extra: Any) -> None:
    if not path:
        return
    data = report.to_dict()
    data.update(extra)
    Path(path).write_text(json.dumps(data, indent=2, default=str))
