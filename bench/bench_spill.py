"""Reading a lake and spilling it, stage by stage: a Parquet lake's strings materialized
against read as their dictionaries, and the embedded engine's `read_inputs` (read + spill)
followed by reading every host group back, each as a fresh process.

    python bench/bench_spill.py [--events 1e6] [--runs 3] [--work DIR] [--group-rows 250000]

The lake is `bench/bench_score.py`'s synthetic fleet (cached in ``--work``). Interleaved runs,
wall and CPU min / median / max (bench/_proc.py). The whole commands are in bench_score.py and
bench_ab.py; this one says where inside the reading stage the time goes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _proc import interleaved, loadavg, machine, print_runs, versions
from bench_score import _fleet

_READ = """
import sys
from unbacked.cli.main import keep_huge_pages_out_of_arrow
keep_huge_pages_out_of_arrow()  # as a command's process does, before pyarrow loads
import pyarrow.parquet as pq
from unbacked.model.schema import STRING_COLUMNS, conform
encoded = sys.argv[2] == "dictionaries"
for path in sorted(__import__("pathlib").Path(sys.argv[1]).rglob("*.parquet")):
    names = [f.name for f in pq.read_schema(path) if f.name in STRING_COLUMNS]
    pf = pq.ParquetFile(path, read_dictionary=names if encoded else None)
    for batch in pf.iter_batches(batch_size=65536):
        conform(batch, encoded=encoded)
"""

_SPILL = """
import sys
from unbacked.cli.main import keep_huge_pages_out_of_arrow
keep_huge_pages_out_of_arrow()  # as a command's process does, before pyarrow loads
from unbacked.engine.local import read_inputs
from unbacked.runreport import RunReport
with read_inputs([sys.argv[1]], RunReport()) as spill:
    if sys.argv[2] == "read back":
        for group in spill.groups(int(sys.argv[3])):
            pass
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=float, default=1e6)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--work", default="/tmp/unbacked-bench-score")
    ap.add_argument("--group-rows", type=int, default=250_000)
    args = ap.parse_args()
    lake, n = _fleet(Path(args.work), args.events)
    print(f"machine: {machine()}; {versions()}")
    print(f"lake: {lake} ({n:,} events); load average before: {loadavg()}")
    py = sys.executable
    commands = {
        "Parquet batches, strings materialized, conformed": [py, "-c", _READ, str(lake), "strings"],
        "Parquet batches, strings as dictionaries": [py, "-c", _READ, str(lake), "dictionaries"],
        "read_inputs (read + spill)": [py, "-c", _SPILL, str(lake), "spill"],
        "read_inputs + every host group read back": [
            *[py, "-c", _SPILL, str(lake), "read back", str(args.group_rows)]
        ],
    }
    print_runs(interleaved(commands, args.runs), "stage (fresh process)")
    print(f"load average after: {loadavg()}")


if __name__ == "__main__":
    main()
