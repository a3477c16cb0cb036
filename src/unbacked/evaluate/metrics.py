"""Detection metrics against labels: caught / missed (and why) / false alerts, per file and per
ATT&CK technique, false alerts per 10,000 benign process instances, time to alert.

Matching (``shared/data/labels`` README): an alert counts for a labelled instance when its
``process`` or ``actor.process`` is that instance — ProcessGuid as ``uid``, or host + pid + image
— and the alert rests on events of that instance's file (its ``sources``), so a pid reused on
another host or in another capture never matches by accident. An alert naming only instances of
``possible`` or ``other_malicious_not_injection`` is neither caught nor false. Alerts resting only
on unlabelled files are reported apart.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from unbacked.evaluate.labels import Instance, LabelFile
from unbacked.model.alert import Alert, ProcessRef


@dataclass(slots=True)
class FileResult:
    file: str
    scope: str
    corpus: str = ""
    malicious: int = 0
    required: int = 0
    caught: list[Instance] = field(default_factory=list)
    missed: list[tuple[Instance, str]] = field(default_factory=list)
    false_alerts: list[Alert] = field(default_factory=list)
    neutral_alerts: int = 0
    benign_instances: int = 0
    time_to_alert: list[float] = field(default_factory=list)

    @property
    def required_caught(self) -> int:
        return sum(1 for i in self.caught if i.required)

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "scope": self.scope,
            "corpus": self.corpus,
            "malicious": self.malicious,
            "caught": len(self.caught),
            "required": self.required,
            "required_caught": self.required_caught,
            "missed": [
                {
                    "image": i.image,
                    "pid": i.pid,
                    "role": i.role,
                    "confidence": i.confidence,
                    "disk_backed": i.disk_backed,
                    "why": why,
                }
                for i, why in self.missed
            ],
            "false_alerts": [
                {
                    "process": a.process.name,
                    "pid": a.process.pid,
                    "uid": a.process.uid,
                    "risk": a.risk_score,
                    "title": a.title,
                }
                for a in self.false_alerts
            ],
            "neutral_alerts": self.neutral_alerts,
            "benign_instances": self.benign_instances,
            "time_to_alert_s": self.time_to_alert,
        }


@dataclass(slots=True)
class EvalResult:
    files: list[FileResult]
    unlabelled_alerts: list[Alert]
    by_technique: dict[str, dict[str, int]]

    @property
    def totals(self) -> dict[str, Any]:
        return {
            **_totals(self.files),
            "unlabelled_alerts": len(self.unlabelled_alerts),
        }

    @property
    def corpora(self) -> dict[str, dict[str, Any]]:
        """The totals of each corpus (the input path a labelled file lies under), in order."""
        groups: dict[str, list[FileResult]] = {}
        for f in self.files:
            groups.setdefault(f.corpus, []).append(f)
        return {name: {"files": len(fs), **_totals(fs)} for name, fs in groups.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "totals": self.totals,
            "corpora": self.corpora,
            "by_technique": self.by_technique,
            "files": [f.to_dict() for f in self.files],
            "unlabelled_alerts": [
                {
                    "process": a.process.name,
                    "pid": a.process.pid,
                    "uid": a.process.uid,
                    "sources": [s.get("file") for s in a.sources],
                }
                for a in self.unlabelled_alerts
            ],
        }


def _totals(files: Sequence[FileResult]) -> dict[str, Any]:
    mal = sum(f.malicious for f in files)
    caught = sum(len(f.caught) for f in files)
    req = sum(f.required for f in files)
    req_caught = sum(f.required_caught for f in files)
    false = sum(len(f.false_alerts) for f in files)
    benign = sum(f.benign_instances for f in files)
    tta = sorted(t for f in files for t in f.time_to_alert)
    return {
        "malicious": mal,
        "caught": caught,
        "recall": round(caught / mal, 4) if mal else None,
        "required": req,
        "required_caught": req_caught,
        "required_recall": round(req_caught / req, 4) if req else None,
        "false_alerts": false,
        "benign_instances": benign,
        "false_per_10k_benign": round(10_000 * false / benign, 3) if benign else None,
        "median_time_to_alert_s": tta[len(tta) // 2] if tta else None,
    }


def corpus_of(key: str, corpora: Sequence[str]) -> str:
    """The corpus of a label key: the longest of ``corpora`` (paths relative to the data root)
    that contains it, else the key's top folder."""
    best = ""
    for c in corpora:
        c = c.strip("/")
        if (not c or key == c or key.startswith(c + "/")) and len(c) >= len(best):
            best = c or "."
    if best:
        return best
    return key.split("/", 1)[0] if "/" in key else "."


