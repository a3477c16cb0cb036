"""Sysmon as JSON lines: the OTRF flavours (NXLog, export) and Winlogbeat/ECS.

* **NXLog** (``im_msvistalog``): one flat object per event; event data at the top level,
  numbers often as strings, values HTML-escaped (``&amp;``), ``Hostname``, ``RecordNumber``,
  ``EventID``, ``Channel``/``SourceName``, local ``EventTime`` (not used: it has no zone; the
  record time fallback is ``@timestamp``, UTC).
* **export** (PowerShell/Logstash exports in OTRF): like NXLog without the NXLog envelope:
  ``TimeCreated``, ``@timestamp``, no record number (``src_record`` is null).
* **Winlogbeat/ECS**: ``winlog.event_data.*``, ``winlog.event_id``, ``winlog.computer_name``,
  ``winlog.record_id``, ``winlog.channel``, nested or as dotted keys.

All are read by the same bulk engine (``_engine``) and Sysmon mapping (``_sysmon``); only the
JSON paths differ.
"""

from __future__ import annotations

from typing import ClassVar

import pyarrow as pa
import pyarrow.compute as pc

from unbacked.sources import _sysmon
from unbacked.sources._engine import (
    JsonLinesSource,
    JsonQuery,
    first_json_objects,
)
from unbacked.sources.base import register


def _top(name: str) -> list[str]:
    return [f'$."{name}"']


_NX_ENVELOPE = {
    "EventID": _top("EventID"),
    "Channel": _top("Channel"),
    "Provider": _top("SourceName") + _top("ProviderName"),
    "Computer": _top("Hostname") + _top("Computer"),
    "RecordID": _top("RecordNumber") + _top("EventRecordID"),
    "RecordTime": _top("TimeCreated") + _top("@timestamp"),
    # NXLog's own envelope: present only in the NXLog flavour, whose values are HTML-escaped
    "Nx": _top("EventReceivedTime") + _top("SourceModuleType"),
}


#: output columns whose text NXLog may have HTML-escaped
_TEXT_COLUMNS = (
    "host",
    "process_uid",
    "image",
    "cmd_line",
    "user",
    "parent_uid",
    "parent_image",
    "parent_cmd_line",
    "target_uid",
    "target_image",
    "call_trace",
    "module_path",
    "signature",
    "description",
    "start_module",
    "start_function",
    "remote_host",
)
_ENTITIES = (
    ("&lt;", "<"),
    ("&gt;", ">"),
    ("&quot;", '"'),
    ("&apos;", "'"),
    ("&#39;", "'"),
    ("&#34;", '"'),
    ("&amp;", "&"),  # last: "&amp;lt;" is the text "&lt;"
)


def _unescape_nxlog(table: pa.Table) -> pa.Table:
    """HTML-unescape text of NXLog rows, column by column, only where an ``&`` occurs.

    Done in Arrow after the query rather than in SQL: the result is the same, and the query
    stays small (its planning cost is paid once per block).
    """
    nx = table.column("_nx")
    table = table.drop_columns(["_nx"])
    if not pc.any(nx).as_py():
        return table
    for name in _TEXT_COLUMNS:
        col = table.column(name)
        mask = pc.and_(nx, pc.match_substring(col, "&"))
        if not pc.any(mask).as_py():
            continue
        fixed = col
        for entity, char in _ENTITIES:
            fixed = pc.replace_substring(fixed, entity, char)
        table = table.set_column(table.column_names.index(name), name, pc.if_else(mask, fixed, col))
    return table


OTRF_QUERY = JsonQuery(
    _sysmon.fields_for(_NX_ENVELOPE, _top),
    _sysmon.mapping_sql(', "Nx" IS NOT NULL AS _nx'),
    post=_unescape_nxlog,
)

_WLB_ENVELOPE = {
    "EventID": ["$.winlog.event_id", '$."winlog.event_id"', "$.event.code", '$."event.code"'],
    "Channel": ["$.winlog.channel", '$."winlog.channel"'],
    "Provider": ["$.winlog.provider_name", '$."winlog.provider_name"'],
    "Computer": [
        "$.winlog.computer_name",
        '$."winlog.computer_name"',
        "$.host.name",
        '$."host.name"',
    ],
    "RecordID": ["$.winlog.record_id", '$."winlog.record_id"'],
    "RecordTime": ['$."@timestamp"', "$.event.created", '$."event.created"'],
}


def _wlb_data(name: str) -> list[str]:
    return [f'$.winlog.event_data."{name}"', f'$."winlog.event_data.{name}"']


WINLOGBEAT_QUERY = JsonQuery(_sysmon.fields_for(_WLB_ENVELOPE, _wlb_data), _sysmon.MAPPING_SQL)


def _is_winlogbeat(obj: dict[str, object]) -> bool:
    w = obj.get("winlog")
    if isinstance(w, dict) and ("event_id" in w or "event_data" in w or "channel" in w):
        return True
    return "winlog.event_id" in obj or "winlog.channel" in obj


