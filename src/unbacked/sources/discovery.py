"""Finding inputs: walk paths, open zip members in place, pick the source of each input.

Detection is by content, never by extension: every registered source looks at the first
``SNIFF_BYTES`` (``Source.accepts``) and the highest priority claim wins. Inside a walked
directory an input nobody claims (LICENSE, YAML metadata, README) is noted as not telemetry;
a file named explicitly that nobody claims is an error (``UnknownFormatError``), because the
user asked for it.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

import pyarrow as pa

from unbacked.errors import FormatError, InputError, UnknownFormatError
from unbacked.model import EVENT_SCHEMA, empty_events
from unbacked.runreport import RunReport
from unbacked.sources.base import SNIFF_BYTES, SOURCES, InputFile, Source

#: Most bytes read from one archive member (zip bombs stop here, reported, not fatal).
MAX_MEMBER_BYTES = 4 * 1024**3
#: Key under ``RunReport.extra`` listing inputs in walked directories that are not telemetry.
NOT_TELEMETRY_KEY = "not_telemetry"

_ZIP_MAGIC = b"PK\x03\x04"


class _CappedReader(io.RawIOBase):
    """A read-only stream that refuses to deliver more than ``cap`` bytes."""

    def __init__(self, raw: IO[bytes], cap: int, name: str) -> None:
        super().__init__()
        self._raw = raw
        self._cap = cap
        self._name = name
        self._done = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return bool(self._raw.seekable())

    def seek(self, offset: int, whence: int = 0) -> int:
        pos = self._raw.seek(offset, whence)
        self._done = pos
        return pos

    def tell(self) -> int:
        return self._raw.tell()

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._done >= self._cap:
            raise FormatError(
                f"archive member larger than the cap of {self._cap} bytes",
                source=self._name,
                hint="extract the member and pass it as a file if it is genuine",
            )
        view = memoryview(b)
        want = min(len(view), self._cap - self._done + 1)
        data = self._raw.read(want)
        n = len(data)
        view[:n] = data
        self._done += n
        return n

    def close(self) -> None:
        try:
            self._raw.close()
        finally:
            super().close()


def _member_input(zpath: Path, info: zipfile.ZipInfo, cap: int) -> InputFile:
    name = f"{zpath}!{info.filename}"

    def opener() -> IO[bytes]:
        zf = zipfile.ZipFile(zpath)
        try:
            raw = zf.open(info)
        except Exception:
            zf.close()
            raise
        reader = _CappedReader(raw, cap, name)
        # the ZipFile closes when its last member stream closes
        zf.close()
        # unbuffered on purpose: a buffered read would drop the bytes read before the cap hit
        return reader  # type: ignore[return-value]

    return InputFile(name=name, opener=opener, size=info.file_size)


def _file_input(path: Path) -> InputFile:
    def opener() -> IO[bytes]:
        return open(path, "rb")

    try:
        size = path.stat().st_size
    except OSError:
        size = None
    return InputFile(name=str(path), opener=opener, size=size, path=str(path))


def choose_source(inp: InputFile, head: bytes) -> type[Source] | None:
    """The highest-priority registered source that accepts ``inp`` (ties: by name)."""
    best: type[Source] | None = None
    for cls in sorted(SOURCES.values(), key=lambda c: (-c.priority, c.name)):
        try:
            ok = cls.accepts(inp, head)
        except Exception:  # a sniffer must never take the run down
            ok = False
        if ok:
            best = cls
            break
    return best


def _walk(path: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for f in sorted(files):
            yield Path(root) / f


def _expand(
    inp: InputFile, explicit: bool, report: RunReport, cap: int
) -> Iterator[tuple[InputFile, type[Source]]]:
    """Yield (input, source) for a file, or for each member when it is a zip archive."""
    try:
        head = inp.head(SNIFF_BYTES)
    except OSError as exc:
        report.file_error(inp.name, InputError(f"cannot read: {exc}", source=inp.name))
        return
    cls = choose_source(inp, head)
    if cls is not None:
        yield inp, cls
        return
    if head.startswith(_ZIP_MAGIC) and inp.path is not None:
        yield from _expand_zip(Path(inp.path), report, cap)
        return
    _unrecognised(inp.name, explicit, report, len(head) == 0)


def _unrecognised(name: str, explicit: bool, report: RunReport, empty: bool) -> None:
    if explicit:
        what = "empty file" if empty else "no source recognises this input"
        report.file_error(
            name,
            UnknownFormatError(
                what,
                source=name,
                hint="docs/sources.md lists the supported formats; is it the right file?",
            ),
        )
    else:
        report.extra.setdefault(NOT_TELEMETRY_KEY, []).append(name)


def _expand_zip(
    zpath: Path, report: RunReport, cap: int
) -> Iterator[tuple[InputFile, type[Source]]]:
    try:
        with zipfile.ZipFile(zpath) as zf:
            infos = [
                i
                for i in zf.infolist()
                if not i.is_dir()
                and not i.filename.startswith("__MACOSX/")
                and "/__MACOSX/" not in i.filename
            ]
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError) as exc:
        report.file_error(
            str(zpath), FormatError(f"unreadable zip archive: {exc}", source=str(zpath))
        )
        return
    for info in sorted(infos, key=lambda i: i.filename):
        member = _member_input(zpath, info, cap)
        try:
            head = member.head(SNIFF_BYTES)
        except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError) as exc:
            report.file_error(
                member.name, FormatError(f"unreadable member: {exc}", source=member.name)
            )
            continue
        cls = choose_source(member, head)
        if cls is None:
            _unrecognised(member.name, False, report, len(head) == 0)
            continue
        yield member, cls


def iter_inputs(
    paths: Iterable[str | os.PathLike[str]],
    report: RunReport,
    *,
    max_member_bytes: int = MAX_MEMBER_BYTES,
) -> Iterator[tuple[InputFile, type[Source]]]:
    """Every readable input under ``paths`` with the source that reads it, in a stable order.

    Directories are walked recursively (sorted), zip archives are opened in place (members are
    never extracted to disk, ``__MACOSX/`` is skipped). Problems go to ``report``.
    """
    for p in paths:
        path = Path(p)
        if path.is_dir():
            for f in _walk(path):
                if f.is_file():  # FIFOs, sockets and devices would block or never end
                    yield from _expand(_file_input(f), False, report, max_member_bytes)
                else:
                    report.extra.setdefault(NOT_TELEMETRY_KEY, []).append(str(f))
        elif path.is_file():
            yield from _expand(_file_input(path), True, report, max_member_bytes)
        elif path.exists():
            report.file_error(
                str(path),
                InputError(
                    "not a regular file",
                    source=str(path),
                    hint="pass a file or a directory (pipes and devices are not read)",
                ),
            )
        else:
            report.file_error(
                str(path),
                InputError("no such file or directory", source=str(path), hint="check the path"),
            )


#: at most this many inputs are read together by a batching source
_GROUP_FILES = 256


def iter_event_tables(
    paths: Iterable[str | os.PathLike[str]], report: RunReport
) -> Iterator[pa.Table]:
    """Tables of ``EVENT_SCHEMA`` from every input under ``paths``; bad inputs are reported.

    Consecutive small inputs of a source that batches (``Source.batch_bytes``; EVTX) are read
    together, so a collection of thousands of small files does not pay a fixed cost per file.
    """
    group: list[InputFile] = []
    group_cls: type[Source] | None = None
    group_bytes = 0
    for inp, cls in iter_inputs(paths, report):
        report.file(inp.name, cls.name)
        size = inp.size if inp.size is not None else cls.batch_bytes + 1
        if cls.batch_bytes and size <= cls.batch_bytes:
            if group and (
                group_cls is not cls
                or len(group) >= _GROUP_FILES
                or group_bytes + size > cls.batch_bytes
            ):
                yield from _read_group(group_cls, group, report)
                group, group_bytes = [], 0
            group.append(inp)
            group_cls = cls
            group_bytes += size
            continue
        if group:
            yield from _read_group(group_cls, group, report)
            group, group_bytes = [], 0
        yield from _read_one(cls, inp, report)
    if group:
        yield from _read_group(group_cls, group, report)


def _read_group(
    cls: type[Source] | None, inputs: list[InputFile], report: RunReport
) -> Iterator[pa.Table]:
    if cls is None:
        return
    if len(inputs) == 1:
        yield from _read_one(cls, inputs[0], report)
        return
    yield from _guard(cls().read_many(inputs, report), f"{len(inputs)} {cls.name} inputs", report)


def _read_one(cls: type[Source], inp: InputFile, report: RunReport) -> Iterator[pa.Table]:
    yield from _guard(cls().read(inp, report), inp.name, report)


def _guard(tables: Iterator[pa.Table], name: str, report: RunReport) -> Iterator[pa.Table]:
    """Yield ``tables``; an input that fails as a whole is a file error (raised when strict)."""
    try:
        for table in tables:
            if table.num_rows:
                yield table
    except InputError as exc:
        if report.strict:
            raise
        report.file_error(name, exc)
    except (OSError, EOFError, zipfile.BadZipFile, pa.ArrowException) as exc:
        wrapped = FormatError(f"unreadable input: {type(exc).__name__}: {exc}", source=name)
        if report.strict:
            raise wrapped from exc
        report.file_error(name, wrapped)


def read_events(
    paths: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
    report: RunReport | None = None,
) -> pa.Table:
    """Every event under ``paths`` as one table (convenient for notebooks and tests)."""
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    report = report if report is not None else RunReport()
    tables = list(iter_event_tables(paths, report))
    if not tables:
        return empty_events()
    return pa.concat_tables(tables, promote_options="none").cast(EVENT_SCHEMA)
