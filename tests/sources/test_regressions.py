"""Regressions found by the property tests, pinned as plain examples."""

from __future__ import annotations

from unbacked.runreport import RunReport
from unbacked.sources import InputFile
from unbacked.sources.ocsf import OcsfJsonSource

GOOD = (
    b'{"class_uid":1007,"activity_id":1,"category_uid":1,"type_uid":100701,'
    b'"time":1700000000000,"device":{"hostname":"ws1"},"process":{"pid":200,"name":"a.exe"}}'
)


def test_out_of_range_millisecond_time_is_one_skipped_record():
    # 9223372036855 ms overflows nanoseconds: that record is skipped, the next one is read
    bad = GOOD.replace(b"1700000000000", b"9223372036855.0")
    report = RunReport()
    tables = list(
        OcsfJsonSource().read(InputFile.from_bytes("h.jsonl", bad + b"\n" + GOOD), report)
    )
    rep = report.files["h.jsonl"]
    assert sum(t.num_rows for t in tables) == 1
    assert rep.records == rep.events + rep.ignored + sum(rep.skipped.values()) == 2
