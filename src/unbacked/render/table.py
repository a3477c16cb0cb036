"""Console table: one row per alert, colour by severity, widths that fit the terminal.

Every cell is a :class:`rich.text.Text`, never a markup string: process names, hosts and
explanations come from telemetry, and an attacker who names a binary ``[/]`` or ``[link=...]``
must neither crash the table (rich raises on unbalanced markup) nor restyle it.

On a terminal the table takes the terminal's width and gives way in order of importance: the
reason ("why") wraps, names are cut with an ellipsis, and when "why" would get fewer than 50
columns each alert becomes two lines (who, then why) in one column. Files and pipes get a wide,
colourless table so that lines are not folded at 80 columns.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING

from unbacked.model.alert import RULE_DOCS, SEVERITY_NAMES, Alert, ProcessRef, more_reasons
from unbacked.render.base import Renderer, register_renderer

if TYPE_CHECKING:  # rich loads when a table is drawn, not with the renderers' registry
    from rich.table import Table

_COLOURS = {5: "bold white on red", 4: "bold red", 3: "yellow", 2: "cyan", 1: "dim"}
_MIN_WHY = 50  # the one-line-per-alert layout only when "why" keeps this many columns
_PIPE_WIDTH = 200


def _proc(p: ProcessRef | None) -> str:
    if p is None:
        return ""
    return f"{p.name or '?'} ({p.pid if p.pid is not None else '?'})"


def _why(a: Alert, n: int) -> str:
    """The ``n`` strongest reasons, ranked, the rest behind a count: what an analyst reads
    before opening the report."""
    reasons, hidden = a.top_reasons(n)
    if not reasons:
        return a.message
    text = "; ".join(f"{e.message} [{e.detector}]" for e in reasons)
    return f"{text}; {more_reasons(hidden)}" if hidden else text


def _fit(values: Sequence[str], header: str, cap: int) -> int:
    return min(max([len(header), *(len(v) for v in values)]), cap)


def build_table(alerts: Sequence[Alert], width: int) -> Table:
    """The alerts table for a console ``width`` columns wide (no output: tests render it).

    Widths are computed here rather than left to rich: rich shrinks every column alike, and on
    a narrow terminal the reason column (the one worth reading) ends up a few letters wide.
    Fixed columns take what their content needs up to a cap; "why" takes the rest and wraps.
    """
    from rich.table import Table
    from rich.text import Text

    counts = Counter(SEVERITY_NAMES.get(a.severity_id, "?").lower() for a in alerts)
    order = [SEVERITY_NAMES[s].lower() for s in (5, 4, 3, 2, 1)]
    caption = f"{len(alerts)} alert{'' if len(alerts) == 1 else 's'}: " + ", ".join(
        f"{counts[s]} {s}" for s in order if counts[s]
    )
    caption += f"; [rule id] explained in {RULE_DOCS}#<rule id>"
    table = Table(header_style="bold", caption=caption, caption_justify="left", box=None,
                  pad_edge=False, show_edge=False, expand=False)  # fmt: skip
    sevs = [SEVERITY_NAMES.get(a.severity_id, "?") for a in alerts]
    times = [a.first_seen.strftime("%Y-%m-%d %H:%M:%S") if a.first_seen else "?" for a in alerts]
    hosts = [a.hostname or "?" for a in alerts]
    procs = [_proc(a.process) for a in alerts]
    actors = [_proc(a.actor) for a in alerts]
    techs = [" ".join(a.techniques) for a in alerts]
    fixed: list[tuple[str, list[str], int, str]] = [  # header, values, cap, justify
        ("sev", sevs, 13, "left"),
        ("risk", [str(a.risk_score) for a in alerts], 4, "right"),
        ("first seen (UTC)", times, 19, "left"),
    ]
    wide = [("host", hosts, 24, "left"), ("process", procs, 28, "left"),
            ("injector", actors, 28, "left"), ("ATT&CK", techs, 18, "left")]  # fmt: skip
    widths = [_fit(v, hd, cap) for hd, v, cap, _ in [*fixed, *wide]]
    narrow = width - sum(widths) - 2 * len(widths) < _MIN_WHY
    if narrow:
        widths = widths[: len(fixed)]
    else:
        fixed += wide
    rest = max(width - sum(widths) - 2 * len(fixed), 24)
    for (header, _, _, justify), w in zip(fixed, widths, strict=True):
        table.add_column(header, width=w, no_wrap=True, overflow="ellipsis", justify=justify)  # type: ignore[arg-type]
    table.add_column("alert · why" if narrow else "why", width=rest, overflow="fold")
    for i, a in enumerate(alerts):
        style = _COLOURS.get(a.severity_id, "")
        row = [Text(sevs[i], style=style), Text(str(a.risk_score), style=style), Text(times[i])]
        if narrow:
            cell = Text(procs[i], style="bold")
            if a.actor is not None:
                cell.append(f" ← {actors[i]}")
            cell.append(f" on {hosts[i]}", style="dim")
            cell.append("\n" + _why(a, 1))
            row.append(cell)
        else:
            row += [Text(hosts[i]), Text(procs[i], style="bold"), Text(actors[i]),
                    Text(techs[i], style="dim"), Text(_why(a, 2))]  # fmt: skip
        table.add_row(*row)
    return table


def write_table(alerts: Sequence[Alert], stream: IO[str]) -> None:
    from rich.console import Console

    console = Console(file=stream, highlight=False, soft_wrap=False)
    if not console.is_terminal:
        console.width = max(console.width, _PIPE_WIDTH)  # files and pipes: no folding at 80
    if not alerts:
        console.print("no alerts")
        return
    console.print(build_table(alerts, console.width))


@register_renderer
class TableRenderer(Renderer):
    """The alerts as a console table, strongest first."""

    name = "table"
    description = "A console table, one row per alert (strongest first)."

    def render(self, alerts: Sequence[Alert], stream: IO[str]) -> None:
        write_table(alerts, stream)
