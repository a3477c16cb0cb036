"""The source contract: one plug-in per telemetry format.

A source sniffs the first bytes of an input (like plaso's format signatures), and reads it as
Arrow tables of ``EVENT_SCHEMA``. Bad records go to the ``RunReport`` (counted with a reason),
never raised, unless the run is strict. A source never builds one Python object per event on its
bulk path beyond what its parser hands out.
"""

from __future__ import annotations

import io
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, ClassVar

import pyarrow as pa

from unbacked.errors import FormatError
from unbacked.plugins import Registry
from unbacked.runreport import RunReport

#: Bytes every source may look at to decide whether it reads an input.
SNIFF_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class InputFile:
    """One readable input: a plain file, or a member of an archive.

    ``name`` is what reports and provenance show (``archive.zip!member.json`` for members).
    ``opener`` returns a fresh binary stream positioned at the start.
    """

    name: str
    opener: Callable[[], IO[bytes]]
    size: int | None = None
    path: str | None = None  # filesystem path when it is a plain file (parsers that need one)

    def open(self) -> IO[bytes]:
        return self.opener()

    def head(self, n: int = SNIFF_BYTES) -> bytes:
        with self.open() as fh:
            return fh.read(n)

    def read_bytes(self) -> bytes:
        with self.open() as fh:
            return fh.read()

    @classmethod
    def from_bytes(cls, name: str, data: bytes) -> InputFile:
        return cls(name=name, opener=lambda: io.BytesIO(data), size=len(data))


class Source(ABC):
    """A telemetry format, registered in ``SOURCES`` under its ``name`` (``@register``, or an
    ``unbacked.sources`` entry point of another package)."""

    #: short unique id, e.g. ``"sysmon-evtx"``; shown in reports and stored as ``src_format``
    name: ClassVar[str]
    #: one line for reports and docs
    description: ClassVar[str]
    #: higher wins when several sources claim the same input
    priority: ClassVar[int] = 0
    #: inputs up to this many bytes may be handed to ``read_many`` together (0: never)
    batch_bytes: ClassVar[int] = 0
    #: at most this many inputs are handed to ``read_many`` together
    batch_files: ClassVar[int] = 256
    #: small complete inputs of this format (bytes as on disk): the conformance test checks
    #: that this source claims and reads them and that every other source rejects them
    examples: ClassVar[tuple[bytes, ...]] = ()

    @classmethod
    @abstractmethod
    def sniff(cls, head: bytes, name: str) -> bool:
        """Whether this source reads an input starting with ``head`` (at most SNIFF_BYTES)."""

    @classmethod
    def accepts(cls, inp: InputFile, head: bytes) -> bool:
        """Whether this source reads ``inp``; discovery calls this, not ``sniff`` directly.

        The default asks ``sniff`` about the head. Formats whose signature is not at the start
        (Parquet keeps its schema metadata in the footer) override this to look further.
        """
        return cls.sniff(head, inp.name)

    @abstractmethod
    def read(self, inp: InputFile, report: RunReport) -> Iterator[pa.Table]:
        """Yield tables of ``EVENT_SCHEMA`` (use ``unbacked.model.conform``).

        Count records on ``report.file(inp.name)`` (``records``, ``events``, ``ignored``) and
        report unreadable ones with ``report.skip``. Raise ``FormatError`` only when the whole
        input is unusable.
        """

    def read_encoded(self, inp: InputFile, report: RunReport) -> Iterator[pa.Table]:
        """``read``, except that a string column may come dictionary-encoded (as in
        ``ENCODED_EVENT_SCHEMA``), column by column: what the embedded engine asks for when it
        reads a run's inputs (it puts rows in order as dictionary indices and looks each value
        up once). A format whose reader has dictionaries at hand (Parquet) overrides this to
        skip decoding them; the default is ``read``."""
        return self.read(inp, report)

    def read_many(self, inputs: Sequence[InputFile], report: RunReport) -> Iterator[pa.Table]:
        """Read several inputs of this format (consecutive small files of a collection).

        The default reads them one by one. A source with a high fixed cost per read overrides
        it to share that cost; it must then report each input under its own name and record
        an unusable input with ``report.file_error`` instead of raising.
        """
        for inp in inputs:
            yield from self.read(inp, report)


def read_tolerant(inp: InputFile) -> tuple[bytes, FormatError | None]:
    """The bytes of ``inp`` up to a read error (``FormatError``: a damaged archive member, a
    size cap) and that error; what was read before it is kept."""
    parts: list[bytes] = []
    with inp.open() as fh:
        try:
            while True:
                piece = fh.read(4 << 20)
                if not piece:
                    return b"".join(parts), None
                parts.append(piece)
        except FormatError as exc:
            return b"".join(parts), exc


def count_read_error(report: RunReport, name: str, error: BaseException) -> None:
    """A read error ended ``name``: what was read before it stays read, the unreadable
    remainder counts as one skipped record with the error's reason (an archive member's bad
    CRC, truncation or decompression bomb; a size cap)."""
    reason = getattr(error, "reason", None)
    if not isinstance(reason, str):
        reason = "input exceeds size cap" if isinstance(error, FormatError) else "unreadable data"
    report.file(name).records += 1
    report.skip(name, reason, detail=f"{type(error).__name__}: {error}"[:300])


def _builtin_modules() -> list[str]:
    """Every module of this package (found beside this file: no import of the package)."""
    import pkgutil
    from pathlib import Path

    mods = sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]))
    return [f"unbacked.sources.{m}" for m in mods]


#: every source: the package's own modules (all of ``unbacked.sources``, imported on first use)
#: and the ``unbacked.sources`` entry points of installed packages
SOURCES: Registry[type[Source]] = Registry(
    "sources", group="unbacked.sources", base=Source, modules=_builtin_modules
)


def register(cls: type[Source]) -> type[Source]:
    """Class decorator adding a source to ``SOURCES`` (a duplicate name is an error)."""
    return SOURCES.register(cls)
