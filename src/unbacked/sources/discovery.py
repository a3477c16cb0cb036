"""Finding inputs: walk paths, open zip members in place, pick the source of each input.

Detection is by content, never by extension: every registered source looks at the first
``SNIFF_BYTES`` (``Source.accepts``) and the highest priority claim wins; a JSON-shaped input
nobody claims is sniffed again on its first parseable object lines (damaged, BOM-prefixed or
very long first lines do not hide a valid file). Inside a walked directory an input nobody
claims (LICENSE, YAML metadata, README) is noted as not telemetry (``RunReport.not_read``; lost
when it looks like telemetry); a file named explicitly that nobody claims is an error
(``UnknownFormatError``), because the user asked for it.

Archives: one open handle per archive, members streamed from it in name order; nested archives
to ``MAX_ARCHIVE_DEPTH``; bombs bounded by ratio and total inflated size; damage (CRC, corrupt
or cut data) reported per member with the data before it kept; an archive without its central
directory read by walking its local headers.
"""

from __future__ import annotations

import io
import os
import re
import struct
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, cast

import orjson
import pyarrow as pa

from unbacked.errors import FormatError, InputError, UnknownFormatError
from unbacked.model import EVENT_SCHEMA, empty_events
from unbacked.runreport import RunReport
from unbacked.sources.base import SNIFF_BYTES, SOURCES, InputFile, Source

#: Most bytes read from one archive member (zip bombs stop here, reported, not fatal).
MAX_MEMBER_BYTES = 4 * 1024**3
#: Archives inside archives are opened to this depth; deeper ones are listed as not read.
MAX_ARCHIVE_DEPTH = 3
#: A nested archive is opened in memory: up to this size (a larger one is listed as not read).
MAX_NESTED_BYTES = 1024**3
#: Inflated bytes per compressed byte an archive may reach (real telemetry: up to ~60) ...
MAX_RATIO = 250
#: ... once this many bytes were inflated (small members may compress better)
RATIO_GRACE_BYTES = 64 * 1024**2
#: Inflated bytes from one top-level archive (all members, all depths), at most.
MAX_ARCHIVE_BYTES = 64 * 1024**3
#: Bytes read to sniff a JSON-shaped input whose first 64 KiB hold no recognisable record
#: (a first line of hundreds of KiB, a damaged first line).
SNIFF_MORE_BYTES = 4 * 1024**2
#: Key under ``RunReport.extra`` listing inputs in walked directories that are not telemetry.
NOT_TELEMETRY_KEY = "not_telemetry"

_ZIP_MAGIC = b"PK\x03\x04"
_BOM = b"\xef\xbb\xbf"
#: names that say "telemetry" although no source recognised the content
_TELEMETRY_SUFFIXES = (".evtx", ".json", ".jsonl", ".ndjson", ".parquet")


class ArchiveDamage(FormatError):
    """An archive member cannot be read to its end (bad CRC, corrupt or truncated data, a
    decompression bomb); ``reason`` is the skip reason the reading source reports."""

    def __init__(self, message: str, *, reason: str, source: str | None = None) -> None:
        super().__init__(message, source=source, hint=_DAMAGE_HINT)
        self.reason = reason


_DAMAGE_HINT = "the records before the damage were read; re-download or re-extract the archive"


class _Budget:
    """Inflated bytes one top-level archive may deliver: at most ``MAX_ARCHIVE_BYTES`` and
    ``MAX_RATIO`` times its compressed size (past ``RATIO_GRACE_BYTES``)."""

    __slots__ = ("limit", "used")

    def __init__(self, compressed: int) -> None:
        self.limit = min(MAX_ARCHIVE_BYTES, max(RATIO_GRACE_BYTES, MAX_RATIO * compressed))
        self.used = 0


