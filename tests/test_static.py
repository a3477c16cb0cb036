"""The type checker as configured in pyproject.toml (``mypy --strict`` over ``src/unbacked``)
passes: CI runs it with the tests."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_mypy_strict_is_clean() -> None:
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (the [dev] extra)")
    res = subprocess.run([sys.executable, "-m", "mypy"], cwd=REPO, capture_output=True,
                         text=True, timeout=900, check=False)  # fmt: skip
    assert res.returncode == 0, res.stdout[-5000:] + res.stderr[-2000:]
    assert "strict = true" in (REPO / "pyproject.toml").read_text(encoding="utf-8")
