"""Sysmon semantics shared by every Sysmon carrier (EVTX, NXLog/export JSON, Winlogbeat/ECS).

The carriers differ only in where a field lives (``Event.EventData.X``, top-level ``X``,
``winlog.event_data.X``); the meaning of events 1, 3, 5, 7, 8, 10 and 25 is the same. So each
carrier gives JSON paths for the canonical names below, and one SQL mapping turns them into
``EVENT_SCHEMA`` rows:

* ``process_*`` is the actor: ``Source*`` for 8 (CreateRemoteThread) and 10 (ProcessAccess),
  the plain ``Process*``/``Image`` fields otherwise; ``target_*`` is ``Target*``.
* ``process_uid`` is the GUID as written (``SourceProcessGUID`` vs ``SourceProcessGuid`` are
  both read); an absent or all-zero GUID falls back to ``host:pid`` (``host:pid:start-ns`` for
  a launch, whose start is the event time).
* image values that cannot be a path or a file name are nulled: 32-bit Sysmon on Win7 writes
  garbage such as ``"\\u3100"`` into ``SourceImage`` of event 10.
* time is ``UtcTime`` (ms, UTC), else the record's own time; events without either are skipped.
"""

from __future__ import annotations

from collections.abc import Callable

#: Sysmon event ids unbacked reads; every other id (and other channels) is counted as ignored.
SYSMON_EVENT_IDS = (1, 3, 5, 7, 8, 10, 25)
SYSMON_PROVIDER = "Microsoft-Windows-Sysmon"
SYSMON_CHANNEL = "Microsoft-Windows-Sysmon/Operational"

#: canonical name -> event-data field names (case variants as found in real data)
DATA_FIELDS: dict[str, tuple[str, ...]] = {
    "UtcTime": ("UtcTime",),
    "ProcessGuid": ("ProcessGuid", "ProcessGUID"),
    "ProcessId": ("ProcessId", "ProcessID"),
    "Image": ("Image",),
    "CommandLine": ("CommandLine",),
    "User": ("User",),
    "ParentProcessGuid": ("ParentProcessGuid", "ParentProcessGUID"),
    "ParentProcessId": ("ParentProcessId",),
    "ParentImage": ("ParentImage",),
    "ParentCommandLine": ("ParentCommandLine",),
    "SourceProcessGuid": ("SourceProcessGUID", "SourceProcessGuid"),
    "SourceProcessId": ("SourceProcessId",),
    "SourceThreadId": ("SourceThreadId",),
    "SourceImage": ("SourceImage",),
    "SourceUser": ("SourceUser",),
    "TargetProcessGuid": ("TargetProcessGUID", "TargetProcessGuid"),
    "TargetProcessId": ("TargetProcessId",),
    "TargetImage": ("TargetImage",),
    "NewThreadId": ("NewThreadId",),
    "StartAddress": ("StartAddress",),
    "StartModule": ("StartModule",),
    "StartFunction": ("StartFunction",),
    "GrantedAccess": ("GrantedAccess",),
    "CallTrace": ("CallTrace",),
    "ImageLoaded": ("ImageLoaded",),
    "Signed": ("Signed",),
    "Signature": ("Signature",),
    "SignatureStatus": ("SignatureStatus",),
    "Hashes": ("Hashes",),
    "Description": ("Description",),
    "Protocol": ("Protocol",),
    "Initiated": ("Initiated",),
    "SourceIp": ("SourceIp",),
    "SourcePort": ("SourcePort",),
    "SourceHostname": ("SourceHostname",),
    "DestinationIp": ("DestinationIp",),
    "DestinationPort": ("DestinationPort",),
    "DestinationHostname": ("DestinationHostname",),
}

#: envelope names every carrier must provide paths for
ENVELOPE = ("EventID", "Channel", "Provider", "Computer", "RecordID", "RecordTime")


def fields_for(
    envelope: dict[str, list[str]], data_path: Callable[[str], list[str]]
) -> list[tuple[str, list[str]]]:
    """Build the ``JsonQuery`` field list of a carrier.

    ``envelope`` gives the paths of the names in ``ENVELOPE`` (plus optional extras such as
    ``Nx``); ``data_path`` turns an event-data field name into its JSON path(s).
    """
    out = [(k, list(v)) for k, v in envelope.items()]
    for canon, names in DATA_FIELDS.items():
        paths: list[str] = []
        for n in names:
            paths.extend(data_path(n))
        out.append((canon, paths))
    return out