class _CappedReader(io.RawIOBase):
    """A read-only member stream with bounded work: at most ``cap`` bytes, at most
    ``MAX_RATIO`` times the member's compressed size, within the archive's ``budget``.

    Errors of the underlying archive (bad CRC, corrupt deflate data, truncation) become
    ``ArchiveDamage``; the bytes delivered before them stay delivered.
    """

    def __init__(
        self,
        raw: IO[bytes],
        cap: int,
        name: str,
        compressed: int,
        budget: _Budget,
        *,
        crc: int | None = None,
    ) -> None:
        super().__init__()
        self._crc_want = crc
        self._crc = 0
        self._sequential = True
        self._raw = raw
        self._cap = cap
        self._name = name
        self._ratio_cap = max(RATIO_GRACE_BYTES, MAX_RATIO * max(compressed, 1))
        self._budget = budget
        self._done = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return bool(self._raw.seekable())

    def seek(self, offset: int, whence: int = 0) -> int:
        try:
            pos = self._raw.seek(offset, whence)
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise self._damage(exc) from exc
        self._done = pos
        self._sequential = False  # a CRC over what was delivered means nothing now
        return pos

    def tell(self) -> int:
        return self._raw.tell()

    def _damage(self, exc: BaseException) -> ArchiveDamage:
        text = str(exc)
        if "CRC" in text:
            reason = "archive member CRC mismatch"
        elif isinstance(exc, EOFError) or "truncat" in text.lower():
            reason = "archive member truncated"
        else:
            reason = "corrupt archive member data"
        return ArchiveDamage(f"{reason}: {type(exc).__name__}: {exc}", reason=reason,
                             source=self._name)  # fmt: skip

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._done >= self._cap:
            raise FormatError(
                f"archive member larger than the cap of {self._cap} bytes",
                source=self._name,
                hint="extract the member and pass it as a file if it is genuine",
            )
        if self._done >= self._ratio_cap or self._budget.used >= self._budget.limit:
            raise ArchiveDamage(
                "decompression bomb: the archive inflates to more than "
                f"{MAX_RATIO}x its compressed size (or {MAX_ARCHIVE_BYTES} bytes in all); "
                f"reading stopped after {self._done} bytes of this member",
                reason="decompression bomb",
                source=self._name,
            )
        view = memoryview(b)
        want = min(len(view), self._cap - self._done + 1)
        try:
            data = self._raw.read(want)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
            raise self._damage(exc) from exc
        n = len(data)
        view[:n] = data
        self._done += n
        self._budget.used += n
        if self._crc_want is not None and self._sequential:
            if n:
                self._crc = zlib.crc32(data, self._crc)
            elif self._crc != self._crc_want:
                self._crc_want = None  # reported once
                raise ArchiveDamage(
                    "archive member CRC mismatch: its data may be corrupt",
                    reason="archive member CRC mismatch",
                    source=self._name,
                )
        return n

    def close(self) -> None:
        try:
            self._raw.close()
        finally:
            super().close()


class _Archive:
    """One open zip archive (kept open while any of its members may still be read: the
    member inputs hold it, so it closes when the last of them goes)."""

    def __init__(self, zf: zipfile.ZipFile, name: str, budget: _Budget, cap: int) -> None:
        self.zf = zf
        self.name = name
        self.budget = budget
        self.cap = cap

    def member(self, info: zipfile.ZipInfo) -> InputFile:
        name = f"{self.name}!{info.filename}"

        def opener() -> IO[bytes]:
            try:
                raw = self.zf.open(info)
            except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
                raise FormatError(f"unreadable member: {exc}", source=name) from exc
            except RuntimeError as exc:  # zipfile: encrypted, password required
                raise FormatError(
                    f"unreadable member: {exc}",
                    source=name,
                    hint="decrypt the archive and pass its files",
                ) from exc
            # zipfile checks the CRC inside the read that reaches the end and then drops that
            # read's data; check it here instead, after the data is delivered
            crc: int | None = None
            if getattr(raw, "_expected_crc", None) is not None:
                raw._expected_crc = None  # type: ignore[attr-defined]
                crc = info.CRC
            # unbuffered on purpose: a buffered read would drop the bytes read before an error
            return _CappedReader(  # type: ignore[return-value]
                raw, self.cap, name, info.compress_size, self.budget, crc=crc
            )

        return InputFile(name=name, opener=opener, size=info.file_size)


