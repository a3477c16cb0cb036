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
