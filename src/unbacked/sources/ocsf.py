"""OCSF 1.x events as JSON lines: Process (1007), Module (1005), Memory (1004), Network (4001).

OCSF puts the *acting* process in ``actor.process`` and the process acted upon in ``process``
(except for Launch/Terminate, where ``process`` is the subject and ``actor.process`` the
creator). unbacked's convention is ``process_*`` = actor, ``target_*`` = acted upon, so:

* 1007 Launch (1) / Terminate (2): ``process`` → ``process_*``; the parent is
  ``process.parent_process``, else ``actor.process``.
* 1007 Open (3): ``actor.process`` → ``process_*``, ``process`` → ``target_*``, access from
  ``actual_permissions`` / ``requested_permissions``. Inject (4) → kind thread, remote_thread.
* 1005 Load (1) / Unload (2), 1004 Allocate (1) / Modify (2) / Write (14) / Map View (15),
  4001 Open (1) / Traffic (6): the actor is ``actor.process`` (else ``process``); a ``process``
  next to an actor is the target.

Other classes and activities are counted as ignored; unknown attributes are ignored.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pyarrow as pa

from unbacked.sources._engine import (
    JsonLinesSource,
    JsonQuery,
    first_json_objects,
    pooled_connection,
)
from unbacked.sources.base import register

OCSF_CLASSES = (1004, 1005, 1007, 4001)

_PROC_ATTRS = {
    "pid": "pid",
    "tid": "tid",
    "uid": "uid",
    "name": "name",
    "path": "file.path",
    "cmd": "cmd_line",
    "created": "created_time",
    "user": "user.name",
}


def _p(prefix: str) -> list[tuple[str, list[str]]]:
    out = []
    for short, attr in _PROC_ATTRS.items():
        parts = prefix.split(".") + attr.split(".")
        out.append((f"{prefix.replace('.', '_')}_{short}", ["$." + ".".join(parts)]))
    return out


FIELDS: list[tuple[str, list[str]]] = [
    ("class_uid", ["$.class_uid"]),
    ("activity_id", ["$.activity_id"]),
    ("t_ms", ["$.time"]),
    ("t_dt", ["$.time_dt"]),
    ("host", ["$.device.hostname", "$.device.name"]),
    ("os_type", ["$.device.os.type", "$.device.os.name"]),
    ("seq", ["$.metadata.sequence"]),
    *_p("process"),
    *_p("process.parent_process"),
    *_p("actor.process"),
    ("actor_user", ["$.actor.user.name"]),
    ("mod_path", ["$.module.file.path"]),
    ("mod_base", ["$.module.base_address"]),
    ("mod_size", ["$.module.file.size"]),
    ("mod_signer", ["$.module.file.signature.certificate.subject"]),
    ("mod_sig_status", ["$.module.file.signature.state_id"]),
    ("mod_desc", ["$.module.file.desc"]),
    ("base_address", ["$.base_address"]),
    ("size", ["$.size"]),
    ("perm", ["$.actual_permissions", "$.requested_permissions"]),
    ("src_ip", ["$.src_endpoint.ip"]),
    ("src_port", ["$.src_endpoint.port"]),
    ("src_host", ["$.src_endpoint.hostname"]),
    ("dst_ip", ["$.dst_endpoint.ip"]),
    ("dst_port", ["$.dst_endpoint.port"]),
    ("dst_host", ["$.dst_endpoint.hostname"]),
    ("proto", ["$.connection_info.protocol_name"]),
    ("dir_id", ["$.connection_info.direction_id"]),
]


def _side(cond: str, a: str, b: str) -> str:
    return f"CASE WHEN {cond} THEN {a} ELSE {b} END"


def _uid(uid: str, pid: str, created: str) -> str:
    return (
        f"coalesce(ub_str({uid}), CASE WHEN ub_int({pid}) IS NOT NULL THEN "
        f"coalesce(host_, '') || ':' || ub_int({pid}) || "
        f"coalesce(':' || ub_ms({created}), '') END)"
    )


_A = "actor_process"
_P = "process"
_PP = "process_parent_process"

MAPPING_SQL = f"""
, g AS (
    SELECT *,
        ub_int(class_uid) AS cls, ub_int(activity_id) AS act,
        ub_str(host) AS host_,
        coalesce(ub_ms(t_ms), ub_ts(t_dt)) AS t_ns,
        coalesce({_A}_pid, {_A}_uid, {_A}_path, {_A}_name) IS NOT NULL AS has_actor,
        coalesce({_P}_pid, {_P}_uid, {_P}_path, {_P}_name) IS NOT NULL AS has_proc,
        ub_int(dir_id) = 1 AS inbound
    FROM f
), h AS (
    SELECT *,
        CASE
            WHEN cls = 1007 AND act = 1 THEN 'process|launch'
            WHEN cls = 1007 AND act = 2 THEN 'process|terminate'
            WHEN cls = 1007 AND act = 3 THEN 'process|open'
            WHEN cls = 1007 AND act = 4 THEN 'thread|remote_thread'
            WHEN cls = 1005 AND act = 1 THEN 'module|load'
            WHEN cls = 1005 AND act = 2 THEN 'module|unload'
            WHEN cls = 1004 AND act = 1 THEN 'memory|allocate'
            WHEN cls = 1004 AND act = 2 THEN 'memory|protect'
            WHEN cls = 1004 AND act = 14 THEN 'memory|write'
            WHEN cls = 1004 AND act = 15 THEN 'memory|map_view'
            WHEN cls = 4001 AND act IN (1, 6) AND inbound THEN 'network|accept'
            WHEN cls = 4001 AND act IN (1, 6) THEN 'network|connect'
        END AS ka,
        (cls = 1007 AND act IN (1, 2)) OR NOT has_actor AS subj
    FROM g
)
SELECT
    CASE WHEN cls IS NULL THEN 'not an OCSF event'
         WHEN ka IS NULL THEN 'ignored'
         WHEN t_ns IS NULL THEN 'no valid timestamp'
         ELSE 'ok' END AS _status,
    t_ns AS time,
    split_part(ka, '|', 1) AS kind,
    split_part(ka, '|', 2) AS activity,
    'ocsf:' || cls || ':' || act AS event_code,
    CASE WHEN lower(os_type) LIKE '%windows%' THEN 'windows'
         WHEN lower(os_type) LIKE '%linux%' THEN 'linux' END AS os,
    host_ AS host,
    {
    _side(
        "subj",
        _uid(f"{_P}_uid", f"{_P}_pid", f"{_P}_created"),
        _uid(f"{_A}_uid", f"{_A}_pid", f"{_A}_created"),
    )
} AS process_uid,
    ub_int({_side("subj", f"{_P}_pid", f"{_A}_pid")}) AS pid,
    ub_int({_side("subj", f"{_P}_tid", f"{_A}_tid")}) AS tid,
    ub_str({
    _side("subj", f"coalesce({_P}_path, {_P}_name)", f"coalesce({_A}_path, {_A}_name)")
}) AS image,
    ub_str({_side("subj", f"{_P}_cmd", f"{_A}_cmd")}) AS cmd_line,
    ub_str({_side("subj", f"{_P}_user", f"coalesce({_A}_user, actor_user)")}) AS "user",
    ub_ms({_side("subj", f"{_P}_created", f"{_A}_created")}) AS process_start,
    CASE WHEN ka = 'process|launch' THEN coalesce(
        {_uid(f"{_PP}_uid", f"{_PP}_pid", f"{_PP}_created")},
        {_uid(f"{_A}_uid", f"{_A}_pid", f"{_A}_created")}) END AS parent_uid,
    CASE WHEN ka = 'process|launch' THEN coalesce(ub_int({_PP}_pid), ub_int({_A}_pid)) END
        AS parent_pid,
    CASE WHEN ka = 'process|launch' THEN ub_str(coalesce({_PP}_path, {_PP}_name,
        {_A}_path, {_A}_name)) END AS parent_image,
    CASE WHEN ka = 'process|launch' THEN ub_str(coalesce({_PP}_cmd, {_A}_cmd)) END
        AS parent_cmd_line,
    CASE WHEN NOT subj AND has_proc THEN
        {_uid(f"{_P}_uid", f"{_P}_pid", f"{_P}_created")} END AS target_uid,
    CASE WHEN NOT subj AND has_proc THEN ub_int({_P}_pid) END AS target_pid,
    CASE WHEN NOT subj AND has_proc THEN ub_int({_P}_tid) END AS target_tid,
    CASE WHEN NOT subj AND has_proc THEN ub_str(coalesce({_P}_path, {_P}_name)) END
        AS target_image,
    CASE WHEN cls = 1007 THEN ub_u32(perm) END AS granted_access,
    CASE WHEN cls = 1005 THEN ub_str(mod_path) END AS module_path,
    CASE WHEN cls = 1005 THEN ub_uint(mod_base) END AS module_base,
    CASE WHEN cls = 1005 THEN ub_uint(mod_size) END AS module_size,
    CASE WHEN cls = 1005 AND ub_int(mod_sig_status) IS NOT NULL
         THEN ub_int(mod_sig_status) = 1 END AS signed,
    CASE WHEN cls = 1005 THEN ub_str(mod_signer) END AS signature,
    CASE WHEN cls = 1005 THEN ub_str(mod_desc) END AS description,
    CASE WHEN cls = 1004 THEN ub_uint(base_address) END AS base_address,
    CASE WHEN cls = 1004 THEN ub_uint(size) END AS region_size,
    CASE WHEN cls = 1004 THEN ub_u32(perm) END AS protection,
    CASE WHEN cls = 4001 THEN lower(ub_str(proto)) END AS protocol,
    CASE WHEN cls = 4001 THEN CASE ub_int(dir_id) WHEN 1 THEN 'inbound'
                                   WHEN 2 THEN 'outbound' END END AS direction,
    CASE WHEN cls = 4001 THEN ub_str(CASE WHEN inbound THEN dst_ip ELSE src_ip END) END
        AS local_ip,
    CASE WHEN cls = 4001 THEN ub_port(CASE WHEN inbound THEN dst_port ELSE src_port END) END
        AS local_port,
    CASE WHEN cls = 4001 THEN ub_str(CASE WHEN inbound THEN src_ip ELSE dst_ip END) END
        AS remote_ip,
    CASE WHEN cls = 4001 THEN ub_port(CASE WHEN inbound THEN src_port ELSE dst_port END) END
        AS remote_port,
    CASE WHEN cls = 4001 THEN ub_str(CASE WHEN inbound THEN src_host ELSE dst_host END) END
        AS remote_host,
    ub_int(seq) AS src_record,
    ln AS src_line
