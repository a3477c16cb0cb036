"""One root exception for the project, each also subclassing the matching built-in.

Errors carry context (what input, which record or offset) and a hint (what to do), so the
CLI can render them as "what happened / likely causes / what to do".
"""

from __future__ import annotations


class UnbackedError(Exception):
    """Root of every error unbacked raises on purpose."""

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        offset: int | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.source = source
        self.offset = offset
        self.hint = hint

    def __str__(self) -> str:
        where = ""
        if self.source is not None:
            where = (
                f" [{self.source}" + (f" @ {self.offset}" if self.offset is not None else "") + "]"
            )
        return f"{self.message}{where}"


class InputError(UnbackedError, ValueError):
    """An input (file, record, argument) cannot be used as given."""


class FormatError(InputError):
    """A file or record is not in the format it claims to be, or is corrupt."""


class UnknownFormatError(InputError):
    """No registered source recognises a file."""


class BaselineError(UnbackedError, ValueError):
    """A baseline directory is missing, of another version, or fails validation."""


class SensorError(UnbackedError, RuntimeError):
    """The live sensor cannot start or run (privileges, kernel features, build tools)."""


class ScanError(UnbackedError, RuntimeError):
    """A memory scan cannot proceed (process gone, dump unreadable)."""


class DependencyError(UnbackedError, ImportError):
    """An optional dependency (extra) is not installed."""


class SpillError(UnbackedError, OSError):
    """Events held on disk during a large run cannot be written or read back (disk full,
    directory not writable)."""
