"""The raw parse as a whole process: the least any Python consumer of the input must do.

    python bench/_raw.py jsonl FILE          orjson.loads of every line (a zip: every member,
                                             streamed out of the archive)
    python bench/_raw.py evtx FILE|DIR ...   every record of every .evtx with the `evtx`
                                             parser's records_json, and orjson.loads of each
    python bench/_raw.py evtx-bare ...       the same without the JSON decode

Prints the number of records.
"""

from __future__ import annotations

import os
import sys
import zipfile
from collections.abc import Iterator

import orjson


def _lines(path: str) -> Iterator[bytes]:
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            for name in zf.namelist():
                if name.startswith("__MACOSX") or name.endswith("/"):
                    continue
                with zf.open(name) as fh:
                    yield from fh
    else:
        with open(path, "rb") as fh:
            yield from fh


def _evtx_files(paths: list[str]) -> list[str]:
    out = []
    for p in paths:
        if os.path.isdir(p):
            for root, dirs, names in os.walk(p):
                dirs.sort()
                out += [os.path.join(root, n) for n in sorted(names) if n.lower().endswith(".evtx")]
        else:
            out.append(p)
    return out


def main(argv: list[str]) -> int:
    mode, paths = argv[0], argv[1:]
    n = 0
    if mode == "jsonl":
        loads = orjson.loads
        for path in paths:
            for line in _lines(path):
                if line.strip():
                    loads(line)
                    n += 1
    elif mode in ("evtx", "evtx-bare"):
        from evtx import PyEvtxParser

        decode = mode == "evtx"
        for path in _evtx_files(paths):
            try:
                records = PyEvtxParser(path).records_json()
            except (OSError, RuntimeError, ValueError):  # not an EVTX file
                continue
            errors = 0
            while errors < 100_000:
                try:
                    rec = next(records)
                except StopIteration:
                    break
                except RuntimeError:  # a corrupt record or chunk: the parser goes on
                    errors += 1
                    continue
                if decode:
                    orjson.loads(rec["data"])
                n += 1
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    print(n)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