def data_file_of(src_file: str, data_root: Path) -> str | None:
    """The label key (path relative to the data root) of an event's ``src_file``."""
    outer = src_file.split("!", 1)[0]
    try:
        rel = Path(outer).resolve().relative_to(data_root.resolve())
    except ValueError:
        return None
    return rel.as_posix()


def _refs(alert: Alert) -> list[ProcessRef]:
    return [p for p in (alert.process, alert.actor) if p is not None]


def _match(inst: Instance, alert: Alert) -> bool:
    return any(inst.matches(p.uid, alert.hostname, p.pid, p.path or p.name) for p in _refs(alert))


def _parse_utc(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace(" ", "T")).replace(tzinfo=UTC)
    except ValueError:
        return None


def evaluate(
    alerts: Sequence[Alert],
    labels: Mapping[str, LabelFile],
    data_root: Path,
    *,
    signalled: Iterable[tuple[str | None, str | None]] = (),
    corpora: Sequence[str] = (),
) -> EvalResult:
    """Score ``alerts`` against ``labels``. ``signalled`` lists (subject, actor) uids of every
    signal of the run, to tell "no telemetry signal" from "scored below threshold". Each file is
    assigned to the corpus of ``corpora`` (paths relative to ``data_root``) that holds it, or to
    its top folder."""
    from unbacked.evaluate.labels import norm_guid

    signalled_uids = {norm_guid(u) for pair in signalled for u in pair if u}
    per_file: dict[str, list[Alert]] = defaultdict(list)
    unlabelled = []
    for alert in alerts:
        found = {data_file_of(s.get("file", ""), data_root) for s in alert.sources}
        files = {f for f in found if f is not None and f in labels}
        if not files:
            unlabelled.append(alert)
        for f in files:
            per_file[f].append(alert)

    results = []
    by_tech: dict[str, dict[str, int]] = defaultdict(lambda: {"malicious": 0, "caught": 0})
    for key, lab in sorted(labels.items()):
        res = FileResult(
            file=key,
            scope=lab.scope,
            corpus=corpus_of(key, corpora),
            malicious=len(lab.malicious),
        )
        res.required = sum(1 for i in lab.malicious if i.required)
        file_alerts = per_file.get(key, [])
        for inst in lab.malicious:
            hits = [a for a in file_alerts if _match(inst, a)]
            for tech in set(inst.attack_ids) or {"unknown"}:
                by_tech[tech]["malicious"] += 1
                by_tech[tech]["caught"] += bool(hits)
            if hits:
                res.caught.append(inst)
                t0 = _parse_utc(inst.first_time)
                firsts = [a.first_seen for a in hits if a.first_seen is not None]
                if t0 is not None and firsts:
                    res.time_to_alert.append(round((min(firsts) - t0).total_seconds(), 3))
            else:
                why = (
                    "scored below threshold"
                    if inst.guid in signalled_uids and inst.guid
                    else "no telemetry signal"
                )
                res.missed.append((inst, why))
        known = list(lab.known())
        for alert in file_alerts:
            if any(_match(i, alert) for i in lab.malicious):
                continue
            if any(_match(i, alert) for i in known):
                res.neutral_alerts += 1
            else:
                res.false_alerts.append(alert)
        res.benign_instances = max(lab.process_instances - len(lab.malicious) - len(lab.other), 0)
        results.append(res)
    order = {c.strip("/") or ".": i for i, c in enumerate(corpora)}
    results.sort(key=lambda r: order.get(r.corpus, len(order)))  # stable: keys stay sorted
    return EvalResult(files=results, unlabelled_alerts=unlabelled, by_technique=dict(by_tech))


