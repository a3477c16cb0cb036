"""Console table: one row per alert, colour by severity, widths that fit the terminal."""

from __future__ import annotations

from collections.abc import Sequence
from typing import IO

from rich.console import Console
from rich.table import Table

from unbacked.model.alert import SEVERITY_NAMES, Alert

_COLOURS = {5: "bold red", 4: "red", 3: "yellow", 2: "cyan", 1: "dim"}


def write_table(alerts: Sequence[Alert], stream: IO[str]) -> None:
    console = Console(file=stream, highlight=False, soft_wrap=False)
    if not console.is_terminal:
        console.width = max(console.width, 200)  # files and pipes: do not fold at 80 columns
    if not alerts:
        console.print("no alerts")
        return
    table = Table(show_lines=False, expand=False, header_style="bold")
    table.add_column("sev", no_wrap=True)
    table.add_column("risk", justify="right", no_wrap=True)
    table.add_column("time (UTC)", no_wrap=True)
    table.add_column("host", overflow="fold")
    table.add_column("process", overflow="fold")
    table.add_column("injector", overflow="fold")
    table.add_column("ATT&CK", overflow="fold")
    table.add_column("why", overflow="fold", ratio=3)
    for a in alerts:
        colour = _COLOURS.get(a.severity_id, "")
        sev = SEVERITY_NAMES.get(a.severity_id, "?")
        when = a.first_seen.strftime("%Y-%m-%d %H:%M:%S") if a.first_seen else "?"
        proc = f"{a.process.name or '?'} ({a.process.pid})"
        actor = f"{a.actor.name or '?'} ({a.actor.pid})" if a.actor else ""
        why = "; ".join(e.message for e in a.explanation[:3])
        table.add_row(
            f"[{colour}]{sev}[/]", str(a.risk_score), when, a.hostname or "?", proc, actor,
            " ".join(a.techniques), why,
        )  # fmt: skip
    console.print(table)
