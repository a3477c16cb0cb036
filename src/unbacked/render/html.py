"""The offline HTML incident report: one self-contained file an analyst can open anywhere.

Why one file with everything inline: reports travel by e-mail, tickets and USB sticks into
air-gapped rooms; a report that fetches a script from a CDN shows nothing there, and leaks to the
network that someone is looking at an incident. So the page carries its own styles, its own small
script, bokeh's JavaScript (for the zoomable timelines) and the plot data, and its
Content-Security-Policy forbids every network fetch and every script that is not one of ours
(pinned by hash).

Why the HTML is rendered here and not by script in the page: everything in an alert that comes
from telemetry (command lines, image paths, user names, host names, even alert ids) is attacker
controlled. Building the page in Python with every value passed through :func:`html.escape`, and
embedding plot data as JSON whose ``<``, ``>`` and ``&`` are ``\\u`` escapes, keeps the markup
ours. The page script only sorts rows, shows one alert at a time and draws its plot, and never
turns data into markup. Without script the page still shows every alert, one after the other.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from unbacked.errors import DependencyError
from unbacked.model.alert import (
    ATTACK,
    EXPLAIN_SHOWN,
    SEVERITY_NAMES,
    Alert,
    Explanation,
    ProcessRef,
    Provenance,
    RegionInfo,
    TimelineEntry,
    more_reasons,
    rank_explanation,
    rule_doc,
    sort_alerts,
    to_ms,
)
from unbacked.render.base import Renderer

__all__ = ["HtmlRenderer", "render_html", "timeline_figure", "write_html"]

#: timeline lanes, top to bottom, in the order a region lives through them
LANES = ("launch", "load", "open", "allocate", "write", "protect", "map", "thread", "apc",
         "context", "connect", "child")  # fmt: skip
_MEMORY = {"allocate", "write", "protect", "map"}
_CODE = {"thread", "apc", "context"}
_PROCESS = {"launch", "load", "open", "child"}
_KIND_COLOURS = {"memory": "#e8871e", "code": "#8e44ad", "network": "#2471a3", "process": "#7f8c8d"}
_SIGNAL_LINE = "#c0392b"
_TIMELINE_OPEN = 40  # longer timelines start folded: the plot is the overview
_EXPLAIN_SHOWN = EXPLAIN_SHOWN  # strongest reasons shown, the rest folded behind a count
_SOURCES_SHOWN = 25  # record ids listed per source file before "and N more"


def _family(kind: str) -> str:
    if kind in _MEMORY:
        return "memory"
    if kind in _CODE:
        return "code"
    if kind == "connect":
        return "network"
    return "process"


# -- small formatting helpers -------------------------------------------------------------------
def h(value: Any) -> str:
    """Escape anything for HTML text and attribute values (quotes included)."""
    return html.escape("" if value is None else str(value), quote=True)


def _time(ts: datetime | None, *, ms: bool = True) -> str:
    if ts is None:
        return "?"
    ts = ts.astimezone(UTC)
    return ts.strftime("%Y-%m-%d %H:%M:%S") + (f".{ts.microsecond // 1000:03d}" if ms else "")


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit, div in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= div:
            return f"0x{n:X} ({n / div:,.1f} {unit})"
    return f"0x{n:X} ({n} B)"


def _proc_label(p: ProcessRef | None) -> str:
    if p is None:
        return ""
    return f"{p.name or '?'} ({p.pid if p.pid is not None else '?'})"


def _provenance(p: Provenance) -> str:
    """``file · record N`` with the full path as a tooltip (archives: ``zip!member``)."""
    if not p.file and p.record is None and p.line is None:
        return '<span class="muted">unknown</span>'
    name = (p.file or "?").replace("\\", "/").rsplit("/", 1)[-1]
    where = []
    if p.record is not None:
        where.append(f"record {p.record}")
    if p.line is not None:
        where.append(f"line {p.line}")
    return (
        f'<span class="prov" title="{h(p.file)}">{h(name)}</span>'
        f'<span class="muted"> · {h(", ".join(where) or "?")}</span>'
    )


def _script_json(data: Any) -> str:
    """JSON safe inside a ``<script type="application/json">`` element, whatever the strings."""
    text = json.dumps(data, separators=(",", ":"), default=str)
    return (
        text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
        .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    )  # fmt: skip


# -- the timeline plot (also Alerts.plot in notebooks) -------------------------------------------
def _bokeh() -> Any:
    try:
        import bokeh
    except ImportError as exc:
        raise DependencyError(
            "the timeline plot needs bokeh, which is not installed",
            hint="pip install 'unbacked[report]' (or: pip install bokeh)",
        ) from exc
    return bokeh


def _plot_rows(alert: Alert) -> list[dict[str, Any]]:
    """Timeline entries with a time, plus network contacts the timeline does not already list."""
    rows: list[dict[str, Any]] = []
    seen_connects = set()
    for t in alert.timeline:
        if t.time is None:
            continue
        rows.append({"time": t.time, "kind": t.kind or "other", "summary": t.summary,
                     "signal": t.signal or "", "prov": _prov_text(t.provenance)})  # fmt: skip
        if t.kind == "connect":
            seen_connects.add(to_ms(t.time))
    for n in alert.network:
        if n.time is None or to_ms(n.time) in seen_connects:
            continue
        remote = n.remote + (f" ({n.remote_host})" if n.remote_host else "")
        rows.append({"time": n.time, "kind": "connect", "summary": f"connect {remote}",
                     "signal": "", "prov": ""})  # fmt: skip
    rows.sort(key=lambda r: r["time"])
    return rows


def _prov_text(p: Provenance) -> str:
    where = ", ".join(
        x for x in (f"record {p.record}" if p.record is not None else "",
                    f"line {p.line}" if p.line is not None else "") if x
    )  # fmt: skip
    return f"{p.file or '?'}" + (f" ({where})" if where else "")


def _ranges(alert: Alert, times: list[float], evidence: list[float]) -> dict[str, float]:
    """Open on the evidence, reset to everything (epoch ms).

    Context events (an earlier connection, the launch) can lie hours or days away from the
    evidence; a plot spanning all of them squeezes the evidence into one pixel column. The plot
    therefore opens on the evidence (the signalled events, padded) and its reset button shows
    every event.
    """

    def padded(lo: float, hi: float) -> tuple[float, float]:
        pad = max((hi - lo) * 0.08, 1000.0)
        return lo - pad, hi + pad

    if not times:
        t = float(to_ms(alert.first_seen) or 0)
        times = evidence = [t]
    all_lo, all_hi = padded(min(times), max(times))
    lo, hi = padded(min(evidence or times), max(evidence or times))
    return {"start": max(lo, all_lo), "end": min(hi, all_hi), "reset_start": all_lo,
            "reset_end": all_hi}  # fmt: skip


def plot_data(alert: Alert) -> dict[str, Any]:
    """Everything the timeline plot shows of one alert, as plain columns (JSON-ready).

    The report ships this per alert and swaps it into a single bokeh plot in the page, because
    building and serialising one bokeh document per alert costs ~0.1 s and ~50 KB each: a hunt
    with hundreds of alerts would take minutes and tens of MB. Times are epoch milliseconds.
    """
    rows = _plot_rows(alert)
    kinds = {r["kind"] for r in rows}
    lanes = [k for k in LANES if k in kinds] + sorted(kinds - set(LANES))
    lanes = list(reversed(lanes or ["launch"]))  # bokeh draws the first factor at the bottom
    times = [float(to_ms(r["time"]) or 0) for r in rows]
    lifecycles: dict[str, list[list[Any]]] = {"xs": [], "ys": []}
    for region in alert.regions:  # events naming a region's base, joined in time order
        needle = f"0x{region.base:x}"
        pts = [(t, r["kind"]) for t, r in zip(times, rows, strict=True)
               if needle in r["summary"].lower()]  # fmt: skip
        if len(pts) >= 2:
            lifecycles["xs"].append([t for t, _ in pts])
            lifecycles["ys"].append([k for _, k in pts])
    return {
        "title": f"{_proc_label(alert.process)} on {alert.hostname or '?'}: what happened, "
        "in order",
        "lanes": lanes,
        "height": 90 + 34 * len(lanes),
        "events": {
            "t": times,
            "kind": [r["kind"] for r in rows],
            "summary": [r["summary"] for r in rows],
            "signal": [r["signal"] or "context" for r in rows],
            "prov": [r["prov"] for r in rows],
            "colour": [_KIND_COLOURS[_family(r["kind"])] for r in rows],
            "line": [_SIGNAL_LINE if r["signal"] else "white" for r in rows],
            "size": [15 if r["signal"] else 10 for r in rows],
        },
        "lifecycles": lifecycles,
        **_ranges(alert, times, [t for t, r in zip(times, rows, strict=True) if r["signal"]]),
    }


def _figure(data: Mapping[str, Any], height: int | None = None) -> Any:
    """The bokeh figure for :func:`plot_data`; its sources and ranges are named so that the
    page script can swap another alert's data in."""
    from bokeh.models import (
        ColumnDataSource,
        DatetimeTickFormatter,
        FactorRange,
        HoverTool,
        Range1d,
    )
    from bokeh.plotting import figure

    p = figure(
        title=data["title"], x_axis_type="datetime",
        y_range=FactorRange(factors=list(data["lanes"]), name="lanes"),
        x_range=Range1d(start=data["start"], end=data["end"], reset_start=data["reset_start"],
                        reset_end=data["reset_end"], name="time"),
        height=height or data["height"], sizing_mode="stretch_width",
        tools="xpan,xwheel_zoom,box_zoom,reset,save", active_drag="xpan",
        active_scroll="xwheel_zoom", toolbar_location="above", name="timeline",
    )  # fmt: skip
    p.xaxis.axis_label = "time (UTC)"
    # wall-clock ticks at every zoom ("18:32:44.500", not bokeh's "500ms")
    p.xaxis.formatter = DatetimeTickFormatter(
        milliseconds="%H:%M:%S.%3N", seconds="%H:%M:%S", minsec="%H:%M:%S", minutes="%H:%M",
        hourmin="%H:%M", hours="%H:%M", days="%Y-%m-%d", months="%Y-%m", years="%Y",
        context=DatetimeTickFormatter(
            milliseconds="%Y-%m-%d", seconds="%Y-%m-%d", minsec="%Y-%m-%d", minutes="%Y-%m-%d",
            hourmin="%Y-%m-%d", hours="%Y-%m-%d", days="%Y", months="", years="",
        ),
    )  # fmt: skip
    p.ygrid.grid_line_color = None
    p.outline_line_color = None
    lines = ColumnDataSource(dict(data["lifecycles"]), name="lifecycles")
    p.multi_line(xs="xs", ys="ys", source=lines, line_color="#c7c7c7", line_width=2,
                 line_dash="dashed")  # fmt: skip
    src = ColumnDataSource(dict(data["events"]), name="events")
    dots = p.scatter(x="t", y="kind", source=src, size="size", fill_color="colour",
                     line_color="line", line_width=2.5, fill_alpha=0.9)  # fmt: skip
    # values are escaped by bokeh's hover template (no ``{safe}`` anywhere): telemetry stays text
    p.add_tools(
        HoverTool(
            renderers=[dots],
            tooltips=[("time", "@t{%F %T.%3N}"), ("event", "@kind"), ("what", "@summary"),
                      ("evidence", "@signal"), ("source", "@prov")],
            formatters={"@t": "datetime"},
        )
    )  # fmt: skip
    return p


