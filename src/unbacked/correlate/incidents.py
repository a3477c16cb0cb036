"""Signals -> incidents: one alert per process instance in which foreign code ran.

Per subject process, the strongest signal of each detector is combined by noisy-OR (independent
evidence adds up, repeats of one detector do not), baseline signals count once (their features
are correlated), and what the process did *after* foreign code ran in it (outbound connections,
child processes) adds evidence only when an indicator already showed foreign code. The alert
carries the explanation, a timeline with the provenance of every line, the regions, the remote
endpoints, the parent chain and the injector.
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from unbacked.detect.anomaly import DETECTOR_ID as BASELINE_ID
from unbacked.detect.base import DetectionContext, arange
from unbacked.model.alert import (
    Alert,
    Explanation,
    NetworkContact,
    ProcessRef,
    Provenance,
    RegionInfo,
    TimelineEntry,
    more_reasons,
    rank_explanation,
    severity_from_risk,
    sort_alerts,
)
from unbacked.model.rows import to_rows
from unbacked.model.state import ProcessInfo, StateTracker, region_histories
from unbacked.model.winconst import process_access_names, short_protection
from unbacked.model.words import value_words, with_words

#: default risk (0-100) at or above which an incident becomes an alert
DEFAULT_ALERT_THRESHOLD = 60.0
#: a rule signal this strong shows foreign code ran: follow-up behaviour then counts
FOREIGN_CODE_EVIDENCE = 50.0
FOLLOWUP_CONNECT = ("UNB-C-001", "Network connection after foreign code ran", 40.0, "T1071")
FOLLOWUP_CHILD = ("UNB-C-002", "Child process after foreign code ran", 30.0, None)
MAX_TIMELINE = 400
#: how many parents an alert's process and injector are described with
PARENT_CHAIN = 8
#: explanation lines kept per alert (ranked; lines past it are counted in
#: ``unmapped.unbacked.explanation_omitted``, never dropped silently)
MAX_EXPLANATION = 200

_NAMESPACE = uuid.UUID("6f1d3f5e-5b7c-4b8e-9a39-0c1e7b5d2a11")


@dataclass(frozen=True, slots=True)
class CorrelationConfig:
    alert_threshold: float = DEFAULT_ALERT_THRESHOLD
    max_timeline: int = MAX_TIMELINE


def correlate(
    ctx: DetectionContext,
    signals: pa.Table,
    state: StateTracker | None = None,
    config: CorrelationConfig | None = None,
) -> list[Alert]:
    """Merge ``signals`` into incidents and return the alerts, most severe first."""
    config = config or CorrelationConfig()
    if signals.num_rows == 0:
        return []
    candidates = _candidates(signals, config.alert_threshold)
    if not candidates:
        return []
    keep = signals.filter(pc.is_in(signals["subject_uid"], pa.array(candidates, pa.string())))
    if state is None:
        state = StateTracker.from_events(_identity_events(ctx.events, keep, candidates))
    by_subject: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for sig in to_rows(keep):
        by_subject[sig["subject_uid"]].append(sig)

    related = _related_events(ctx.events, list(by_subject))
    alerts = []
    for subject, sigs in by_subject.items():
        alert = _incident(subject, sigs, related.get(subject), ctx, state, config)
        if alert is not None:
            alerts.append(alert)
    return sort_alerts(alerts)


def _identity_events(events: pa.Table, signals: pa.Table, subjects: list[str]) -> pa.Table:
    """The events that can tell who the alerted processes, their injectors and their parents
    are: every event naming a subject or an actor, and the launches naming them or their
    ancestors (as far as ``_ref`` follows a parent chain). Resolving identities from this
    subset instead of every event keeps correlation cheap on big runs; each of these
    processes is described exactly as from every launch (its rows are all here)."""
    named = set(subjects) | {u for u in signals["actor_uid"].to_pylist() if u}
    uids = _strings(named)
    launches = pc.equal(events["activity"].cast(pa.string()), "launch")
    mask = pc.or_(
        launches,
        pc.or_(
            pc.fill_null(pc.is_in(events["process_uid"], uids), False),
            pc.fill_null(pc.is_in(events["target_uid"], uids), False),
        ),
    )
    sub = events.filter(mask)
    # also described: the other process of an event aimed at a subject (``_injector``), and
    # the ancestors of all of them, each level's parents as its processes' rows name them
    aimed = sub.filter(pc.fill_null(pc.is_in(sub["target_uid"], _strings(set(subjects))), False))
    need = named | {u for u in pc.unique(aimed["process_uid"]).to_pylist() if u}
    level = need
    for _ in range(PARENT_CHAIN):
        of_level = sub.filter(pc.fill_null(pc.is_in(sub["process_uid"], _strings(level)), False))
        level = {u for u in pc.unique(of_level["parent_uid"]).to_pylist() if u} - need
        if not level:
            break
        need = need | level
    keys = _strings(need)
    about = pc.or_(
        pc.or_(
            pc.fill_null(pc.is_in(sub["process_uid"], keys), False),
            pc.fill_null(pc.is_in(sub["target_uid"], keys), False),
        ),
        pc.fill_null(pc.is_in(sub["parent_uid"], keys), False),
    )
    return sub.filter(about).drop_columns(_DERIVED)


def _strings(values: set[str]) -> pa.Array:
    return pa.array(sorted(values), pa.string())


def _candidates(signals: pa.Table, threshold: float) -> list[str]:
    """Subjects whose risk could reach ``threshold`` even with every follow-up: only they are
    worth a timeline (one columnar aggregation, no Python per signal)."""
    agg = signals.group_by(["subject_uid", "detector"]).aggregate([("score", "max")])
    comps: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for subj, det, score in zip(
        agg["subject_uid"].to_pylist(),
        agg["detector"].to_pylist(),
        agg["score_max"].to_pylist(),
        strict=True,
    ):
        comps[subj].append((det, score))
    out = []
    for subj, items in comps.items():
        scores = [sc for _, sc in items]
        rule_max = max((sc for d, sc in items if d != BASELINE_ID), default=0.0)
        if rule_max >= FOREIGN_CODE_EVIDENCE:
            scores += [FOLLOWUP_CONNECT[2], FOLLOWUP_CHILD[2]]
        if noisy_or(scores) >= threshold:
            out.append(subj)
    return sorted(out)


_DERIVED = ["row", "program", "target_program"]


def noisy_or(scores: list[float]) -> float:
    p = 1.0
    for s in scores:
        p *= 1.0 - max(0.0, min(s, 100.0)) / 100.0
    return 100.0 * (1.0 - p)


def _related_events(events: pa.Table, subjects: list[str]) -> dict[str, pa.Table]:
    """Events that mention each subject as actor, target or parent (one pass for all)."""
    keys = pa.array(subjects, pa.string())
    mask = pc.or_(
        pc.or_(
            pc.fill_null(pc.is_in(events["process_uid"], keys), False),
            pc.fill_null(pc.is_in(events["target_uid"], keys), False),
        ),
        pc.fill_null(pc.is_in(events["parent_uid"], keys), False),
    )
    sub = events.filter(mask)
    out: dict[str, pa.Table] = {}
    if sub.num_rows == 0:
        return out
    # (subject, row) for every field naming a subject, then one sort and a slice per subject
    # (a filter of every related row per subject is subjects x rows on a noisy fleet)
    idx = arange(sub.num_rows)
    pairs = []
    for col in ("process_uid", "target_uid", "parent_uid"):
        hit = pc.fill_null(pc.is_in(sub[col], keys), False)
        pairs.append(pa.table({"s": sub[col].filter(hit), "i": idx.filter(hit.combine_chunks())}))
    both = pa.concat_tables(pairs).group_by(["s", "i"], use_threads=False).aggregate([])
    both = both.sort_by([("s", "ascending"), ("i", "ascending")])
    rows = both["i"].combine_chunks()
    runs = pc.run_end_encode(both["s"].combine_chunks())
    start = 0
    for subject, end in zip(runs.values.to_pylist(), runs.run_ends.to_pylist(), strict=True):
        out[subject] = sub.take(rows.slice(start, end - start))
        start = end
    return out


def _incident(
    subject: str,
    sigs: list[dict[str, Any]],
    related: pa.Table | None,
    ctx: DetectionContext,
    state: StateTracker,
    config: CorrelationConfig,
) -> Alert | None:
    best: dict[str, dict[str, Any]] = {}
    for s in sigs:
        cur = best.get(s["detector"])
        if cur is None or s["score"] > cur["score"]:
            best[s["detector"]] = s
    rule_scores = [s["score"] for d, s in best.items() if d != BASELINE_ID]
    components = list(rule_scores)
    if BASELINE_ID in best:
        components.append(best[BASELINE_ID]["score"])
    first_evidence = min((s["time"] for s in sigs if s["time"] is not None), default=None)
    foreign_code = max(rule_scores, default=0.0) >= FOREIGN_CODE_EVIDENCE

    rows = to_rows(related, keep_ns=("time",)) if related is not None else []
    network = [
        r
        for r in rows
        if r["kind"] == "network" and r["process_uid"] == subject and r["activity"] == "connect"
    ]
    children = [
        r
        for r in rows
        if r["kind"] == "process"
        and r["activity"] == "launch"
        and r["parent_uid"] == subject
        and r["process_uid"] != subject
    ]
    followups: list[tuple[str, str, float, str | None, dict[str, Any]]] = []
    if foreign_code:
        if network:
            followups.append((*FOLLOWUP_CONNECT, network[0]))
        if children:
            followups.append((*FOLLOWUP_CHILD, children[0]))
    components += [f[2] for f in followups]
    risk = noisy_or(components)
    if risk < config.alert_threshold:
        return None

    proc = state.process(subject)
    # the headline is the strongest indicator; the baseline only when no indicator fired
    rules_only = [s for d, s in best.items() if d != BASELINE_ID]
    top = max(rules_only or list(best.values()), key=lambda s: s["score"])
    actor_uid = _injector(subject, sigs, rows)

    techniques = sorted({t for s in sigs for t in (s["techniques"] or ())})
    for f in followups:
        if f[3]:
            techniques.append(f[3])
    techniques = sorted(set(techniques))

    explanation, omitted = _explanation(sigs, followups)
    signal_rows = {s["row"]: s["detector"] for s in sigs}
    timeline = _timeline(rows, subject, signal_rows, config.max_timeline)
    regions = _regions(related, subject)
    net = tuple(
        NetworkContact(
            remote=f"{r['remote_ip']}:{r['remote_port']}",
            time=r["time"],
            remote_host=r["remote_host"] or None,
        )
        for r in network[:50]
    )
    child_refs = tuple(
        _ref(
            ProcessInfo(
                uid=r["process_uid"],
                host=r["host"],
                pid=r["pid"],
                image=r["image"],
                cmd_line=r["cmd_line"],
                start=r["time"],
            ),
            None,
        )
        for r in children[:50]
    )
    host = (proc.host if proc else None) or top["host"]
    name = (proc.name if proc else None) or "?"
    pid = proc.pid if proc else None
    process_ref = _ref(proc, state) if proc else ProcessRef(uid=subject)
    actor_ref = None
    if actor_uid:
        actor_info = state.process(actor_uid)
        actor_ref = _ref(actor_info, state) if actor_info else ProcessRef(uid=actor_uid)
    times = [s["time"] for s in sigs if s["time"] is not None]
    by = f" by {actor_ref.name} ({actor_ref.pid})" if actor_ref and actor_ref.name else ""
    # the headline reason; the others behind a count (the report and explanation[] list them)
    hidden = len(explanation) + omitted - 1
    others = f"; {more_reasons(hidden)} reason{'s' if hidden > 1 else ''}" if hidden > 0 else ""
    headline = with_words(top["message"], top["value"], value_words(top["feature"], top["value"]))
    message = f"{name} ({pid}) on {host}: {headline}{by}; risk {round(risk)}{others}"
    return Alert(
        uid=str(uuid.uuid5(_NAMESPACE, f"{host}|{subject}")),
        title=top["title"],
        message=message,
        risk_score=round(risk),
        severity_id=severity_from_risk(risk),
        first_seen=first_evidence,
        last_seen=max(times) if times else None,
        hostname=host,
        process=process_ref,
        actor=actor_ref,
        techniques=tuple(techniques),
        types=_types(techniques),
        explanation=explanation,
        timeline=timeline,
        regions=regions,
        network=net,
        children=child_refs,
        sources=_sources(sigs),
        detectors=tuple(sorted(best) + [f[0] for f in followups]),
        extra={"explanation_omitted": omitted} if omitted else {},
    )


def _injector(subject: str, sigs: list[dict[str, Any]], rows: list[dict[str, Any]]) -> str | None:
    """The process that put the foreign code here, when the evidence names one: the actor the
    signals name most often, else the other process of a cross-process event a signal rests on
    (an event of another process aimed at the subject: a remote thread, a write into its
    memory), whichever detector raised it."""
    actors = Counter(s["actor_uid"] for s in sigs if s["actor_uid"] and s["actor_uid"] != subject)
    if not actors:
        evidence = {s["row"] for s in sigs if s["row"] is not None}
        actors = Counter(
            r["process_uid"]
            for r in rows
            if r["row"] in evidence
            and r["target_uid"] == subject
            and r["process_uid"]
            and r["process_uid"] != subject
        )
    return actors.most_common(1)[0][0] if actors else None


def _ref(info: ProcessInfo | None, state: StateTracker | None) -> ProcessRef:
    if info is None:
        return ProcessRef(uid=None)
    parent: ProcessRef | None = None
    if state is not None:
        for p in reversed(state.parent_chain(info.uid, limit=PARENT_CHAIN)):
            parent = ProcessRef(
                uid=p.uid,
                pid=p.pid,
                name=p.name,
                path=p.image,
                cmd_line=p.cmd_line,
                user=p.user,
                created=p.start,
                parent=parent,
            )
    return ProcessRef(
        uid=info.uid,
        pid=info.pid,
        name=info.name,
        path=info.image,
        cmd_line=info.cmd_line,
        user=info.user,
        created=info.start,
        parent=parent,
    )


def _types(techniques: list[str]) -> tuple[str, ...]:
    types = []
    if any(t.startswith("T1620") for t in techniques):
        types.append("Reflective Code Loading")
    if any(t.startswith("T1055") for t in techniques):
        types.append("Process Injection")
    return tuple(types) or ("Suspicious Executable Memory",)


def _explanation(
    sigs: list[dict[str, Any]],
    followups: list[tuple[str, str, float, str | None, dict[str, Any]]],
) -> tuple[tuple[Explanation, ...], int]:
    """Every reason (the strongest signal per detector, feature and value, and the follow-ups),
    ranked strongest first, at most ``MAX_EXPLANATION``; and how many were left out."""
    seen: dict[tuple[str, str | None, str | None], Explanation] = {}
    for s in sigs:
        key = (s["detector"], s["feature"], s["value"])
        cur = seen.get(key)
        if cur is None or s["score"] > cur.score:
            seen[key] = Explanation(
                feature=s["feature"] or s["detector"],
                value=s["value"],
                detector=s["detector"],
                score=float(s["score"]),
                message=with_words(
                    s["message"] or s["title"], s["value"], value_words(s["feature"], s["value"])
                ),
                baseline_count=s["baseline_count"],
                baseline_total=s["baseline_total"],
                baseline_scope=s["baseline_scope"],
            )
    out = list(seen.values())
    for det, title, score, _tech, row in followups:
        what = (
            f"{row['remote_ip']}:{row['remote_port']}"
            if row["kind"] == "network"
            else (row["image"] or "?")
        )
        out.append(
            Explanation(
                feature="followup." + ("connect" if row["kind"] == "network" else "child"),
                value=what,
                detector=det,
                score=score,
                message=f"{title}: {what}",
            )
        )
    ranked = rank_explanation(out)
    return tuple(ranked[:MAX_EXPLANATION]), max(len(ranked) - MAX_EXPLANATION, 0)


def _summary(r: dict[str, Any], subject: str) -> tuple[str, str]:
    kind, act = r["kind"], r["activity"]
    img = _base(r["image"])
    tgt = _base(r["target_image"])
    if kind == "process":
        if act == "launch":
            if r["process_uid"] == subject:
                return (
                    "launch",
                    f"started: {r['cmd_line'] or img} (parent {_base(r['parent_image'])})",
                )
            return "child", f"started child {img} ({r['pid']}): {r['cmd_line'] or ''}".rstrip(": ")
        if act == "open":
            who = f"{img} opened {tgt}" if r["process_uid"] == subject else f"opened by {img}"
            access = r["granted_access"]
            if access is None:
                return "open", who
            words = f" ({process_access_names(access)})" if r["os"] != "linux" else ""
            return "open", f"{who} access 0x{access:x}{words}"
        return act, f"{act}: {img}"
    if kind == "thread":
        start = f"0x{r['start_address']:x}" if r["start_address"] is not None else "?"
        if r["start_module"]:
            where = _base(r["start_module"])
        elif act == "remote_thread":
            where = "no module (unbacked)"
        else:
            where = "no module the telemetry names"
        if r["target_uid"] == subject and r["process_uid"] != subject:
            return "thread", f"{img} started a thread here at {start} in {where}"
        return "thread", f"started a thread in {tgt or img} at {start} in {where}"
    if kind == "memory":
        base = f"0x{(r['base_address'] or 0):x}"
        size = f"0x{r['region_size']:x}" if r["region_size"] else "?"
        prot = short_protection(r["protection"], r["os"])
        old = (
            f"{short_protection(r['old_protection'], r['os'])} -> "
            if r["old_protection"] is not None
            else ""
        )
        caller = "unbacked code" if r["caller_unbacked"] else (_base(r["caller_module"]) or "?")
        hdr = (
            f", {r['header_kind'].upper()} header" if r["header_kind"] not in (None, "none") else ""
        )
        backing = f", backed by {r['backing_path']}" if r["backing_path"] else ""
        return act, f"{act} {base} size {size} {old}{prot} from {caller}{hdr}{backing}"
    if kind == "network":
        return "connect", (
            f"{act} {r['protocol'] or ''} {r['remote_ip']}:{r['remote_port']}"
            + (f" ({r['remote_host']})" if r["remote_host"] else "")
        )
    if kind == "module":
        return "load", f"loaded {r['module_path']}"
    return act, act


def _base(path: str | None) -> str | None:
    if not path:
        return None
    return path.replace("\\", "/").rsplit("/", 1)[-1]


_ALWAYS = {
    "launch",
    "child",
    "thread",
    "connect",
    "allocate",
    "protect",
    "write",
    "map_view",
    "memfd",
    "exec",
    "tamper",
}


def _timeline(
    rows: list[dict[str, Any]], subject: str, signal_rows: dict[int, str], limit: int
) -> tuple[TimelineEntry, ...]:
    entries: list[tuple[Any, TimelineEntry]] = []
    others = 0
    for r in rows:
        detector = signal_rows.get(r["row"])
        kind, summary = _summary(r, subject)
        if detector is None:
            if kind not in _ALWAYS and not (kind == "load" and _is_engine(r["module_path"])):
                continue
            if (
                r["kind"] == "process"
                and r["activity"] == "launch"
                and r["parent_uid"] != subject
                and r["process_uid"] != subject
            ):
                continue
            others += 1
            if others > limit // 2:
                continue
        entry = TimelineEntry(
            time=r["time"],
            kind=kind,
            summary=summary,
            provenance=Provenance(file=r["src_file"], record=r["src_record"], line=r["src_line"]),
            signal=detector,
        )
        entries.append(((r["time_ns"], r["src_file"] or "", r["src_line"] or 0), entry))
    entries.sort(key=lambda x: x[0])
    return tuple(e for _, e in entries[:limit])


def _is_engine(path: str | None) -> bool:
    if not path:
        return False
    low = path.lower()
    return any(m in low for m in ("clr.dll", "mscorwks", "coreclr", "system.management.automation"))


def _regions(related: pa.Table | None, subject: str) -> tuple[RegionInfo, ...]:
    if related is None or related.num_rows == 0:
        return ()
    hist = region_histories(related, subject)
    out = []
    for h in hist:
        if not (h.executable or h.threads):
            continue
        out.append(
            RegionInfo(
                base=h.base,
                size=h.size,
                protections=tuple(p for _, p in h.protections),
                backing=h.backing_path,
                header_kind=h.header_kind,
                threads=len(h.threads),
            )
        )
    return tuple(out[:50])


def _sources(sigs: list[dict[str, Any]]) -> tuple[dict[str, Any], ...]:
    by_file: dict[str, list[int]] = defaultdict(list)
    for s in sigs:
        ref = s["src_record"] if s["src_record"] is not None else s["src_line"]
        if ref is not None:
            by_file[s["src_file"] or "?"].append(ref)
    out = []
    for f, refs in sorted(by_file.items()):
        uniq = sorted(set(refs))
        out.append({"file": f, "records": uniq[:100], "count": len(uniq)})
    return tuple(out)
