"""Windows event XML: WEF / Event Viewer / ``wevtutil qe /f:xml`` exports and Splunk
``XmlWinEventLog`` (one ``<Event>`` per line), for Sysmon and for ETW-TI and its kernel context.

Layouts differ (an ``<Events>`` root, bare concatenated ``<Event>`` elements with no root, one
event per line with other text around), so the file is not parsed as one document: each
``<Event ...>...</Event>`` is cut out of the stream and parsed on its own. A corrupt event then
costs one counted skip, not the rest of the file, and memory stays bounded by the largest event
(``MAX_EVENT`` bytes; larger ones are skipped).

Parsing is hardened without third-party packages: events are parsed with expat with every DTD,
entity declaration and external reference refused (the checks ``defusedxml`` makes), so billion
laughs, external entities and network fetches cannot happen; an undefined entity is a parse
error (counted). Nothing outside an ``<Event>`` element is ever parsed.

Each event becomes ``System`` fields + ``EventData``/``UserData`` name -> value, then:

* **Sysmon** (provider ``Microsoft-Windows-Sysmon``): mapped by the Sysmon sources' own mapping
  (``unbacked.sources._sysmon`` through the JSON-lines engine), so EVTX, JSON and XML inputs of
  the same events give the same rows.
* **Threat-Intelligence, Kernel-Process, Kernel-Network**: mapped by the ETW-TI source
  (``unbacked.sources.etwti.Mapper``); ``RenderingInfo`` keyword names, when the export has
  them, tell local from remote as the event id does.
* anything else is counted as ignored.
"""

from __future__ import annotations

import codecs
import re
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, ClassVar
from xml.parsers import expat

import numpy as np
import orjson
import pyarrow as pa

from unbacked.errors import FormatError, InputError
from unbacked.runreport import RunReport
from unbacked.sources._wincommon import Rows, lower_keys, parse_time_ns, text
from unbacked.sources._winconst import parse_uint
from unbacked.sources.base import InputFile, Source, count_read_error, register
from unbacked.sources.etwti import BadRecord, EtwRecord, Mapper, classify_provider

#: Largest single ``<Event>`` read (real events are a few KiB).
MAX_EVENT = 1024 * 1024
#: Bytes read from the input at a time.
CHUNK = 1024 * 1024
#: Sysmon events handed to the JSON engine at a time.
SYSMON_BLOCK = 8192

SYSMON_PROVIDER = "Microsoft-Windows-Sysmon"
_EVENT_START = re.compile(r"<(?:[A-Za-z_][\w.-]*:)?Event[\s>]")
_EVENT_END = re.compile(r"</(?:[A-Za-z_][\w.-]*:)?Event\s*>")


class XmlForbidden(ValueError):
    """The event declares a DTD or entities, or references external content."""


@dataclass(slots=True)
class WinEvent:
    """One parsed ``<Event>``: System values and event data, names as written."""

    system: dict[str, str] = field(default_factory=dict)
    data: dict[str, str] = field(default_factory=dict)
    rendering: list[str] = field(default_factory=list)  # RenderingInfo texts (task, keywords)


def _deny(*_args: object) -> Any:
    raise XmlForbidden("DTDs, entity declarations and external references are not allowed")


