"""Archive members: reading time against the number of members of one zip.

    python bench/bench_archive_members.py [--members 1000 4000 20000]

Each archive holds N one-line Sysmon JSON members (recognised and read) and, separately, N
one-line text members (sniffed and listed as not telemetry). Reading must be linear in N:
the archive is opened once and its members streamed from it, small JSON-lines members are
mapped together (one query per group, not per member).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
import zipfile
from pathlib import Path

from unbacked.runreport import RunReport
from unbacked.sources import read_events

LINE = (
    b'{"SourceName":"Microsoft-Windows-Sysmon","Channel":"Microsoft-Windows-Sysmon/Operational",'
    b'"Hostname":"H","TimeCreated":"2023-08-15T09:53:46.119Z","EventID":10,'
    b'"UtcTime":"2023-08-16 04:53:46.060","SourceProcessGUID":"{a}","SourceProcessId":"1",'
    b'"TargetProcessGUID":"{b}","TargetProcessId":"2","GrantedAccess":"0x1400",'
    b'"CallTrace":"ntdll.dll+9d4c4"}\n'
)


def _archive(path: Path, n: int, json_members: bool) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(n):
            if json_members:
                zf.writestr(f"{i:05d}.json", LINE)
            else:
                zf.writestr(f"{i:05d}.txt", b"x %d\n" % i)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, nargs="+", default=[1000, 4000, 20000])
    args = ap.parse_args()
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f}")  # fmt: skip
    print("| members | kind | size (KiB) | seconds | ms/member | events | unread |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.members:
            for json_members in (True, False):
                z = Path(tmp) / f"{n}-{json_members}.zip"
                _archive(z, n, json_members)
                report = RunReport()
                t0 = time.perf_counter()
                events = read_events([z], report).num_rows
                took = time.perf_counter() - t0
                kind = "Sysmon JSON" if json_members else "text"
                print(f"| {n:,} | {kind} | {z.stat().st_size // 1024:,} | {took:.2f} | "
                      f"{1000 * took / n:.2f} | {events:,} | {len(report.unread):,} |")  # fmt: skip


if __name__ == "__main__":
    main()
