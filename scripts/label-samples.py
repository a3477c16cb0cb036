#!/usr/bin/env python3
"""Ground-truth labels for unbacked's own corpora, derived from how each capture was made.

The captures are made by the project: ``scripts/record-samples.sh`` records each positive control
of ``tests/controls/`` and each program of the benign JIT suite under the live sensor, one
capture per run (``samples/linux/control-<spec>.jsonl``, ``benign-<program>-<n>.parquet``);
``tools/winlab/record.py`` records the document host in its benign and triggered builds
(``tests/fixtures/windows/{baseline,triggered}/<run>.jsonl``). Which process is the attack is
therefore known *by construction*: it is the process that ran the control program with the
recorded arguments, or the run built with ``WINLAB_MODE != 0``. This script finds those
process instances in each capture by their recorded program and command line (never by what
the detector says about them), checks that every capture holds what its recipe says it holds,
and writes one label file per capture in the shared label format (``shared/data/README.md``)
under ``samples/labels/<path of the capture>.json``, with ``file`` relative to the repository
root. Detection never reads these files.

    python scripts/label-samples.py            # (re)write samples/labels/
    python scripts/label-samples.py --check    # exit 1 when samples/labels/ is out of date
    unbacked eval samples/linux tests/fixtures/windows --labels samples/labels --data-root .

Run it again whenever the captures are re-recorded; ``tests/evaluate/test_own_corpora.py``
fails while the labels and the captures disagree.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LINUX_DIR = Path("samples/linux")
WINDOWS_DIR = Path("tests/fixtures/windows")
LABELS_DIR = Path("samples/labels")
GENERATOR = "scripts/label-samples.py"
#: The sensor keeps the first 127 bytes of argv (docs/sensor.md): longer command lines are cut,
#: and then only the visible arguments can be compared.
CMD_LINE_CAP = 127


@dataclass(frozen=True, slots=True)
class ControlSpec:
    """One positive control as ``record-samples.sh`` runs it: program, arguments, technique."""

    program: str  # name in tests/support/controls (C binary or Python script)
    args: tuple[str, ...]
    technique: str
    attack_ids: tuple[str, ...]


_REFLECTIVE = "reflective ELF loader of its own maps the benign payload.so from memory"
#: capture name -> control, exactly the table of scripts/record-samples.sh.
CONTROLS: dict[str, ControlSpec] = {
    "control-loader-wx": ControlSpec(
        "loader", ("wx",), _REFLECTIVE + " (RW pages flipped to R-X, W^X)", ("T1620",)
    ),
    "control-loader-rwx": ControlSpec(
        "loader", ("rwx",), _REFLECTIVE + " into one RWX anonymous mapping", ("T1620",)
    ),
    "control-loader-syscall": ControlSpec(
        "loader",
        ("syscall",),
        _REFLECTIVE + " with raw syscall instructions (no libc wrapper)",
        ("T1620", "T1106"),
    ),
    "control-loader-jit": ControlSpec(
        "loader",
        ("jit",),
        _REFLECTIVE + " mimicking a JIT's allocation pattern",
        ("T1620",),
    ),
    "control-loader-wx-connect": ControlSpec(
        "loader",
        ("wx", "--connect", "9"),
        _REFLECTIVE + " (W^X), then the payload connects to 127.0.0.1:9",
        ("T1620", "T1071"),
    ),
    "control-loader-py-wx": ControlSpec(
        "loader_py",
        ("wx",),
        "the reflective ELF loader driven from Python ctypes (W^X)",
        ("T1620", "T1059.006"),
    ),
    "control-shellcode-py-wx": ControlSpec(
        "shellcode_py",
        ("wx",),
        "ctypes shellcode page: written, flipped to R-X, called",
        ("T1055", "T1059.006"),
    ),
    "control-shellcode-py-rwx": ControlSpec(
        "shellcode_py",
        ("rwx",),
        "ctypes shellcode page in one RWX mapping, called",
        ("T1055", "T1059.006"),
    ),
    "control-memfd-exec": ControlSpec(
        "memfd_exec",
        (),
        "memfd_create + fexecve of an embedded ELF (fileless execution)",
        ("T1620", "T1027.011"),
    ),
    "control-memfd-dlopen": ControlSpec(
        "memfd_dlopen",
        (),
        "memfd_create + dlopen of the embedded payload shared object",
        ("T1620", "T1027.011"),
    ),
}

#: Benign JIT suite programs (tests/support/jit_suite.py) -> image basenames they run as.
BENIGN_PROGRAMS: dict[str, tuple[str, ...]] = {
    "python3": ("python3",),
    "node": ("node",),
    "java": ("java",),
    "luajit": ("luajit",),
    "pypy3": ("pypy3",),
    "chromium": ("chromium", "chrome"),
}

#: winlab WINLAB_MODE -> (technique, ATT&CK ids); mode 0 is the benign build.
WINLAB_MODES: dict[int, tuple[str, tuple[str, ...]]] = {
    1: (
        "document host's own reflective loader maps payload.dll (RW, sections written, relocated,"
        " imports resolved, code flipped to R-X), starts a thread at its export that connects to"
        " 127.0.0.1:4444",
        ("T1620", "T1055", "T1071"),
    ),
    2: (
        "shellcode page written, flipped to R-X, thread started in it, connect to 127.0.0.1:4444",
        ("T1055", "T1071"),
    ),
    3: (
        "shellcode in one PAGE_EXECUTE_READWRITE allocation (no flip), thread started in it,"
        " connect to 127.0.0.1:4444",
        ("T1055", "T1071"),
    ),
}


# -- reading captures --------------------------------------------------------------------------


@dataclass(slots=True)
class Proc:
    """What a capture shows of one process instance (``process_uid``)."""

    uid: str
    host: str | None
    pid: int | None
    images: list[str]
    cmd_lines: list[str]
    n_events: int
    first: dict[str, Any]  # the instance's first event (by time, then line)


def _read(path: Path) -> tuple[list[dict[str, Any]], int, int]:
    """Rows of a capture (as Python dicts, the captures are small), records, records skipped."""
    sys.path.insert(0, str(ROOT / "src"))
    from unbacked.model.rows import to_rows
    from unbacked.runreport import RunReport
    from unbacked.sources import read_events

    report = RunReport()
    table = read_events([str(path)], report)
    cols = [
        "time",
        "kind",
        "activity",
        "event_code",
        "host",
        "process_uid",
        "pid",
        "image",
        "cmd_line",
        "parent_uid",
        "target_uid",
        "src_format",
        "src_record",
        "src_line",
    ]
    # times as microsecond datetimes (no pandas needed) with the nanoseconds beside them
    rows = to_rows(table.select(cols), keep_ns=["time"])
    skipped = int(report.to_dict()["skipped"])
    return rows, report.records, skipped


def _processes(rows: list[dict[str, Any]]) -> dict[str, Proc]:
    out: dict[str, Proc] = {}
    for r in sorted(rows, key=lambda r: (r["time_ns"], r["src_line"] or 0)):
        uid = r["process_uid"]
        if not uid:
            continue
        p = out.get(uid)
        if p is None:
            p = out[uid] = Proc(uid, r["host"], r["pid"], [], [], 0, r)
        p.n_events += 1
        if r["image"] and r["image"] not in p.images:
            p.images.append(r["image"])
        if r["cmd_line"] and r["cmd_line"] not in p.cmd_lines:
            p.cmd_lines.append(r["cmd_line"])
    return out


def _instances(rows: Iterable[dict[str, Any]]) -> int:
    """Distinct process instances referenced in any process field (the shared convention)."""
    uids = set()
    for r in rows:
        for k in ("process_uid", "parent_uid", "target_uid"):
            if r[k]:
                uids.add(r[k])
    return len(uids)


def _basename(path: str) -> str:
    return path.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


def _utc(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _evidence(p: Proc, what: str) -> dict[str, Any]:
    ev = p.first
    return {
        "event_id": ev["event_code"],
        "channel": ev["src_format"],
        "record_id": ev["src_record"],
        "file_line": ev["src_line"],
        "utc_time": _utc(ev["time"]),
        "time_created": None,
        "fields": {
            "kind": ev["kind"],
            "activity": ev["activity"],
            "image": ev["image"],
            "cmd_line": ev["cmd_line"],
        },
        "what": what,
        "n_matching_events": p.n_events,
    }


def _header(
    path: Path, fmt: str, scope: str, rows: list[dict[str, Any]], records: int, skipped: int
) -> dict[str, Any]:
    hosts: dict[str, int] = {}
    for r in rows:
        hosts[r["host"] or ""] = hosts.get(r["host"] or "", 0) + 1
    times = [r["time"] for r in rows]
    return {
        "file": path.as_posix(),
        "format": fmt,
        "scope": scope,
        "dataset_metadata": None,
        "generator": GENERATOR,
        "events": records,
        "parse_errors": skipped,
        "hosts": hosts,
        "time_range_sysmon_utc": None,
        "time_range_record_time": [_utc(min(times)), _utc(max(times))] if times else None,
        "process_instances": _instances(rows),
    }


def _finish(label: dict[str, Any], malicious: list[dict[str, Any]], rationale: str) -> None:
    label["malicious_count"] = len(malicious)
    label["malicious"] = malicious
    label["possible"] = []
    label["other_malicious_not_injection"] = []
    label["must_not_label"] = []
    label["noise_stats"] = {}
    label["rationale"] = rationale


# -- Linux sensor captures ---------------------------------------------------------------------


def _control_programs() -> dict[str, str]:
    """Control name -> the program file name it runs as (tests/support/controls.py)."""
    sys.path.insert(0, str(ROOT))
    from tests.support.controls import _C_BUILDS, PY_CONTROLS

    names = {name: name for name in _C_BUILDS}
    names.update(PY_CONTROLS)
    return names


def _is_payload(arg: str) -> bool:
    """The payload path ``loader_py`` gets first (possibly cut by the sensor's argv cap)."""
    base = _basename(arg)
    return "/" in arg and bool(base) and "payload.so".startswith(base)


def _runs_control(p: Proc, program_file: str, args: tuple[str, ...]) -> bool:
    """The instance executed the control's program with the recorded arguments."""
    for cmd in p.cmd_lines:
        argv = cmd.split()
        for i, a in enumerate(argv):
            if _basename(a) == program_file:
                rest = tuple(x for x in argv[i + 1 :] if not _is_payload(x))
                if rest == args or (len(cmd) >= CMD_LINE_CAP and args[: len(rest)] == rest):
                    return True
    return any(_basename(img) == program_file for img in p.images) and not args


def label_linux(path: Path) -> dict[str, Any]:
    """Labels of one ``samples/linux`` capture."""
    rows, records, skipped = _read(ROOT / path)
    procs = _processes(rows)
    name = path.name.split(".", 1)[0]
    programs = _control_programs()
    any_control = {
        uid
        for uid, p in procs.items()
        for prog in programs.values()
        if any(_basename(i) == prog for i in p.images)
        or any(_basename(a) == prog for c in p.cmd_lines for a in c.split())
    }
    if name.startswith("control-"):
        spec = CONTROLS.get(name)
        if spec is None:
            raise SystemExit(f"{path}: no recipe for control capture {name!r} (update CONTROLS)")
        prog = programs[spec.program]
        hits = [p for p in procs.values() if _runs_control(p, prog, spec.args)]
        if not hits:
            raise SystemExit(f"{path}: no process ran {prog} {' '.join(spec.args)}")
        stray = any_control - {p.uid for p in hits}
        if stray:
            raise SystemExit(f"{path}: other control processes in the capture: {sorted(stray)}")
        label = _header(path, "unbacked-sensor", "attack", rows, records, skipped)
        malicious = [
            {
                "role": "self-injected",
                "host": p.host,
                "process_guid": p.uid,
                "pid": p.pid,
                "image": p.images[0] if p.images else None,
                "technique": spec.technique,
                "attack_ids": list(spec.attack_ids),
                "disk_backed": False,
                "confidence": "confirmed",
                "evidence": [
                    _evidence(
                        p,
                        f"first event of the process that ran the positive control "
                        f"{spec.program} {' '.join(spec.args)}".rstrip(),
                    )
                ],
                "n_events_referencing_process": p.n_events,
                "notes": "positive control by construction (scripts/record-samples.sh); its "
                "commands: " + " | ".join(c[:200] for c in p.cmd_lines),
            }
            for p in hits
        ]
        _finish(
            label,
            malicious,
            f"Recorded by scripts/record-samples.sh running the positive control "
            f"{' '.join((spec.program, *spec.args))} under `unbacked record`; the instance(s) that "
            "ran it are the attack, every other process of the capture (the recording shell) "
            "is benign.",
        )
        return label
    m = re.fullmatch(r"benign-(?P<prog>[a-z0-9]+)-\d+", name)
    if m is None or m["prog"] not in BENIGN_PROGRAMS:
        raise SystemExit(f"{path}: unknown capture name {name!r}")
    if any_control:
        raise SystemExit(f"{path}: benign capture holds control processes {sorted(any_control)}")
    stems = BENIGN_PROGRAMS[m["prog"]]
    if not any(_basename(i).startswith(stems) for p in procs.values() for i in p.images):
        raise SystemExit(f"{path}: no process of {m['prog']} in the benign capture")
    label = _header(path, "unbacked-sensor", "benign (JIT suite)", rows, records, skipped)
    _finish(
        label,
        [],
        f"Benign JIT workload of {m['prog']} (tests/support/jit_suite.py) recorded by "
        "scripts/record-samples.sh; no control ran in it, nothing here is injection.",
    )
    return label


# -- Windows winlab fixtures -------------------------------------------------------------------


def _winlab_runs() -> list[Any]:
    sys.path.insert(0, str(ROOT / "tools" / "winlab"))
    import record  # tools/winlab/record.py: the run table the fixtures were recorded from

    return list(record.RUNS)


def label_windows(run: Any) -> dict[str, Any]:
    """Labels of one winlab run (``tools/winlab/record.py`` RUNS entry)."""
    path = WINDOWS_DIR / run.group / f"{run.name}.jsonl"
    rows, records, skipped = _read(ROOT / path)
    procs = _processes(rows)
    hosts = [p for p in procs.values() if p.pid == run.pid]
    if not hosts or not any(_basename(i).lower() == "dochost.exe" for p in hosts for i in p.images):
        raise SystemExit(f"{path}: no dochost.exe with pid {run.pid}")
    scope = "benign (document host baseline run)" if run.mode == 0 else "attack"
    label = _header(path, "etwti-json (winlab)", scope, rows, records, skipped)
    malicious = []
    if run.mode:
        technique, attack = WINLAB_MODES[run.mode]
        malicious = [
            {
                "role": "self-injected",
                "host": p.host,
                "process_guid": p.uid,
                "pid": p.pid,
                "image": p.images[0],
                "technique": technique,
                "attack_ids": list(attack),
                "disk_backed": False,
                "confidence": "confirmed",
                "evidence": [
                    _evidence(p, f"start of dochost.exe built with WINLAB_MODE={run.mode}")
                ],
                "n_events_referencing_process": p.n_events,
                "notes": "triggered build by construction (tools/winlab/record.py RUNS)",
            }
            for p in hosts
        ]
    _finish(
        label,
        malicious,
        f"winlab run {run.name!r}: dochost.exe built with WINLAB_MODE={run.mode}, "
        f"WINLAB_SEED={run.seed}, pid {run.pid} (tools/winlab/record.py); mode 0 is the benign "
        "document host, modes 1-3 add the loader.",
    )
    return label


# -- driver ------------------------------------------------------------------------------------


def generate() -> dict[Path, dict[str, Any]]:
    """Label path (relative to the repository) -> label, for every capture."""
    out: dict[Path, dict[str, Any]] = {}
    for cap in sorted((ROOT / LINUX_DIR).glob("*")):
        if cap.suffix not in (".jsonl", ".parquet"):
            continue
        rel = cap.relative_to(ROOT)
        out[LABELS_DIR / rel.with_suffix(".json")] = label_linux(rel)
    for run in _winlab_runs():
        lab = label_windows(run)
        out[LABELS_DIR / Path(lab["file"]).with_suffix(".json")] = lab
    return out


def render(label: dict[str, Any]) -> str:
    return json.dumps(label, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument(
        "--check", action="store_true", help="compare with samples/labels, write nothing"
    )
    args = ap.parse_args(argv)
    labels = generate()
    stale = []
    for rel, lab in labels.items():
        dest = ROOT / rel
        text = render(lab)
        if args.check:
            if not dest.exists() or dest.read_text(encoding="utf-8") != text:
                stale.append(str(rel))
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(text, encoding="utf-8")
    existing = {p.relative_to(ROOT) for p in (ROOT / LABELS_DIR).rglob("*.json")}
    orphans = sorted(str(p) for p in existing - set(labels))
    if args.check:
        if stale or orphans:
            print(
                "labels out of date (run scripts/label-samples.py):", *stale, *orphans, sep="\n  "
            )
            return 1
        print(f"{len(labels)} label files up to date")
        return 0
    for p in orphans:
        print(f"warning: label without capture: {p}", file=sys.stderr)
    n_mal = sum(lab["malicious_count"] for lab in labels.values())
    print(f"wrote {len(labels)} label files under {LABELS_DIR} ({n_mal} malicious instances)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