def parse_event(xml: str) -> WinEvent:
    """Parse one ``<Event>`` element with a hardened expat parser.

    Raises ``XmlForbidden`` for DTD/entity constructs and ``expat.ExpatError`` for malformed
    XML (both counted by the caller).
    """
    p = expat.ParserCreate()
    p.StartDoctypeDeclHandler = _deny
    p.EntityDeclHandler = _deny
    p.UnparsedEntityDeclHandler = _deny
    p.ExternalEntityRefHandler = _deny
    p.NotationDeclHandler = _deny
    p.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    ev = WinEvent()
    path: list[str] = []
    attrs_stack: list[dict[str, str]] = []
    buf: list[str] = []
    unnamed = [0]

    def start(name: str, attrs: dict[str, str]) -> None:
        path.append(name.rsplit(":", 1)[-1])
        attrs_stack.append(attrs)
        buf.clear()
        local = path[-1]
        if len(path) >= 2 and path[-2] == "System":
            for k, v in attrs.items():
                ev.system[f"{local}@{k}"] = v

    def end(name: str) -> None:
        local = path[-1]
        attrs = attrs_stack[-1]
        value = "".join(buf).strip()
        buf.clear()
        parent = path[-2] if len(path) >= 2 else ""
        if parent == "System":
            ev.system[local] = value
        elif parent == "EventData" or (local == "Data" and parent not in ("System",)):
            if local == "Data":
                key = attrs.get("Name")
                if key is None:
                    unnamed[0] += 1
                    key = f"Data{unnamed[0]}"
                ev.data[key] = value
            elif local not in ("Binary",):
                ev.data[local] = value
        elif "UserData" in path and value:
            ev.data.setdefault(local, value)
        elif "RenderingInfo" in path and value:
            ev.rendering.append(value)
        path.pop()
        attrs_stack.pop()

    def chars(data: str) -> None:
        buf.append(data)

    p.StartElementHandler = start
    p.EndElementHandler = end
    p.CharacterDataHandler = chars
    p.Parse(xml, True)
    return ev


def _events_or_damage(
    stream: IO[bytes], name: str, report: RunReport
) -> Iterator[tuple[int, str | None]]:
    """``iter_events``; a damaged archive member ends the input with what was read counted."""
    try:
        yield from iter_events(stream)
    except FormatError as exc:
        count_read_error(report, name, exc)


def iter_events(stream: IO[bytes]) -> Iterator[tuple[int, str | None]]:
    """Yield ``(line, event_xml)`` for each ``<Event>...</Event>`` in the stream.

    ``event_xml`` is ``None`` for an event larger than ``MAX_EVENT`` (skipped by the caller); a
    truncated last event is yielded as it is (and fails to parse). Text is UTF-8 unless the
    stream starts with a UTF-16 byte-order mark; undecodable bytes become U+FFFD.
    """
    chunk = stream.read(CHUNK)
    if chunk.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        decoder = codecs.getincrementaldecoder("utf-16")(errors="replace")
    else:
        decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")
    buf = ""
    line, mark = 1, 0  # line number at buf[mark]; lines are counted forward only
    while True:
        eof = not chunk
        buf += decoder.decode(chunk, final=eof)
        pos = 0
        cut = len(buf)
        while True:
            m = _EVENT_START.search(buf, pos)
            if m is None:
                cut = len(buf) if eof else max(pos, len(buf) - 64)  # a tag may straddle
                break
            line += buf.count("\n", mark, m.start())
            mark = m.start()
            e = _EVENT_END.search(buf, m.end())
            if e is None:
                if eof:
                    yield line, buf[m.start() :]
                    cut = len(buf)
                elif len(buf) - m.start() > MAX_EVENT:
                    yield line, None
                    pos = m.end()
                    continue
                else:
                    cut = m.start()
                break
            nxt = _EVENT_START.search(buf, m.end(), e.start())
            if nxt is not None:  # this event never closed: yield the broken part alone
                yield line, buf[m.start() : nxt.start()]
                pos = nxt.start()
                continue
            yield line, (buf[m.start() : e.end()] if e.end() - m.start() <= MAX_EVENT else None)
            pos = e.end()
        line += buf.count("\n", mark, cut)
        buf = buf[cut:]
        mark = 0
        if eof:
            return
        chunk = stream.read(CHUNK)


def sysmon_record(ev: WinEvent) -> dict[str, Any]:
    """A Sysmon event as the flat "export" JSON object the Sysmon JSON mapping reads
    (envelope names ``EventID``, ``ProviderName``, ``Channel``, ``Computer``,
    ``EventRecordID``, ``TimeCreated``; event data at the top level)."""
    s = ev.system
    out: dict[str, Any] = dict(ev.data)
    out.update(
        EventID=s.get("EventID"),
        ProviderName=s.get("Provider@Name"),
        Channel=s.get("Channel"),
        Computer=s.get("Computer"),
        EventRecordID=s.get("EventRecordID"),
        TimeCreated=s.get("TimeCreated@SystemTime"),
    )
    return {k: v for k, v in out.items() if v is not None}


