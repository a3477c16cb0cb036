"""Sources: files and streams -> normalized events (Arrow tables of EVENT_SCHEMA)."""

from unbacked.sources.base import SOURCES, InputFile, Source, register

__all__ = ["SOURCES", "InputFile", "Source", "register"]
