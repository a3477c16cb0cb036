"""Sources: files and streams -> normalized events (Arrow tables of EVENT_SCHEMA).

Every module of this package is imported when ``SOURCES`` is first used, so a new format is
added by dropping a file with a ``@register``-ed ``Source`` subclass into the package; another
package adds one through an ``unbacked.sources`` entry point (``docs/plugins.md``).
"""

from __future__ import annotations

from unbacked.sources.base import SNIFF_BYTES, SOURCES, InputFile, Source, register
from unbacked.sources.discovery import (
    MAX_MEMBER_BYTES,
    choose_source,
    iter_event_tables,
    iter_inputs,
    read_events,
)
from unbacked.sources.native import EventWriter, write_events

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
