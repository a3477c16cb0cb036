"""Every registered memory scanner passes the conformance kit (the chunk contract of
volatility3's ``ScannerInterface``: same hits whatever the chunking, none in the overlap)."""

from __future__ import annotations

import pytest

from unbacked.memscan.scanner import SCANNERS
from unbacked.testing import Check, yield_registry_checks


@pytest.mark.parametrize("check", list(yield_registry_checks("scanners")), ids=str)
def test_scanner_conformance(check: Check) -> None:
    check()


def test_builtin_scanners() -> None:
    assert {"signature", "shellcode"} <= set(SCANNERS)
    assert "yara" in SCANNERS or "yara" in SCANNERS.unavailable
