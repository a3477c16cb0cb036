"""The OCSF codec: an alert to its OCSF 1.x Detection Finding (class 2004) and back.

The alert model (``unbacked.model.alert``) holds the incident; this module holds its OCSF shape,
the alert contract of DESIGN.md §6. ``Alert.to_ocsf()`` and ``Alert.from_ocsf()`` reach these
functions through the ``ocsf`` renderer (``OcsfRenderer.encode``/``decode``): the model asks the
renderer registry for it by name and never imports this package. Times are timezone-aware UTC
inside, epoch milliseconds outside.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from unbacked.model.alert import (
    ATTACK,
    SEVERITY_NAMES,
    Alert,
    Explanation,
    NetworkContact,
    ProcessRef,
    RegionInfo,
    TimelineEntry,
    from_ms,
    rank_explanation,
    rule_doc,
    to_ms,
)

OCSF_VERSION = "1.3.0"

#: the keys of ``unmapped.unbacked`` that are alert fields; any other key is ``Alert.extra``
_UNMAPPED_FIELDS = frozenset(
    {
        "explanation",
        "timeline",
        "regions",
        "network",
        "children",
        "verification",
        "sources",
        "detectors",
    }
)


def process_to_ocsf(p: ProcessRef) -> dict[str, Any]:
    """An OCSF ``process`` object (parents nested as ``parent_process``)."""
    out: dict[str, Any] = {"uid": p.uid, "pid": p.pid, "name": p.name}
    if p.path:
        out["file"] = {"path": p.path, "name": p.name}
    if p.cmd_line is not None:
        out["cmd_line"] = p.cmd_line
    if p.user:
        out["user"] = {"name": p.user}
    if p.created is not None:
        out["created_time"] = to_ms(p.created)
    if p.parent is not None:
        out["parent_process"] = process_to_ocsf(p.parent)
    return {k: v for k, v in out.items() if v is not None}


def process_from_ocsf(d: Mapping[str, Any] | None) -> ProcessRef | None:
    """A ``ProcessRef`` from an OCSF ``process`` object (None for none)."""
    if not d:
        return None
    return ProcessRef(
        uid=d.get("uid"),
        pid=d.get("pid"),
        name=d.get("name"),
        path=(d.get("file") or {}).get("path"),
        cmd_line=d.get("cmd_line"),
        user=(d.get("user") or {}).get("name"),
        created=from_ms(d.get("created_time")),
        parent=process_from_ocsf(d.get("parent_process")),
    )


def alert_to_ocsf(alert: Alert) -> dict[str, Any]:
    """The alert as an OCSF Detection Finding (what ``--format ocsf`` writes, one per line)."""
    from unbacked import __version__

    attacks = []
    for tid in alert.techniques:
        name, tactic_uid, tactic = ATTACK.get(tid, (tid, None, None))
        entry: dict[str, Any] = {"technique": {"uid": tid, "name": name}, "version": "15"}
        if tactic_uid:
            entry["tactic"] = {"uid": tactic_uid, "name": tactic}
        attacks.append(entry)
    out: dict[str, Any] = {
        "class_uid": 2004,
        "class_name": "Detection Finding",
        "category_uid": 2,
        "category_name": "Findings",
        "activity_id": 1,
        "activity_name": "Create",
        "type_uid": 200401,
        "type_name": "Detection Finding: Create",
        "status_id": 1,
        "status": "New",
        "time": to_ms(alert.time),
        "severity_id": alert.severity_id,
        "severity": SEVERITY_NAMES.get(alert.severity_id, "Unknown"),
        "risk_score": alert.risk_score,
        "message": alert.message,
        "metadata": {
            "version": OCSF_VERSION,
            "product": {"name": "unbacked", "vendor_name": "unbacked", "version": __version__},
        },
        "finding_info": {
            "uid": alert.uid,
            "title": alert.title,
            "types": list(alert.types),
            "first_seen_time": to_ms(alert.first_seen),
            "last_seen_time": to_ms(alert.last_seen),
            "analytic": {
                "name": ",".join(alert.detectors),
                "type_id": 99,
                "type": "Other",
                "related_analytics": [
                    {
                        "uid": d,
                        "name": d,
                        "type_id": 1,
                        "type": "Rule",
                        "desc": f"see {rule_doc(d)}",
                    }
                    for d in alert.detectors
                ],
            },
        },
        "process": process_to_ocsf(alert.process),
        "device": {"hostname": alert.hostname},
        "attacks": attacks,
        "unmapped": {
            "unbacked": {
                # every line, strongest first, with its rank (1 = the headline reason)
                "explanation": [
                    {**e.to_dict(), "rank": i}
                    for i, e in enumerate(rank_explanation(alert.explanation), 1)
                ],
                "timeline": [t.to_dict() for t in alert.timeline],
                "regions": [r.to_dict() for r in alert.regions],
                "network": [n.to_dict() for n in alert.network],
                "children": [process_to_ocsf(c) for c in alert.children],
                "verification": dict(alert.verification) if alert.verification else None,
                "sources": [dict(s) for s in alert.sources],
                "detectors": list(alert.detectors),
                **dict(alert.extra),
            }
        },
    }
    if alert.actor is not None:
        out["actor"] = {"process": process_to_ocsf(alert.actor)}
    return out


def alert_from_ocsf(d: Mapping[str, Any]) -> Alert:
    """Read an alert back from its OCSF Detection Finding (``report``, ``eval``, Spark)."""
    fi = d.get("finding_info") or {}
    u = (d.get("unmapped") or {}).get("unbacked") or {}
    process = process_from_ocsf(d.get("process")) or ProcessRef(uid=None)
    return Alert(
        uid=fi.get("uid", ""),
        title=fi.get("title", ""),
        message=d.get("message", ""),
        risk_score=int(d.get("risk_score") or 0),
        severity_id=int(d.get("severity_id") or 0),
        first_seen=from_ms(fi.get("first_seen_time")),
        last_seen=from_ms(fi.get("last_seen_time")),
        hostname=(d.get("device") or {}).get("hostname"),
        process=process,
        actor=process_from_ocsf((d.get("actor") or {}).get("process")),
        techniques=tuple(a["technique"]["uid"] for a in d.get("attacks") or ()),
        types=tuple(fi.get("types") or ()),
        explanation=tuple(Explanation.from_dict(e) for e in u.get("explanation") or ()),
        timeline=tuple(TimelineEntry.from_dict(t) for t in u.get("timeline") or ()),
        regions=tuple(RegionInfo.from_dict(r) for r in u.get("regions") or ()),
        network=tuple(NetworkContact.from_dict(n) for n in u.get("network") or ()),
        children=tuple(p for p in (process_from_ocsf(c) for c in u.get("children") or ()) if p),
        verification=u.get("verification"),
        sources=tuple(u.get("sources") or ()),
        detectors=tuple(u.get("detectors") or ()),
        extra={k: v for k, v in u.items() if k not in _UNMAPPED_FIELDS},
    )


__all__ = [
    "OCSF_VERSION",
    "alert_from_ocsf",
    "alert_to_ocsf",
    "process_from_ocsf",
    "process_to_ocsf",
]
