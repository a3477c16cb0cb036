"""``hunt --verify`` on a recording of this machine: the alert's region is scanned in the still
running process and the result travels with the alert."""

from __future__ import annotations

import json
import os

import pytest

from tests.support.controls import controls_or_skip, run_control
from tests.support.events import events, memory
from unbacked.cli.main import main
from unbacked.sources import write_events


@pytest.mark.skipif(os.uname().sysname != "Linux", reason="verification reads /proc")
def test_hunt_verify_attaches_memory_evidence(tmp_path, capsys):
    controls_or_skip()
    with run_control("shellcode_py", "wx") as (_proc, info):
        region = info["regions"][0]
        row = memory(
            "verify-me", "/usr/bin/python3", "protect", region["base"], region["size"], 0x5,
            old=0x3, os="linux", region_type="anonymous", header_kind="elf",
            host=os.uname().nodename, pid=info["pid"],
        )  # fmt: skip
        rec = tmp_path / "rec.parquet"
        write_events(events([row]), rec)
        out = tmp_path / "alerts.jsonl"
        rc = main(["hunt", str(rec), "--verify", "-o", str(out), "-q", "--fail-on", "none"])
        assert rc == 0
    (alert,) = [json.loads(x) for x in out.read_text().splitlines()]
    verification = alert["unmapped"]["unbacked"]["verification"]
    assert verification["status"] == "confirmed", verification
    assert verification["evidence"]
