"""``unbacked eval``: run the pipeline on labelled data and report detection rates."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

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
from unbacked.model.alert import Alert
from unbacked.runreport import RunReport


@click.command("eval")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option(
    "--labels",
    "labels_dirs",
    required=True,
    multiple=True,
    type=click.Path(exists=True, file_okay=False),
    help="Directory of label files (shared/data/labels layout); repeat to combine label sets.",
)
@click.option(
    "--data-root",
    type=click.Path(exists=True, file_okay=False),
    help="Folder the labels' 'file' paths are relative to (default: parent of the first --labels).",
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
@click.option(
    "--separately",
    is_flag=True,
    help="Hunt each PATH on its own (each corpus self-baselined as a fleet of its own) "
    "instead of all PATHS together.",
)
@click.option("-q", "--quiet", is_flag=True)
@click.option("-v", "--verbose", count=True)
def command(
    paths: tuple[str, ...],
    labels_dirs: tuple[str, ...],
    data_root: str | None,
    baseline: str | None,
    threshold: float,
    output: str | None,
    md_path: str | None,
    curve: bool,
    separately: bool,
    quiet: bool,
    verbose: int,
) -> None:
    """Measure caught / missed / false alerts against ground-truth labels.

    Only the labelled files under PATHS are scored, and each PATH is reported as a corpus of
    its own (one row each, beside the per-file rows)."""
    root = Path(data_root) if data_root else Path(labels_dirs[0]).resolve().parent
    labels, warnings = merge_labels(labels_dirs)
    corpora = [_corpus_name(p, root) for p in paths]
    warnings += [
        f"{p} is outside the data root {root}: no label names its files, so none is scored "
        "(pass --data-root with a folder that holds it)"
        for p in paths
        if not _inside(p, root)
    ]
    for w in warnings:
        click.echo(f"warning: {w}", err=True)
    labels = {
        k: v
        for k, v in labels.items()
        if any(c == "." or k == c or k.startswith(c + "/") for c in corpora)
    }
    report = RunReport()
    run_threshold = min(threshold, 20.0) if curve else threshold
    runs = [[p] for p in paths] if separately else [list(paths)]
    all_alerts: list[Alert] = []
    pairs: list[tuple[str | None, str | None]] = []
    with Progress(enabled=not quiet) as progress:
        for run in runs:
            result = hunt(
                run,
                baseline=baseline,
                report=report,
                config=CorrelationConfig(alert_threshold=run_threshold),
                progress=progress,
            )
            all_alerts += result.alerts
            pairs += zip(
                result.signals["subject_uid"].to_pylist(),
                result.signals["actor_uid"].to_pylist(),
                strict=True,
            )
    alerts = [a for a in all_alerts if a.risk_score >= threshold]
    ev = evaluate(alerts, labels, root, signalled=pairs, corpora=corpora)
    curve_rows = threshold_curve(all_alerts, labels, root) if curve else None
    console = Console()
    table = Table(title="unbacked eval", header_style="bold")
    for col in ("file", "malicious", "caught", "required", "false", "benign inst.", "missed"):
        table.add_column(col, overflow="fold")
    for f in ev.files:
        if f.malicious == 0 and not f.false_alerts:
            continue  # counted in the corpus rows
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
    ctable = Table(title="per corpus", header_style="bold")
    for col in (
        "corpus",
        "files",
        "required caught",
        "all caught",
        "false alerts",
        "false / 10k benign",
        "benign inst.",
    ):
        ctable.add_column(col, overflow="fold")
    for name, c in ev.corpora.items():
        ctable.add_row(
            name,
            str(c["files"]),
            f"{c['required_caught']}/{c['required']}",
            f"{c['caught']}/{c['malicious']}",
            str(c["false_alerts"]),
            str(c["false_per_10k_benign"] if c["false_per_10k_benign"] is not None else "-"),
            str(c["benign_instances"]),
        )
    console.print(ctable)
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
                    "separately": separately,
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


def merge_labels(
    labels_dirs: list[str] | tuple[str, ...],
) -> tuple[dict[str, Any], list[str]]:
    """The label files of every directory, later directories overriding earlier ones, and a
    warning for each data file labelled in more than one."""
    labels: dict[str, Any] = {}
    origin: dict[str, str] = {}
    warnings: list[str] = []
    for d in labels_dirs:
        for key, lab in load_labels(d).items():
            if key in labels:
                warnings.append(f"{key} is labelled in both {origin[key]} and {d}; {d} is used")
            labels[key] = lab
            origin[key] = str(d)
    return labels, warnings


def _inside(path: str, root: Path) -> bool:
    return Path(path).resolve().is_relative_to(root.resolve())


def _corpus_name(path: str, root: Path) -> str:
    """``path`` relative to the data root (``.`` for the root itself); a path outside the root
    keeps its own name and so holds no labelled file."""
    try:
        rel = Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return Path(path).as_posix()
    return rel or "."
