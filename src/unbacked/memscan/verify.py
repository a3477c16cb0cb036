"""Verify an alert against memory: is the alert's region still there, unbacked and executable?

The live sensor and ``hunt`` on a live host call ``verify_regions`` with the alert's process and
regions; the result goes into ``unmapped.unbacked.verification``. Only the alert's regions are
scanned (a few pages to a few MiB), so verification costs milliseconds, not a full scan.

``confirmed``: at least one of the alert's ranges overlaps memory the scanner reports now
(executable, unbacked, with its indicators as evidence). ``not_confirmed``: the process is
there but nothing suspicious overlaps the ranges (freed, re-protected, or a JIT engine's).
``process_gone``: the pid no longer exists, or belongs to another process (its start time
differs from the alert's).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from unbacked.memscan.analyze import Analyzer, Options
from unbacked.memscan.live import LinuxProcessSpace, ProcessGone
from unbacked.memscan.model import Verification, VerificationStatus

RegionLike = tuple[int, int] | Mapping[str, Any]


def _as_range(r: RegionLike) -> tuple[int, int]:
    """(base, size) from a tuple or an alert region dict (``base`` may be ``"0x..."``)."""
    if isinstance(r, Mapping):
        base, size = r["base"], r.get("size", 1)
        base = int(base, 0) if isinstance(base, str) else int(base)
        return base, max(1, int(size))
    base, size = r
    return int(base), max(1, int(size))


def verify_regions(
    pid: int,
    regions: Iterable[RegionLike],
    *,
    start_time_ns: int | None = None,
    options: Options | None = None,
) -> Verification:
    """Scan just ``regions`` of process ``pid`` now and say whether memory confirms the alert.

    ``start_time_ns`` (from the alert's process uid ``host:pid:start-ns``) guards against pid
    reuse: a different start time means the alerted process is gone.
    """
    ranges = [_as_range(r) for r in regions]
    now = time.time_ns()

    def gone(why: str) -> Verification:
        return Verification(VerificationStatus.PROCESS_GONE, pid, now, (why,))

    try:
        with LinuxProcessSpace(pid) as space:
            if (
                start_time_ns is not None
                and space.process.start_time_ns is not None
                and abs(space.process.start_time_ns - start_time_ns) > 1_000_000_000
            ):
                return gone(f"pid {pid} now belongs to another process (start time differs)")
            result = Analyzer(options).run(space, only=ranges)
            mapped = [
                r for r in space.regions() if any(r.base < b + s and b < r.end for b, s in ranges)
            ]
            if not space.alive():
                return gone(f"process {pid} exited during verification")
    except ProcessGone as exc:
        return gone(exc.message)
    if result.findings:
        evidence = tuple(
            f"0x{f.base:x}+0x{f.size:x} {f.protection} {f.backing}: "
            + "; ".join(i.evidence for i in f.indicators)
            for f in result.findings
        )
        return Verification(
            VerificationStatus.CONFIRMED, pid, now, evidence, tuple(result.findings)
        )
    if mapped:
        evidence = tuple(
            f"0x{r.base:x}+0x{r.size:x} is now {r.protection} {r.backing}"
            + (f" ({r.path})" if r.path else "")
            + " — nothing suspicious"
            for r in mapped
        )
    else:
        evidence = tuple(f"0x{b:x}+0x{s:x} is no longer mapped" for b, s in ranges)
    return Verification(VerificationStatus.NOT_CONFIRMED, pid, now, evidence)


def _start_ns(process_uid: str | None) -> int | None:
    """Start time from a ``host:pid:start-time-ns`` process uid (None for other uid forms)."""
    if not process_uid:
        return None
    tail = process_uid.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() and len(tail) > 12 else None


def verify_alert(alert: Any, *, options: Options | None = None) -> Verification:
    """Verify an ``Alert`` (``unbacked.model.alert``) or its OCSF dict against memory now.

    Takes the pid, the process uid's start time (pid-reuse guard) and the ``regions[]`` of the
    alert; attach the result with ``dataclasses.replace(alert, verification=v.to_dict())`` or
    ``doc["unmapped"]["unbacked"]["verification"] = v.to_dict()``.
    """
    if isinstance(alert, Mapping):
        proc = alert.get("process") or {}
        pid, uid = proc.get("pid"), proc.get("uid")
        regions = list(((alert.get("unmapped") or {}).get("unbacked") or {}).get("regions") or ())
    else:
        pid, uid = alert.process.pid, alert.process.uid
        regions = [(r.base, r.size or 1) for r in alert.regions]
    if pid is None:
        raise ValueError("the alert names no process id to verify")
    return verify_regions(int(pid), regions, start_time_ns=_start_ns(uid), options=options)


def verify_local_alerts(alerts: Iterable[Any], *, hostname: str | None = None) -> list[Any]:
    """Attach a verification to every alert about a process of *this* Linux host (the live
    sensor, or ``hunt`` over recordings of this machine); alerts from other hosts, without a
    pid or without regions are returned unchanged. Never raises for one alert: a failure to
    verify is recorded as the verification's evidence."""
    import dataclasses
    import os

    here = hostname or os.uname().nodename
    out = []
    for alert in alerts:
        if (
            alert.hostname != here
            or alert.process is None
            or alert.process.pid is None
            or not alert.regions
        ):
            out.append(alert)
            continue
        try:
            v = verify_alert(alert).to_dict()
        except (OSError, ValueError) as exc:  # unreadable /proc entries, odd regions
            v = {"status": "error", "evidence": [f"{type(exc).__name__}: {exc}"]}
        out.append(dataclasses.replace(alert, verification=v))
    return out
