"""Access masks and call-trace classes in words, beside the machine values."""

from __future__ import annotations

import re

import pytest

from tests.support.events import events, open_process
from unbacked.correlate.incidents import correlate
from unbacked.detect import DetectionContext, ProgramBaseline, run_rules
from unbacked.detect.features import EXPLAINED_TRACE_CLASSES, TRACE_CLASS_SQL, trace_class
from unbacked.detect.rules.windows import TRACE_CLASS_SCORE
from unbacked.model.alert import Explanation
from unbacked.model.winconst import process_access_names
from unbacked.model.words import TRACE_CLASS_WORDS, value_words, with_words


@pytest.mark.parametrize(
    ("mask", "words"),
    [
        (0x1F3FFF, "PROCESS_ALL_ACCESS"),
        (0x1FFFFF, "PROCESS_ALL_ACCESS"),
        (0x1F0FFF, "PROCESS_ALL_ACCESS"),
        (0x1438, "PROCESS_VM_OPERATION|PROCESS_VM_READ|PROCESS_VM_WRITE|PROCESS_QUERY_INFORMATION"),
        (0x1010, "PROCESS_VM_READ|PROCESS_QUERY_LIMITED_INFORMATION"),
        (0x1410, "PROCESS_VM_READ|PROCESS_QUERY_INFORMATION"),
        (0x0040, "PROCESS_DUP_HANDLE"),
        (
            0x102A,
            "PROCESS_CREATE_THREAD|PROCESS_VM_OPERATION|PROCESS_VM_WRITE|"
            "PROCESS_QUERY_LIMITED_INFORMATION",
        ),
        (0x100000, "SYNCHRONIZE"),
        (0x4010, "PROCESS_VM_READ|0x4000"),
        (0x0, "no access"),
    ],
)
def test_access_masks(mask, words):
    assert process_access_names(mask) == words


def test_every_trace_class_has_words():
    classes = set(re.findall(r"THEN '([a-z-]+)'", TRACE_CLASS_SQL)) | {"other", "none"}
    assert classes >= set(TRACE_CLASS_SCORE) | set(EXPLAINED_TRACE_CLASSES)
    assert classes == set(TRACE_CLASS_WORDS)
    assert TRACE_CLASS_WORDS["api"] == "unbacked frame right before the API call"


def test_value_words():
    assert value_words("open.access", "lsass.exe:0x1410") == (
        "PROCESS_VM_READ|PROCESS_QUERY_INFORMATION"
    )
    assert value_words("open.unbacked", "only").startswith("every frame unbacked")
    assert value_words("mem.protection", "RWX") is None
    assert value_words("open.access", "lsass.exe:?") is None
    e = Explanation("open.access", "lsass.exe:0x1F3FFF", "UNB-B-001", 50.0, "m")
    assert e.to_dict()["value_text"] == "PROCESS_ALL_ACCESS"
    assert e.to_dict()["value"] == "lsass.exe:0x1F3FFF"  # the machine value stays
    assert "value_text" not in Explanation("mem.protection", "RWX", "UNB-M-003", 60, "m").to_dict()


def test_with_words():
    w = TRACE_CLASS_WORDS["api"]
    assert with_words("a opened b from unbacked code (call trace class 'api')", "api", w) == (
        f"a opened b from unbacked code (call trace class 'api': {w})"
    )
    assert with_words("x showed open.access = l:0x10", "l:0x10", "PROCESS_VM_READ") == (
        "x showed open.access = l:0x10 (PROCESS_VM_READ)"
    )
    assert with_words("m", "v", None) == "m"


PS = r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe"
LSASS = r"C:\Windows\System32\lsass.exe"
API = (
    r"C:\Windows\SYSTEM32\ntdll.dll+9d204|C:\Windows\System32\KERNELBASE.dll+2c13e|"
    "UNKNOWN(00000000021D0A3B)"
)


def test_alert_says_it_in_words():
    assert trace_class([API]) == ["api"]
    ev = open_process("p", PS, "l", LSASS, API, access=0x1438)
    ctx = DetectionContext.build(events([ev]))
    ctx.baseline = ProgramBaseline().learn(ctx.facts, calibrate=False)
    (a,) = correlate(ctx, run_rules(ctx))
    assert "unbacked frame right before the API call" in a.message
    (w002,) = [e for e in a.explanation if e.detector == "UNB-W-002"]
    assert w002.value == "api" and "right before the API call" in w002.message
    opens = [t.summary for t in a.timeline if t.kind == "open"]
    assert opens and all(
        "PROCESS_VM_OPERATION|PROCESS_VM_READ|PROCESS_VM_WRITE|PROCESS_QUERY_INFORMATION" in s
        for s in opens
    )
