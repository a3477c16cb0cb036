"""The renderer contract: alerts -> one output format, registered in ``RENDERERS``.

A renderer is a class with a ``name`` (what ``--format`` takes) and a ``description``. As every
plug-in here, ``__init__`` only stores options (the HTML report's ``title``) and works without
arguments. A **stream** renderer writes text to an open stream (``render``): OCSF and ECS JSON
lines, the console table; those are the choices of ``--format``. A **file** renderer
(``to_path = True``) writes one self-contained file (``write``): the offline HTML report. Every
renderer can ``write`` to a path; the default opens the path and ``render``s into it.

Other packages add renderers through the ``unbacked.renderers`` entry-point group
(``docs/plugins.md``).
"""

from __future__ import annotations

from abc import ABC
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, ClassVar

from unbacked.plugins import Registry

if TYPE_CHECKING:
    from unbacked.model.alert import Alert


class Renderer(ABC):
    """An output format of alerts (see the module docstring)."""

    #: the format name (``--format NAME``)
    name: ClassVar[str]
    #: one line for ``unbacked plugins`` and the docs
    description: ClassVar[str]
    #: True: one self-contained file (``write``), not a ``--format`` of streamed output
    to_path: ClassVar[bool] = False
    #: the file name suffix of its output
    suffix: ClassVar[str] = ".txt"

    def render(self, alerts: Sequence[Alert], stream: IO[str]) -> None:
        """Write ``alerts`` to ``stream`` (text)."""
        raise NotImplementedError(f"the {self.name} renderer writes files only (write)")

    def write(self, alerts: Sequence[Alert], path: str | Path) -> Path:
        """Write ``alerts`` to the file ``path`` (parents created); returns the path."""
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", encoding="utf-8") as stream:
            self.render(alerts, stream)
        return out


#: every renderer: OCSF, ECS, table (imported with ``unbacked.render``), the HTML report
#: (imported when asked for) and the ``unbacked.renderers`` entry points of installed packages
RENDERERS: Registry[type[Renderer]] = Registry(
    "renderers",
    group="unbacked.renderers",
    base=Renderer,
    modules=("unbacked.render.ocsf", "unbacked.render.ecs", "unbacked.render.table"),
)
RENDERERS.declare(
    "html",
    "unbacked.render.html:HtmlRenderer",
    summary="One self-contained offline HTML incident report (timelines with the [report] extra).",
)


def register_renderer(cls: type[Renderer]) -> type[Renderer]:
    """Class decorator adding a renderer to ``RENDERERS`` (a duplicate name is an error)."""
    return RENDERERS.register(cls)


def stream_formats() -> list[str]:
    """The ``--format`` choices: the renderers that write to a stream, by name."""
    return sorted(name for name, cls in RENDERERS.items() if not cls.to_path)


__all__ = ["RENDERERS", "Renderer", "register_renderer", "stream_formats"]
