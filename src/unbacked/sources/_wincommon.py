"""Plumbing shared by the Windows sources (ETW-TI, Elastic Defend, event XML).

* ``Rows``: collects normalized rows column by column and hands out ``EVENT_SCHEMA`` tables in
  bounded batches, typed once per column (no per-event Arrow objects).
* ``json_records``: JSON lines with line numbers; unreadable lines are counted, never raised.
* time parsing for the spellings Windows telemetry uses (ISO 8601 with 7 fractional digits and an
  offset, FILETIME, epoch seconds/ms/us/ns), to nanoseconds since the Unix epoch (UTC).
* call-stack helpers: which frame is the caller, and whether it lies in unbacked memory.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterator, Mapping
from typing import IO, Any

import orjson
import pyarrow as pa

from unbacked.errors import FormatError
from unbacked.model import EVENT_SCHEMA, conform
from unbacked.runreport import RunReport
from unbacked.sources.base import count_read_error

#: Rows per emitted table: large enough for columnar work, small enough to bound memory.
BATCH_ROWS = 16_384
#: A JSON line longer than this is not telemetry (and would cost memory to parse): skipped.
MAX_LINE = 4 * 1024 * 1024

_TYPES = {f.name: f.type for f in EVENT_SCHEMA}


class Rows:
    """Row buffer for one input file, converted column by column.

    ``add`` keeps the mapping it is given (column name -> Python value; ``None`` and absent are
    the same); ``table`` builds each column that any buffered row has with its declared type in
    one pass, and clears the buffer. Unknown column names are a programming error and raise
    ``KeyError`` at ``table``, so typos surface in tests.
    """

    def __init__(self, *, src_format: str, src_file: str) -> None:
        self.src_format = src_format
        self.src_file = src_file
        self._rows: list[Mapping[str, Any]] = []
        self._keys: set[str] = set()

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, row: Mapping[str, Any]) -> None:
        self._rows.append(row)
        self._keys.update(row)

    def table(self) -> pa.Table:
        rows = self._rows
        n = len(rows)
        data: dict[str, pa.Array] = {}
        for key in self._keys:
            data[key] = pa.array([r.get(key) for r in rows], type=_TYPES[key])
        data["src_format"] = pa.array([self.src_format] * n, type=_TYPES["src_format"])
        data["src_file"] = pa.array([self.src_file] * n, type=_TYPES["src_file"])
        if "os" not in data:
            data["os"] = pa.array(["windows"] * n, type=_TYPES["os"])
        self._rows = []
        self._keys = set()
        return conform(data)

    def full(self) -> bool:
        return len(self._rows) >= BATCH_ROWS


def json_records(
    stream: IO[bytes], name: str, report: RunReport
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each JSON object line of ``stream``.

    Blank lines are not records. A line that is not JSON, not an object, or too long is counted
    as skipped (``json``/``not-an-object``/``line-too-long``) and reading goes on. A JSON array
    document (``[{...}, {...}]`` as some exporters write) is read whole when it starts the file.
    """
    try:
        yield from _json_records(stream, name, report)
    except FormatError as exc:  # a damaged archive member: what was read before stays read
        count_read_error(report, name, exc)


def bounded_lines(stream: IO[bytes], limit: int, first_limit: int) -> Iterator[bytes | int]:
    """Each line of ``stream`` (newline included), never holding more than a limit of it: a
    line longer than ``limit`` bytes (``first_limit`` until the first line that is not blank,
    where a JSON array document may begin) is read through in pieces and given as its length
    (an ``int``) instead. Iterating a binary file, by contrast, holds a whole line, however long
    (a file of gigabytes with no newline)."""
    cap = first_limit
    while True:
        line = stream.readline(cap + 1)
        if not line:
            return
        if len(line) <= cap or line.endswith(b"\n"):
            if cap != limit and line.removeprefix(b"\xef\xbb\xbf").strip():
                cap = limit
            yield line
            continue
        cap, n = limit, len(line)
        while True:
            piece = stream.readline(limit)
            n += len(piece)
            if not piece or piece.endswith(b"\n"):
                break
        yield n


