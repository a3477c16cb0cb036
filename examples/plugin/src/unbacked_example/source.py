"""A source: a tiny CSV format of executable-memory allocations on Linux.

    #unbacked-example-csv v1
    time_ns,host,pid,image,activity,base,size,protection
    1704110400000000000,lab-1,4242,/opt/tool/loader,allocate,0x7f3a00000000,4194304,7

The contract (``unbacked.sources.base.Source``): ``sniff`` decides from the first bytes,
``read`` yields tables of exactly ``EVENT_SCHEMA`` (``conform`` builds them) and counts every
record in the run report: read (an event), or skipped with a reason. It never raises for a bad
record.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

import pyarrow as pa
from unbacked.model import conform
from unbacked.runreport import RunReport
from unbacked.sources.base import InputFile, Source

MAGIC = b"#unbacked-example-csv v1\n"
COLUMNS = ["time_ns", "host", "pid", "image", "activity", "base", "size", "protection"]
ACTIVITIES = {"allocate", "protect"}


class ExampleCsvSource(Source):
    name = "example-csv"
    description = "Example CSV of executable-memory allocations (unbacked-example-plugin)"
    examples = (
        MAGIC
        + b"time_ns,host,pid,image,activity,base,size,protection\n"
        + b"1704110400000000000,lab-1,4242,/opt/tool/loader,allocate,0x7f3a00000000,4194304,7\n"
        + b"1704110401000000000,lab-1,4242,/opt/tool/loader,allocate,0x7f3b00000000,4096,5\n",
    )

    @classmethod
    def sniff(cls, head: bytes, name: str) -> bool:
        return head.startswith(MAGIC)

    def read(self, inp: InputFile, report: RunReport) -> Iterator[pa.Table]:
        rep = report.file(inp.name, self.name)
        text = inp.read_bytes().decode("utf-8", errors="replace")
        lines = text.splitlines()[1:]  # the magic line
        rows = csv.reader(io.StringIO("\n".join(lines)))
        header = next(rows, None)
        if header != COLUMNS:
            rep.records += 1
            report.skip(inp.name, "missing or unknown header", detail=repr(header)[:200])
            return
        cols: dict[str, list] = {k: [] for k in (*COLUMNS, "line")}
        for lineno, row in enumerate(rows, 3):
            if not row:
                continue
            rep.records += 1
            try:
                values = self._parse(row)
            except ValueError as exc:
                report.skip(inp.name, "unreadable row", detail=str(exc)[:200], offset=lineno)
                continue
            for k, v in zip(COLUMNS, values, strict=True):
                cols[k].append(v)
            cols["line"].append(lineno)
        n = len(cols["line"])
        if not n:
            return
        rep.events += n
        yield conform(
            {
                "time": pa.array(cols["time_ns"], pa.int64()).cast(pa.timestamp("ns", tz="UTC")),
                "kind": ["memory"] * n,
                "activity": cols["activity"],
                "event_code": ["example:" + a for a in cols["activity"]],
                "os": ["linux"] * n,
                "host": cols["host"],
                "process_uid": [
                    f"{h}:{p}:0" for h, p in zip(cols["host"], cols["pid"], strict=True)
                ],
                "pid": cols["pid"],
                "image": cols["image"],
                "base_address": cols["base"],
                "region_size": cols["size"],
                "protection": cols["protection"],
                "src_format": [self.name] * n,
                "src_file": [inp.name] * n,
                "src_line": cols["line"],
            }
        )

    @staticmethod
    def _parse(row: list[str]) -> tuple:
        if len(row) != len(COLUMNS):
            raise ValueError(f"{len(row)} fields, expected {len(COLUMNS)}")
        time_ns, host, pid, image, activity, base, size, prot = row
        if activity not in ACTIVITIES:
            raise ValueError(f"unknown activity {activity!r}")
        values = (int(time_ns), int(pid), int(base, 0), int(size), int(prot))
        limits = (1 << 63, 1 << 63, 1 << 64, 1 << 64, 1 << 32)
        if not all(0 <= v < lim for v, lim in zip(values, limits, strict=True)):
            raise ValueError("a number out of range")
        t, p, b, sz, pr = values
        return t, host, p, image, activity, b, sz, pr