def _hash_sql(x: str) -> str:
    """``sha256:<hex>`` (else ``sha1:``/``md5:``) from a Sysmon ``Hashes`` value
    (``SHA1=..,MD5=..,SHA256=..,IMPHASH=..``); a value without a well-formed digest (32-bit
    Sysmon on Win7 writes garbage into some fields) is NULL. IMPHASH is not the file."""
    out = []
    for algo, hexlen in (("sha256", 64), ("sha1", 40), ("md5", 32)):
        rx = f"(?i)(?:^|[,;\\s]){algo}=([0-9a-f]{{{hexlen}}})(?:[,;\\s]|$)"
        out.append(
            f"WHEN regexp_matches({x}, '{rx}') "
            f"THEN '{algo}:' || lower(regexp_extract({x}, '{rx}', 1))"
        )
    return f"CASE WHEN {x} IS NULL OR NOT contains({x}, '=') THEN NULL " + " ".join(out) + " END"


#: Event 7 describes the process's own image when the loaded image is the process image (Sysmon
#: logs the executable itself among the loads): its hash and signature are then the image's.
_OWN_LOAD = 'eid = 7 AND lower("ImageLoaded") = lower("Image")'
_SIGNATURE_SQL = f"""CASE WHEN {_OWN_LOAD} THEN
        CASE WHEN ub_bool("Signed") = false THEN 'unsigned'
             WHEN ub_str("Signature") IS NOT NULL
             THEN ub_str("Signature") || coalesce(' (' || ub_str("SignatureStatus") || ')', '')
        END END"""


def _xp(a: str, b: str) -> str:
    """Actor column: the ``Source*`` field for events 8/10, the plain field otherwise."""
    return f"CASE WHEN xp THEN {a} ELSE {b} END"


_IDS = ", ".join(str(i) for i in SYSMON_EVENT_IDS)

