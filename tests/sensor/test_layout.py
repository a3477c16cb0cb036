"""The numpy record layout matches the C struct the eBPF program writes, field by field.

A drift between ``bpf/unbacked.h`` and ``sensor/layout.py`` would decode every record into
garbage; the C compiler is the judge of the real offsets.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from unbacked.sensor.build import bpf_source_dir
from unbacked.sensor.layout import EVENT_DTYPE, EVENT_SIZE, EvType, Header, Stat, VmaKind


def _c_fields(header: str) -> list[str]:
    body = header.split("struct ub_event {", 1)[1].split("};", 1)[0]
    names: list[str] = []
    for line in body.splitlines():
        line = line.split("/*", 1)[0].strip().rstrip(";")
        if not line:
            continue
        # "unsigned long long a, b" / "char comm[16]" / "char exe[N][M]"
        rest = re.sub(r"^(unsigned\s+)?(long\s+long|int|short|char)\s+", "", line)
        for part in rest.split(","):
            names.append(re.sub(r"\[.*", "", part.strip()))
    return names


def test_field_order_matches_header() -> None:
    header = (bpf_source_dir() / "unbacked.h").read_text()
    assert _c_fields(header) == list(EVENT_DTYPE.names)


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc to ask the C compiler")
def test_offsets_match_c_compiler(tmp_path: Path) -> None:
    lines = [f'printf("%zu {n}\\n", offsetof(struct ub_event, {n}));' for n in EVENT_DTYPE.names]
    src = tmp_path / "off.c"
    src.write_text(
        '#include <stdio.h>\n#include <stddef.h>\n#include "unbacked.h"\nint main(void){\n'
        + "\n".join(lines)
        + '\nprintf("%zu sizeof\\n", sizeof(struct ub_event));\nreturn 0;}\n'
    )
    exe = tmp_path / "off"
    subprocess.run(["gcc", "-I", str(bpf_source_dir()), "-o", str(exe), str(src)], check=True)
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    got = {name: int(off) for off, name in (ln.split() for ln in out.splitlines())}
    assert got.pop("sizeof") == EVENT_SIZE
    assert got == {n: EVENT_DTYPE.fields[n][1] for n in EVENT_DTYPE.names}


def test_enums_match_header() -> None:
    header = (bpf_source_dir() / "unbacked.h").read_text()
    values = {m[0]: int(m[1]) for m in re.findall(r"(UB_[A-Z_0-9]+)\s*=\s*(\d+)", header)}
    assert {f"UB_{t.name}": t.value for t in EvType}.items() <= values.items()
    assert {f"UB_VMA_{k.name}": k.value for k in VmaKind}.items() <= values.items()
    assert {f"UB_HDR_{h.name}": h.value for h in Header}.items() <= values.items()
    assert {f"UB_STAT_{s.name}": s.value for s in Stat}.items() <= values.items()
