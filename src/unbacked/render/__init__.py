"""Renderers: alerts -> OCSF JSON lines, ECS JSON lines, a console table, the HTML report.

The OCSF codec (``ocsf_codec``: an alert to its Detection Finding dict and back) lives here too,
not in the alert model.

One extension point (``render.base``): a ``Renderer`` class registered under its format name in
``RENDERERS``; another package adds one through an ``unbacked.renderers`` entry point.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import IO

from unbacked.model.alert import Alert
from unbacked.render.base import RENDERERS, Renderer, register_renderer, stream_formats
from unbacked.render.ecs import alert_to_ecs, write_ecs
from unbacked.render.ocsf import read_alerts, write_ocsf
from unbacked.render.ocsf_codec import alert_from_ocsf, alert_to_ocsf
from unbacked.render.table import write_table


def render(alerts: Sequence[Alert], fmt: str, stream: IO[str]) -> None:
    """Write ``alerts`` to ``stream`` in the stream format ``fmt`` (``stream_formats()``)."""
    try:
        cls = RENDERERS[fmt]
    except KeyError:
        cls = None
    if cls is None or cls.to_path:
        raise ValueError(f"unknown format {fmt!r}: one of {', '.join(stream_formats())}")
    cls().render(alerts, stream)


__all__ = [
    "RENDERERS",
    "Renderer",
    "alert_from_ocsf",
    "alert_to_ecs",
    "alert_to_ocsf",
    "read_alerts",
    "register_renderer",
    "render",
    "stream_formats",
    "write_ecs",
    "write_ocsf",
    "write_table",
]
