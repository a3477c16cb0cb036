"""Ground-truth label files (the schema of ``shared/data/labels``, see its README).

Labels are for measuring only: nothing in detection reads them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unbacked.errors import InputError


def norm_guid(guid: str | None) -> str | None:
    if not guid:
        return None
    g = guid.strip().strip("{}").lower()
    return None if not g or set(g) <= {"0", "-"} else g


def norm_image(image: str | None) -> str | None:
    if not image:
        return None
    return image.replace("\\", "/").rsplit("/", 1)[-1].strip().lower() or None


@dataclass(frozen=True, slots=True)
class Instance:
    """A labelled process instance."""

    host: str | None
    guid: str | None
    pid: int | None
    image: str | None
    role: str = ""
    attack_ids: tuple[str, ...] = ()
    disk_backed: bool | None = None
    confidence: str | None = None
    technique: str = ""
    first_time: str | None = None

    @property
    def required(self) -> bool:
        """The issue's bar: confirmed and not disk-backed (payload children excluded)."""
        return self.confidence == "confirmed" and self.disk_backed is False

    def matches(
        self, uid: str | None, host: str | None, pid: int | None, image: str | None
    ) -> bool:
        if self.guid is not None and norm_guid(uid) == self.guid:
            return True
        if self.pid is None or pid is None or self.pid != pid:
            return False
        if self.host and host and self.host.lower() != host.lower():
            return False
        a, b = norm_image(self.image), norm_image(image)
        return a is None or b is None or a == b


@dataclass(slots=True)
class LabelFile:
    path: Path
    data_file: str  # relative to the data root
    scope: str
    events: int | None
    parse_errors: int | None
    process_instances: int
    malicious: list[Instance] = field(default_factory=list)
    possible: list[Instance] = field(default_factory=list)
    other: list[Instance] = field(default_factory=list)

    def known(self) -> Iterator[Instance]:
        """Every instance an alert may name without being false."""
        yield from self.malicious
        yield from self.possible
        yield from self.other


_REQUIRED_TOP = {"file": str, "malicious": list}
_REQUIRED_INST = ("role", "host", "pid", "image")


def _instance(d: dict[str, Any], where: str, problems: list[str], full: bool) -> Instance | None:
    if not isinstance(d, dict):
        problems.append(f"{where}: not an object")
        return None
    if full:
        missing = [k for k in _REQUIRED_INST if k not in d]
        if missing:
            problems.append(f"{where}: missing {', '.join(missing)}")
            return None
    pid = d.get("pid")
    if pid is not None and not isinstance(pid, int):
        try:
            pid = int(str(pid), 0)
        except ValueError:
            problems.append(f"{where}: pid {pid!r} is not a number")
            return None
    ev = d.get("evidence") or []
    times = sorted(
        str(e["utc_time"]) for e in ev if isinstance(e, dict) and e.get("utc_time") is not None
    )
    attack = d.get("attack_ids") or []
    if not isinstance(attack, list):
        problems.append(f"{where}: attack_ids is not a list")
        attack = []
    return Instance(
        host=d.get("host"),
        guid=norm_guid(d.get("process_guid")),
        pid=pid,
        image=d.get("image"),
        role=str(d.get("role") or ""),
        attack_ids=tuple(str(a) for a in attack),
        disk_backed=d.get("disk_backed"),
        confidence=d.get("confidence"),
        technique=str(d.get("technique") or ""),
        first_time=times[0] if times else None,
    )


def load_label(path: str | Path) -> LabelFile:
    """Read and validate one label file; ``InputError`` says everything that is wrong."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"label file is not readable JSON: {exc}", source=str(p)) from exc
    problems: list[str] = []
    if not isinstance(data, dict):
        raise InputError("label file is not a JSON object", source=str(p))
    for key, typ in _REQUIRED_TOP.items():
        if not isinstance(data.get(key), typ):
            problems.append(f"'{key}' missing or not a {typ.__name__}")
    lists = {}
    for key, full in (
        ("malicious", True),
        ("possible", False),
        ("other_malicious_not_injection", False),
    ):
        raw = data.get(key) or []
        if not isinstance(raw, list):
            problems.append(f"'{key}' is not a list")
            raw = []
        lists[key] = [
            inst
            for i, d in enumerate(raw)
            if (inst := _instance(d, f"{key}[{i}]", problems, full)) is not None
        ]
    count, listed = data.get("malicious_count"), data.get("malicious")
    if isinstance(count, int) and isinstance(listed, list) and count != len(listed):
        problems.append(f"malicious_count {count} != {len(listed)} listed")
    if problems:
        raise InputError(
            "invalid label file: " + "; ".join(problems),
            source=str(p),
            hint="see the label schema in shared/data/README.md",
        )
    return LabelFile(
        path=p,
        data_file=data["file"],
        scope=str(data.get("scope") or ""),
        events=data.get("events"),
        parse_errors=data.get("parse_errors"),
        process_instances=int(data.get("process_instances") or 0),
        malicious=lists["malicious"],
        possible=lists["possible"],
        other=lists["other_malicious_not_injection"],
    )


def load_labels(directory: str | Path) -> dict[str, LabelFile]:
    """Every label file under ``directory``, keyed by the data file it labels."""
    base = Path(directory)
    if not base.is_dir():
        raise InputError("labels directory not found", source=str(base))
    out = {}
    for p in sorted(base.rglob("*.json")):
        lab = load_label(p)
        out[lab.data_file] = lab
    return out
