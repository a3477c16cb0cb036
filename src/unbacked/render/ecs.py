"""The same alerts with Elastic Common Schema field names (for Elastic users)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import IO, Any

import orjson

from unbacked.model.alert import ATTACK, SEVERITY_NAMES, Alert, ProcessRef
from unbacked.render.base import Renderer, register_renderer
from unbacked.render.ocsf_codec import alert_to_ocsf


def _iso(ts: datetime | None) -> str | None:
    return None if ts is None else ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _process(p: ProcessRef | None, depth: int = 0) -> dict[str, Any] | None:
    if p is None:
        return None
    out: dict[str, Any] = {
        "entity_id": p.uid,
        "pid": p.pid,
        "name": p.name,
        "executable": p.path,
        "command_line": p.cmd_line,
    }
    if p.created is not None:
        out["start"] = _iso(p.created)
    if p.parent is not None and depth < 1:  # ECS nests one parent level
        out["parent"] = _process(p.parent, depth + 1)
    return {k: v for k, v in out.items() if v is not None}


def alert_to_ecs(alert: Alert) -> dict[str, Any]:
    ocsf = alert_to_ocsf(alert)
    techniques = [
        {
            "id": t,
            "name": ATTACK.get(t, (t,))[0],
            "reference": f"https://attack.mitre.org/techniques/{t.replace('.', '/')}/",
        }
        for t in alert.techniques
    ]
    tactics = sorted({(ATTACK[t][1], ATTACK[t][2]) for t in alert.techniques if t in ATTACK})
    out: dict[str, Any] = {
        "@timestamp": _iso(alert.time),
        "message": alert.message,
        "event": {
            "kind": "alert",
            "category": ["intrusion_detection", "process"],
            "type": ["info"],
            "module": "unbacked",
            "dataset": "unbacked.alerts",
            "id": alert.uid,
            "severity": alert.severity_id,
            "risk_score": alert.risk_score,
            "start": _iso(alert.first_seen),
            "end": _iso(alert.last_seen),
        },
        "rule": {"name": alert.title, "id": ",".join(alert.detectors)},
        "host": {"hostname": alert.hostname, "name": alert.hostname},
        "process": _process(alert.process),
        "threat": {
            "framework": "MITRE ATT&CK",
            "technique": techniques,
            "tactic": {"id": [t[0] for t in tactics], "name": [t[1] for t in tactics]},
        },
        "labels": {"severity": SEVERITY_NAMES.get(alert.severity_id, "Unknown").lower()},
        "unbacked": ocsf["unmapped"]["unbacked"],
    }
    if alert.actor is not None:
        out["unbacked"] = {**out["unbacked"], "actor": {"process": _process(alert.actor)}}
    return out


def write_ecs(alerts: Sequence[Alert], stream: IO[str]) -> None:
    for alert in alerts:
        stream.write(orjson.dumps(alert_to_ecs(alert), option=orjson.OPT_SORT_KEYS).decode())
        stream.write("\n")


@register_renderer
class EcsRenderer(Renderer):
    """The alerts as JSON lines with Elastic Common Schema field names."""

    name = "ecs"
    description = "JSON lines with Elastic Common Schema field names."
    suffix = ".jsonl"

    def render(self, alerts: Sequence[Alert], stream: IO[str]) -> None:
        write_ecs(alerts, stream)