def _json_records(
    stream: IO[bytes], name: str, report: RunReport
) -> Iterator[tuple[int, dict[str, Any]]]:
    rep = report.file(name)
    first = True
    for lineno, raw in enumerate(bounded_lines(stream, MAX_LINE, MAX_LINE * 64), start=1):
        if isinstance(raw, int):  # longer than any event: skipped without being held
            first = False
            rep.records += 1
            report.skip(name, "line-too-long", detail=f"{raw} bytes", offset=lineno)
            continue
        line = raw.strip()
        if first:
            line = line.removeprefix(b"\xef\xbb\xbf").strip()
        if not line:
            continue
        if first and line.startswith(b"["):
            first = False
            rest = line + stream.read(MAX_LINE * 64)
            try:
                doc = orjson.loads(rest)
            except orjson.JSONDecodeError as exc:
                rep.records += 1
                report.skip(name, "json", detail=str(exc)[:200], offset=lineno)
                return
            if not isinstance(doc, list):
                rep.records += 1
                report.skip(name, "not-an-object", offset=lineno)
                return
            for i, item in enumerate(doc, start=1):
                rep.records += 1
                if isinstance(item, dict):
                    yield i, item
                else:
                    report.skip(name, "not-an-object", offset=i)
            return
        first = False
        rep.records += 1
        if len(line) > MAX_LINE:
            report.skip(name, "line-too-long", detail=f"{len(line)} bytes", offset=lineno)
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            report.skip(name, "json", detail=str(exc)[:200], offset=lineno)
            continue
        if not isinstance(obj, dict):
            report.skip(name, "not-an-object", offset=lineno)
            continue
        yield lineno, obj


# -- time ------------------------------------------------------------------------------------

_ISO_RE = re.compile(
    r"^\s*(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9})\d*)?"
    r"\s*(Z|z|[+-]\d{2}:?\d{2}|UTC)?\s*$"
)
_DOTNET_DATE_RE = re.compile(r"^/?Date\((-?\d+)([+-]\d{4})?\)/?$")
#: .NET's invariant/en-US ``DateTime.ToString()``: ``5/1/2024 10:00:00 AM`` (TraceEvent renders
#: FILETIME payload fields this way); taken as UTC.
_US_DATE_RE = re.compile(
    r"^\s*(\d{1,2})/(\d{1,2})/(\d{4})\s+(\d{1,2}):(\d{2}):(\d{2})(?:\.(\d{1,9})\d*)?\s*([AaPp][Mm])?\s*$"
)
#: longest time text parsed (ISO 8601 with 9 fraction digits and a zone is 35 characters)
_MAX_TIME_TEXT = 64
#: FILETIME of the Unix epoch (100 ns intervals since 1601-01-01)
FILETIME_EPOCH = 116_444_736_000_000_000
_NS = 1_000_000_000
#: Sanity bounds for a timestamp: 1990..2100 (rejects zero FILETIMEs and garbage).
_MIN_NS = 631_152_000 * _NS
_MAX_NS = 4_102_444_800 * _NS


