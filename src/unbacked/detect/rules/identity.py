"""Program identity on Windows: an image that takes a known program's name is another program.

* ``UNB-W-007`` masquerading image: a Windows system program's name (``svchost.exe``,
  ``rundll32.exe``, ``powershell.exe``, ...) on an image outside the system directories, or a JIT
  engine's name (``node.exe``, ``java.exe``, ``chrome.exe``, ...) on an image in a temporary
  place. ``model.identity`` already made such an instance a program of its own (``NAME [PATH]``:
  no baseline and no JIT allowance of that name); this rule says so in the alert, with the
  image's hash and signature when the telemetry has them (Sysmon 1/7 ``Hashes``, Elastic
  ``process.hash``). The Linux twin is ``UNB-L-005``.

What is *not* foreign: a new hash of a program at its usual path (versions and hosts differ),
and images known by name only.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from unbacked.detect.base import DetectionContext, Rule, column_in, empty_signals, register_rule

_COLS = ["row", "host", "time", "process_uid", "program", "image", "image_hash", "image_signature"]


@register_rule
class ForeignWindowsImage(Rule):
    """A Windows executable takes a system program's or JIT engine's name from another place."""

    id = "UNB-W-007"
    title = "Executable takes a known program's name from another place"
    description = (
        "The process's image has the name of a Windows system program but lies outside the "
        "system directories, or has a JIT engine's name and runs from a temporary directory: it "
        "is a different program and gets no baseline and no JIT allowance of that name. "
        "Supporting evidence (T1036.005): weak alone, it explains why a JIT-like caller was not "
        "trusted."
    )
    severity = 2
    score = 30.0
    attack = ("T1036.005",)
    references = ("https://attack.mitre.org/techniques/T1036/005/",)
    kinds = ("memory", "process", "network", "module", "thread")
    requires = ()
    os = ("windows",)

    def evaluate(self, ctx: DetectionContext) -> pa.Table:
        from unbacked.model.identity import SEP, WIN_SYSTEM_PROGRAM_RE

        ev = ctx.events
        if ev.num_rows == 0:
            return empty_signals()
        prog = pc.fill_null(ev["program"], "")
        mask = pc.and_(
            column_in(ev["os"], ["windows"]),
            pc.match_substring(prog, SEP),
        )
        if not pc.any(mask).as_py():
            return empty_signals()
        sub = ev.filter(mask).select(_COLS)
        for c in ("image_hash", "image_signature"):  # plain strings for the aggregation
            sub = sub.set_column(sub.schema.get_field_index(c), c, sub[c].cast(pa.string()))
        # the instance's first event, with the hash/signature any of its events carries
        first = sub.group_by("process_uid", use_threads=False).aggregate(
            [("row", "min"), ("image_hash", "max"), ("image_signature", "max")]
        )
        first = first.take(pc.sort_indices(first["row_min"]))
        hit = ev.take(first["row_min"])
        image = pc.fill_null(hit["image"].cast(pa.string()), "?")
        name = pc.replace_substring_regex(pc.fill_null(hit["program"], ""), r" \[.*$", "")
        system = pc.match_substring_regex(name, WIN_SYSTEM_PROGRAM_RE)
        why = pc.if_else(
            system,
            pc.binary_join_element_wise(
                name, " is a Windows system program, which lives in the system directories", ""
            ),
            pc.binary_join_element_wise(
                name, " is a JIT engine's name, run from a temporary directory", ""
            ),
        )
        ident = pc.binary_join_element_wise(
            pc.fill_null(first["image_hash_max"], "hash unknown"),
            pc.fill_null(first["image_signature_max"], "signature unknown"),
            ", ",
        )
        msg = pc.binary_join_element_wise(
            "image ", image, " (", ident, ") takes the name ", name, "; ", why, ""
        )
        return self.signals(
            hit,
            subject=hit["process_uid"],
            feature="process.image",
            value=image,
            message=msg,
        )