def _member_head(member: InputFile, n: int = SNIFF_BYTES) -> bytes:
    """The first ``n`` bytes of an archive member, or as many as precede damage (a bad CRC
    shows only at the end of a small member: its data is still sniffed and read)."""
    parts: list[bytes] = []
    got = 0
    with member.open() as fh:
        try:
            while got < n:
                piece = fh.read(n - got)
                if not piece:
                    break
                parts.append(piece)
                got += len(piece)
        except ArchiveDamage:
            if not parts:
                raise
    return b"".join(parts)


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
    for cls in _by_priority():
        try:
            ok = cls.accepts(inp, head)
        except Exception:  # a sniffer must never take the run down
            ok = False
        if ok:
            best = cls
            break
    return best


#: the sources in the order ``choose_source`` asks them, and how many there were then (the
#: registry only grows: another count is another set)
_ORDERED: tuple[int, list[type[Source]]] = (-1, [])


def _by_priority() -> list[type[Source]]:
    """The registered sources by priority, then name; sorted again only when one was added
    (per input it cost as much as asking them all, on thousands of small files)."""
    global _ORDERED
    count = len(SOURCES)
    if _ORDERED[0] != count:
        _ORDERED = (count, sorted(SOURCES.values(), key=lambda c: (-c.priority, c.name)))
    return _ORDERED[1]


def _json_shaped(head: bytes) -> bool:
    if head.startswith((_ZIP_MAGIC, b"PAR1", b"ElfFile", b"MDMP")):
        return False
    start = head.removeprefix(_BOM).lstrip(b" \t\r\n\x00")
    return start[:1] in (b"{", b"[") or b"\n{" in head


def _sniff_sample(inp: InputFile, head: bytes) -> bytes | None:
    """For a JSON-shaped input nobody claimed from its head: its first parseable object lines
    within ``SNIFF_MORE_BYTES`` (damaged, BOM-prefixed or very long first lines skipped), as a
    head the sources can sniff; None when there are none."""
    if not _json_shaped(head):
        return None
    try:
        with inp.open() as fh:
            data = fh.read(SNIFF_MORE_BYTES)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, FormatError):
        data = head
    lines = data.split(b"\n")
    if len(data) >= SNIFF_MORE_BYTES:
        lines = lines[:-1]  # the last one may be cut
    good: list[bytes] = []
    for raw in lines[:256]:
        s = raw.strip().removeprefix(_BOM).strip()
        if s[:1] != b"{":
            continue
        try:
            obj = orjson.loads(s)
        except orjson.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            good.append(s)
            if len(good) >= 5:
                break
    if not good:
        return None
    return b"\n".join(good) + b"\n"


def _choose(inp: InputFile, head: bytes) -> type[Source] | None:
    cls = choose_source(inp, head)
    if cls is None:
        sample = _sniff_sample(inp, head)
        if sample is not None:
            cls = choose_source(inp, sample)
    return cls


def _looks_like_telemetry(name: str, head: bytes) -> bool:
    """An input nobody recognised that still looks like telemetry (damaged EVTX magic, JSON
    text): losing it is a loss, not a README passed over."""
    if name.lower().endswith(_TELEMETRY_SUFFIXES):
        return True
    if b"ElfChnk\x00" in head:
        return True
    start = head.removeprefix(_BOM).lstrip(b" \t\r\n")
    return start[:1] in (b"{", b"[")


