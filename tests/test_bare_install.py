"""The bare-install job: what `pip install unbacked` gives a user, checked command by command.

scripts/bare-install-check.sh builds the wheel and the sdist, installs each into a fresh venv
with no extras, runs every command README.md shows and checks its output, then each extra on
its own venv. It takes a few minutes (pip's cache makes the installs cheap), so it runs once,
here; UNBACKED_SKIP_BARE_INSTALL=1 skips it for quick local runs."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "bare-install-check.sh"


@pytest.mark.slow
def test_bare_install_runs_every_readme_command() -> None:
    if os.environ.get("UNBACKED_SKIP_BARE_INSTALL"):
        pytest.skip("UNBACKED_SKIP_BARE_INSTALL is set")
    if shutil.which("bash") is None:
        pytest.skip("no bash")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.run(
        ["bash", str(SCRIPT)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=2700,
        check=False,
    )
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    assert "bare-install: all checks passed" in proc.stdout
