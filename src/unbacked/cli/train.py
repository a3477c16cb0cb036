"""``unbacked train``: learn per-program baselines from benign telemetry."""

from __future__ import annotations

import sys

import click
from rich.console import Console

from unbacked.cli._common import (
    EXIT_INPUT_LOST,
    Progress,
    loss_status,
    print_summary,
    tolerate_loss_option,
    write_run_report,
)
from unbacked.cli.hunt import EngineChoice, engine_options
from unbacked.engine.local import train as run_train
from unbacked.runreport import RunReport


@click.command("train")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("-o", "--output", required=True, metavar="DIR", help="Baseline directory to write.")
@click.option("--strict", is_flag=True, help="Fail on the first unreadable record or file.")
@click.option("--report", "report_path", metavar="FILE", help="Write the run report as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress or summary on stderr.")
@click.option("-v", "--verbose", count=True, help="More detail on errors (-vv: traceback).")
@tolerate_loss_option
@engine_options
def command(
    paths: tuple[str, ...],
    output: str,
    strict: bool,
    report_path: str | None,
    quiet: bool,
    verbose: int,
    tolerate_loss: bool,
    engine: EngineChoice,
) -> None:
    """Learn what is normal for each program from (benign) telemetry."""
    report = RunReport(strict=strict)
    with Progress(enabled=not quiet) as progress:
        if engine.name == "spark":
            from unbacked.cli.export import spark_lake
            from unbacked.engine.spark import cli_train

            with spark_lake(list(paths), report, engine.spill_dir, progress) as (lake, converted):
                if not lake:
                    write_run_report(report_path, report)
                    sys.exit(loss_status(report, tolerate_loss) or EXIT_INPUT_LOST)
                baseline = cli_train(lake, output, engine.spark_master, engine.spark_conf)
            if not converted:
                # Spark read the lake: the run report knows it as one input (as `hunt` does)
                report.file(", ".join(str(p) for p in paths), "unbacked-parquet (spark)")
        else:
            baseline = run_train(
                list(paths),
                output,
                report=report,
                progress=progress,
                memory_events=engine.memory_events,
                spill_dir=engine.spill_dir,
                stage=progress.stage,
            )
    if not quiet:
        print_summary(report, [])
        Console(stderr=True).print(
            f"baseline: {len(baseline.programs())} programs, "
            f"{baseline.meta_.get('facts', 0):,} facts -> {output}"
        )
    write_run_report(report_path, report)
    sys.exit(loss_status(report, tolerate_loss) or 0)
