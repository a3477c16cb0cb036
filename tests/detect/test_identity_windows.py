"""Program identity on Windows: a system program's name outside the system directories, or a
JIT engine's name in a temporary place, is another program (no JIT allowance of that name), and
the alert says so; the real programs, new hashes at the usual place and bare names are not."""

from __future__ import annotations

import pyarrow as pa

from tests.support.events import events, launch, memory
from unbacked.detect.base import DetectionContext
from unbacked.engine.local import detect_events
from unbacked.model.identity import foreign_mask
from unbacked.model.state import program_column

TEMP_NODE = r"C:\Users\bob\AppData\Local\Temp\nw1\node.exe"
REAL_NODE = r"C:\Program Files\nodejs\node.exe"


def _foreign(images: list[str | None], os: str = "windows") -> list[bool]:
    t = events([{"kind": "process", "activity": "launch", "process_uid": f"p{i}", "image": im,
                 "os": os} for i, im in enumerate(images)])  # fmt: skip
    return foreign_mask(t, program_column(t["image"]), None).to_pylist()


def test_what_is_foreign_on_windows():
    assert (
        _foreign(
            [
                r"C:\Users\Public\svchost.exe",
                r"C:\ProgramData\svchost.exe",
                r"C:\Windows\Temp\lsass.exe",
                r"C:\Windows\System32\..\..\Users\x\rundll32.exe",
                r"C:\Users\x\Windows\System32\svchost.exe",
                r"C:\Users\bob\Downloads\powershell.exe",
                TEMP_NODE,
            ]
        )
        == [True] * 7
    )
    assert (
        _foreign(
            [
                r"C:\Windows\System32\svchost.exe",
                r"c:\windows\syswow64\rundll32.exe",
                r"\??\C:\WINDOWS\system32\conhost.exe",
                r"\Device\HarddiskVolume2\Windows\System32\lsass.exe",
                r"\SystemRoot\System32\smss.exe",
                r"C:\Windows\explorer.exe",
                r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe",
                r"C:\Windows\WinSxS\amd64_microsoft-windows-powershell-exe_31bf\powershell.exe",
                REAL_NODE,
                r"C:\Users\bob\AppData\Roaming\nvm\v20.1.0\node.exe",
                r"C:\Users\bob\AppData\Local\Temp\setup.exe",
                "svchost.exe",
                None,
            ]
        )
        == [False] * 13
    )
    # Linux rows are judged by the Linux rules of identity, not these
    assert _foreign([r"C:\Users\Public\svchost.exe"], os="linux") == [False]


def test_foreign_instance_is_a_program_of_its_own():
    t = events([launch("a", r"C:\Users\Public\svchost.exe"),
                launch("b", r"C:\Windows\System32\svchost.exe")])  # fmt: skip
    ctx = DetectionContext.build(t)
    assert ctx.events["program"].to_pylist() == [
        r"svchost.exe [C:\Users\Public\svchost.exe]",
        "svchost.exe",
    ]


def _rwx(uid: str, image: str, caller: str) -> dict:
    return memory(uid, image, "allocate", 0x1F0000, 0x1000, 0x40, caller_module=caller)


def test_jit_allowance_is_not_inherited_and_the_alert_says_so():
    """A loader named node.exe in Temp asking for RWX memory as 'node.exe' is caught; the real
    Node.js doing the same keeps its JIT allowance."""
    rows = [
        launch("fake", TEMP_NODE, image_hash="sha256:" + "ab" * 32),
        _rwx("fake", TEMP_NODE, "node.exe"),
        launch("real", REAL_NODE),
        _rwx("real", REAL_NODE, "node.exe"),
    ]
    alerts = detect_events(events(rows)).alerts
    assert [a.process.uid for a in alerts] == ["fake"], [
        (a.process.uid, a.detectors) for a in alerts
    ]
    a = alerts[0]
    assert {"UNB-W-007", "UNB-M-003"} <= set(a.detectors), a.detectors
    said = " ".join(e.value or "" for e in a.explanation) + " ".join(t.summary for t in a.timeline)
    assert TEMP_NODE in said, said
    (why,) = [e for e in a.explanation if e.detector == "UNB-W-007"]
    assert "JIT engine's name" in why.message and "sha256:" + "ab" * 32 in why.message


def test_rule_message_names_hash_and_signature():
    from unbacked.detect.rules.identity import ForeignWindowsImage

    img = r"C:\Users\Public\svchost.exe"
    rows = [
        launch("f", img, image_hash="sha256:" + "cd" * 32),
        {"kind": "module", "activity": "load", "process_uid": "f", "image": img,
         "module_path": img, "image_signature": "unsigned"},
    ]  # fmt: skip
    out = ForeignWindowsImage().evaluate(DetectionContext.build(events(rows))).to_pylist()
    assert len(out) == 1 and out[0]["subject_uid"] == "f"
    m = out[0]["message"]
    assert "sha256:" + "cd" * 32 in m and "unsigned" in m and "Windows system program" in m, m
    assert out[0]["value"] == img
    assert pa.scalar(out[0]["score"]).as_py() == ForeignWindowsImage.score
