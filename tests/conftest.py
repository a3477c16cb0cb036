"""Fixtures shared by every test package (keep this file small)."""

from __future__ import annotations

from pathlib import Path

import pytest

#: the repository root (this file is tests/conftest.py)
REPO_ROOT = Path(__file__).resolve().parents[1]
#: real public telemetry lives next to the repository, never inside it
SHARED_DATA = (REPO_ROOT / "../shared/data").resolve()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` relative to the repository; skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real public telemetry not available at {SHARED_DATA} (../shared/data)")
    return SHARED_DATA