#: Mapping from the canonical columns (CTE ``f``) to EVENT_SCHEMA columns; ``{extra}`` takes
#: carrier-specific extra output columns (each with a leading comma).
_MAPPING_TEMPLATE = f"""
, g AS (
    SELECT *,
        TRY_CAST("EventID" AS INTEGER) AS eid,
        coalesce("Provider" = '{SYSMON_PROVIDER}'
                 OR "Channel" = '{SYSMON_CHANNEL}', false) AS is_sysmon,
        ub_str("Computer") AS host_,
        coalesce(ub_ts("UtcTime"), ub_ts("RecordTime")) AS t_ns
    FROM f
), h AS (
    SELECT *,
        eid IN (8, 10) AS xp,
        lower(trim("Initiated")) = 'false' AS inbound
    FROM g
), a AS (
    SELECT *,
        ub_int({_xp('"SourceProcessId"', '"ProcessId"')}) AS pid_,
        ub_guid({_xp('"SourceProcessGuid"', '"ProcessGuid"')}) AS guid_,
        ub_int("ParentProcessId") AS ppid_,
        ub_int("TargetProcessId") AS tpid_
    FROM h
)
SELECT
    CASE WHEN eid IS NULL AND "Channel" IS NULL AND "Provider" IS NULL
              THEN 'not a Windows event record'
         WHEN is_sysmon AND eid IS NULL THEN 'invalid EventID'
         WHEN NOT is_sysmon OR eid NOT IN ({_IDS}) THEN 'ignored'
         -- name what was missing or unreadable: the run report then says which time field a
         -- flavour lacks (the record time is TimeCreated / @timestamp / the EVTX system time)
         WHEN t_ns IS NULL THEN 'no valid timestamp: '
              || CASE WHEN nullif(trim("UtcTime"), '') IS NULL THEN 'no UtcTime'
                      ELSE 'UtcTime unreadable' END
              || CASE WHEN nullif(trim("RecordTime"), '') IS NULL THEN ', no record time'
                      ELSE ', record time unreadable' END
         ELSE 'ok' END AS _status,
    t_ns AS time,
    CASE eid WHEN 1 THEN 'process' WHEN 3 THEN 'network' WHEN 5 THEN 'process'
             WHEN 7 THEN 'module' WHEN 8 THEN 'thread' WHEN 10 THEN 'process'
             WHEN 25 THEN 'process' END AS kind,
    CASE eid WHEN 1 THEN 'launch'
             WHEN 3 THEN CASE WHEN inbound THEN 'accept' ELSE 'connect' END
             WHEN 5 THEN 'terminate' WHEN 7 THEN 'load' WHEN 8 THEN 'remote_thread'
             WHEN 10 THEN 'open' WHEN 25 THEN 'tamper' END AS activity,
    'sysmon:' || eid AS event_code,
    'windows' AS os,
    host_ AS host,
    coalesce(guid_, CASE WHEN pid_ IS NOT NULL THEN coalesce(host_, '') || ':' || pid_
                         || CASE WHEN eid = 1 THEN ':' || t_ns ELSE '' END END) AS process_uid,
    pid_ AS pid,
    CASE WHEN eid = 10 THEN ub_int("SourceThreadId") END AS tid,
    ub_image({_xp('"SourceImage"', '"Image"')}) AS image,
    CASE WHEN eid = 1 THEN "CommandLine" END AS cmd_line,
    ub_str({_xp('"SourceUser"', '"User"')}) AS "user",
    CASE WHEN eid = 1 THEN t_ns END AS process_start,
    CASE WHEN eid = 1 THEN coalesce(ub_guid("ParentProcessGuid"),
        CASE WHEN ppid_ IS NOT NULL THEN coalesce(host_, '') || ':' || ppid_ END) END
        AS parent_uid,
    CASE WHEN eid = 1 THEN ppid_ END AS parent_pid,
    CASE WHEN eid = 1 THEN ub_image("ParentImage") END AS parent_image,
    CASE WHEN eid = 1 THEN "ParentCommandLine" END AS parent_cmd_line,
    CASE WHEN xp THEN coalesce(ub_guid("TargetProcessGuid"),
        CASE WHEN tpid_ IS NOT NULL THEN coalesce(host_, '') || ':' || tpid_ END) END
        AS target_uid,
    CASE WHEN xp THEN tpid_ END AS target_pid,
    CASE WHEN eid = 8 THEN ub_int("NewThreadId") END AS target_tid,
    CASE WHEN xp THEN ub_image("TargetImage") END AS target_image,
    CASE WHEN eid = 10 THEN ub_u32("GrantedAccess") END AS granted_access,
    CASE WHEN eid = 10 THEN ub_str("CallTrace") END AS call_trace,
    CASE WHEN eid = 7 THEN ub_str("ImageLoaded") END AS module_path,
    CASE WHEN eid = 7 THEN ub_bool("Signed") END AS signed,
    CASE WHEN eid = 7 THEN ub_str("Signature") END AS signature,
    CASE WHEN eid IN (1, 7) THEN ub_str("Description") END AS description,
    CASE WHEN eid = 8 THEN ub_uint("StartAddress") END AS start_address,
    CASE WHEN eid = 8 THEN ub_str("StartModule") END AS start_module,
    CASE WHEN eid = 8 THEN ub_str("StartFunction") END AS start_function,
    CASE WHEN eid = 3 THEN lower(ub_str("Protocol")) END AS protocol,
    CASE WHEN eid = 3 THEN CASE lower(trim("Initiated")) WHEN 'true' THEN 'outbound'
                                WHEN 'false' THEN 'inbound' END END AS direction,
    CASE WHEN eid = 3 THEN ub_str(CASE WHEN inbound THEN "DestinationIp" ELSE "SourceIp" END)
        END AS local_ip,
    CASE WHEN eid = 3 THEN ub_port(CASE WHEN inbound THEN "DestinationPort"
        ELSE "SourcePort" END) END AS local_port,
    CASE WHEN eid = 3 THEN ub_str(CASE WHEN inbound THEN "SourceIp" ELSE "DestinationIp" END)
        END AS remote_ip,
    CASE WHEN eid = 3 THEN ub_port(CASE WHEN inbound THEN "SourcePort"
        ELSE "DestinationPort" END) END AS remote_port,
    CASE WHEN eid = 3 THEN ub_str(CASE WHEN inbound THEN "SourceHostname"
        ELSE "DestinationHostname" END) END AS remote_host,
    CASE WHEN eid = 1 OR ({_OWN_LOAD}) THEN {_hash_sql('ub_str("Hashes")')} END AS image_hash,
    {_SIGNATURE_SQL} AS image_signature,
    ub_int("RecordID") AS src_record,
    ln AS src_line
    {{extra}}
FROM a
"""


def mapping_sql(extra: str = "") -> str:
    """The mapping SELECT, with optional extra output columns (``", expr AS name"``)."""
    return _MAPPING_TEMPLATE.replace("{extra}", extra)


MAPPING_SQL = mapping_sql()
