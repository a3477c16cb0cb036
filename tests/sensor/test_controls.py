"""The positive controls really do what they claim: checked from /proc, without the sensor.

If a control silently stopped producing unbacked executable memory, every live sensor test
built on it would pass or fail for the wrong reason; these tests pin the ground truth.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.controls import controls_or_skip, parse_ready, run_control


def _maps(pid: int) -> list[tuple[int, int, str, str]]:
    rows = []
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        parts = line.split(maxsplit=5)
        lo, hi = (int(x, 16) for x in parts[0].split("-"))
        rows.append((lo, hi, parts[1], parts[5] if len(parts) > 5 else ""))
    return rows


@pytest.fixture(scope="module")
def built() -> dict[str, Path]:
    return controls_or_skip()


@pytest.mark.parametrize(
    ("name", "args", "perm", "backing"),
    [
        ("loader", ("wx",), "r-xp", ""),
        ("loader", ("rwx",), "rwxp", ""),
        ("loader", ("syscall",), "r-xp", ""),
        ("loader", ("jit",), "r-xp", ""),
        ("loader_py", ("wx",), "r-xp", ""),
        ("loader_py", ("rwx",), "rwxp", ""),
        ("shellcode_py", ("wx",), "r-xp", ""),
        ("shellcode_py", ("rwx",), "rwxp", ""),
        ("memfd_dlopen", (), "r-xp", "/memfd:unbacked-payload (deleted)"),
    ],
)
def test_control_regions_are_unbacked_and_executable(
    built: dict[str, Path], name: str, args: tuple[str, ...], perm: str, backing: str
) -> None:
    with run_control(name, *args) as (proc, info):
        assert info["pid"] == proc.pid
        assert info["regions"], info
        maps = _maps(proc.pid)
        for region in info["regions"]:
            base, size = region["base"], region["size"]
            covering = [m for m in maps if m[0] <= base < m[1]]
            assert covering, f"{region} not mapped"
            _lo, hi, p, path = covering[0]
            assert p == perm
            assert path == backing
            assert base + size <= hi or any(m[0] == hi for m in maps)


def test_loader_maps_an_elf_image_with_header(built: dict[str, Path]) -> None:
    with run_control("loader", "wx") as (proc, info):
        mem = Path(f"/proc/{proc.pid}/mem")
        with mem.open("rb") as fh:
            fh.seek(info["base"])
            assert fh.read(4) == b"\x7fELF"


def test_memfd_exec_runs_from_memfd(built: dict[str, Path]) -> None:
    with run_control("memfd_exec") as (proc, info):
        assert info["pid"] == proc.pid
        exe = Path(f"/proc/{proc.pid}/exe").readlink()
        assert str(exe).startswith("/memfd:unbacked-control")


def test_parse_ready_rejects_other_lines() -> None:
    assert parse_ready('READY {"pid": 1, "regions": []}')["pid"] == 1
    with pytest.raises(ValueError):
        parse_ready("hello")
    with pytest.raises(ValueError):
        parse_ready("READY []")