def etw_record(ev: WinEvent) -> EtwRecord:
    """An ETW event rendered as XML, as the ETW-TI mapper takes it."""
    s = ev.system
    names = [s.get("Task", ""), s.get("Keywords", ""), *ev.rendering]
    return EtwRecord(
        provider=classify_provider(s.get("Provider@Name") or s.get("Provider@Guid")),
        event_id=parse_uint(s.get("EventID"), bits=16),
        version=parse_uint(s.get("Version"), bits=8),
        name=" ".join(n.upper() for n in names if n),
        opcode=parse_uint(s.get("Opcode"), bits=8),
        time_ns=parse_time_ns(s.get("TimeCreated@SystemTime")),
        pid=parse_uint(s.get("Execution@ProcessID"), bits=32),
        tid=parse_uint(s.get("Execution@ThreadID"), bits=32),
        process_name=None,
        host=text(s.get("Computer")),
        data=lower_keys(ev.data),
        record_id=parse_uint(s.get("EventRecordID"), bits=63),
    )


_SNIFF_NS = b"schemas.microsoft.com/win/2004/08/events/event"


@register
class WinEventXmlSource(Source):
    """Windows event XML (WEF/wevtutil/Event Viewer exports, Splunk XmlWinEventLog)."""

    name: ClassVar[str] = "winevent-xml"
    description: ClassVar[str] = (
        "Windows event XML (WEF/wevtutil/Event Viewer exports, Splunk XmlWinEventLog): Sysmon, "
        "Threat-Intelligence ETW, Kernel-Process/Network"
    )
    priority: ClassVar[int] = 45
    #: small XML files are read together (their Sysmon events share one query)
    batch_bytes: ClassVar[int] = 4 * 1024 * 1024
    batch_files: ClassVar[int] = 4096
    examples: ClassVar[tuple[bytes, ...]] = (
        b"<Events><Event xmlns='http://schemas.microsoft.com/win/2004/08/events/event'><System>"
        b"<Provider Name='Microsoft-Windows-Threat-Intelligence'/><EventID>1</EventID>"
        b"<Version>0</Version><TimeCreated SystemTime='2024-05-01T10:00:00.2000000Z'/>"
        b"<EventRecordID>99</EventRecordID><Execution ProcessID='100' ThreadID='104'/>"
        b"<Computer>WS-042</Computer></System><EventData>"
        b"<Data Name='CallingProcessId'>100</Data><Data Name='CallingThreadId'>104</Data>"
        b"<Data Name='TargetProcessId'>200</Data><Data Name='BaseAddress'>0x1F2A0B10000</Data>"
        b"<Data Name='RegionSize'>0x2000</Data><Data Name='AllocationType'>12288</Data>"
        b"<Data Name='ProtectionMask'>64</Data></EventData></Event>\n"
        b"<Event xmlns='http://schemas.microsoft.com/win/2004/08/events/event'><System>"
        b"<Provider Name='Microsoft-Windows-Sysmon'/><EventID>8</EventID>"
        b"<TimeCreated SystemTime='2024-05-01T10:00:01.0000000Z'/>"
        b"<EventRecordID>7</EventRecordID><Channel>Microsoft-Windows-Sysmon/Operational</Channel>"
        b"<Computer>WS-042</Computer></System><EventData>"
        b"<Data Name='UtcTime'>2024-05-01 10:00:01.000</Data>"
        b"<Data Name='SourceProcessId'>100</Data><Data Name='SourceImage'>C:\\x\\inj.exe</Data>"
        b"<Data Name='TargetProcessId'>200</Data><Data Name='NewThreadId'>5555</Data>"
        b"<Data Name='StartAddress'>0x000001F2A0B10000</Data></EventData></Event></Events>\n",
    )

    @classmethod
    def sniff(cls, head: bytes, name: str) -> bool:
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            head = head.decode("utf-16", errors="replace").encode("utf-8", errors="replace")
        return _SNIFF_NS in head and (b"<Event" in head or b":Event" in head)

    def read(self, inp: InputFile, report: RunReport) -> Iterator[pa.Table]:
        yield from self._read(inp, report, _SysmonBlock(), flush=True)

    def read_many(self, inputs: Sequence[InputFile], report: RunReport) -> Iterator[pa.Table]:
        """Read small XML files, their Sysmon events mapped together (one query per block,
        not per file)."""
        sysmon = _SysmonBlock()
        for inp in inputs:
            try:
                yield from self._read(inp, report, sysmon)
            except (InputError, OSError, EOFError, zipfile.BadZipFile) as exc:
                if isinstance(exc, InputError):
                    report.file_error(inp.name, exc)
                else:
                    report.file_error(
                        inp.name,
                        FormatError(
                            f"unreadable input: {type(exc).__name__}: {exc}", source=inp.name
                        ),
                    )
        yield from sysmon.flush(self.name, report)

    def _read(
        self, inp: InputFile, report: RunReport, sysmon: _SysmonBlock, *, flush: bool = False
    ) -> Iterator[pa.Table]:
        """One input; its Sysmon events go to ``sysmon`` (mapped before its last rows when
        ``flush``: a file read alone keeps its rows in file order per kind)."""
        rep = report.file(inp.name, self.name)
        rows = Rows(src_format=self.name, src_file=inp.name)
        mapper = Mapper()
        with inp.open() as fh:
            for line, xml in _events_or_damage(fh, inp.name, report):
                rep.records += 1
                if xml is None:
                    report.skip(inp.name, "event-too-large", offset=line)
                    continue
                try:
                    ev = parse_event(xml)
                except XmlForbidden as exc:
                    report.skip(inp.name, "xml-forbidden", detail=str(exc), offset=line)
                    continue
                except expat.ExpatError as exc:
                    report.skip(inp.name, "xml", detail=str(exc)[:200], offset=line)
                    continue
                provider = ev.system.get("Provider@Name") or ""
                if provider == SYSMON_PROVIDER or "Sysmon" in ev.system.get("Channel", ""):
                    sysmon.add(inp.name, line, orjson.dumps(sysmon_record(ev)))
                    if len(sysmon) >= SYSMON_BLOCK:
                        yield from sysmon.flush(self.name, report)
                    continue
                if not classify_provider(provider or ev.system.get("Provider@Guid")):
                    rep.ignored += 1
                    continue
                try:
                    row = mapper.map(etw_record(ev))
                except BadRecord as exc:
                    report.skip(inp.name, exc.reason, detail=exc.detail, offset=line)
                    continue
                if row is None:
                    rep.ignored += 1
                    continue
                row["src_line"] = line
                rows.add(row)
                if rows.full():
                    rep.events += len(rows)
                    yield rows.table()
        if flush:
            yield from sysmon.flush(self.name, report)
        if len(rows):
            rep.events += len(rows)
            yield rows.table()


