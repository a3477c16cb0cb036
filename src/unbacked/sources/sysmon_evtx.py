"""Sysmon in native Windows event logs (``.evtx``), read with the ``evtx`` (Rust) parser.

The parser hands out each record as a JSON string; those strings are collected per block and
mapped in bulk (``_engine``), so Python does not touch fields. Corrupt chunks and records (bad
chunk magic, zero data size, ...) come back from the parser as a ``RuntimeError`` in the record
stream; each is counted with its reason and iteration goes on, so every readable record is read.
``src_line`` is the 1-based position of the record in parser order (corrupt units not counted),
``src_record`` the ``EventRecordID`` written in the record.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Iterator, Sequence
from typing import ClassVar

import evtx
import numpy as np
import pyarrow as pa

from unbacked.errors import FormatError
from unbacked.runreport import RunReport
from unbacked.sources import _sysmon
from unbacked.sources._engine import (
    BlockResult,
    FilesBlock,
    JsonQuery,
    pooled_connection,
    run_pipelined_files,
)
from unbacked.sources.base import (
    InputFile,
    Source,
    count_read_error,
    read_tolerant,
    register,
)

EVTX_MAGIC = b"ElfFile\x00"
#: records mapped per block
_BLOCK_RECORDS = 50000

_SYS = "$.Event.System."
_ENVELOPE = {
    "EventID": [_SYS + 'EventID."#text"', _SYS + "EventID"],
    "Channel": [_SYS + "Channel"],
    "Provider": [_SYS + 'Provider."#attributes".Name'],
    "Computer": [_SYS + "Computer"],
    "RecordID": [_SYS + "EventRecordID"],
    "RecordTime": [_SYS + 'TimeCreated."#attributes".SystemTime'],
}


def _data_path(name: str) -> list[str]:
    return [f'$.Event.EventData."{name}"']


QUERY = JsonQuery(_sysmon.fields_for(_ENVELOPE, _data_path), _sysmon.MAPPING_SQL)


def _reason(message: str) -> str:
    low = message.lower()
    if "chunk" in low:
        return "corrupt EVTX chunk"
    return "corrupt EVTX record"


@register
class SysmonEvtxSource(Source):
    """Sysmon events 1/3/5/7/8/10/25 from ``.evtx`` files; other events are counted, not read."""

    name: ClassVar[str] = "sysmon-evtx"
    description: ClassVar[str] = "Windows event log files (.evtx); Sysmon events are read"
    priority: ClassVar[int] = 50
    #: files up to 64 MiB are read in shared blocks of ``_BLOCK_RECORDS`` (which bound the
    #: memory, not the group): the EVTX-ATTACK-SAMPLES snapshot (266 files, 20 MB) maps in one
    #: query instead of three (~25 ms of planning each, docs/benchmarks.md)
    batch_bytes: ClassVar[int] = 64 * 1024 * 1024
    batch_files: ClassVar[int] = 4096

    @classmethod
    def sniff(cls, head: bytes, name: str) -> bool:
        return head.startswith(EVTX_MAGIC)

    def read(self, inp: InputFile, report: RunReport) -> Iterator[pa.Table]:
        yield from self.read_many([inp], report)

    def read_many(self, inputs: Sequence[InputFile], report: RunReport) -> Iterator[pa.Table]:
        """Read EVTX files, small ones sharing blocks (and so one query per block)."""
        for inp in inputs:
            report.file(inp.name, self.name)
        with pooled_connection() as con:

            def work(blk: FilesBlock) -> list[tuple[str, BlockResult]]:
                return QUERY.run_files(
                    con, blk.lines, blk.ln, blk.fi, blk.files, src_format=self.name
                )

            yield from run_pipelined_files(self._blocks(inputs, report), work, report)

    def _blocks(self, inputs: Sequence[InputFile], report: RunReport) -> Iterator[FilesBlock]:
        texts: list[str] = []
        lns: list[int] = []
        fis: list[int] = []
        files: list[str] = []
        for inp in inputs:
            if len(texts) >= _BLOCK_RECORDS:
                yield _block(texts, lns, fis, files)
                texts, lns, fis, files = [], [], [], []
            k = len(files)
            files.append(inp.name)
            try:
                for index, text in _records(inp, report):
                    texts.append(text)
                    lns.append(index)
                    fis.append(k)
                    if len(texts) >= _BLOCK_RECORDS:
                        yield _block(texts, lns, fis, files)
                        texts, lns, fis, files = [], [], [], [inp.name]
                        k = 0
            except FormatError as exc:
                report.file_error(inp.name, exc)
        if texts:
            yield _block(texts, lns, fis, files)


def _records(inp: InputFile, report: RunReport) -> Iterator[tuple[int, str]]:
    """(1-based index, JSON text) of every readable record; corrupt units are reported."""
    stream = None
    damage: FormatError | None = None
    try:
        if inp.path is not None:
            partial = _partial_chunk(inp.path, None)
            parser = evtx.PyEvtxParser(inp.path)
        else:
            # an archive member: read what can be read (a bad CRC or a cut member keeps the
            # chunks before the damage), then parse that
            raw, damage = read_tolerant(inp)
            partial = _partial_chunk(None, raw)
            stream = io.BytesIO(raw)
            parser = evtx.PyEvtxParser(stream)
    except (RuntimeError, OSError, ValueError) as exc:
        if stream is not None:
            stream.close()
        raise FormatError(
            f"not a readable EVTX file: {exc}",
            source=inp.name,
            hint="check that the file is a complete .evtx export",
        ) from exc
    rep = report.file(inp.name)
    try:
        records = parser.records_json()
        seen_in_partial = 0
        index = 0  # 1-based position of the last readable record
        errors = 0
        # A parser that keeps failing without advancing must not hang the run: a file of
        # ``size`` bytes cannot hold more than size/24 records or chunks.
        budget = (inp.size or 1 << 30) // 24 + 1024
        while True:
            try:
                rec = next(records)
            except StopIteration:
                break
            except RuntimeError as exc:
                errors += 1
                msg = str(exc)
                rep.records += 1
                report.skip(inp.name, _reason(msg), detail=msg[:200])
                if errors > budget:
                    rep.records += 1
                    report.skip(inp.name, "EVTX parser gave up", detail=msg[:200])
                    break
                continue
            index += 1
            rep.records += 1
            if partial is not None and isinstance(rec, dict):
                rid = rec.get("event_record_id")
                if isinstance(rid, int) and partial[0] <= rid <= partial[1]:
                    seen_in_partial += 1
            data = rec.get("data") if isinstance(rec, dict) else None
            yield index, (data if isinstance(data, str) else "{}")
        if partial is not None:
            # the file ends inside a chunk: the records its header lists and the parser did
            # not hand out are lost, and counted
            first, last = partial
            lost = max(last - first + 1 - seen_in_partial, 1 if first == 0 else 0)
            if lost:
                rep.records += lost
                report.skip(
                    inp.name,
                    "truncated EVTX chunk",
                    lost,
                    detail=f"the file ends inside its last chunk (records {first}..{last})"
                    if first
                    else "the file ends inside its last chunk",
                )
        if damage is not None:
            count_read_error(report, inp.name, damage)
    finally:
        if stream is not None:
            stream.close()


_FILE_HEADER = 4096
_CHUNK = 65536


def _partial_chunk(path: str | None, data: bytes | None) -> tuple[int, int] | None:
    """The record id range of a last chunk the file ends inside (its header present), (0, 0)
    when that header is cut too, None when the file ends at a chunk boundary."""
    try:
        if data is not None:
            size = len(data)
            rem = (size - _FILE_HEADER) % _CHUNK if size > _FILE_HEADER else 0
            head = data[size - rem : size - rem + 48] if rem else b""
        else:
            assert path is not None
            size = os.path.getsize(path)
            rem = (size - _FILE_HEADER) % _CHUNK if size > _FILE_HEADER else 0
            head = b""
            if rem:
                with open(path, "rb") as fh:
                    fh.seek(size - rem)
                    head = fh.read(48)
    except OSError:
        return None
    if not rem:
        return None
    if len(head) < 48 or not head.startswith(b"ElfChnk\x00"):
        return (0, 0)
    first, last = struct.unpack_from("<QQ", head, 24)
    if not 0 < first <= last or last - first > _CHUNK // 24:
        return (0, 0)
    return (first, last)


def _block(texts: list[str], lns: list[int], fis: list[int], files: list[str]) -> FilesBlock:
    return FilesBlock(
        pa.array(texts, pa.string()),
        np.array(lns, dtype=np.int64),
        np.array(fis, dtype=np.int64),
        list(files),
    )
