"""A detector: a rule (``unbacked.detect.base.Rule``) with its metadata as class attributes.

``evaluate`` gets the run's ``DetectionContext`` and returns signal rows, vectorized over the
events; ``Rule.signals`` builds them with the rule's metadata. It never learns: what is normal
for a program comes in with ``ctx.baseline`` (``ctx.discount_common`` lowers the score where the
program's peers commonly do the same).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pyarrow as pa
from unbacked.detect.base import DetectionContext, Rule, empty_signals

#: what counts as large
MIN_SIZE = 1 << 20


class LargeRwxAllocation(Rule):
    id = "EXA-001"
    title = "Large writable and executable allocation"
    description = (
        "A process allocated 1 MiB or more of memory that is writable and executable at once "
        "(Linux PROT_WRITE|PROT_EXEC): room for a whole reflectively loaded image."
    )
    severity = 3
    score = 55.0
    attack = ("T1620",)
    references = ("https://attack.mitre.org/techniques/T1620/",)
    kinds = ("memory",)
    requires = ("protection", "region_size")
    os: ClassVar[tuple[str, ...]] = ("linux",)

    @classmethod
    def doc(cls) -> str:
        return "https://example.org/unbacked-example-plugin#exa-001"

    def evaluate(self, ctx: DetectionContext) -> pa.Table:
        mem = ctx.select(kind="memory", activity=("allocate", "protect"))
        if mem.num_rows == 0:
            return empty_signals()
        hit = ctx.query_rows(
            mem,
            f"""SELECT row FROM ev
                WHERE os = 'linux' AND (protection & 6) = 6 AND (protection & 4) > 0
                  AND region_size >= {MIN_SIZE} AND process_uid IS NOT NULL
                ORDER BY row""",
        )
        if hit.num_rows == 0:
            return empty_signals()
        base = np.full(hit.num_rows, self.score)
        score, k, n = ctx.discount_common(hit, "example.large_rwx", ["yes"] * hit.num_rows, base)
        return self.signals(
            hit,
            subject=hit["process_uid"],
            score=score,
            feature="example.large_rwx",
            value=pa.array(["yes"] * hit.num_rows, pa.string()),
            message=f"{self.title} (1 MiB or more, RWX)",
            baseline_count=k,
            baseline_total=n,
        )
