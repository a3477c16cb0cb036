"""Clear errors when the machine cannot run or build the sensor (no root needed)."""

from __future__ import annotations

import pytest

from unbacked.errors import SensorError
from unbacked.sensor import build, live


def test_not_root_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live.os, "geteuid", lambda: 1000)
    with pytest.raises(SensorError) as exc:
        live.check_environment()
    assert "root" in exc.value.message
    assert exc.value.hint and "samples" not in exc.value.message


def test_missing_build_tool_names_the_debian_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build.shutil, "which", lambda name, path=None: None)
    with pytest.raises(SensorError) as exc:
        build.find_tool("bpftool", "bpftool")
    assert "bpftool" in exc.value.message
    assert exc.value.hint and "apt-get install" in exc.value.hint


def test_no_btf(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(build, "BTF_PATH", tmp_path / "missing")
    with pytest.raises(SensorError) as exc:
        build.object_key()
    assert "BTF" in exc.value.message


def test_real_environment_check_passes_where_live_tests_run() -> None:
    """On a machine where the live tests run, the real check (mounts included) passes too."""
    from tests.sensor.conftest import live_skip_reason

    reason = live_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    live.check_environment()


def test_packaged_object_needs_no_compiler(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A built package carries the object: no tool is looked for, nothing is compiled."""
    for name in ("unbacked.bpf.c", "unbacked.h"):
        (tmp_path / name).write_text("/* sources */")
    (tmp_path / "unbacked.bpf.o").write_bytes(b"\x7fELF")
    monkeypatch.setattr(build, "bpf_source_dir", lambda: tmp_path)
    monkeypatch.setenv("UNBACKED_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(build.shutil, "which", lambda name, path=None: None)
    if not build.BTF_PATH.exists():
        monkeypatch.setattr(build, "BTF_PATH", tmp_path / "unbacked.bpf.o")
    assert build.build_object() == tmp_path / "unbacked.bpf.o"
    # --build compiles from the sources, so a missing compiler is then an error again
    with pytest.raises(SensorError) as exc:
        build.build_object(force=True)
    assert "not installed" in exc.value.message


def test_packaged_object_still_needs_btf(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "unbacked.bpf.o").write_bytes(b"\x7fELF")
    monkeypatch.setattr(build, "bpf_source_dir", lambda: tmp_path)
    monkeypatch.setattr(build, "BTF_PATH", tmp_path / "missing")
    with pytest.raises(SensorError) as exc:
        build.build_object()
    assert "BTF" in exc.value.message and exc.value.hint and "sensor.md" in exc.value.hint


def test_missing_libbpf_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from unbacked.sensor import libbpf

    def no_lib(*a, **k):  # type: ignore[no-untyped-def]
        raise OSError("not found")

    monkeypatch.setattr(libbpf, "_lib", None)
    monkeypatch.setattr(libbpf.ctypes, "CDLL", no_lib)
    with pytest.raises(SensorError) as exc:
        libbpf.lib()
    assert "libbpf" in exc.value.message and exc.value.hint and "libbpf1" in exc.value.hint


def test_old_kernels_are_told_cross_process_rules_are_unavailable() -> None:
    from unbacked.sensor.live import kernel_notes

    (note,) = kernel_notes("5.19.0-45-generic")
    assert "< 6.1" in note and "target_uid null" in note and "UNB-L-004" in note
    assert kernel_notes("6.1.0-18-amd64") == [] and kernel_notes("6.18.44-fc") == []
    assert kernel_notes("weird") == []


def test_mounts_need_no_mount_program(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """tracefs and bpffs are mounted by the system call, so a sensor started with a bare PATH
    (a service unit, a venv's bin only) mounts them too; a failure names the reason."""
    monkeypatch.setenv("PATH", str(tmp_path))  # no `mount` anywhere
    monkeypatch.setattr(live, "_mounted", lambda where: False)
    monkeypatch.setattr(live, "TRACEFS", tmp_path / "no-such-dir")
    with pytest.raises(SensorError) as exc:
        live.ensure_mounts()
    assert "cannot mount tracefs" in exc.value.message
    # ENOENT for the missing target as root, EPERM otherwise: the kernel's answer, not a
    # missing program's
    assert "errno" in exc.value.message and "mount" not in exc.value.message.split(":", 1)[1]