def timeline_figure(alert: Alert, *, height: int | None = None) -> Any:
    """A zoomable bokeh plot of the alert's timeline: one lane per kind of event, evidence ringed
    in red, and the events of each memory region joined by a dashed line (its lifecycle).

    Wheel zoom and pan act on time only: the lanes are categories, and zooming them would hide
    evidence. Hovering a point shows the event, its detector and where it was read from.
    """
    _bokeh()
    return _figure(plot_data(alert), height)


# -- page sections --------------------------------------------------------------------------
def _severity_badge(alert: Alert) -> str:
    name = SEVERITY_NAMES.get(alert.severity_id, "Unknown")
    return f'<span class="sev sev{int(alert.severity_id)}">{h(name)}</span>'


def _alert_list(alerts: Sequence[Alert]) -> str:
    rows = []
    for i, a in enumerate(alerts):
        when = _time(a.first_seen, ms=False)
        by = f' <span class="by">← {h(_proc_label(a.actor))}</span>' if a.actor else ""
        rows.append(
            f'<tr data-idx="{i}" data-sev="{a.severity_id * 1000 + a.risk_score}" '
            f'data-time="{to_ms(a.first_seen) or 0}" data-host="{h((a.hostname or "").lower())}" '
            f'tabindex="0"><td class=nowrap>{_severity_badge(a)}<br>'
            f'<span class="risk">risk {a.risk_score}</span></td>'
            f"<td class=nowrap>{h(when[:10])}<br>{h(when[11:])}</td>"
            f"<td>{h(a.hostname or '?')}</td>"
            f'<td class="pcell"><a href="#a{i}"><b>{h(_proc_label(a.process))}</b></a>{by}'
            f'<div class="what">{h(a.title)}</div></td></tr>'
        )
    return (
        '<table id="alert-list" class="list"><thead><tr>'
        '<th data-key="sev" aria-sort="descending">severity</th>'
        '<th data-key="time">first seen (UTC)</th><th data-key="host">host</th>'
        "<th>process ← injector · what</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _node(p: ProcessRef, role: str | None = None, note: str | None = None) -> str:
    badge = f' <span class="role role-{h(role.split()[0])}">{h(role)}</span>' if role else ""
    meta = [x for x in (p.user, _time(p.created) if p.created else None, p.path) if x]
    cmd = f'<pre class="cmd">{h(p.cmd_line)}</pre>' if p.cmd_line else ""
    uid = f'<div class="muted small">uid {h(p.uid)}</div>' if p.uid else ""
    extra = f'<div class="note">{h(note)}</div>' if note else ""
    return (
        f'<div class="pnode{" hl" if role else ""}"><span class="pname">{h(p.name or "?")}</span>'
        f' <span class="pid">pid {h(p.pid if p.pid is not None else "?")}</span>{badge}'
        f'<div class="muted small">{" · ".join(h(m) for m in meta)}</div>{cmd}{uid}{extra}</div>'
    )


def _nest(nodes: list[str], leaves: list[str]) -> str:
    """Nodes nested one inside the other (a chain), the last holding ``leaves``."""
    inner = "".join(f"<li>{leaf}</li>" for leaf in leaves)
    out = f"<ul>{inner}</ul>" if inner else ""
    for node in reversed(nodes):
        out = f"<ul><li>{node}{out}</li></ul>"
    return out


def _process_tree(a: Alert) -> str:
    """parent chain → injector → injected process → children, as a nested list."""
    children = [_node(c, None) for c in a.children]
    ancestors = list(reversed(a.process.chain()[1:]))
    if a.actor is not None and a.actor.uid != a.process.uid:
        lineage = " ← ".join(_proc_label(x) for x in a.process.chain()[1:]) or "unknown"
        target = _node(a.process, "injected: foreign code ran here", f"started by: {lineage}")
        chain = [_node(x) for x in reversed(a.actor.chain()[1:])]
        chain.append(_node(a.actor, "injector (actor)"))
        tree = _nest([*chain, target], children)
    else:
        role = "foreign code ran here"
        if a.actor is not None:
            role += " (injected itself)"
        tree = _nest([*(_node(x) for x in ancestors), _node(a.process, role)], children)
    if not a.children:
        tree += '<p class="muted small">no child processes seen</p>'
    return f'<div class="tree">{tree}</div>'


def _baseline_phrase(e: Explanation, program: str | None) -> str:
    """The baseline as a sentence ("this program: 0 of 18,422 like this") and a bar."""
    if e.baseline_total is None:
        return '<span class="muted">rule: no baseline needed</span>'
    count = e.baseline_count or 0
    scope = e.baseline_scope or "baseline"
    who = {"program": f"this program ({program or '?'})", "population": "all programs"}
    label = f"<b>{h(who.get(scope, scope))}</b>"
    if not e.baseline_total:
        return f'{label}: <span class="muted">nothing to compare with (0 seen)</span>'
    freq = count / e.baseline_total
    width = max(min(freq * 100, 100), 0)
    return (
        f"{label}: {count:,} of {e.baseline_total:,} like this"
        f'<div class="bar" title="{freq:.2%}"><i style="width:{width:.1f}%"></i></div>'
    )


def _describe(detector: str) -> tuple[str, str]:
    """A detector's title and what it means (registered detectors, the baseline among them,
    from their metadata; the correlation follow-ups and memory-scan findings from their
    modules)."""
    from unbacked.correlate.incidents import FOLLOWUP_CHILD, FOLLOWUP_CONNECT
    from unbacked.detect.base import DETECTORS

    found = DETECTORS.get(detector)
    if found is not None:
        return found.title, found.description
    for det, title, _score, _tech in (FOLLOWUP_CONNECT, FOLLOWUP_CHILD):
        if detector == det:
            return title, "Follow-up behaviour after an indicator showed foreign code ran."
    if detector == "memscan":
        return "Memory scan finding", "Executable memory no file backs, found by a memory scan."
    return detector, ""


def _rule(detector: str, anchor: str | None = None) -> str:
    """A detector id; its title, meaning and rules-page section on hover, and a link to the
    alert's detector card when ``anchor`` (the section id) is given. The report stays
    self-contained: the rules page is named, not fetched."""
    title, _ = _describe(detector)
    tip = h(f"{detector}: {title}. Known false positives, what to check next: {rule_doc(detector)}")
    if anchor is not None:
        href = f"#{anchor}-{detector.lower()}"
        return f'<a class="evid" href="{h(href)}" title="{tip}">{h(detector)}</a>'
    return f'<span class="evid" title="{tip}">{h(detector)}</span>'


def _detectors(i: int, a: Alert) -> str:
    """One entry per detector of the alert: what it means, where its page is."""
    items = []
    for d in a.detectors:
        title, desc = _describe(d)
        items.append(
            f'<li id="a{i}-{h(d.lower())}"><span class="evid">{h(d)}</span> <b>{h(title)}</b>'
            f'<br><span class="small">{h(desc)}</span><br><span class="muted small">known false '
            f"positives, what to check next: <code>{h(rule_doc(d))}</code></span></li>"
        )
    return f'<ul class="detectors">{"".join(items)}</ul>' if items else '<p class="muted">none</p>'


def _words(e: Explanation) -> str:
    words = e.value_text
    return f'<br><span class="muted small">{h(words)}</span>' if words else ""


def _explanation(a: Alert) -> str:
    if not a.explanation:
        return '<p class="muted">no explanation recorded</p>'
    rows = []
    for e in rank_explanation(a.explanation):
        rows.append(
            f"<tr><td>{h(e.message)} {_rule(e.detector)}</td>"
            f"<td><code>{h(e.feature)}</code> = <code>{h(e.value)}</code>{_words(e)}</td>"
            f'<td>{_baseline_phrase(e, a.process.name)}</td><td class="num">{e.score:.0f}</td></tr>'
        )
    head = (
        '<table class="explain"><thead><tr><th>why it is unusual</th><th>observed</th>'
        "<th>how often the baseline saw it</th><th>score</th></tr></thead>"
    )
    top, rest = rows[:_EXPLAIN_SHOWN], rows[_EXPLAIN_SHOWN:]
    out = f"{head}<tbody>{''.join(top)}</tbody></table>"
    if rest:
        out += (
            f"<details><summary>{more_reasons(len(rest))} "
            f"reason{'s' if len(rest) > 1 else ''}</summary>{head}"
            f"<tbody>{''.join(rest)}</tbody></table></details>"
        )
    return out


def _regions(regions: Iterable[RegionInfo]) -> str:
    rows = []
    for r in regions:
        history = " → ".join(r.protections) if r.protections else "not observed"
        header = r.header_kind or "unknown"
        cls = "hdr-bad" if header.upper() in {"PE", "ELF", "MZ"} else "hdr"
        rows.append(
            f"<tr><td><code>0x{r.base:X}</code></td><td>{h(_size(r.size))}</td>"
            f"<td><code>{h(history)}</code></td>"
            f"<td>{h(r.backing) if r.backing else '<b>none (unbacked)</b>'}</td>"
            f'<td><span class="{cls}">{h(header)}</span></td><td class="num">{r.threads}</td></tr>'
        )
    if not rows:
        return '<p class="muted">no memory regions recorded</p>'
    return (
        '<table class="regions"><thead><tr><th>base</th><th>size</th>'
        "<th>protection history</th><th>backing file</th><th>header</th><th>threads</th>"
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _value(v: Any) -> str:
    if isinstance(v, Mapping):
        inner = "".join(f"<tr><th>{h(k)}</th><td>{_value(x)}</td></tr>" for k, x in v.items())
        return f'<table class="kv">{inner}</table>'
    if isinstance(v, list | tuple):
        if not v:
            return '<span class="muted">none</span>'
        return "<ul>" + "".join(f"<li>{_value(x)}</li>" for x in v) + "</ul>"
    return h(v)


def _verification(a: Alert) -> str:
    v = a.verification
    if not v:
        return (
            '<p class="muted">not verified: no memory scan of this process is attached '
            "(the telemetry alone raised this alert)</p>"
        )
    status = str(v.get("status", "unknown"))
    cls = {"confirmed": "sev5", "not_confirmed": "sev2", "process_gone": "sev1"}.get(status, "sev3")
    rest = {k: x for k, x in v.items() if k != "status"}
    if isinstance(rest.get("time"), int | float):  # epoch ms in the contract
        rest["time"] = _time(datetime.fromtimestamp(rest["time"] / 1000, tz=UTC))
    return f'<p><span class="sev {cls}">{h(status)}</span></p>{_value(rest)}'


def _timeline_table(entries: Sequence[TimelineEntry]) -> str:
    if not entries:
        return '<p class="muted">no events</p>'
    rows = []
    for t in entries:
        sig = _rule(t.signal) if t.signal else ""
        rows.append(
            f'<tr class="{"evidence" if t.signal else ""}"><td class=nowrap>{h(_time(t.time))}</td>'
            f'<td><span class="kind k-{_family(t.kind)}">{h(t.kind)}</span></td>'
            f"<td>{h(t.summary)}</td><td>{sig}</td><td>{_provenance(t.provenance)}</td></tr>"
        )
    return (
        '<table class="timeline"><thead><tr><th>time (UTC)</th><th>event</th><th>what</th>'
        "<th>evidence</th><th>read from</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _network(a: Alert) -> str:
    if not a.network:
        return '<p class="muted">no network contacts seen</p>'
    rows = "".join(
        f"<tr><td class=nowrap>{h(_time(n.time))}</td><td><code>{h(n.remote)}</code></td>"
        f"<td>{h(n.remote_host or '')}</td></tr>"
        for n in sorted(a.network, key=lambda n: to_ms(n.time) or 0)
    )
    return (
        '<table class="net"><thead><tr><th>time (UTC)</th><th>remote</th><th>name</th></tr>'
        f"</thead><tbody>{rows}</tbody></table>"
    )


def _sources(a: Alert) -> str:
    if not a.sources:
        return '<p class="muted">no sources recorded</p>'
    items = []
    for s in a.sources:
        ids = list(s.get("records") or s.get("record_ids") or ())
        shown = ", ".join(h(x) for x in ids[:_SOURCES_SHOWN])
        more = f" … and {len(ids) - _SOURCES_SHOWN:,} more" if len(ids) > _SOURCES_SHOWN else ""
        count = s.get("count", len(ids))
        items.append(
            f'<li><code class="path">{h(s.get("file"))}</code> <span class="muted">'
            f"({h(count)} records)</span><div class=small>{shown}{h(more)}</div></li>"
        )
    return f'<ul class="sources">{"".join(items)}</ul>'


def _techniques(a: Alert) -> str:
    out = []
    for t in a.techniques:
        name = ATTACK.get(t, (t, None, None))[0]
        out.append(f'<span class="tech" title="{h(name)}">{h(t)} {h(name)}</span>')
    return " ".join(out)


def _alert_section(i: int, a: Alert, plot: bool) -> str:
    span = f"{_time(a.first_seen)} → {_time(a.last_seen)}"
    opened = " open" if len(a.timeline) <= _TIMELINE_OPEN else ""
    plot_html = (
        f'<div class="plot" id="plot-{i}" data-idx="{i}"></div><p class="muted small">Opens on '
        "the evidence (ringed red; dashed lines join the events of one memory region). Wheel "
        "zooms time, drag pans, the reset button shows every event; hover a point for its "
        "source.</p>"
        if plot
        else '<p class="muted">timeline plot not drawn (bokeh is not installed)</p>'
    )
    rules = ", ".join(_rule(d, f"a{i}") for d in a.detectors)
    return f"""
<section class="alert" id="a{i}" data-idx="{i}">
 <header class="ahead">
  <h2>{_severity_badge(a)} <span class="risk big">risk {a.risk_score}</span> {h(a.title)}</h2>
  <p class="msg">{h(a.message)}</p>
  <p class="facts"><b>host</b> {h(a.hostname or "?")} · <b>when</b> {h(span)} ·
   <b>alert</b> <code>{h(a.uid)}</code></p>
  <p>{_techniques(a)} <span class="muted small">detectors: {rules}</span></p>
 </header>
 <div class="grid2 tw">
  <div class="card"><h3>Process tree</h3>{_process_tree(a)}</div>
  <div class="card"><h3>Why this is unusual</h3>{_explanation(a)}</div>
 </div>
 <div class="card"><h3>Timeline</h3>{plot_html}
  <details{opened}><summary>{len(a.timeline)} events, each with the file and record it
  was read from</summary>{_timeline_table(a.timeline)}</details></div>
 <div class="grid2">
  <div class="card"><h3>Memory regions</h3>{_regions(a.regions)}</div>
  <div class="card"><h3>Verification (memory now)</h3>{_verification(a)}</div>
 </div>
 <div class="grid2">
  <div class="card"><h3>Network</h3>{_network(a)}</div>
  <div class="card"><h3>Sources</h3>{_sources(a)}</div>
 </div>
 <div class="card"><h3>Detectors</h3>{_detectors(i, a)}</div>
</section>"""


_CSS = """
:root{--bg:#f4f5f7;--fg:#1d2330;--muted:#6b7280;--card:#fff;--line:#e3e6eb;--accent:#1f5fa8}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
 background:var(--bg);color:var(--fg)}
code,pre,.path{font-family:ui-monospace,"SFMono-Regular",Menlo,Consolas,monospace;font-size:12.5px}
header.top{background:#18202e;color:#fff;padding:10px 18px;display:flex;gap:18px;
 align-items:baseline;flex-wrap:wrap}
header.top h1{font-size:17px;margin:0}
header.top .muted{color:#aab3c2}
main{display:grid;grid-template-columns:minmax(400px,30%) minmax(0,1fr);gap:14px;padding:14px;
 align-items:start}
@media (max-width:1100px){main{grid-template-columns:1fr}}
.listpane{position:sticky;top:8px;max-height:calc(100vh - 16px);overflow:auto;
 background:var(--card);border:1px solid var(--line);border-radius:8px}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:5px 7px;border-bottom:1px solid var(--line);vertical-align:top}
th{font-weight:600;color:#374151;background:#fafbfc;font-size:12.5px}
.list th[data-key]{cursor:pointer;user-select:none}
.list th[data-key]::after{content:" ⇅";color:#b0b6c0}
.list th[aria-sort=ascending]::after{content:" ▲";color:var(--accent)}
.list th[aria-sort=descending]::after{content:" ▼";color:var(--accent)}
.list tbody tr{cursor:pointer}
.list tbody tr:hover{background:#eef4fb}
.list tbody tr.sel{background:#dbe8f7;box-shadow:inset 3px 0 0 var(--accent)}
.list td{font-size:12.5px}
.sev{display:inline-block;border-radius:4px;padding:0 6px;font-size:12px;font-weight:600;color:#fff}
.sev5{background:#a4161a}.sev4{background:#e5383b}.sev3{background:#e09f3e;color:#1d2330}
.sev2{background:#5b8db8}.sev1,.sev0,.sev6{background:#9aa3ad}
.risk{color:var(--muted);font-size:12px}.risk.big{font-size:14px;font-weight:600}
.alert{display:block}
.js .alert{display:none}.js .alert.shown{display:block}
.ahead{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:10px 14px;
 margin-bottom:12px}
.ahead h2{margin:0 0 4px;font-size:18px}.ahead p{margin:4px 0}
.msg{font-size:14.5px}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:10px 14px;
 margin-bottom:12px;overflow:auto}
.card h3{margin:0 0 8px;font-size:14px;text-transform:uppercase;letter-spacing:.04em;color:#4b5563}
.grid2{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:12px}
.grid2>.card{margin-bottom:0}.grid2{margin-bottom:12px}
.grid2.tw{grid-template-columns:minmax(0,2fr) minmax(0,3fr)}
@media (max-width:1300px){.grid2,.grid2.tw{grid-template-columns:minmax(0,1fr)}}
.muted{color:var(--muted)}.small{font-size:12px}.nowrap{white-space:nowrap}
.num{text-align:right;font-variant-numeric:tabular-nums}
.tech{display:inline-block;background:#eef1f6;border:1px solid #d8dee8;border-radius:4px;
 padding:0 6px;margin:2px 2px 0 0;font-size:12px}
.tree ul{list-style:none;margin:0;padding-left:18px;border-left:2px solid #d5dbe3}
.tree>ul{padding-left:0;border-left:none}
.tree li{margin:6px 0;position:relative}
.tree ul ul>li::before{content:"";position:absolute;left:-18px;top:14px;width:14px;
 border-top:2px solid #d5dbe3}
.pnode{overflow-wrap:anywhere;border:1px solid var(--line);border-radius:6px;padding:4px 8px;
 background:#fbfcfd}
.pnode.hl{border-color:#9cb8db;background:#f3f8fe}
.pname{font-weight:600}.pid{color:var(--muted);font-size:12px}
.role{font-size:11.5px;border-radius:4px;padding:0 5px;margin-left:4px;background:#e9ecf1}
.role-injector{background:#fde2e1;color:#8a1c1c}.role-injected,.role-foreign{background:#fff0d6;
 color:#7a4b00}
pre.cmd{margin:4px 0 2px;padding:4px 6px;background:#f1f3f6;border-radius:4px;white-space:pre-wrap;
 word-break:break-all;max-height:7.5em;overflow:auto}
.note{font-size:12px;color:#4b5563}
.bar{height:5px;background:#eef0f3;border-radius:3px;margin-top:3px;min-width:80px}
.bar i{display:block;height:5px;background:#e5383b;border-radius:3px}
.kind{display:inline-block;font-size:11.5px;border-radius:4px;padding:0 5px;color:#fff}
.k-memory{background:#e8871e}.k-code{background:#8e44ad}.k-network{background:#2471a3}
.k-process{background:#7f8c8d}
tr.evidence td{background:#fff6f5}
a.evid{text-decoration:none}a.evid:hover{text-decoration:underline}
ul.detectors{margin:0;padding-left:18px}ul.detectors li{margin-bottom:6px}
.evid{font-family:ui-monospace,monospace;font-size:12px;color:#a4161a;font-weight:600}
.prov{font-family:ui-monospace,monospace;font-size:12px;border-bottom:1px dotted #999}
.hdr-bad{background:#a4161a;color:#fff;border-radius:4px;padding:0 5px;font-weight:600}
.kv th{width:1%;white-space:nowrap}
.sources li{margin-bottom:6px;word-break:break-all}
.plot{min-height:120px}
details summary{cursor:pointer;color:var(--accent);margin:8px 0 4px}
.timeline td{font-size:12.5px}.timeline td:nth-child(3){width:42%}
.timeline td:nth-child(5){word-break:break-all;max-width:280px}
.explain code{overflow-wrap:anywhere}.explain td:first-child{width:46%}
.list{table-layout:fixed}.list th:nth-child(1){width:76px}.list th:nth-child(2){width:92px}
.list th:nth-child(3){width:28%}.list td{word-break:break-word}
.list .what{color:#4b5563;font-size:12px}.list .by{color:var(--muted)}
.empty{padding:40px;text-align:center;color:var(--muted)}
.help{font-size:12px}
"""

# Sorting, selection and lazy plots. No string from the data is ever turned into markup here.
_JS = """
(function () {
  "use strict";
  document.documentElement.classList.add("js");
  var list = document.getElementById("alert-list");
  if (!list) { return; }
  var body = list.tBodies[0];
  var host = null, figure = null, current = null;
  function rows() { return Array.prototype.slice.call(body.rows); }
  function apply(idx) {
    // one bokeh plot for the whole page: swap the shown alert's columns into it
    var data = document.getElementById("plot-data-" + idx);
    if (!data || !figure) { return; }
    var d = JSON.parse(data.textContent), doc = figure.document;
    var events = doc.get_model_by_name("events"), lines = doc.get_model_by_name("lifecycles");
    events.data = {t: [], kind: [], summary: [], signal: [], prov: [], colour: [], line: [],
                   size: []};
    lines.data = {xs: [], ys: []};
    doc.get_model_by_name("lanes").factors = d.lanes;
    doc.get_model_by_name("time").setv({start: d.start, end: d.end, reset_start: d.reset_start,
                                        reset_end: d.reset_end});
    events.data = d.events;
    lines.data = d.lifecycles;
    figure.title.text = d.title;
    figure.height = d.height;
  }
  function draw(idx) {
    var slot = document.getElementById("plot-" + idx);
    var spec = document.getElementById("plot-figure");
    if (!slot || !spec || !window.Bokeh) { return; }
    if (host === null) {
      host = document.createElement("div");
      host.id = "plot-host";
      slot.appendChild(host);
      window.Bokeh.embed.embed_item(JSON.parse(spec.textContent), "plot-host").then(function () {
        var docs = window.Bokeh.documents;
        figure = docs[docs.length - 1].get_model_by_name("timeline");
        apply(current);
      });
      return;
    }
    slot.appendChild(host);
    apply(idx);
  }
  function show(idx, scroll) {
    var sections = document.querySelectorAll("section.alert");
    for (var i = 0; i < sections.length; i++) {
      sections[i].classList.toggle("shown", sections[i].getAttribute("data-idx") === idx);
    }
    rows().forEach(function (r) {
      var on = r.getAttribute("data-idx") === idx;
      r.classList.toggle("sel", on);
      if (on && scroll) { r.scrollIntoView({block: "nearest"}); }
    });
    current = idx;
    draw(idx);
  }
  function fromHash() {
    var m = /^#a(\\d+)$/.exec(location.hash);
    return m ? m[1] : null;
  }
  body.addEventListener("click", function (ev) {
    var tr = ev.target.closest("tr");
    if (!tr) { return; }
    ev.preventDefault();
    history.replaceState(null, "", "#a" + tr.getAttribute("data-idx"));
    show(tr.getAttribute("data-idx"), false);
  });
  body.addEventListener("keydown", function (ev) {
    var tr = ev.target.closest("tr");
    if (ev.key !== "Enter" || !tr) { return; }
    history.replaceState(null, "", "#a" + tr.getAttribute("data-idx"));
    show(tr.getAttribute("data-idx"), false);
  });
  document.addEventListener("keydown", function (ev) {
    if (ev.key !== "j" && ev.key !== "k" && ev.key !== "ArrowDown" && ev.key !== "ArrowUp") {
      return;
    }
    var rs = rows(), cur = rs.findIndex(function (r) { return r.classList.contains("sel"); });
    var next = (ev.key === "j" || ev.key === "ArrowDown") ? cur + 1 : cur - 1;
    if (next < 0 || next >= rs.length) { return; }
    ev.preventDefault();
    var idx = rs[next].getAttribute("data-idx");
    history.replaceState(null, "", "#a" + idx);
    show(idx, true);
  });
  var heads = list.tHead.querySelectorAll("th[data-key]");
  Array.prototype.forEach.call(heads, function (th) {
    th.addEventListener("click", function () {
      var key = th.getAttribute("data-key");
      var dir = th.getAttribute("aria-sort") === "descending" ? "ascending" : "descending";
      Array.prototype.forEach.call(heads, function (o) { o.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", dir);
      var sign = dir === "ascending" ? 1 : -1;
      var sorted = rows().sort(function (a, b) {
        var x = a.getAttribute("data-" + key), y = b.getAttribute("data-" + key);
        var c = key === "host" ? x.localeCompare(y) : Number(x) - Number(y);
        return sign * c || Number(a.getAttribute("data-idx")) - Number(b.getAttribute("data-idx"));
      });
      sorted.forEach(function (r) { body.appendChild(r); });
    });
  });
  window.addEventListener("hashchange", function () {
    var idx = fromHash();
    if (idx !== null) { show(idx, true); }
  });
  var first = body.rows.length ? body.rows[0].getAttribute("data-idx") : null;
  var start = fromHash() || first;
  if (start !== null) { show(start, true); }
})();
"""


def _csp_hash(script: str) -> str:
    digest = hashlib.sha256(script.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode() + "'"


def render_html(alerts: Sequence[Alert], *, title: str | None = None) -> str:
    """The whole report as one string (see the module docstring for what it guarantees)."""
    alerts = sort_alerts(alerts)
    try:
        _bokeh()
        plots = True
    except DependencyError:
        plots = False

    scripts: list[str] = []
    data_blocks: list[str] = []
    if plots and alerts:
        from bokeh.core.types import ID
        from bokeh.embed import json_item
        from bokeh.resources import Resources

        bokeh_js = Resources(mode="inline", components=["bokeh"]).js_raw[0]
        scripts.append(bokeh_js + '\nBokeh.set_log_level("warn");\n')
        figure = _figure(plot_data(alerts[0]))
        data_blocks.append(
            '<script type="application/json" id="plot-figure">'
            f"{_script_json(json_item(figure, target=ID('plot-host')))}</script>"
        )
        for i, a in enumerate(alerts):
            data_blocks.append(
                f'<script type="application/json" id="plot-data-{i}">'
                f"{_script_json(plot_data(a))}</script>"
            )
    scripts.append(_JS)
    csp = (
        "default-src 'none'; img-src data: blob:; font-src data:; style-src 'unsafe-inline'; "
        f"script-src {' '.join(_csp_hash(s) for s in scripts)}; connect-src 'none'; "
        "form-action 'none'; base-uri 'none'"
    )

    by_sev: dict[int, int] = {}
    for a in alerts:
        by_sev[a.severity_id] = by_sev.get(a.severity_id, 0) + 1
    counts = ", ".join(
        f"{n} {SEVERITY_NAMES.get(s, '?').lower()}" for s, n in sorted(by_sev.items(), reverse=True)
    )
    hosts = len({a.hostname for a in alerts})
    from unbacked import __version__

    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    page_title = title or "unbacked incident report"
    if alerts:
        sections = [_alert_section(i, a, plots) for i, a in enumerate(alerts)]
        body = (
            f'<main><div class="listpane">{_alert_list(alerts)}'
            '<p class="help muted" style="padding:0 8px">click a column to sort · j/k or ↑/↓ '
            "to move · hover the plot for details, wheel to zoom time</p></div>"
            f'<div class="detail">{"".join(sections)}</div></main>'
        )
    else:
        body = '<div class="empty">no alerts: nothing in the input reached the threshold</div>'
    script_tags = "".join(f"<script>{s}</script>" for s in scripts)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{h(csp)}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="unbacked {h(__version__)}">
<title>{h(page_title)}</title><style>{_CSS}</style></head>
<body><header class="top"><h1>{h(page_title)}</h1>
<span>{len(alerts)} alert{"" if len(alerts) == 1 else "s"}{": " + h(counts) if counts else ""}
 on {hosts} host{"" if hosts == 1 else "s"}</span>
<span class="muted">generated {h(now)} by unbacked {h(__version__)} · offline, no network</span>
</header>
<noscript><p style="padding:0 18px">Scripts are off: every alert is shown below, without plots.
</p></noscript>
{body}
{"".join(data_blocks)}
{script_tags}
</body></html>
"""


def write_html(alerts: Sequence[Alert], path: str | Path, *, title: str | None = None) -> Path:
    """Write the offline report to ``path`` (parents created); returns the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(alerts, title=title), encoding="utf-8")
    return out


class HtmlRenderer(Renderer):
    """The offline HTML report as a renderer: one self-contained file (``write``); rendered to
    a stream it is the same page as text. ``title`` is the page's title (default: unbacked
    incident report)."""

    name = "html"
    description = (
        "One self-contained offline HTML incident report (timelines with the [report] extra)."
    )
    to_path = True
    suffix = ".html"

    def __init__(self, *, title: str | None = None) -> None:
        self.title = title

    def render(self, alerts: Sequence[Alert], stream: IO[str]) -> None:
        stream.write(render_html(alerts, title=self.title))

    def write(self, alerts: Sequence[Alert], path: str | Path) -> Path:
        return write_html(alerts, path, title=self.title)

    @staticmethod
    def figure(alert: Alert, *, height: int | None = None) -> Any:
        """The alert's timeline as the report's zoomable bokeh figure (``Alerts.plot``)."""
        return timeline_figure(alert, height=height)
