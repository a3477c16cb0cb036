"""``unbacked eval``: run the pipeline on labelled data and report detection rates."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from unbacked.cli._common import Progress
from unbacked.correlate.incidents import DEFAULT_ALERT_THRESHOLD, CorrelationConfig
from unbacked.engine.local import hunt
from unbacked.evaluate import (
    curve_markdown,
    evaluate,
    load_labels,
    markdown,
    threshold_curve,
)
from unbacked.runreport import RunReport


@click.command("eval")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option(
    "--labels",
    "labels_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="Directory of label files (shared/data/labels layout).",
)
@click.option(
    "--data-root",
    type=click.Path(exists=True, file_okay=False),
    help="Folder the labels' 'file' paths are relative to (default: parent of --labels).",
)
@click.option(
    "--baseline",
    type=click.Path(exists=True, file_okay=False),
    metavar="DIR",
    help="Score with a trained baseline instead of self-baselining.",
)
@click.option(
    "--threshold",
    type=click.FloatRange(0, 100),
    default=DEFAULT_ALERT_THRESHOLD,
    show_default=True,
    help="Alert threshold (risk 0-100).",
)
@click.option("-o", "--output", metavar="FILE", help="Write the full report as JSON.")
@click.option("--markdown", "md_path", metavar="FILE", help="Write the tables as Markdown.")
@click.option(
    "--curve",
    is_flag=True,
    help="Also report recall and false alerts at thresholds 20..95 (one run).",
)
@click.option("-q", "--quiet", is_flag=True)
@click.option("-v", "--verbose", count=True)
def command(
    paths, labels_dir, data_root, baseline, threshold, output, md_path, curve, quiet, verbose
) -> None:
    """Measure caught / missed / false alerts against ground-truth labels."""
    labels = load_labels(labels_dir)
    root = Path(data_root) if data_root else Path(labels_dir).resolve().parent
    report = RunReport()
    run_threshold = min(threshold, 20.0) if curve else threshold
    with Progress(enabled=not quiet) as progress:
        result = hunt(
            list(paths),
            baseline=baseline,
            report=report,
            config=CorrelationConfig(alert_threshold=run_threshold),
            progress=progress,
        )
    pairs = zip(
        result.signals["subject_uid"].to_pylist(),
        result.signals["actor_uid"].to_pylist(),
        strict=True,
    )
    alerts = [a for a in result.alerts if a.risk_score >= threshold]
    ev = evaluate(alerts, labels, root, signalled=pairs)
    curve_rows = threshold_curve(result.alerts, labels, root) if curve else None
    console = Console()
    table = Table(title="unbacked eval", header_style="bold")
    for col in ("file", "malicious", "caught", "required", "false", "benign inst.", "missed"):
        table.add_column(col, overflow="fold")
    for f in ev.files:
        if f.malicious == 0 and not f.false_alerts and f.benign_instances == 0:
            continue
        table.add_row(
            f.file.split("/")[-1],
            str(f.malicious),
            str(len(f.caught)),
            f"{f.required_caught}/{f.required}",
            str(len(f.false_alerts)),
            str(f.benign_instances),
            "; ".join(
                f"{(i.image or '?').split(chr(92))[-1]} {i.pid}: {why}" for i, why in f.missed
            ),
        )
    console.print(table)
    t = ev.totals
    console.print(
        f"recall {t['caught']}/{t['malicious']} · required {t['required_caught']}/{t['required']}"
        f" · false alerts {t['false_alerts']} ({t['false_per_10k_benign']} per 10k benign"
        f" instances) · alerts on unlabelled files {t['unlabelled_alerts']}"
    )
    if curve_rows:
        console.print(curve_markdown(curve_rows))
    if output:
        Path(output).write_text(
            json.dumps(
                {
                    **ev.to_dict(),
                    "threshold": threshold,
                    "curve": curve_rows,
                    "run": report.to_dict(),
                },
                indent=2,
                default=str,
            )
        )
    if md_path:
        text = markdown(ev)
        if curve_rows:
            text += "\n" + curve_markdown(curve_rows)
        Path(md_path).write_text(text)
    sys.exit(0)