#: the top-level keys every label file has (docs/detection.md, ``evaluate.labels``), one per line
#: of a JSON document: a label lying beside the data it describes is not lost telemetry
_LABEL_KEYS = (rb'\n\s*"file"\s*:', rb'\n\s*"malicious"\s*:', rb'\n\s*"must_not_label"\s*:')


def _is_label_file(head: bytes) -> bool:
    start = head.removeprefix(_BOM).lstrip(b" \t\r\n")
    return start[:1] == b"{" and all(re.search(k, head) for k in _LABEL_KEYS)


def walk_files(path: Path) -> Iterator[Path]:
    """Every entry under the directory ``path`` but its directories, in the order inputs are
    read (sorted, depth first)."""
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for f in sorted(files):
            yield Path(root) / f


def _expand(
    inp: InputFile,
    explicit: bool,
    report: RunReport,
    cap: int,
    keep: list[zipfile.ZipFile] | None = None,
) -> Iterator[tuple[InputFile, type[Source]]]:
    """Yield (input, source) for a file, or for each member when it is a zip archive."""
    try:
        head = inp.head(SNIFF_BYTES)
    except OSError as exc:
        report.file_error(inp.name, InputError(f"cannot read: {exc}", source=inp.name))
        return
    cls = _choose(inp, head)
    if cls is not None:
        yield inp, cls
        return
    if head.startswith(_ZIP_MAGIC) and inp.path is not None:
        yield from _expand_zip(Path(inp.path), report, cap, keep)
        return
    _unrecognised(inp.name, explicit, report, head)


def _unrecognised(name: str, explicit: bool, report: RunReport, head: bytes) -> None:
    empty = len(head) == 0
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
        return
    report.extra.setdefault(NOT_TELEMETRY_KEY, []).append(name)
    if empty:
        report.not_read(name, "empty")
    elif _is_label_file(head):
        report.not_read(name, "a ground-truth label (unbacked eval --labels), not telemetry")
    elif _looks_like_telemetry(name, head):
        report.not_read(name, "looks like telemetry but no source recognises it", lost=True)
    else:
        report.not_read(name, "not telemetry (no source recognises it)")


def _skipped_member(info: zipfile.ZipInfo) -> bool:
    # not ``info.is_dir()``: it raises IndexError for a member with an empty name
    name = info.filename
    return name.endswith("/") or name.startswith("__MACOSX/") or "/__MACOSX/" in name


def _expand_zip(
    zpath: Path, report: RunReport, cap: int, keep: list[zipfile.ZipFile] | None = None
) -> Iterator[tuple[InputFile, type[Source]]]:
    """The members of a zip archive. Its one open handle is closed when the members have
    been yielded, or, with ``keep``, appended there for the caller to close once the members
    were read (a batching reader reads them after the walk moved on)."""
    name = str(zpath)
    try:
        compressed = zpath.stat().st_size
    except OSError:
        compressed = 0
    budget = _Budget(compressed)
    try:
        zf = zipfile.ZipFile(zpath)
    except zipfile.BadZipFile as exc:
        # no end of central directory (a cut download): walk the local headers instead
        yield from _expand_local(zpath, report, cap, budget, exc)
        return
    except (OSError, ValueError, NotImplementedError, EOFError) as exc:
        report.file_error(name, FormatError(f"unreadable zip archive: {exc}", source=name))
        return
    if not any(not _skipped_member(i) for i in zf.infolist()):
        # a central directory listing no members: members may still sit behind local headers
        zf.close()
        yield from _expand_local(zpath, report, cap, budget, "central directory lists no members")
        return
    if keep is not None:
        keep.append(zf)
    try:
        yield from _expand_members(_Archive(zf, name, budget, cap), report, 1)
    finally:
        if keep is None:
            zf.close()