def parse_time_ns(value: object) -> int | None:
    """Nanoseconds since the Unix epoch (UTC) from the spellings Windows telemetry uses.

    Strings: ISO 8601 (``2024-05-01T10:00:00.1234567+02:00``, naive taken as UTC), .NET
    ``/Date(ms)/``, or a number. Numbers are told apart by magnitude: FILETIME (100 ns since
    1601), epoch seconds, milliseconds, microseconds or nanoseconds. Out of 1990..2100: ``None``.
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        if len(value) > _MAX_TIME_TEXT:
            # no spelling is this long; and the patterns' optional parts between runs of
            # whitespace would take quadratic time on a long run (found by the fuzz campaign)
            value = value.strip()
            if len(value) > _MAX_TIME_TEXT:
                return None
        m = _ISO_RE.match(value)
        if m is not None:
            return _iso_ns(m)
        u = _US_DATE_RE.match(value)
        if u is not None:
            return _us_ns(u)
        d = _DOTNET_DATE_RE.match(value.strip())
        if d is not None:
            return _bounded(int(d.group(1)) * 1_000_000)
        try:
            num: float = float(value.replace(",", "")) if value.strip() else float("nan")
        except ValueError:
            return None
        if num != num:  # NaN
            return None
        return _number_ns(num)
    if isinstance(value, int | float):
        return _number_ns(value)
    return None


def _iso_ns(m: re.Match[str]) -> int | None:
    year, month, day, hour, minute, sec, frac, tz = m.groups()
    try:
        secs = calendar.timegm(
            (int(year), int(month), int(day), int(hour), int(minute), int(sec), 0, 0, 0)
        )
    except (ValueError, OverflowError):
        return None
    if not (1 <= int(month) <= 12 and 1 <= int(day) <= 31 and int(hour) < 24):
        return None
    if int(minute) > 59 or int(sec) > 60:
        return None
    ns = secs * _NS + (int(frac.ljust(9, "0")) if frac else 0)
    if tz and tz not in ("Z", "z", "UTC"):
        sign = 1 if tz[0] == "+" else -1
        digits = tz[1:].replace(":", "")
        offset = int(digits[:2]) * 3600 + int(digits[2:]) * 60
        ns -= sign * offset * _NS
    return _bounded(ns)


def _us_ns(m: re.Match[str]) -> int | None:
    month, day, year, hour, minute, sec, frac, ampm = m.groups()
    h = int(hour)
    if ampm:
        if not 1 <= h <= 12:
            return None
        h = h % 12 + (12 if ampm.upper() == "PM" else 0)
    iso = f"{year}-{int(month):02d}-{int(day):02d}T{h:02d}:{minute}:{sec}"
    if frac:
        iso += f".{frac}"
    mm = _ISO_RE.match(iso)
    return _iso_ns(mm) if mm is not None else None


def _number_ns(num: float) -> int | None:
    if num != num or num in (float("inf"), float("-inf")) or num <= 0:
        return None
    n = int(num)
    if 1e17 <= num < 4e17:  # FILETIME
        return _bounded((n - FILETIME_EPOCH) * 100)
    if num < 1e11:  # seconds
        return _bounded(int(num * _NS))
    if num < 1e14:  # milliseconds
        return _bounded(int(num * 1_000_000))
    if num < 1e17:  # microseconds
        return _bounded(n * 1000)
    return _bounded(n)


def _bounded(ns: int) -> int | None:
    return ns if _MIN_NS <= ns <= _MAX_NS else None


def filetime_ns(value: object) -> int | None:
    """A FILETIME given as a number (or numeric string) to Unix nanoseconds; ISO strings too
    (renderers print FILETIME fields as dates)."""
    return parse_time_ns(value)


# -- identity ----------------------------------------------------------------------------------


def process_uid(host: str | None, pid: int | None, start_ns: int | None) -> str | None:
    """``host:pid:start-ns`` (or ``host:pid``) as the schema defines it for sources with no
    ProcessGuid. ``None`` without a pid."""
    if pid is None:
        return None
    h = host or ""
    return f"{h}:{pid}:{start_ns}" if start_ns is not None else f"{h}:{pid}"


def basename(path: str | None) -> str | None:
    """Last component of a Windows or POSIX path (``\\Device\\...\\x.dll`` -> ``x.dll``)."""
    if not path:
        return None
    base = path.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    return base or None


# -- call stacks -------------------------------------------------------------------------------

#: Modules that sit between any caller and the kernel: never "the caller" of an API.
SYSTEM_THUNKS = frozenset(
    {
        "ntdll.dll",
        "kernelbase.dll",
        "kernel32.dll",
        "wow64.dll",
        "wow64cpu.dll",
        "wow64win.dll",
        "win32u.dll",
        "ntoskrnl.exe",
    }
)
_UNBACKED_NAMES = frozenset({"unbacked", "unknown", "<unknown>", "?"})
#: matched against a stripped frame: no whitespace runs around ``$`` (with one, a frame with
#: 300,000 inner spaces backtracked for minutes)
_FRAME_RE = re.compile(
    r"(?P<mod>[^!+]*?)(?:!(?P<sym>[^+]*))?(?:\+(?P<off>0[xX][0-9a-fA-F]+|\d+))?$"
)
#: a frame offset wider than this is no address
_MAX_OFFSET = 2**64 - 1


def _offset(off_s: str | None) -> int | None:
    """A frame's ``+0x14`` / ``+20`` offset; None when absent or wider than 64 bits."""
    if not off_s or len(off_s.lstrip("0xX")) > 20:  # also keeps int() off huge digit strings
        return None
    off = int(off_s, 16) if off_s[:2].lower() == "0x" else int(off_s)
    return off if off <= _MAX_OFFSET else None


