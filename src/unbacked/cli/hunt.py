"""``unbacked hunt``: read telemetry, detect, write alerts."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import click

from unbacked import duck
from unbacked.cli._common import (
    EXIT_ALERTS,
    PluginChoice,
    Progress,
    exit_code,
    loss_status,
    output_stream,
    parse_fail_on,
    print_summary,
    severity_option,
    tolerate_loss_option,
    write_run_report,
)
from unbacked.correlate.incidents import DEFAULT_ALERT_THRESHOLD, CorrelationConfig
from unbacked.engine.local import MEMORY_EVENTS, HuntResult
from unbacked.engine.local import hunt as run_hunt
from unbacked.render import render
from unbacked.runreport import RunReport

if TYPE_CHECKING:
    from unbacked.engine.spark import SparkResult


@dataclass(frozen=True, slots=True)
class EngineChoice:
    """Where and how a command runs: ``--engine`` and the settings of each engine."""

    name: str = "local"
    spark_master: str = "local[*]"
    spark_conf: tuple[str, ...] = ()
    memory_events: int = MEMORY_EVENTS
    spill_dir: str | None = None


def engine_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--engine local|spark``, the embedded engine's memory settings and the Spark settings
    (``[spark]`` extra), handed to the command as one ``engine: EngineChoice``."""

    @functools.wraps(f)
    def command(
        *args: Any,
        engine: str,
        spark_master: str,
        spark_conf: tuple[str, ...],
        memory_events: int,
        spill_dir: str | None,
        **kwargs: Any,
    ) -> Any:
        choice = EngineChoice(engine, spark_master, tuple(spark_conf), memory_events, spill_dir)
        return f(*args, engine=choice, **kwargs)

    command = click.option(
        "--spill-dir",
        metavar="DIR",
        type=click.Path(file_okay=False, exists=True),
        help="Where events go when a run holds more than --memory-events (default: TMPDIR).",
    )(command)
    command = click.option(
        "--memory-events",
        type=click.IntRange(min=0),
        default=MEMORY_EVENTS,
        show_default=True,
        metavar="N",
        help="Events held in memory; above that the run is spilled to disk and processed per "
        "group of whole hosts (half as many events each), with the same results (0: no limit).",
    )(command)
    command = click.option(
        "--spark-conf",
        multiple=True,
        metavar="KEY=VALUE",
        help="Spark setting for --engine spark (repeatable).",
    )(command)
    command = click.option(
        "--spark-master",
        default="local[*]",
        show_default=True,
        metavar="URL",
        help="Spark master for --engine spark.",
    )(command)
    return click.option(
        "--engine",
        type=click.Choice(["local", "spark"]),
        default="local",
        show_default=True,
        help="local: embedded; spark: a Parquet event lake (`unbacked export --parquet`) on "
        "Spark, with the same results (other inputs are exported to a temporary lake first).",
    )(command)


def detection_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option(
        "--report",
        "report_path",
        metavar="FILE",
        help="Write the run report (files, records, skips, timings) as JSON.",
    )(f)
    f = click.option("--strict", is_flag=True, help="Fail on the first unreadable record or file.")(
        f
    )
    f = tolerate_loss_option(f)
    f = severity_option()(f)
    f = click.option(
        "--threshold",
        type=click.FloatRange(0, 100),
        default=DEFAULT_ALERT_THRESHOLD,
        show_default=True,
        help="Risk (0-100) at which an incident becomes an alert.",
    )(f)
    f = click.option(
        "--format",
        "fmt",
        type=PluginChoice("unbacked.render.base:RENDERERS", lambda r: not r.to_path),
        default="ocsf",
        show_default=True,
        help="Output format of the alerts.",
    )(f)
    f = click.option("-o", "--output", metavar="FILE", help="Write alerts here (default stdout).")(
        f
    )
    f = click.option("-q", "--quiet", is_flag=True, help="No progress or summary on stderr.")(f)
    f = click.option("-v", "--verbose", count=True, help="More detail on errors (-vv: traceback).")(
        f
    )
    return f