def _expand_members(
    archive: _Archive, report: RunReport, depth: int
) -> Iterator[tuple[InputFile, type[Source]]]:
    """Every member of one open archive, in name order, each sniffed and yielded in turn."""
    infos = sorted(
        (i for i in archive.zf.infolist() if not _skipped_member(i)), key=lambda i: i.filename
    )
    for info in infos:
        member = archive.member(info)
        if info.flag_bits & 0x1:
            report.not_read(
                member.name, "encrypted member (password required); not read", lost=True
            )
            continue
        if info.file_size == 0 and info.compress_size == 0:
            report.extra.setdefault(NOT_TELEMETRY_KEY, []).append(member.name)
            report.not_read(member.name, "empty")
            continue
        if info.file_size > RATIO_GRACE_BYTES and info.file_size > MAX_RATIO * max(
            info.compress_size, 1
        ):
            report.not_read(
                member.name,
                f"decompression bomb: declares {info.file_size} bytes from "
                f"{info.compress_size} compressed (more than {MAX_RATIO}x); not read",
                lost=True,
            )
            continue
        try:
            head = _member_head(member)
        except FormatError as exc:
            report.file_error(member.name, exc)
            continue
        except (OSError, ValueError, NotImplementedError, EOFError) as exc:
            report.file_error(
                member.name, FormatError(f"unreadable member: {exc}", source=member.name)
            )
            continue
        cls = _choose(member, head)
        if cls is not None:
            yield member, cls
            continue
        if head.startswith(_ZIP_MAGIC):
            yield from _expand_nested(member, info, archive, report, depth)
            continue
        _unrecognised(member.name, False, report, head)


def _expand_nested(
    member: InputFile, info: zipfile.ZipInfo, outer: _Archive, report: RunReport, depth: int
) -> Iterator[tuple[InputFile, type[Source]]]:
    if depth >= MAX_ARCHIVE_DEPTH:
        report.not_read(
            member.name, f"nested archive beyond depth {MAX_ARCHIVE_DEPTH}; not opened", lost=True
        )
        return
    if info.file_size > MAX_NESTED_BYTES:
        report.not_read(
            member.name,
            f"nested archive of {info.file_size} bytes (more than {MAX_NESTED_BYTES} are not "
            "opened in memory); extract it and pass it as a file",
            lost=True,
        )
        return
    try:
        data = member.read_bytes()
        zf = zipfile.ZipFile(io.BytesIO(data))
    except FormatError as exc:
        report.file_error(member.name, exc)
        return
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError) as exc:
        report.file_error(
            member.name, FormatError(f"unreadable nested archive: {exc}", source=member.name)
        )
        return
    if not any(not _skipped_member(i) for i in zf.infolist()):
        zf.close()
        held = b"PK\x03\x04" in data
        report.not_read(
            member.name,
            "nested zip archive whose central directory lists no members"
            + ("; the members behind its local headers are lost" if held else ""),
            lost=held,
        )
        return
    inner = _Archive(zf, member.name, outer.budget, outer.cap)
    yield from _expand_members(inner, report, depth + 1)


# -- archives without their central directory ---------------------------------------------
_LOCAL = struct.Struct("<4sHHHHHIIIHH")


@dataclass(frozen=True, slots=True)
class _LocalEntry:
    """A member found by its local header: where its data starts, how long it is."""

    filename: str
    method: int
    data_offset: int
    compress_size: int  # bytes present (may be fewer than declared when truncated)
    file_size: int
    crc: int
    truncated: bool  # the archive ends inside this member's data
    encrypted: bool = False


