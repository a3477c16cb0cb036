"""The example's plug-ins pass unbacked's conformance kit, and unbacked finds them."""

from __future__ import annotations

import io
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest
from unbacked.testing import (
    Check,
    check_detector,
    check_renderer,
    check_source,
    sample_alerts,
    yield_source_checks,
)

from unbacked_example.renderer import MarkdownRenderer
from unbacked_example.rule import LargeRwxAllocation
from unbacked_example.source import ExampleCsvSource

LOADER = "/opt/tool/loader"


def _alloc(uid: str, size: int, prot: int, image: str = LOADER) -> dict:
    return {"kind": "memory", "activity": "allocate", "os": "linux", "process_uid": uid,
            "pid": 1, "image": image, "protection": prot, "region_size": size,
            "base_address": 0x7F0000000000}  # fmt: skip


# one test per check, named after it (river's yield_checks; sklearn's parametrize_with_checks)
@pytest.mark.parametrize("check", list(yield_source_checks(ExampleCsvSource)), ids=str)
def test_source_check(check: Check) -> None:
    check()


def test_source() -> None:  # or all of them at once
    check_source(ExampleCsvSource)


def test_rule() -> None:
    check_detector(
        LargeRwxAllocation,
        positives=[[_alloc("h:1:0", 4 << 20, 7)]],
        negatives=[[_alloc("h:2:0", 4 << 20, 5), _alloc("h:3:0", 4096, 7)]],
    )


def test_renderer() -> None:
    check_renderer(MarkdownRenderer)
    out = io.StringIO()
    MarkdownRenderer().render(sample_alerts(), out)
    assert "<script>" not in out.getvalue()  # telemetry is escaped


def test_installed_plugins_are_registered() -> None:
    try:
        distribution("unbacked-example-plugin")
    except PackageNotFoundError:
        pytest.skip("the example is not installed (pip install examples/plugin)")
    from unbacked.detect import DETECTORS
    from unbacked.render import RENDERERS
    from unbacked.sources import SOURCES

    assert SOURCES["example-csv"] is ExampleCsvSource
    assert DETECTORS["EXA-001"] is LargeRwxAllocation
    assert RENDERERS["markdown"] is MarkdownRenderer
    assert SOURCES.origin("example-csv").distribution == "unbacked-example-plugin"


def test_sample_hunts_to_one_alert() -> None:
    try:
        distribution("unbacked-example-plugin")
    except PackageNotFoundError:
        pytest.skip("the example is not installed (pip install examples/plugin)")
    from unbacked.engine.local import hunt

    result = hunt([Path(__file__).parents[1] / "sample.csv"])
    assert [a.process.pid for a in result.alerts] == [4242]
    assert "EXA-001" in result.alerts[0].detectors
