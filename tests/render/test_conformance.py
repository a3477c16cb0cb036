"""Every registered renderer (the HTML report included) passes the conformance kit."""

from __future__ import annotations

import pytest

from unbacked.render import RENDERERS, stream_formats
from unbacked.testing import Check, yield_registry_checks


@pytest.mark.parametrize("check", list(yield_registry_checks("renderers")), ids=str)
def test_renderer_conformance(check: Check) -> None:
    check()


def test_builtin_renderers() -> None:
    assert {"ocsf", "ecs", "table", "html"} <= set(RENDERERS)
    assert RENDERERS["html"].to_path and "html" not in stream_formats()
    assert {"ocsf", "ecs", "table"} <= set(stream_formats())
