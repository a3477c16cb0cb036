"""``unbacked detect``: score telemetry against a trained baseline."""

from __future__ import annotations

import sys

import click

from unbacked.cli.hunt import (
    EngineChoice,
    HuntOptions,
    detection_options,
    engine_options,
    run,
)


@click.command("detect")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option(
    "--baseline",
    required=True,
    metavar="DIR",
    type=click.Path(exists=True, file_okay=False),
    help="Baseline from `unbacked train`.",
)
@detection_options
@engine_options
def command(
    paths: tuple[str, ...],
    baseline: str,
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
    """Detect with a trained baseline (calibrated per program)."""
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
                engine=engine,
                tolerate_loss=tolerate_loss,
            )
        )
    )
