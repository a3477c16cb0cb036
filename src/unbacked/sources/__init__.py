"""Sources: files and streams -> normalized events (Arrow tables of EVENT_SCHEMA).

Every module of this package is imported here, so a new format is added by dropping a file
with a ``@register``-ed ``Source`` subclass into the package; nothing else needs editing.
"""

from __future__ import annotations

import importlib
import pkgutil

from unbacked.sources.base import SNIFF_BYTES, SOURCES, InputFile, Source, register


def _import_all() -> None:
    for mod in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        importlib.import_module(f"{__name__}.{mod.name}")


_import_all()

from unbacked.sources.discovery import (  # noqa: E402
    MAX_MEMBER_BYTES,
    choose_source,
    iter_event_tables,
    iter_inputs,
    read_events,
)
from unbacked.sources.native import EventWriter, write_events  # noqa: E402

__all__ = [
    "MAX_MEMBER_BYTES",
    "SNIFF_BYTES",
    "SOURCES",
    "EventWriter",
    "InputFile",
    "Source",
    "choose_source",
    "iter_event_tables",
    "iter_inputs",
    "read_events",
    "register",
    "write_events",
]