def _local_entries(fh: IO[bytes], size: int) -> tuple[list[_LocalEntry], str]:
    """Walk local file headers from the start; returns the entries and why the walk stopped."""
    entries: list[_LocalEntry] = []
    pos = 0
    while True:
        fh.seek(pos)
        raw = fh.read(_LOCAL.size)
        if len(raw) < 4:
            return entries, "end of file"
        if raw[:4] in (b"PK\x01\x02", b"PK\x05\x06", b"PK\x06\x06"):
            return entries, "central directory"
        if raw[:4] != _ZIP_MAGIC or len(raw) < _LOCAL.size:
            return entries, f"no local header at byte {pos}"
        _, _ver, flags, method, _t, _d, crc, csize, usize, nlen, xlen = _LOCAL.unpack(raw)
        fname = fh.read(nlen)
        if nlen == 0 or len(fname) < nlen:
            return entries, f"damaged local header at byte {pos}"
        data_offset = pos + _LOCAL.size + nlen + xlen
        if flags & 0x08 and csize == 0:
            # sizes follow the data (a data descriptor): find the end by inflating
            if method != zipfile.ZIP_DEFLATED:
                return entries, f"member at byte {pos} has no size and is not deflated"
            csize, usize, ok = _deflate_extent(fh, data_offset)
            truncated = not ok
            skip_desc = 16 if ok else 0
        else:
            truncated = data_offset + csize > size
            csize = min(csize, max(size - data_offset, 0))
            skip_desc = 16 if flags & 0x08 else 0
        name = fname.decode("utf-8" if flags & 0x800 else "cp437", errors="replace")
        entries.append(
            _LocalEntry(name, method, data_offset, csize, usize, crc, truncated, bool(flags & 1))
        )
        if truncated:
            return entries, "truncated member"
        pos = data_offset + csize
        if skip_desc:
            fh.seek(pos)
            sig = fh.read(4)
            pos += skip_desc if sig == b"PK\x07\x08" else skip_desc - 4


def _deflate_extent(fh: IO[bytes], offset: int) -> tuple[int, int, bool]:
    """(compressed length, inflated length, complete) of the deflate stream at ``offset``."""
    fh.seek(offset)
    d = zlib.decompressobj(-15)
    used = 0
    out = 0
    while not d.eof:
        chunk = fh.read(1 << 20)
        if not chunk:
            return used, out, False
        try:
            out += len(d.decompress(chunk, 0))
        except zlib.error:
            return used, out, False
        used += len(chunk) - len(d.unused_data)
        if out > MAX_ARCHIVE_BYTES:
            return used, out, False
    return used, out, True


