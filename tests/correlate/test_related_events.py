"""Events related to each alerted process, for many subjects at once: the same rows, in the
same order, as filtering every event for each subject on its own."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from unbacked.correlate.incidents import _related_events


def _naive(events: pa.Table, subject: str) -> pa.Table:
    m = pc.or_(
        pc.or_(
            pc.fill_null(pc.equal(events["process_uid"], subject), False),
            pc.fill_null(pc.equal(events["target_uid"], subject), False),
        ),
        pc.fill_null(pc.equal(events["parent_uid"], subject), False),
    )
    return events.filter(m)


def test_many_subjects_same_rows_as_one_filter_each():
    rng = np.random.default_rng(12)
    n = 20_000
    uids = np.array([f"u{i}" for i in range(3_000)], dtype=object)

    def col(p_null: float) -> pa.Array:
        v = uids[rng.integers(0, len(uids), n)]
        return pa.array([None if rng.random() < p_null else x for x in v], pa.string())

    events = pa.table(
        {
            "process_uid": col(0.01),
            "target_uid": col(0.5),
            "parent_uid": col(0.7),
            "row": pa.array(np.arange(n)),
        }
    )
    subjects = [f"u{i}" for i in range(0, 3_000, 2)] + ["absent"]
    got = _related_events(events, subjects)
    assert "absent" not in got
    for s in subjects[:-1]:
        want = _naive(events, s)
        if want.num_rows:
            assert got[s]["row"].to_pylist() == want["row"].to_pylist(), s
        else:
            assert s not in got
