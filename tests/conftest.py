"""Fixtures shared by every test package (keep this file small)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from unbacked.model.rows import keep_pandas_out_of_arrow

# the suite runs with pyarrow as the command line leaves it: no pandas behind its conversions
# (a ``to_pylist`` of nanosecond times that works only through pandas.Timestamp fails here as
# it fails for a user; what needs pandas by name still gets it)
keep_pandas_out_of_arrow()

#: the repository root (this file is tests/conftest.py)
REPO_ROOT = Path(__file__).resolve().parents[1]
#: real public telemetry lives next to the repository, never inside it; UNBACKED_SHARED_DATA
#: points elsewhere (a clone in another folder, a CI image)
SHARED_DATA_ENV = "UNBACKED_SHARED_DATA"
_env = os.environ.get(SHARED_DATA_ENV)
SHARED_DATA = Path(_env).resolve() if _env else (REPO_ROOT / "../shared/data").resolve()


def shared_data_tried() -> str:
    """Where the shared corpus was looked for, for skip messages."""
    if _env:
        return f"{SHARED_DATA} (from ${SHARED_DATA_ENV})"
    return f"{SHARED_DATA} (../shared/data; set ${SHARED_DATA_ENV} to look elsewhere)"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared real telemetry (``$UNBACKED_SHARED_DATA``, else ``../shared/data``); skips
    the test, saying which path it tried, when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real public telemetry not available at {shared_data_tried()}")
    return SHARED_DATA
