"""False-alert classes of the wide public corpus, each beside the true positive it must keep:
call traces whose unbacked frames something benign explains (JIT code next to its runtime, a
program calling code it generated, kernel frames), managed hosts known by the modules they
loaded, and single instances whose scores back off to the population."""

from __future__ import annotations

import pytest

from tests.support.events import (
    API_TRACE,
    CALLBACK_TRACE,
    CLEAN_TRACE,
    CRYPT32_CALLBACK_TRACE,
    GDI_CALLBACK_TRACE,
    HOSTED_TRACE,
    IMAGE_RANGE_TRACE,
    KERNEL_TRACE,
    events,
    launch,
    module_load,
    open_process,
)
from unbacked.detect import DetectionContext, ProgramBaseline
from unbacked.detect.anomaly import baseline_signals
from unbacked.detect.rules.windows import MANAGED_FACTOR, UnbackedCallerInCallTrace
from unbacked.engine.local import detect_events

CTF = r"C:\Windows\System32\ctfmon.exe"
EXPLORER = r"C:\Windows\explorer.exe"
LSASS = r"C:\Windows\System32\lsass.exe"
APP = r"C:\Program Files\Tool\tool.exe"
IE = r"C:\Program Files\Internet Explorer\iexplore.exe"
CMD = r"C:\Windows\System32\cmd.exe"


def _ctx(rows) -> DetectionContext:
    ctx = DetectionContext.build(events(rows), self_baselined=True)
    ctx.baseline = ProgramBaseline().learn(ctx.instance_facts, calibrate=False)
    return ctx


def _peers(image: str, trace: str, n: int = 8) -> list[dict]:
    return [open_process(f"peer{i}", image, f"t{i}", EXPLORER, trace, 0x1000) for i in range(n)]


def test_kernel_frames_are_no_evidence_however_rare_among_peers():
    rows = [
        *_peers(CTF, CLEAN_TRACE),
        open_process("odd", CTF, "x", EXPLORER, KERNEL_TRACE, 0x1000),
    ]
    ctx = _ctx(rows)
    assert ctx.baseline is not None
    # the baseline does find it rare; the detector does not call that foreign code
    rare = ctx.baseline.surprising(ctx.scored).to_pylist()
    assert ("odd", "kernel") in {(f["process_uid"], f["value"]) for f in rare}
    sig = baseline_signals(ctx)
    got = [
        (s["subject_uid"], s["value"]) for s in sig.to_pylist() if s["feature"] == "open.unbacked"
    ]
    assert got == []


def test_unbacked_api_caller_among_clean_peers_is_still_surprising():
    rows = [*_peers(CTF, CLEAN_TRACE), open_process("odd", CTF, "x", EXPLORER, API_TRACE, 0x1000)]
    sig = baseline_signals(_ctx(rows))
    got = [
        (s["subject_uid"], s["value"]) for s in sig.to_pylist() if s["feature"] == "open.unbacked"
    ]
    assert got == [("odd", "api")]


def test_a_jit_engine_module_makes_a_managed_host_whatever_its_name():
    jvm = r"C:\Program Files\Java\jre\bin\server\jvm.dll"
    rows = [
        module_load("j", APP, jvm),
        open_process("j", APP, "x", EXPLORER, API_TRACE, 0x1000),
        open_process("j", APP, "l", LSASS, API_TRACE, 0x1010),
        open_process("n", r"C:\x\other.exe", "x", EXPLORER, API_TRACE, 0x1000),
    ]
    out = UnbackedCallerInCallTrace().evaluate(_ctx(rows))
    by = {(s["subject_uid"], s["message"].split(" opened ")[1].split(" ")[0]): s["score"]
          for s in out.to_pylist()}  # fmt: skip
    assert by[("j", "explorer.exe")] == 80.0 * MANAGED_FACTOR
    assert by[("j", "lsass.exe")] == 80.0  # credential theft is not excused by JIT code
    assert by[("n", "explorer.exe")] == 80.0


def _w002_scores(rows) -> dict[tuple[str, str], float]:
    out = UnbackedCallerInCallTrace().evaluate(_ctx(rows))
    return {(s["subject_uid"], s["message"].split(" opened ")[1].split(" ")[0]): s["score"]
            for s in out.to_pylist()}  # fmt: skip


