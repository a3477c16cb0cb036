"""Renderers: alerts -> OCSF JSON lines, ECS JSON lines, a console table (HTML: ``report``).

One extension point: a renderer is a function ``(alerts, stream) -> None`` registered under a
format name in ``RENDERERS``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import IO

from unbacked.model.alert import Alert
from unbacked.render.ecs import alert_to_ecs, write_ecs
from unbacked.render.ocsf import read_alerts, write_ocsf
from unbacked.render.table import write_table

Renderer = Callable[[Sequence[Alert], IO[str]], None]

RENDERERS: dict[str, Renderer] = {
    "ocsf": write_ocsf,
    "ecs": write_ecs,
    "table": write_table,
}


def render(alerts: Sequence[Alert], fmt: str, stream: IO[str]) -> None:
    try:
        renderer = RENDERERS[fmt]
    except KeyError:
        raise ValueError(f"unknown format {fmt!r}: one of {', '.join(RENDERERS)}") from None
    renderer(alerts, stream)


__all__ = [
    "RENDERERS",
    "alert_to_ecs",
    "read_alerts",
    "render",
    "write_ecs",
    "write_ocsf",
    "write_table",
]
