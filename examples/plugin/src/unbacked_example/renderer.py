"""A renderer: alerts as a Markdown table (``unbacked hunt ... --format markdown``).

A stream renderer implements ``render(alerts, stream)``; ``write(alerts, path)`` comes from the
base class. Everything in an alert that comes from telemetry is attacker-controlled text: it is
escaped so that it cannot break out of its table cell.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import IO

from unbacked.model.alert import Alert
from unbacked.render.base import Renderer


def _cell(text: object) -> str:
    value = "" if text is None else str(text)
    for ch in "\\|`*_[]<>":
        value = value.replace(ch, "\\" + ch)
    return " ".join(value.split())


class MarkdownRenderer(Renderer):
    name = "markdown"
    description = "Alerts as a Markdown table (unbacked-example-plugin)."
    suffix = ".md"

    def render(self, alerts: Sequence[Alert], stream: IO[str]) -> None:
        stream.write("| risk | host | process | pid | title |\n|---:|---|---|---:|---|\n")
        for a in sorted(alerts, key=lambda a: (-a.risk_score, a.uid)):
            p = a.process
            stream.write(
                f"| {a.risk_score} | {_cell(a.hostname)} | {_cell(p.name)} | "
                f"{'' if p.pid is None else p.pid} | {_cell(a.title)} |\n"
            )