FROM h
"""

QUERY = JsonQuery(FIELDS, MAPPING_SQL)


def map_ocsf_lines(
    lines: pa.Array, line_numbers: np.ndarray, *, src_file: str, src_format: str = "ocsf-jsonl"
) -> pa.Table | None:
    """OCSF JSON texts (one object each, numbered ``line_numbers``) as events of
    ``EVENT_SCHEMA``, or None when none maps; bad texts are dropped, never raised (the Spark
    engine maps a lake's lines with it, as this source maps a file's)."""
    with pooled_connection() as con:
        return QUERY.run(con, lines, line_numbers, src_format=src_format, src_file=src_file).table


@register
class OcsfJsonSource(JsonLinesSource):
    """OCSF 1.x JSON lines (process, module, memory and network activity)."""

    query = QUERY

    name: ClassVar[str] = "ocsf-jsonl"
    description: ClassVar[str] = (
        "OCSF JSON lines: Process 1007, Module 1005, Memory 1004, Network 4001"
    )
    priority: ClassVar[int] = 40
    examples: ClassVar[tuple[bytes, ...]] = (
        b'{"class_uid":1007,"activity_id":3,"category_uid":1,"type_uid":100703,'
        b'"time":1700000000000,"device":{"hostname":"ws1"},'
        b'"actor":{"process":{"pid":100,"uid":"U100","file":{"path":"C:\\\\evil.exe"}}},'
        b'"process":{"pid":200,"name":"lsass.exe"},"actual_permissions":4112}\n'
        b'{"class_uid":1005,"activity_id":1,"category_uid":1,"time":1700000000001,'
        b'"actor":{"process":{"pid":100}},"module":{"file":{"path":"C:\\\\x.dll"}}}\n',
    )

    @classmethod
    def sniff(cls, head: bytes, name: str) -> bool:
        objs = first_json_objects(head)
        if not objs:
            return False
        o = objs[0]
        cu = o.get("class_uid")
        return (
            isinstance(cu, int)
            and not isinstance(cu, bool)
            and ("activity_id" in o or "type_uid" in o or "category_uid" in o)
        )
