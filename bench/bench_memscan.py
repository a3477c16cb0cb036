"""Memory-scanner throughput on generated minidumps of 1 GiB and more, with peak RSS.

    python bench/bench_memscan.py [--gib 1] [--keep DIR]

Two dumps are generated in a temporary directory with the project's fixture writer:

* ``exec``: every byte is committed private executable memory filled with code-like bytes
  (the worst case: all of it is read, histogrammed and searched for headers and shellcode), with
  four reflective PEs planted in it;
* ``mixed``: 10 % executable code, 90 % read-write data written sparsely (holes), as in a real
  process dump where most memory is heap and mapped files.

Each scan runs in a fresh interpreter so its peak RSS (``ru_maxrss``) is its own. Throughput is
dump bytes per wall-clock second; ``scanned`` is the bytes the analysis actually read.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.memscan.mdwriter import (  # noqa: E402
    MEM_PRIVATE,
    PAGE_EXECUTE_READ,
    PAGE_EXECUTE_READWRITE,
    PAGE_READWRITE,
    Mem,
    Minidump,
    build_pe,
)

REGION = 4 << 20
_CODE = (build_pe()[0x1000:0x2000] + os.urandom(0x1000)) * (REGION // 0x2000)


def _code_fill(offset: int, length: int) -> bytes:
    start = offset % REGION
    return (_CODE[start:] + _CODE)[:length]


def make_dump(path: Path, total: int, exec_share: float) -> int:
    md = Minidump(pid=777)
    md.modules = [("C:\\bench\\bench.exe", 0x140000000, 0x10000)]
    n = total // REGION
    n_exec = max(1, int(n * exec_share))
    pe = build_pe()
    base = 0x10000000
    for i in range(n):
        if i < n_exec:
            prot = PAGE_EXECUTE_READWRITE if i % 2 else PAGE_EXECUTE_READ
            if i % (max(1, n_exec // 4)) == 0:
                data = pe + _code_fill(0, REGION - len(pe))
                md.memory.append(Mem(base, REGION, prot, MEM_PRIVATE, data))
            else:
                md.memory.append(Mem(base, REGION, prot, MEM_PRIVATE, fill=_code_fill))
        else:
            md.memory.append(Mem(base, REGION, PAGE_READWRITE, MEM_PRIVATE))  # sparse zeros
        base += REGION + 0x10000
    with open(path, "wb") as fh:
        md.write(fh)
    return path.stat().st_size


_CHILD = """
import json, resource, sys, time
t0 = time.perf_counter()
from unbacked.memscan import scan_minidump
r = scan_minidump(sys.argv[1])
dt = time.perf_counter() - t0
print(json.dumps({"seconds": dt, "findings": len(r.findings),
                  "pe": sum(1 for f in r.findings if f.header == "pe"),
                  "scanned": r.stats.bytes_scanned,
                  "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def run_scan(path: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run([sys.executable, "-c", _CHILD, str(path)], capture_output=True,
                         text=True, check=True, env=env)  # fmt: skip
    return dict(json.loads(out.stdout))


def machine() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, Linux {platform.release()}, "
            f"Python {platform.python_version()}")  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gib", type=float, default=1.0)
    ap.add_argument("--keep", type=Path)
    args = ap.parse_args()
    total = int(args.gib * 2**30)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        where = args.keep or Path(tmp)
        for name, share in (("exec", 1.0), ("mixed", 0.1)):
            path = where / f"bench-{name}.dmp"
            t0 = time.perf_counter()
            size = make_dump(path, total, share)
            gen = time.perf_counter() - t0
            res = run_scan(path)
            mib = size / 2**20
            rows.append({
                "dump": name, "size_mib": round(mib), "generate_s": round(gen, 1),
                "scan_s": round(res["seconds"], 2), "mib_per_s": round(mib / res["seconds"]),
                "scanned_mib": round(res["scanned"] / 2**20),
                "scanned_mib_per_s": round(res["scanned"] / 2**20 / res["seconds"]),
                "findings": res["findings"], "pe_found": res["pe"],
                "peak_rss_mib": round(res["maxrss_kib"] / 1024),
            })  # fmt: skip
            if not args.keep:
                path.unlink()
    print(f"machine: {machine()}")
    for r in rows:
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