class _SysmonBlock:
    """Sysmon events waiting to be mapped, from one input or several (their file index
    travels through the query)."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self.ln: list[int] = []
        self.fi: list[int] = []
        self.files: list[str] = []

    def __len__(self) -> int:
        return len(self.lines)

    def add(self, name: str, line: int, record: bytes) -> None:
        if not self.files or self.files[-1] != name:
            self.files.append(name)
        self.lines.append(record)
        self.ln.append(line)
        self.fi.append(len(self.files) - 1)

    def flush(self, src_format: str, report: RunReport) -> Iterator[pa.Table]:
        """Map the events with the Sysmon sources' shared mapping (JSON engine); counters go
        to each input."""
        from unbacked.sources._engine import pooled_connection
        from unbacked.sources.sysmon_json import OTRF_QUERY

        if not self.lines:
            return
        lines = pa.array(self.lines, pa.binary())
        ln = np.array(self.ln, dtype=np.int64)
        fi = np.array(self.fi, dtype=np.int64)
        files = self.files
        self.lines, self.ln, self.fi, self.files = [], [], [], []
        with pooled_connection() as con:
            results = OTRF_QUERY.run_files(con, lines, ln, fi, files, src_format=src_format)
        for name, res in results:
            rep = report.file(name)
            rep.events += res.events
            rep.ignored += res.ignored
            for reason, (count, detail) in res.skipped.items():
                report.skip(name, reason, count, detail=detail)
            if res.table is not None and res.table.num_rows:
                yield res.table