@dataclass(frozen=True, slots=True)
class HuntOptions:
    """What ``hunt`` and ``detect`` were asked to do: their arguments and flags, handed to
    ``run`` as one object."""

    paths: tuple[str, ...]
    baseline: str | None = None  # a trained baseline directory (None: self-baseline)
    output: str | None = None  # alerts file (None: stdout)
    fmt: str = "ocsf"
    threshold: float = DEFAULT_ALERT_THRESHOLD
    fail_on: str = "high"
    strict: bool = False
    report_path: str | None = None
    quiet: bool = False
    html: str | None = None  # also write the HTML report here
    engine: EngineChoice = field(default_factory=EngineChoice)
    verify: bool = False
    tolerate_loss: bool = False


def run(opts: HuntOptions) -> int:
    """Hunt or detect as ``opts`` say; the exit code."""
    fail_level = parse_fail_on(opts.fail_on)
    report = RunReport(strict=opts.strict)
    engine = opts.engine
    config = CorrelationConfig(alert_threshold=opts.threshold)
    paths, baseline = opts.paths, opts.baseline
    result: HuntResult | SparkResult
    with Progress(enabled=not opts.quiet) as progress:
        if engine.name == "spark":
            from unbacked.cli.export import spark_lake
            from unbacked.engine.spark import SparkResult, cli_hunt
            from unbacked.model.alert import Alerts

            with spark_lake(list(paths), report, engine.spill_dir, progress) as (lake, converted):
                if lake:
                    result = cli_hunt(
                        lake,
                        baseline,
                        report,
                        config,
                        engine.spark_master,
                        engine.spark_conf,
                        counted=converted,
                    )
                else:
                    result = SparkResult(alerts=Alerts(), baseline=None)
        else:
            duck.open_in_background()  # while the inputs are found and read
            result = run_hunt(
                list(paths),
                baseline=baseline,
                report=report,
                config=config,
                progress=progress,
                memory_events=engine.memory_events,
                spill_dir=engine.spill_dir,
                stage=progress.stage,
            )
    if opts.verify:
        from unbacked.memscan.verify import verify_local_alerts

        result.alerts = type(result.alerts)(verify_local_alerts(result.alerts))
    with output_stream(opts.output) as out:
        render(result.alerts, opts.fmt, out)
    if opts.html:
        from unbacked.render.base import RENDERERS

        RENDERERS.require("html")().write(result.alerts, opts.html)
    if not opts.quiet:
        print_summary(report, result.alerts)
    write_run_report(opts.report_path, report, timings=result.timings)
    if opts.strict and (report.failed_files or report.skipped):
        return 1
    code = exit_code(result.alerts, fail_level)
    lost = loss_status(report, opts.tolerate_loss)
    return code if code == EXIT_ALERTS or lost is None else lost


@click.command("hunt")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option(
    "--baseline",
    metavar="DIR",
    type=click.Path(exists=True, file_okay=False),
    help="Score against a trained baseline (default: self-baseline from the data).",
)
@click.option("--html", metavar="FILE", help="Also write the offline HTML report.")
@click.option(
    "--verify",
    is_flag=True,
    help="For alerts about processes of this host still running (recordings of this machine), "
    "scan the alert's regions now and attach the result.",
)
@detection_options
@engine_options
def command(
    paths: tuple[str, ...],
    baseline: str | None,
    html: str | None,
    verify: bool,
    output: str | None,
    fmt: str,
    threshold: float,
    fail_on: str,
    strict: bool,
    tolerate_loss: bool,
    report_path: str | None,
    quiet: bool,
    verbose: int,
    engine: EngineChoice,
) -> None:
    """Hunt for reflective code loading in telemetry files or directories.

    Inputs are recognised by content: Sysmon EVTX, Sysmon/ETW-TI/Elastic/OCSF JSON lines
    (also inside .zip), unbacked sensor recordings. Without --baseline each program is compared
    with its peer instances in the same data.
    """
    sys.exit(
        run(
            HuntOptions(
                paths=tuple(paths),
                baseline=baseline,
                output=output,
                fmt=fmt,
                threshold=threshold,
                fail_on=fail_on,
                strict=strict,
                report_path=report_path,
                quiet=quiet,
                html=html,
                engine=engine,
                verify=verify,
                tolerate_loss=tolerate_loss,
            )
        )
    )
