"""Minidumps: fixtures with known injected regions, the real public dumps, and the CLI."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pefile
import pytest
from click.testing import CliRunner

from tests.conftest import SHARED_DATA, shared_data_tried
from tests.memscan import scenario
from tests.memscan.mdwriter import Minidump
from unbacked.cli.main import cli, main
from unbacked.errors import FormatError
from unbacked.memscan import Options, scan_minidump
from unbacked.memscan.minidump import MinidumpSpace

SHARED = SHARED_DATA
REAL = SHARED / "minidump" / "rust-minidump" / "testdata"
LABELS = SHARED / "labels" / "minidump" / "rust-minidump" / "testdata"


@pytest.fixture(scope="module")
def fixture_dump(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return scenario.write(tmp_path_factory.mktemp("md") / "victim.dmp")


def test_every_injected_region_found_and_nothing_else(fixture_dump: Path) -> None:
    result = scan_minidump(fixture_dump)
    found = {f.base: f for f in result.findings}
    assert sorted(found) == sorted(scenario.INJECTED)
    refl = found[scenario.REFLECTIVE]
    assert refl.header == "pe"
    assert {"pe_header", "thread_start", "loader_export", "pe_reconstructed"} <= set(refl.kinds)
    assert refl.pe is not None and refl.pe["exports"] == ["ReflectiveLoader"]
    assert refl.pe["entry_section"] == ".text"
    assert refl.pe["imports"][0]["dll"] == "KERNEL32.dll"
    assert refl.threads == (101,)
    wiped = found[scenario.WIPED]
    assert wiped.header == "pe-partial" and "pe_reconstructed" in wiped.kinds
    assert {"rwx", "shellcode_pattern"} <= set(found[scenario.SHELLCODE].kinds)
    section = found[scenario.SECTION]
    assert {"exec_mapped_no_image", "thread_ip"} <= set(section.kinds)
    phantom = found[scenario.PHANTOM]
    assert {"image_not_listed", "pe_header"} <= set(phantom.kinds)
    # the CLR JIT heap (RWX, code-like, a thread executing in it) is explained, not reported
    assert result.stats.jit_explained == 1 and "clr" in result.stats.jit_engines
    assert result.stats.empty == 1  # the zero-filled r-x page
    assert result.process.pid == 4242 and result.process.name == "victim.exe"


def test_vendor_streams_are_skipped_not_fatal(fixture_dump: Path) -> None:
    with MinidumpSpace(fixture_dump) as space:
        assert space.info.unknown_streams == [0xFFF0, 0x47670001]
        assert len(space.modules()) == 4 and len(space.threads()) == 4
    # the package alone refuses the same file: the guard is what makes it readable
    from minidump.minidumpfile import MinidumpFile

    with open(fixture_dump, "rb") as fh, pytest.raises(ValueError):
        MinidumpFile.parse_external(fh)


def test_without_memory_info_only_thread_or_header_evidence(tmp_path: Path) -> None:
    md = scenario.build()
    md.with_memory_info = False
    path = tmp_path / "noinfo.dmp"
    with open(path, "wb") as fh:
        md.write(fh)
    result = scan_minidump(path)
    bases = {f.base for f in result.findings}
    # protection is unknown: the PE images and the regions threads run in are still reported
    assert scenario.REFLECTIVE in bases and scenario.SECTION in bases
    # a zero page, the stacks and the JIT heap (a thread runs in it, but the CLR is loaded)
    assert not bases & {scenario.EMPTY, scenario.STACK, scenario.JIT}


def test_ocsf_output_and_exit_code(fixture_dump: Path, tmp_path: Path) -> None:
    out = tmp_path / "findings.jsonl"
    rc = main(["scan", str(fixture_dump), "--format", "ocsf", "-o", str(out)])
    assert rc == 3
    lines = out.read_text().splitlines()
    assert len(lines) == 1
    doc = json.loads(lines[0])
    assert doc["class_uid"] == 2004 and 1 <= doc["severity_id"] <= 5
    assert 0 <= doc["risk_score"] <= 100 and doc["message"]
    fi = doc["finding_info"]
    assert fi["uid"] and fi["title"] and "memory-scan" in fi["types"]
    assert fi["first_seen_time"] == fi["last_seen_time"] == doc["time"]
    assert doc["process"]["pid"] == 4242 and doc["process"]["name"] == "victim.exe"
    assert {a["technique"]["uid"] for a in doc["attacks"]} == {"T1620", "T1055"}
    ub = doc["unmapped"]["unbacked"]
    assert {int(r["base"], 16) for r in ub["regions"]} == set(scenario.INJECTED)
    assert ub["sources"] == [{"file": str(fixture_dump)}]
    assert "device" in doc and "hostname" in doc["device"]
    # --fail-on critical: the top finding is critical, so still 3; a clean dump exits 0
    assert main(["scan", str(fixture_dump), "--fail-on", "critical", "-o", str(out)]) == 3


def test_clean_dump_exits_zero(tmp_path: Path) -> None:
    md = scenario.build()
    md.memory = [m for m in md.memory if m.base not in scenario.INJECTED
                 and (m.alloc_base or m.base) not in scenario.INJECTED]  # fmt: skip
    md.threads = [t for t in md.threads if t.tid != 102]
    path = tmp_path / "clean.dmp"
    with open(path, "wb") as fh:
        md.write(fh)
    assert scan_minidump(path).findings == []
    assert main(["scan", str(path)]) == 0


def test_run_report_and_fail_on_none(fixture_dump: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.dmp"
    bad.write_bytes(b"MDMQ" + bytes(28))
    rep = tmp_path / "run.json"
    out = tmp_path / "o.jsonl"
    rc = main(["scan", str(fixture_dump), str(bad), "--report", str(rep), "-o", str(out),
               "--fail-on", "none"])  # fmt: skip
    assert rc == 0
    d = json.loads(rep.read_text())
    assert d["files"] == 2 and d["files_failed"] == 1 and d["alerts"] == 1
    assert d["events"] == len(scenario.INJECTED) and d["bytes_scanned"] > 0
    assert main(["scan", str(fixture_dump), str(bad), "--strict", "-o", str(out)]) == 1


def test_usage_and_runtime_errors(tmp_path: Path) -> None:
    assert main(["scan"]) == 2
    assert main(["scan", "--fail-on", "nope", "x.dmp"]) == 2
    bad = tmp_path / "bad.dmp"
    bad.write_bytes(b"not a dump at all")
    assert main(["scan", str(bad)]) == 1
    assert main(["scan", "--strict", str(bad)]) == 1


def test_dump_dir_writes_regions_and_rebuilt_pe(fixture_dump: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = scan_minidump(fixture_dump, Options(dump_dir=str(out)))
    refl = next(f for f in result.findings if f.base == scenario.REFLECTIVE)
    raw, rebuilt = (Path(p) for p in refl.dumped)
    assert raw.stat().st_size == refl.size
    pe = pefile.PE(str(rebuilt))
    assert [e.name for e in pe.DIRECTORY_ENTRY_EXPORT.symbols] == [b"ReflectiveLoader"]
    pe.close()
    wiped = next(f for f in result.findings if f.base == scenario.WIPED)
    assert Path(wiped.dumped[1]).read_bytes()[:2] == b"MZ"  # DOS header restored


def test_table_detail_and_ecs_output(fixture_dump: Path) -> None:
    res = CliRunner().invoke(cli, ["scan", str(fixture_dump), "--format", "detail"])
    assert res.exit_code == 3
    assert "ReflectiveLoader" in res.output and "0x00000000001f0000" in res.output
    res = CliRunner().invoke(cli, ["scan", str(fixture_dump)])
    assert res.exit_code == 3 and "victim.exe (4242)" in res.output
    res = CliRunner().invoke(cli, ["scan", str(fixture_dump), "--format", "ecs"])
    assert res.exit_code == 3
    doc = json.loads(res.stdout.splitlines()[0])
    assert doc["process"]["pid"] == 4242


def test_yara_over_suspicious_regions(fixture_dump: Path, tmp_path: Path) -> None:
    pytest.importorskip("yara")
    rule = tmp_path / "r.yar"
    rule.write_text("rule stager { strings: $a = { FC 48 83 E4 F0 } condition: $a }\n")
    from unbacked.memscan.yarascan import load_rules

    result = scan_minidump(fixture_dump, Options(yara_rules=load_rules([rule])))
    hits = {f.base: f.yara for f in result.findings}
    assert hits[scenario.SHELLCODE] == ("stager",) and hits[scenario.REFLECTIVE] == ()


def test_fixture_bytes_are_deterministic() -> None:
    assert scenario.to_bytes() == scenario.to_bytes()
    buf = io.BytesIO()
    Minidump().write(buf)
    assert buf.getvalue()[:4] == b"MDMP"


@pytest.mark.shared_data
@pytest.mark.parametrize("name", ["test", "invalid-parameter", "invalid-range",
                                  "invalid-record-count"])  # fmt: skip
def test_real_minidumps(name: str) -> None:
    path = REAL / f"{name}.dmp"
    if not path.exists():
        pytest.skip(f"{path.name} not available in the shared data at {shared_data_tried()}")
    label = json.loads((LABELS / f"{name}.json").read_text())
    if label["process_instances"] == 0:  # deliberately malformed: a typed error
        with pytest.raises(FormatError) as err:
            scan_minidump(path)
        assert err.value.hint and err.value.source == str(path)
        return
    result = scan_minidump(path)
    assert result.findings == [] == label["malicious"]
    assert result.process.name and result.process.pid
    with MinidumpSpace(path) as space:
        assert len(space.modules()) == {"test": 13, "invalid-parameter": 31}[name]
        assert not space.has_region_info  # "None has a MemoryInfoList stream"


_REFLECTIVE_C = """
#include <windows.h>
__declspec(dllexport) ULONG_PTR WINAPI ReflectiveLoader(LPVOID p) {
    HMODULE k = GetModuleHandleA("kernel32.dll");
    return (ULONG_PTR)GetProcAddress(k, "VirtualAlloc") + (ULONG_PTR)p;
}
BOOL WINAPI DllMain(HINSTANCE h, DWORD r, LPVOID v) { return TRUE; }
"""


def test_real_mingw_dll_mapped_reflectively(tmp_path: Path) -> None:
    """A real DLL built by mingw-w64, mapped section by section like a reflective loader does."""
    import shutil
    import subprocess

    gcc = shutil.which("x86_64-w64-mingw32-gcc")
    if gcc is None:
        pytest.skip("needs Debian gcc-mingw-w64-x86-64")
    src = tmp_path / "refl.c"
    src.write_text(_REFLECTIVE_C)
    dll = tmp_path / "refl.dll"
    subprocess.run([gcc, "-shared", "-O2", "-s", "-o", str(dll), str(src)], check=True)
    pe = pefile.PE(str(dll))
    image = pe.get_memory_mapped_image()
    pe.close()
    from tests.memscan.mdwriter import (
        MEM_PRIVATE,
        PAGE,
        PAGE_EXECUTE_READWRITE,
        Mem,
    )

    md = scenario.build()
    base = 0xA00000
    size = (len(image) + PAGE - 1) // PAGE * PAGE
    md.memory.append(Mem(base, size, PAGE_EXECUTE_READWRITE, MEM_PRIVATE, image))
    path = tmp_path / "mingw.dmp"
    with open(path, "wb") as fh:
        md.write(fh)
    found = {f.base: f for f in scan_minidump(path).findings}
    assert sorted(found) == sorted((*scenario.INJECTED, base))
    f = found[base]
    assert f.header == "pe" and f.pe is not None
    assert "ReflectiveLoader" in " ".join(f.pe["exports"]) and "loader_export" in f.kinds
    assert "KERNEL32.dll" in {i["dll"] for i in f.pe["imports"]}
    assert f.pe["entry_section"] == ".text"


def test_output_file_is_ocsf_by_default(fixture_dump: Path, tmp_path: Path) -> None:
    """One convention with hunt/detect/sensor: -o writes OCSF JSON lines unless --format."""
    out = tmp_path / "findings.jsonl"
    assert main(["scan", str(fixture_dump), "-o", str(out)]) == 3
    (line,) = out.read_text().splitlines()
    assert json.loads(line)["class_uid"] == 2004
    assert main(["scan", str(fixture_dump), "-o", str(out), "--format", "detail"]) == 3
    assert "risk" in out.read_text() and not out.read_text().startswith("{")


def test_dump_without_memory_regions_is_not_assessable(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A dump with no MemoryInfoList and no Memory64List (rust-minidump's test.dmp) cannot be
    called clean: the scan says so and exits non-zero, never "no suspicious regions"."""
    dump = shared_data / "minidump" / "rust-minidump" / "testdata" / "test.dmp"
    if not dump.is_file():
        pytest.skip(f"{dump} not in the shared data")
    out = tmp_path / "o.jsonl"
    assert main(["scan", str(dump), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "not assessable: the dump holds no memory regions" in err
    assert out.read_text() == ""
    assert main(["scan", str(dump)]) == 1
    cap = capsys.readouterr()
    assert "no alerts" not in cap.out and "no suspicious" not in cap.out
