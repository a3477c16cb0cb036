"""``unbacked report``: alerts JSON lines -> one offline HTML incident report."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from unbacked.render import RENDERERS, read_alerts


@click.command("report")
@click.argument("alerts", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option(
    "-o",
    "--output",
    metavar="FILE",
    help="Where to write the HTML (default: the first alerts file with .html).",
)
@click.option("--title", metavar="TEXT", help="Title (default: unbacked incident report).")
@click.option("-q", "--quiet", is_flag=True, help="Do not print where the report went.")
@click.option("-v", "--verbose", count=True, help="More detail on errors (-vv: traceback).")
def command(alerts: tuple[str, ...], output: str | None, title: str | None, quiet: bool,
            verbose: int) -> None:  # fmt: skip
    """Write ALERTS (OCSF JSON lines from `unbacked hunt -o FILE`) as one HTML file.

    The file needs no network: styles, scripts and data are inline. Open it in any browser;
    click a row for the process tree, timeline, explanation, regions and sources of an alert.
    """
    found = [a for path in alerts for a in read_alerts(path)]
    out = Path(output) if output else Path(alerts[0]).with_suffix(".html")
    html: Any = RENDERERS.require("html")  # the HTML renderer takes a title
    html(title=title).write(found, out)
    if not quiet:
        click.echo(f"wrote {out} ({len(found)} alert{'' if len(found) == 1 else 's'})", err=True)
    sys.exit(0)
