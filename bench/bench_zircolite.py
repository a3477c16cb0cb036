"""A peer in the same run: Zircolite (Sigma rules over SQLite) and `unbacked hunt` on the same
files, whole processes, interleaved runs, and the ratio of their medians.

Zircolite is not a package on PyPI: it runs from a snapshot of its repository
(github.com/wagga40/Zircolite: `zircolite.py` and `rules/`), with the packages of its
`requirements.txt` installed (`pip install -r requirements.txt`). The script looks for the
snapshot in `--zircolite DIR`, `$ZIRCOLITE_DIR`, then under ../shared (a directory holding
`zircolite.py`); without one it says so and exits 0. Nothing of Zircolite is kept in this
repository.

    python bench/bench_zircolite.py [--zircolite DIR] [--runs 3] [FILE ...]
        [--ruleset rules/rules_windows_generic_high.json]

Default inputs: the OTRF LSASS campaign 01 JSON lines (extracted from its zip to a temporary
directory: Zircolite reads JSON lines with `--jsononly`, not zips) and the EVTX-ATTACK-SAMPLES
snapshot. The ratio is Zircolite's median wall (and CPU) time over unbacked's.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _proc import (
    EVTX_DIRS,
    LSASS_ZIP,
    REPO,
    fmt3,
    interleaved,
    loadavg,
    machine,
    unbacked_command,
    versions,
)
from bench_hunt import _extract_json


def find_zircolite(explicit: str | None) -> Path | None:
    cands = [explicit, os.environ.get("ZIRCOLITE_DIR")]
    for d in cands:
        if d and (Path(d) / "zircolite.py").is_file():
            return Path(d)
    shared = REPO.parent / "shared"
    if shared.is_dir():
        for path in sorted(shared.rglob("zircolite.py")):
            return path.parent
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--zircolite", help="directory of a Zircolite repository snapshot")
    ap.add_argument("--ruleset", default="rules/rules_windows_generic_high.json",
                    help="rule file, relative to the snapshot")  # fmt: skip
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("files", nargs="*")
    args = ap.parse_args()
    zdir = find_zircolite(args.zircolite)
    if zdir is None:
        print(
            "skipped: no Zircolite snapshot found. Needs a checkout of "
            "github.com/wagga40/Zircolite "
            "(zircolite.py and rules/) given as --zircolite DIR or $ZIRCOLITE_DIR (or anywhere "
            "under ../shared), and its requirements installed: pip install -r "
            "DIR/requirements.txt."
        )
        return 0
    # its start-up tells what is missing, and its help which flags this version has
    zhelp = subprocess.run([sys.executable, str(zdir / "zircolite.py"), "-h"], cwd=zdir,
                           capture_output=True, text=True, check=False)  # fmt: skip
    if zhelp.returncode != 0:
        last = (zhelp.stderr.strip().splitlines() or ["?"])[-1]
        print(f"skipped: Zircolite at {zdir} does not start ({last}); install its "
              f"requirements: pip install -r {zdir / 'requirements.txt'}")  # fmt: skip
        return 0
    json_flag = next((f for f in ("--json-input", "--jsononly") if f in zhelp.stdout), None)
    ruleset = zdir / args.ruleset
    if not ruleset.is_file():
        print(f"skipped: no ruleset {ruleset} in the snapshot")
        return 0
    exe, note = unbacked_command()
    print(f"machine: {machine()}; {versions()}; load average {loadavg()}")
    print(f"unbacked: {note}; Zircolite: {zdir} with {args.ruleset}")
    with tempfile.TemporaryDirectory(prefix="bench-zircolite-") as d:
        tmp = Path(d)
        inputs: list[tuple[str, list[str], bool]] = []
        if args.files:
            for f in args.files:
                inputs.append((Path(f).name, [f], not f.lower().endswith(".evtx")))
        else:
            if LSASS_ZIP.is_file():
                inputs.append(("lsass-json", [str(_extract_json(LSASS_ZIP, tmp))], True))
            dirs = [str(p) for p in EVTX_DIRS if p.exists()]
            if dirs:
                inputs.append(("evtx", dirs, False))
        for label, paths, is_json in inputs:
            zout = tmp / f"{label}.zircolite.json"
            zcmd = [sys.executable, str(zdir / "zircolite.py"), "--ruleset", str(ruleset),
                    "--outfile", str(zout)]  # fmt: skip
            if "--nolog" in zhelp.stdout:
                zcmd.append("--nolog")
            if is_json:
                if json_flag is None:
                    print(f"skipped {label}: this Zircolite takes no JSON-lines input")
                    continue
                zcmd.append(json_flag)
            for p in paths:
                zcmd += ["--events", p]
            ucmd = [*exe, "hunt", *paths, "-o", str(tmp / f"{label}.unbacked.json")]
            cwd = os.getcwd()
            os.chdir(zdir)  # Zircolite finds its config/ and templates/ relative to itself
            try:
                res = interleaved({"zircolite": zcmd, "unbacked hunt": ucmd}, args.runs)
            finally:
                os.chdir(cwd)
            z, u = res["zircolite"], res["unbacked hunt"]
            print(f"\n### {label}")
            print("| command | wall s (min / median / max) | CPU s (min / median / max) | exit |")
            print("|---|---:|---:|---|")
            for r in (z, u):
                print(f"| {r.name} | {fmt3(r.stat('wall'))} | {fmt3(r.stat('cpu'))} "
                      f"| {sorted(set(r.returncodes))} |")  # fmt: skip
            wall = z.stat("wall")[1] / u.stat("wall")[1]
            cpu = z.stat("cpu")[1] / u.stat("cpu")[1]
            print(f"unbacked is **{wall:.1f}x** faster (wall medians), {cpu:.1f}x (CPU medians)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