def corpus_markdown(result: EvalResult) -> str:
    """One row per corpus: recall on the required and on all labelled instances, false alerts,
    false alerts per 10,000 benign process instances and the benign instance count."""
    lines = [
        "| corpus | files | required caught (confirmed, not disk-backed) | all labelled caught "
        "| false alerts | false / 10k benign | benign instances |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    rows = list(result.corpora.items())
    if len(rows) > 1:
        rows.append(("**all**", {"files": len(result.files), **_totals(result.files)}))
    for name, c in rows:
        lines.append(
            f"| {name} | {c['files']} | {c['required_caught']}/{c['required']} | "
            f"{c['caught']}/{c['malicious']} | {c['false_alerts']} | "
            f"{c['false_per_10k_benign'] if c['false_per_10k_benign'] is not None else '-'} | "
            f"{c['benign_instances']} |"
        )
    return "\n".join(lines) + "\n"


def markdown(result: EvalResult) -> str:
    """The per-corpus, per-file and per-technique tables of ``docs/detection.md``."""
    t = result.totals
    lines = [
        corpus_markdown(result),
        "| file | malicious | caught | required (confirmed, not disk-backed) | false alerts "
        "| benign instances | missed (why) |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for f in result.files:
        if f.malicious == 0 and not f.false_alerts:
            continue  # counted in the corpus rows
        missed = "; ".join(
            f"{Path((i.image or '?').replace(chr(92), '/')).name} {i.pid} ({i.confidence}, {why})"
            for i, why in f.missed
        )
        lines.append(
            f"| {f.file.split('/')[-1]} | {f.malicious} | {len(f.caught)} | "
            f"{f.required_caught}/{f.required} | {len(f.false_alerts)} | {f.benign_instances} | "
            f"{missed or '-'} |"
        )
    lines.append(
        f"| **total** | {t['malicious']} | {t['caught']} | {t['required_caught']}/{t['required']} "
        f"| {t['false_alerts']} | {t['benign_instances']} | |"
    )
    lines += [
        "",
        "| ATT&CK technique | labelled instances | caught | recall |",
        "|---|---:|---:|---:|",
    ]
    for tech, c in sorted(result.by_technique.items()):
        rec = f"{c['caught'] / c['malicious']:.0%}" if c["malicious"] else "-"
        lines.append(f"| {tech} | {c['malicious']} | {c['caught']} | {rec} |")
    lines += [
        "",
        f"False alerts per 10,000 benign process instances: {t['false_per_10k_benign']}; "
        f"alerts on unlabelled files: {t['unlabelled_alerts']}.",
    ]
    return "\n".join(lines) + "\n"


def threshold_curve(
    alerts: Sequence[Alert],
    labels: Mapping[str, LabelFile],
    data_root: Path,
    thresholds: Iterable[float] = tuple(range(20, 100, 5)),
) -> list[dict[str, Any]]:
    """Recall, required recall and false alerts at each alert threshold, from one run made at a
    low threshold (an incident's risk does not depend on the threshold)."""
    out = []
    for t in thresholds:
        kept = [a for a in alerts if a.risk_score >= t]
        tot = evaluate(kept, labels, data_root).totals
        out.append(
            {
                "threshold": t,
                "alerts": len(kept),
                "caught": tot["caught"],
                "recall": tot["recall"],
                "required_caught": tot["required_caught"],
                "required": tot["required"],
                "false_alerts": tot["false_alerts"],
                "false_per_10k_benign": tot["false_per_10k_benign"],
            }
        )
    return out


def curve_markdown(curve: list[dict[str, Any]]) -> str:
    lines = [
        "| threshold | alerts | caught | required caught | false alerts | false / 10k benign |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for c in curve:
        lines.append(
            f"| {c['threshold']} | {c['alerts']} | {c['caught']} | "
            f"{c['required_caught']}/{c['required']} | {c['false_alerts']} | "
            f"{c['false_per_10k_benign']} |"
        )
    return "\n".join(lines) + "\n"