def test_a_jit_engine_module_from_a_user_folder_makes_no_managed_host():
    """A node.dll / clr.dll dropped beside the payload (a user-writable folder, unsigned) does not
    excuse the payload's unbacked caller; the same engine signed, wherever it lies, does."""
    rows = [
        module_load("u", r"C:\Users\Public\a.exe", r"C:\Users\Public\node.dll"),
        open_process("u", r"C:\Users\Public\a.exe", "x", EXPLORER, API_TRACE, 0x1000),
        module_load("t", r"C:\Temp\b.exe", r"C:\Temp\clr.dll", signed=False),
        open_process("t", r"C:\Temp\b.exe", "x", EXPLORER, API_TRACE, 0x1000),
        module_load("s", r"C:\Users\u\AppData\Local\Chrome\chrome.exe",
                    r"C:\Users\u\AppData\Local\Chrome\120.0\chrome.dll", signed=True,
                    signature="Google LLC"),
        open_process("s", r"C:\Users\u\AppData\Local\Chrome\chrome.exe", "x", EXPLORER,
                     API_TRACE, 0x1000),
        module_load("d", r"C:\svc\svc.exe",
                    r"C:\Program Files\dotnet\shared\Microsoft.NETCore.App\8.0.1\coreclr.dll"),
        open_process("d", r"C:\svc\svc.exe", "x", EXPLORER, API_TRACE, 0x1000),
    ]  # fmt: skip
    by = _w002_scores(rows)
    assert by[("u", "explorer.exe")] == 80.0
    assert by[("t", "explorer.exe")] == 80.0
    assert by[("s", "explorer.exe")] == 80.0 * MANAGED_FACTOR
    assert by[("d", "explorer.exe")] == 80.0 * MANAGED_FACTOR


def test_only_events_after_the_engine_load_are_excused():
    """Shellcode that opened a process before the runtime was loaded is not JIT code."""
    jvm = r"C:\Program Files\Java\jre\bin\server\jvm.dll"
    rows = [
        open_process("j", APP, "x", EXPLORER, API_TRACE, 0x1000),
        module_load("j", APP, jvm),
        open_process("j", APP, "y", r"C:\Windows\notepad.exe", API_TRACE, 0x1000),
    ]
    by = _w002_scores(rows)
    assert by[("j", "explorer.exe")] == 80.0
    assert by[("j", "notepad.exe")] == 80.0 * MANAGED_FACTOR


def test_single_instances_alert_only_on_foreign_code():
    """Each program seen once (its scores back off to the population): the Exchange-like
    service and the agent opening their own child stay quiet, the browser whose shellcode
    starts cmd.exe from a callback alerts."""
    rows = [
        # a background of other programs, so the population has rates to back off to
        *[open_process(f"bg{i}", rf"C:\bg\p{i}.exe", f"t{i}", EXPLORER, CLEAN_TRACE, 0x1000)
          for i in range(30)],
        open_process("hc", r"C:\Exchange\hostcontrollerservice.exe", "w",
                     r"C:\Exchange\NodeRunner.exe", IMAGE_RANGE_TRACE, 0x101400),
        launch("ns", r"C:\Windows\System32\netsh.exe", parent="ag", parent_image=APP),
        open_process("ag", APP, "ns", r"C:\Windows\System32\netsh.exe", HOSTED_TRACE),
        launch("cmd", CMD, parent="ie", parent_image=IE),
        open_process("ie", IE, "cmd", CMD, CALLBACK_TRACE),
    ]  # fmt: skip
    result = detect_events(events(rows))
    alerted = {a.process.uid for a in result.alerts}
    assert alerted == {"ie"}


@pytest.mark.parametrize("trace", [GDI_CALLBACK_TRACE, CRYPT32_CALLBACK_TRACE])
def test_callbacks_from_any_windows_dll_are_not_hosted(trace):
    """Shellcode entered as a callback of a Windows-directory DLL (EnumFonts via gdi32full,
    CertEnumSystemStore via crypt32) is scored like any callback shellcode; the agent whose own
    binary calls its generated code stays quiet beside it."""
    rows = [
        *[open_process(f"bg{i}", rf"C:\bg\p{i}.exe", f"t{i}", EXPLORER, CLEAN_TRACE, 0x1000)
          for i in range(30)],
        launch("c1", CMD, parent="cb", parent_image=r"C:\Users\Public\a.exe"),
        open_process("cb", r"C:\Users\Public\a.exe", "c1", CMD, trace),
        launch("ns", r"C:\Windows\System32\netsh.exe", parent="ag", parent_image=APP),
        open_process("ag", APP, "ns", r"C:\Windows\System32\netsh.exe", HOSTED_TRACE),
    ]  # fmt: skip
    out = UnbackedCallerInCallTrace().evaluate(_ctx(rows))
    assert {s["subject_uid"] for s in out.to_pylist()} == {"cb"}
    assert {a.process.uid for a in detect_events(events(rows)).alerts} == {"cb"}
