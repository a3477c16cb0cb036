"""Alerts about processes of this host get a verification attached; others pass through."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.controls import controls_or_skip, run_control
from unbacked.memscan.verify import verify_local_alerts
from unbacked.model.alert import Alert, ProcessRef, RegionInfo


def _alert(host: str, pid: int | None, regions: tuple[RegionInfo, ...]) -> Alert:
    return Alert(
        uid="a", title="t", message="m", risk_score=90, severity_id=5, first_seen=None,
        last_seen=None, hostname=host, process=ProcessRef(uid=None, pid=pid), regions=regions,
    )  # fmt: skip


def test_other_hosts_and_regionless_alerts_pass_through() -> None:
    far = _alert("elsewhere.example", 1, (RegionInfo(base=0x1000, size=0x1000),))
    bare = _alert(os.uname().nodename, 1, ())
    assert verify_local_alerts([far, bare]) == [far, bare]


@pytest.mark.skipif(os.uname().sysname != "Linux", reason="live verification reads /proc")
def test_live_control_is_confirmed_then_gone() -> None:
    controls: dict[str, Path] = controls_or_skip()
    assert controls
    with run_control("shellcode_py", "wx") as (proc, info):
        region = info["regions"][0]
        alert = _alert(
            os.uname().nodename,
            info["pid"],
            (RegionInfo(base=region["base"], size=region["size"]),),
        )
        (verified,) = verify_local_alerts([alert])
        assert verified.verification is not None
        assert verified.verification["status"] == "confirmed", verified.verification
    proc.wait(timeout=10)
    (after,) = verify_local_alerts([alert])
    assert after.verification is not None and after.verification["status"] == "process_gone"
