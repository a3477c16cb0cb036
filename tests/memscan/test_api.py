"""The public names of ``unbacked.memscan`` (everything else is private to the package)."""

from __future__ import annotations

import unbacked.memscan as memscan


def test_public_api_is_pinned() -> None:
    assert sorted(memscan.__all__) == [
        "Analyzer", "Backing", "Confidence", "Indicator", "Options", "ProcessGone", "Region",
        "RegionFinding", "ScanFinding", "ScanResult", "ScanStats", "ScannerInterface",
        "SignatureScanner", "Verification", "VerificationStatus", "scan_minidump", "scan_pid",
        "verify_alert", "verify_local_alerts", "verify_regions",
    ]  # fmt: skip
    for name in memscan.__all__:
        assert getattr(memscan, name) is not None