def _is_windows_event(obj: dict[str, object]) -> bool:
    if "EventID" not in obj:
        return False
    return ("Channel" in obj or "SourceName" in obj) and (
        "Hostname" in obj or "Computer" in obj or "TimeCreated" in obj or "EventTime" in obj
    )


class _JsonLinesSysmon(JsonLinesSource):
    query: ClassVar[JsonQuery]


@register
class SysmonJsonSource(_JsonLinesSysmon):
    """Windows events as flat JSON lines (OTRF NXLog and export flavours); Sysmon is read."""

    name: ClassVar[str] = "sysmon-jsonl"
    description: ClassVar[str] = (
        "Windows event JSON lines, flat (OTRF NXLog / export flavours); Sysmon is read"
    )
    priority: ClassVar[int] = 30
    examples: ClassVar[tuple[bytes, ...]] = (
        b'{"EventTime":"2020-07-22 00:00:48","EventReceivedTime":"2020-07-22 00:00:49",'
        b'"SourceModuleType":"im_msvistalog","Hostname":"WS5.mordor.local","EventID":8,'
        b'"Channel":"Microsoft-Windows-Sysmon/Operational","SourceName":"Microsoft-Windows-Sysmon",'
        b'"RecordNumber":766632,"UtcTime":"2020-08-07 18:32:44.580",'
        b'"SourceProcessGuid":"{297bc33e-9de2-5f2d-2208-000000000400}","SourceProcessId":"6008",'
        b'"SourceImage":"C:\\\\Windows\\\\System32\\\\WindowsPowerShell\\\\v1.0\\\\powershell.exe",'
        b'"TargetProcessGuid":"{297bc33e-9db9-5f2d-1a08-000000000400}","TargetProcessId":"2576",'
        b'"TargetImage":"C:\\\\Windows\\\\System32\\\\notepad.exe","NewThreadId":"6832",'
        b'"StartAddress":"0x000002AF644E0000","StartModule":"-","StartFunction":"-"}\n',
        b'{"SourceName":"Microsoft-Windows-Sysmon","Channel":"Microsoft-Windows-Sysmon/Operational",'
        b'"Hostname":"MKT01","TimeCreated":"2023-08-15T09:53:46.119Z",'
        b'"@timestamp":"2023-08-15T09:53:46.119Z","EventID":10,"UtcTime":"2023-08-16 04:53:46.060",'
        b'"SourceProcessGUID":"{81056205-d0f9-64d4-2700-000000000800}","SourceProcessId":"1564",'
        b'"SourceThreadId":"1652","TargetProcessGUID":"{81056205-d114-64d4-5500-000000000800}",'
        b'"TargetProcessId":"3740","GrantedAccess":"0x1400","CallTrace":"ntdll.dll+9d4c4"}\n',
    )
    query = OTRF_QUERY

    @classmethod
    def sniff(cls, head: bytes, name: str) -> bool:
        objs = first_json_objects(head)
        return (
            bool(objs)
            and any(_is_windows_event(o) for o in objs)
            and not any(_is_winlogbeat(o) for o in objs)
        )


@register
class WinlogbeatSource(_JsonLinesSysmon):
    """Winlogbeat / ECS JSON lines (``winlog.*``, nested or dotted keys); Sysmon is read."""

    name: ClassVar[str] = "sysmon-winlogbeat"
    description: ClassVar[str] = "Winlogbeat/ECS JSON lines (winlog.event_data.*); Sysmon is read"
    priority: ClassVar[int] = 30
    examples: ClassVar[tuple[bytes, ...]] = (
        b'{"@timestamp":"2021-01-01T00:00:00.000Z","winlog":{"channel":'
        b'"Microsoft-Windows-Sysmon/Operational","provider_name":"Microsoft-Windows-Sysmon",'
        b'"event_id":10,"computer_name":"DC01","record_id":4242,"event_data":{'
        b'"UtcTime":"2021-01-01 00:00:01.250","SourceProcessGuid":"{a}","SourceProcessId":"920",'
        b'"TargetProcessGuid":"{b}","TargetProcessId":"1296","GrantedAccess":"0x1010"}}}\n',
        b'{"@timestamp":"2021-01-01T00:00:00.000Z","winlog.channel":'
        b'"Microsoft-Windows-Sysmon/Operational","winlog.event_id":"1",'
        b'"winlog.computer_name":"DC01","winlog.record_id":"7","winlog.event_data.ProcessId":"5",'
        b'"winlog.event_data.ProcessGuid":"{c}","winlog.event_data.Image":"C:\\\\a.exe"}\n',
    )
    query = WINLOGBEAT_QUERY

    @classmethod
    def sniff(cls, head: bytes, name: str) -> bool:
        objs = first_json_objects(head)
        return any(_is_winlogbeat(o) for o in objs)
