"""``unbacked scan``: look for executable memory no file backs, in minidumps or live processes.

    unbacked scan FILE.dmp...            Windows minidumps (files or directories of .dmp)
    unbacked scan --pid PID... | --all   live Linux processes (needs ptrace access: root)

Exit codes (DESIGN.md §7): 0 no finding at/above --fail-on, 3 findings at/above it, 2 usage
error, 1 runtime error (every input failed, or the first failure with --strict).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import click

from unbacked.cli._common import (
    EXIT_RUNTIME,
    exit_code,
    parse_fail_on,
    severity_option,
    write_run_report,
)
from unbacked.errors import DependencyError, UnbackedError
from unbacked.memscan.analyze import Analyzer, Options, ScanResult, hostname
from unbacked.memscan.model import SEVERITY_NAMES, ScanFinding
from unbacked.runreport import RunReport

NOT_ASSESSABLE = (
    "not assessable: the dump holds no memory regions (no MemoryInfoList or Memory64List "
    "stream; take a full-memory dump, e.g. procdump -ma)"
)


def _require_memscan() -> None:
    """Minidumps need the [memscan] extra: one clear error up front, not one per dump."""
    try:
        import minidump  # noqa: F401
    except ImportError as exc:
        raise DependencyError(
            "scanning minidumps needs the [memscan] extra (the minidump package is missing)",
            hint="pip install 'unbacked[memscan]'",
        ) from exc


def _dump_files(paths: tuple[str, ...]) -> Iterator[Path]:
    for p in paths:
        path = Path(p)
        if path.is_dir():
            yield from sorted(
                q for q in path.rglob("*") if q.is_file() and q.suffix.lower() in (".dmp", ".mdmp")
            )
        else:
            yield path


def _account(report: RunReport, name: str, res: ScanResult) -> None:
    """Regions seen count as records, suspicious regions as events, in the run report."""
    rep = report.file(name)
    rep.records = res.stats.regions
    rep.events = len(res.findings)
    report.extra.setdefault("bytes_scanned", 0)
    report.extra["bytes_scanned"] += res.stats.bytes_scanned
    report.extra.setdefault("jit_explained", 0)
    report.extra["jit_explained"] += res.stats.jit_explained


def _table(findings: list[ScanFinding], out: IO[str]) -> None:
    if not findings:
        out.write("no suspicious regions\n")
        return
    for f in sorted(findings, key=lambda f: -f.score):
        p = f.process
        out.write(
            f"{SEVERITY_NAMES[f.severity_id].upper():<13} risk {f.score:>3}  "
            f"{p.name or '?'} (pid {p.pid if p.pid is not None else '?'})  {f.source}\n"
        )
        for r in sorted(f.regions, key=lambda r: -r.score):
            out.write(
                f"  0x{r.base:016x} +0x{r.size:<8x} {r.protection} {r.backing:<9} "
                f"score {r.score:>3} {r.confidence:<6} header={r.header or '-'}\n"
            )
            for i in r.indicators:
                out.write(f"      {i.name:<20} {i.evidence}\n")
            for path in r.dumped:
                out.write(f"      dumped -> {path}\n")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("dumps", nargs=-1, type=click.Path())
@click.option("--pid", "pids", multiple=True, type=int, help="Live Linux process to scan.")
@click.option("--all", "all_pids", is_flag=True, help="Scan every live process.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "detail", "ocsf", "ecs"]),
    default=None,
    help="table: one row per process (as alerts; default on the console); detail: every "
    "region with its evidence; ocsf / ecs: JSON lines (ocsf: default with -o).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="Write findings here (OCSF Detection Finding JSON lines unless --format says else).",
)
@severity_option(default="low")
@click.option(
    "--dump",
    "dump_dir",
    type=click.Path(file_okay=False),
    help="Write suspicious regions (and rebuilt PEs) to this directory.",
)
@click.option(
    "--yara",
    "yara_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="YARA rule file run over suspicious regions ([yara] extra).",
)
@click.option(
    "--min-score",
    type=click.IntRange(0, 100),
    default=0,
    show_default=True,
    help="Drop regions scoring below this.",
)
@click.option("--strict", is_flag=True, help="Stop at the first unreadable dump or process.")
@click.option(
    "--report",
    "report_path",
    metavar="FILE",
    help="Write the run report (inputs, regions, failures, timings) as JSON.",
)
@click.option("-v", "--verbose", count=True, help="-v: per-input progress; -vv: tracebacks.")
def command(
    dumps: tuple[str, ...],
    pids: tuple[int, ...],
    all_pids: bool,
    fmt: str | None,
    output: str | None,
    fail_on: str,
    dump_dir: str | None,
    yara_files: tuple[str, ...],
    min_score: int,
    strict: bool,
    report_path: str | None,
    verbose: int,
) -> None:
    """Scan minidumps or live processes for executable memory that no file backs."""
    if not dumps and not pids and not all_pids:
        raise click.UsageError("give minidump files, --pid PID or --all")
    if dumps and (pids or all_pids):
        raise click.UsageError("scan either minidumps or live processes, not both")
    fail_level = parse_fail_on(fail_on)
    if fmt is None:
        fmt = "ocsf" if output else "table"
    report = RunReport(strict=strict)
    rules = None
    if yara_files:
        from unbacked.memscan.yarascan import load_rules

        rules = load_rules(yara_files)
    analyzer = Analyzer(Options(yara_rules=rules, dump_dir=dump_dir, min_score=min_score))
    host = hostname()
    results: list[ScanResult] = []
    failed = gone = unassessable = 0
    inputs = 0
    if dumps:
        from unbacked.memscan.minidump import MEMORY64_LIST, MEMORY_INFO_LIST, MinidumpSpace

        _require_memscan()

        for path in _dump_files(dumps):
            inputs += 1
            report.file(str(path), "minidump")
            try:
                with MinidumpSpace(path) as space:
                    streams = space.info.streams
                    if MEMORY_INFO_LIST not in streams and MEMORY64_LIST not in streams:
                        # no region list and no full memory: nothing to call clean or not
                        unassessable += 1
                        report.file(str(path)).error = NOT_ASSESSABLE
                        click.echo(f"{path}: {NOT_ASSESSABLE}", err=True)
                        continue
                    res = analyzer.run(space)
            except UnbackedError as exc:
                report.file_error(str(path), exc)  # raises when strict
                failed += 1
                click.echo(
                    f"skipped {path}: {exc.message}" + (f" ({exc.hint})" if exc.hint else ""),
                    err=True,
                )
                continue
            for issue in res.issues:
                click.echo(f"warning {path}: {issue}", err=True)
                report.skip(str(path), "dump issue", detail=issue)  # raises when strict
            _account(report, str(path), res)
            results.append(res)
    else:
        from unbacked.memscan.live import LinuxProcessSpace, ProcessGone
        from unbacked.memscan.live import all_pids as every

        targets = sorted(set(pids)) if pids else list(every())
        for pid in targets:
            inputs += 1
            try:
                report.file(f"pid:{pid}", "live")
                with LinuxProcessSpace(pid) as space:
                    res = analyzer.run(space)
                    if not space.alive():
                        raise ProcessGone(
                            f"process {pid} exited during the scan", source=space.source
                        )
            except ProcessGone as exc:
                gone += 1
                report.file(f"pid:{pid}").error = "gone: " + exc.message
                if pids:
                    click.echo(f"skipped pid {pid}: {exc.message}", err=True)
                continue
            except UnbackedError as exc:
                report.file_error(f"pid:{pid}", exc)  # raises when strict
                failed += 1
                if pids or verbose:
                    click.echo(f"skipped pid {pid}: {exc.message}", err=True)
                continue
            _account(report, f"pid:{pid}", res)
            results.append(res)
    findings = [f for f in (r.finding(host) for r in results) if f is not None]
    out = open(output, "w", encoding="utf-8") if output else sys.stdout  # noqa: SIM115
    try:
        if not results and fmt in ("table", "detail"):
            pass  # nothing was scanned: no "no alerts" line that reads as "clean"
        elif fmt == "detail":
            _table(findings, out)
        else:
            from unbacked.render import render

            render([f.to_alert() for f in findings], fmt, out)
    finally:
        if output:
            out.close()
    scanned = len(results)
    click.echo(
        f"scanned {scanned} of {inputs} input(s): {len(findings)} with findings, "
        f"{sum(len(f.regions) for f in findings)} suspicious region(s)"
        + (f", {failed} unreadable" if failed else "")
        + (f", {gone} exited" if gone else "")
        + (f", {unassessable} not assessable (no memory regions)" if unassessable else ""),
        err=True,
    )
    report.alerts = len(findings)
    report.finish()
    write_run_report(report_path, report, exited=gone)
    if unassessable:
        sys.exit(EXIT_RUNTIME)  # "no findings" must never be read as "clean"
    if inputs and not scanned and (failed or pids):
        sys.exit(EXIT_RUNTIME)  # nothing could be scanned (a named pid that is gone included)
    sys.exit(exit_code([f.to_alert() for f in findings], fail_level))


__all__ = ["command"]
