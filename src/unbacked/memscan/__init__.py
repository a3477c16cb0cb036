"""memscan: find executable memory that no file backs, in minidumps and live Linux processes.

Public API (everything else is private to the package)::

    scan_minidump(path)            -> ScanResult   # Windows minidump
    scan_pid(pid)                  -> ScanResult   # live Linux process
    verify_regions(pid, regions)   -> Verification # an alert's regions, now
    verify_alert(alert)            -> Verification # same, from an Alert or its OCSF dict
    ScanResult.finding()           -> ScanFinding  # .to_ocsf(): OCSF Detection Finding (2004)
"""

from unbacked.memscan.analyze import (
    Analyzer,
    Options,
    ScanResult,
    ScanStats,
    scan_minidump,
    scan_pid,
)
from unbacked.memscan.live import ProcessGone
from unbacked.memscan.model import (
    Backing,
    Confidence,
    Indicator,
    Region,
    RegionFinding,
    ScanFinding,
    Verification,
    VerificationStatus,
)
from unbacked.memscan.scanner import ScannerInterface, SignatureScanner
from unbacked.memscan.verify import verify_alert, verify_local_alerts, verify_regions

__all__ = [
    "Analyzer",
    "Backing",
    "Confidence",
    "Indicator",
    "Options",
    "ProcessGone",
    "Region",
    "RegionFinding",
    "ScanFinding",
    "ScanResult",
    "ScanStats",
    "ScannerInterface",
    "SignatureScanner",
    "Verification",
    "VerificationStatus",
    "scan_minidump",
    "scan_pid",
    "verify_alert",
    "verify_local_alerts",
    "verify_regions",
]