def parse_frame(frame: str) -> tuple[str | None, int | None, bool]:
    """``(module, offset, unbacked)`` of one frame spelled ``module!symbol+0x14``,
    ``C:\\x\\mod.dll+0x10``, ``Unbacked+0x4a``, ``UNKNOWN(0x1234)`` or a bare address.

    The module is the lower-case basename; ``unbacked`` is True for frames in no module.
    """
    text = frame.strip()
    low = text.lower()
    if not text:
        return None, None, False
    if low.startswith("unknown(") or low.startswith("unbacked("):
        return None, None, True
    if parse_uint_strict(text) is not None:  # a bare address: no module known
        return None, None, True
    m = _FRAME_RE.match(text)
    if m is None:
        return None, None, False
    mod = (m.group("mod") or "").strip()
    off_s = m.group("off")
    off = _offset(off_s)
    if mod.lower() in _UNBACKED_NAMES:
        return None, off, True
    name = basename(mod)
    if not name:
        return None, off, False
    name = name.lower()
    if "." not in name:  # debugger spelling: "ntdll!Nt...", "KERNELBASE!..."
        name += ".dll"
    return name, off, False


def parse_uint_strict(text: str) -> int | None:
    t = text.strip()
    if re.fullmatch(r"0[xX][0-9a-fA-F]+", t):
        return int(t, 16)
    return None


def caller_of(frames: list[str]) -> tuple[str | None, int | None, bool | None, str | None]:
    """``(caller_module, caller_offset, caller_unbacked, summary)`` from frames, innermost first.

    The caller is the first frame outside the system thunks (ntdll, kernelbase, kernel32 ...):
    the code that asked for the memory. ``summary`` is the ``|``-joined module list with
    consecutive repeats collapsed and ``Unbacked`` for frames in no module (Elastic's
    ``call_stack_summary`` spelling).
    """
    mods: list[str] = []
    caller: tuple[str | None, int | None, bool | None] = (None, None, None)
    found = False
    for frame in frames:
        mod, off, unbacked = parse_frame(frame)
        label = "Unbacked" if unbacked else (mod or "Unknown")
        if not mods or mods[-1] != label:
            mods.append(label)
        if not found and (unbacked or (mod is not None and mod not in SYSTEM_THUNKS)):
            caller = (None if unbacked else mod, off, unbacked)
            found = True
    return caller[0], caller[1], caller[2], ("|".join(mods) if mods else None)


def lower_keys(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A shallow copy with lower-cased keys (consumers disagree on ``ProcessID``/``ProcessId``)."""
    return {str(k).lower(): v for k, v in obj.items()}


def first(obj: Mapping[str, Any], *keys: str) -> Any:
    """The first present, non-empty value among ``keys`` (already lower-cased) in ``obj``."""
    for k in keys:
        v = obj.get(k)
        if v is not None and v != "":
            return v
    return None


def text(value: object, limit: int = 32_768) -> str | None:
    """A clean string column value: strings as is (bounded), numbers as text, else ``None``."""
    if isinstance(value, str):
        v = value.strip().replace("\x00", "")
        return v[:limit] if v else None
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return str(value)
    return None