class _LocalReader(io.RawIOBase):
    """The data of one member found by its local header, inflated as it is read."""

    def __init__(self, path: Path, entry: _LocalEntry, name: str) -> None:
        super().__init__()
        self._fh = open(path, "rb")  # noqa: SIM115 (closed in close())
        self._fh.seek(entry.data_offset)
        self._left = entry.compress_size
        self._entry = entry
        self._name = name
        self._inflate = zlib.decompressobj(-15) if entry.method == zipfile.ZIP_DEFLATED else None
        self._pending = b""
        self._crc = 0
        self._ended = False
        self._failure: BaseException | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(b)
        while not self._pending and not self._ended:
            chunk = self._fh.read(min(self._left, 1 << 20)) if self._left > 0 else b""
            self._left -= len(chunk)
            if self._inflate is None:
                data = chunk
            else:
                try:
                    data = self._inflate.decompress(chunk, 0) if chunk else self._inflate.flush()
                except zlib.error as exc:
                    self._ended = True
                    self._failure = zlib.error(f"corrupt deflate data: {exc}")
                    data = b""
            self._crc = zlib.crc32(data, self._crc)
            self._pending = data
            if not chunk and self._failure is None:
                self._ended = True
                self._failure = self._finish()
        if not self._pending and self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure
        n = min(len(view), len(self._pending))
        view[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def _finish(self) -> BaseException | None:
        if self._entry.truncated or (self._inflate is not None and not self._inflate.eof):
            return EOFError("truncated: the archive ends inside this member")
        if self._crc != self._entry.crc:
            return zipfile.BadZipFile(f"Bad CRC-32 for file {self._entry.filename!r}")
        return None

    def close(self) -> None:
        try:
            self._fh.close()
        finally:
            super().close()


def _expand_local(
    zpath: Path, report: RunReport, cap: int, budget: _Budget, why: BaseException | str
) -> Iterator[tuple[InputFile, type[Source]]]:
    """The members of a zip archive found by walking its local headers (``why``: the central
    directory is missing, an exception, or lists no members, a text)."""
    name = str(zpath)
    try:
        size = zpath.stat().st_size
        with open(zpath, "rb") as fh:
            entries, stop = _local_entries(fh, size)
    except OSError as exc:
        report.file_error(name, FormatError(f"unreadable zip archive: {exc}", source=name))
        return
    entries = [e for e in entries if not e.filename.endswith("/") and "__MACOSX/" not in e.filename]
    if not entries:
        if isinstance(why, str):  # a sound archive without members
            report.extra.setdefault(NOT_TELEMETRY_KEY, []).append(name)
            report.not_read(name, "empty zip archive (no members)")
        else:
            report.file_error(name, FormatError(f"unreadable zip archive: {why}", source=name))
        return
    clean = stop in ("central directory", "end of file")
    truncated = any(e.truncated for e in entries) or not clean
    report.not_read(
        name,
        (
            f"zip archive: {why}"
            if isinstance(why, str)
            else f"zip archive without its central directory ({why})"
        )
        + f"; {len(entries)} members read by their local headers, walk stopped at: {stop}"
        + ("; members after that point are lost" if truncated else ""),
        lost=truncated,
    )
    for entry in sorted(entries, key=lambda e: e.filename):
        mname = f"{name}!{entry.filename}"
        if entry.encrypted:
            report.not_read(mname, "encrypted member (password required); not read", lost=True)
            continue
        if entry.method not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            report.not_read(mname, f"compression method {entry.method} not supported", lost=True)
            continue

        def opener(entry: _LocalEntry = entry, mname: str = mname) -> IO[bytes]:
            raw = cast(IO[bytes], _LocalReader(zpath, entry, mname))
            return _CappedReader(  # type: ignore[return-value]
                raw, cap, mname, entry.compress_size, budget
            )

        member = InputFile(name=mname, opener=opener, size=entry.file_size)
        try:
            head = _member_head(member)
        except FormatError as exc:
            report.file_error(mname, exc)
            continue
        except OSError as exc:
            report.file_error(mname, FormatError(f"unreadable member: {exc}", source=mname))
            continue
        if not head:
            report.not_read(mname, "empty")
            continue
        cls = _choose(member, head)
        if cls is None:
            _unrecognised(mname, False, report, head)
            continue
        yield member, cls


def iter_inputs(
    paths: Iterable[str | os.PathLike[str]],
    report: RunReport,
    *,
    max_member_bytes: int = MAX_MEMBER_BYTES,
    keep_open: list[zipfile.ZipFile] | None = None,
    walked: bool = False,
) -> Iterator[tuple[InputFile, type[Source]]]:
    """Every readable input under ``paths`` with the source that reads it, in a stable order.

    Directories are walked recursively (sorted), zip archives are opened in place (members are
    never extracted to disk, ``__MACOSX/`` is skipped; archives inside archives are opened to
    ``MAX_ARCHIVE_DEPTH``; an archive without its central directory is read by its local
    headers). Every input not read goes to ``report.not_read`` with why; problems go to
    ``report``. An archive's members can be read while the iteration is at them; to read them
    later, pass ``keep_open`` (open archives are appended; close them when done). ``walked``:
    the files in ``paths`` were found under a directory, not named by the user (one nobody
    recognises is listed as not read, as it would be in the directory's walk, not an error).
    """
    for p in paths:
        path = Path(p)
        if path.is_dir():
            for f in walk_files(path):
                if f.is_file():  # FIFOs, sockets and devices would block or never end
                    yield from _expand(_file_input(f), False, report, max_member_bytes, keep_open)
                else:
                    report.extra.setdefault(NOT_TELEMETRY_KEY, []).append(str(f))
                    report.not_read(str(f), "not a regular file (pipe, socket, device or link)")
        elif path.is_file():
            explicit = not walked
            yield from _expand(_file_input(path), explicit, report, max_member_bytes, keep_open)
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


#: archives a run keeps open for members waiting in a group; beyond this the oldest group is
#: read early (a rare format's group must not hold thousands of archives open)
MAX_OPEN_ARCHIVES = 16


@dataclass(slots=True)
class _Group:
    """Small inputs of one batching source waiting to be read together."""

    inputs: list[InputFile]
    size: int = 0
    #: the first open archive a member of this group reads from (numbered from 0 in the order
    #: archives were opened); None while it holds plain files only
    archive: int | None = None


def iter_event_tables(
    paths: Iterable[str | os.PathLike[str]],
    report: RunReport,
    *,
    encoded: bool = False,
    walked: bool = False,
) -> Iterator[pa.Table]:
    """Tables of ``EVENT_SCHEMA`` from every input under ``paths``; bad inputs are reported.
    ``encoded``: string columns may come dictionary-encoded (``Source.read_encoded``);
    ``walked``: as ``iter_inputs``.

    Small inputs of a source that batches (``Source.batch_bytes``: JSON lines, EVTX, XML) are
    read together, one group per source, so a collection of thousands of small files does not
    pay a fixed cost per file, even when formats alternate (archives holding members of
    several formats). Tables come out group by group, not in file order.
    """
    pending: dict[type[Source], _Group] = {}
    # archives whose members may sit in a group not read yet (numbered from 0 in the order
    # they were opened; ``closed`` of them are closed): the archive the walk is in and those
    # a pending group needs stay open
    archives: list[zipfile.ZipFile] = []
    closed = 0

    def release() -> None:
        nonlocal closed
        current = closed + len(archives) - 1
        need = min((g.archive for g in pending.values() if g.archive is not None), default=current)
        while archives and closed < min(need, current):
            archives.pop(0).close()
            closed += 1

    def flush(cls: type[Source]) -> Iterator[pa.Table]:
        group = pending.pop(cls)
        yield from _read_group(cls, group.inputs, report, encoded)
        release()

    try:
        for inp, cls in iter_inputs(paths, report, keep_open=archives, walked=walked):
            report.file(inp.name, cls.name)
            size = inp.size if inp.size is not None else cls.batch_bytes + 1
            if not (cls.batch_bytes and size <= cls.batch_bytes):
                yield from _read_one(cls, inp, report, encoded)
                continue
            group = pending.get(cls)
            if group is not None and (
                len(group.inputs) >= cls.batch_files or group.size + size > cls.batch_bytes
            ):
                yield from flush(cls)
                group = None
            if group is None:
                group = pending[cls] = _Group([])
            if inp.path is None and group.archive is None and archives:
                group.archive = closed + len(archives) - 1  # a member of the current archive
            group.inputs.append(inp)
            group.size += size
            release()
            while len(archives) > MAX_OPEN_ARCHIVES:
                holding = [c for c, g in pending.items() if g.archive is not None]
                if not holding:
                    break
                yield from flush(min(holding, key=lambda c: cast(int, pending[c].archive)))
        while pending:
            yield from flush(next(iter(pending)))
    finally:
        for zf in archives:
            zf.close()


def _read_group(
    cls: type[Source] | None, inputs: list[InputFile], report: RunReport, encoded: bool = False
) -> Iterator[pa.Table]:
    if cls is None:
        return
    if len(inputs) == 1:
        yield from _read_one(cls, inputs[0], report, encoded)
        return
    yield from _guard(cls().read_many(inputs, report), f"{len(inputs)} {cls.name} inputs", report)


def _read_one(
    cls: type[Source], inp: InputFile, report: RunReport, encoded: bool = False
) -> Iterator[pa.Table]:
    source = cls()
    tables = source.read_encoded(inp, report) if encoded else source.read(inp, report)
    yield from _guard(tables, inp.name, report)


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
