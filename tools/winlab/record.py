#!/usr/bin/env python3
"""Build the winlab Windows programs, run them in an emulator, and record ETW-TI-shaped events.

Real Windows code, recorded: ``dochost.c`` (a "document host" with a baseline and a trigger) and
``payload.c`` (a benign DLL its reflective loader maps) are compiled with mingw-w64 and run in
speakeasy (a pure-Python emulation of the Windows API on the Unicorn CPU emulator). Speakeasy
reports every API call with its arguments, its return value and the calling instruction's
address; this script turns that trace into the JSON lines a krabsetw-style consumer of
Microsoft-Windows-Threat-Intelligence, Kernel-Process and Kernel-Network writes (the manifest's
field names, see docs/sources-windows.md), so the fixtures exercise the same parser as
production telemetry:

=====================================  ===============================================
API call (speakeasy trace)             event recorded
=====================================  ===============================================
process start / ExitProcess            Kernel-Process 1 ProcessStart / 2 ProcessStop
image at start, LoadLibraryA           Kernel-Process 5 ImageLoad
VirtualAlloc                           TI 6 ALLOCVM_LOCAL
VirtualProtect                         TI 7 PROTECTVM_LOCAL (v2: VaVad* of the region)
WriteProcessMemory (own process)       TI 12 WRITEVM_LOCAL (v2: VaVad* of the region)
CreateThread                           Kernel-Process 3 ThreadStart
connect                                Kernel-Network 12 TCP connect (IPv4)
=====================================  ===============================================

Fidelity notes (also in docs/sources-windows.md):

* The recorder writes every allocation and protection change, as a user-mode hook would; the
  real provider only reports those that involve an executable protection. ``--ti-filter``
  applies that rule.
* Each event's ``Stack`` has the API frame and the calling frame (``dochost.exe+0x1090``, or a
  bare address when the caller lies in memory no module backs), which is what speakeasy knows.
* Threads: speakeasy runs a created thread after its creator's entry returns; the programs wait
  for every thread they create, so the recorder places a thread's calls right after the
  ``CreateThread`` that started it, which is the order a real run has.
* Time is synthetic and deterministic: each run starts at a fixed instant and every recorded
  call advances the clock by 250 microseconds. Process and thread ids are fixed per run.

Usage: ``python tools/winlab/record.py --out tests/fixtures/windows [--build DIR]
[--format flat|silketw|xml|elastic]`` (the other shapes come from ``shapes.py``). Needs
``x86_64-w64-mingw32-gcc`` and the ``speakeasy-emulator`` package (``scripts/
make-windows-fixtures.sh`` sets both up). Standard library + speakeasy + pefile only: this runs
in the emulator's own virtual environment, apart from unbacked.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CC = "x86_64-w64-mingw32-gcc"
CFLAGS = [
    "-O1",
    "-ffreestanding",
    "-fno-builtin",
    "-fno-stack-protector",
    "-mno-stack-arg-probe",
    "-fno-asynchronous-unwind-tables",
    "-nostdlib",
    "-Wall",
]
LIBS = ["-lkernel32", "-lws2_32"]

HOST = "WINLAB-01"
IMAGE_NAME = "dochost.exe"
IMAGE_PATH = "\\Device\\HarddiskVolume3\\Users\\analyst\\AppData\\Local\\DocHost\\dochost.exe"
SYSTEM32 = "\\Device\\HarddiskVolume3\\Windows\\System32\\"
PARENT_PID = 4120  # explorer.exe
EPOCH = datetime(2026, 11, 2, 9, 0, 0, tzinfo=UTC)
STEP = timedelta(microseconds=250)
FILETIME_EPOCH = 116_444_736_000_000_000

TI = "Microsoft-Windows-Threat-Intelligence"
KPROC = "Microsoft-Windows-Kernel-Process"
KNET = "Microsoft-Windows-Kernel-Network"

PAGE = 0x1000
MEM_PRIVATE = 0x20000
EXEC_BITS = 0xF0
PROTECTIONS = {
    "PAGE_NOACCESS": 0x01,
    "PAGE_READONLY": 0x02,
    "PAGE_READWRITE": 0x04,
    "PAGE_WRITECOPY": 0x08,
    "PAGE_EXECUTE": 0x10,
    "PAGE_EXECUTE_READ": 0x20,
    "PAGE_EXECUTE_READWRITE": 0x40,
    "PAGE_EXECUTE_WRITECOPY": 0x80,
}


@dataclass(frozen=True)
class Run:
    """One recorded run: which build of dochost, and the identity it gets."""

    name: str
    mode: int  # WINLAB_MODE
    seed: int  # WINLAB_SEED
    index: int  # orders runs in time and picks ids

    @property
    def group(self) -> str:
        """``baseline`` (benign runs, to learn from) or ``triggered`` (runs with a loader)."""
        return "baseline" if self.mode == 0 else "triggered"

    @property
    def pid(self) -> int:
        return 6000 + 132 * self.index

    @property
    def start(self) -> datetime:
        return EPOCH + timedelta(hours=self.index)


RUNS = (
    Run("benign-1", 0, 1, 0),
    Run("benign-2", 0, 2, 1),
    Run("benign-3", 0, 3, 2),
    Run("benign-4", 0, 4, 3),
    Run("benign-5", 0, 5, 4),
    Run("reflective", 1, 1, 5),
    Run("shellcode", 2, 2, 6),
    Run("rwx", 3, 3, 7),
)


# -- build -------------------------------------------------------------------------------------


def build(build_dir: Path) -> dict[str, Path]:
    """Compile payload.dll and every dochost variant; returns run name -> exe path."""
    build_dir.mkdir(parents=True, exist_ok=True)
    payload = build_dir / "payload.dll"
    _cc(
        [*CFLAGS, "-shared", "-e", "DllMain", "-Wl,--dynamicbase,--enable-reloc-section"],
        HERE / "payload.c",
        payload,
    )
    data = payload.read_bytes()
    header = build_dir / "payload_dll.h"
    body = ",".join(str(b) for b in data)
    header.write_text(
        "/* generated by record.py from payload.dll: do not edit */\n"
        f"static const unsigned char payload_dll[{len(data)}] = {{{body}}};\n"
    )
    exes: dict[str, Path] = {}
    for run in RUNS:
        out = build_dir / run.name / IMAGE_NAME
        out.parent.mkdir(parents=True, exist_ok=True)
        _cc(
            [
                *CFLAGS,
                f"-I{build_dir}",
                f"-DWINLAB_MODE={run.mode}",
                f"-DWINLAB_SEED={run.seed}",
                "-e",
                "entry",
            ],
            HERE / "dochost.c",
            out,
        )
        exes[run.name] = out
    return exes


def _cc(flags: list[str], src: Path, out: Path) -> None:
    cmd = [CC, *flags, "-o", str(out), str(src), *LIBS]
    subprocess.run(cmd, check=True, cwd=HERE)


# -- emulate -----------------------------------------------------------------------------------


def emulate(exe: Path) -> tuple[list[dict[str, Any]], list[tuple[str, int, int]], list[str]]:
    """Run ``exe`` in speakeasy: (entry points with their API calls, user modules as
    (name, base, size), names of the DLLs the exe imports)."""
    import pefile  # type: ignore[import-untyped]
    import speakeasy  # type: ignore[import-untyped]

    se = speakeasy.Speakeasy()
    module = se.load_module(str(exe))
    se.run_module(module, all_entrypoints=False)
    report = json.loads(se.get_json_report())
    modules = [
        (m.get_base_name(), int(m.get_base()), int(m.get_image_size()))
        for m in se.get_user_modules()
    ]
    pe = pefile.PE(str(exe), fast_load=False)
    imports = [e.dll.decode().lower() for e in getattr(pe, "DIRECTORY_ENTRY_IMPORT", [])]
    pe.close()
    return report["entry_points"], modules, imports


def timeline(entry_points: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """The calls of all threads in run order as ``(thread_index, api)``; each created thread's
    calls are placed right after the ``CreateThread`` that started it (see module docstring)."""
    main = next(ep for ep in entry_points if ep.get("ep_type") == "module_entry")
    pending = [ep for ep in entry_points if ep.get("ep_type") == "thread"]
    out: list[tuple[int, dict[str, Any]]] = []
    counter = [0]

    def walk(ep: dict[str, Any], index: int) -> None:
        for api in ep.get("apis", []):
            out.append((index, api))
            if api["api_name"].split(".")[-1] == "CreateThread":
                start = int(api["args"][2], 16)
                child = next((t for t in pending if int(t["start_addr"], 16) == start), None)
                if child is None:
                    continue
                pending.remove(child)
                counter[0] += 1
                api["_child"] = counter[0]
                walk(child, counter[0])

    walk(main, 0)
    return out


# -- convert -----------------------------------------------------------------------------------


class Recorder:
    """Turns one run's API timeline into ETW-shaped events."""

    def __init__(self, run: Run, modules: list[tuple[str, int, int]], ti_filter: bool) -> None:
        self.run = run
        self.ti_filter = ti_filter
        self.events: list[dict[str, Any]] = []
        self.clock = run.start
        self.image_base, self.image_size = next(
            (b, s) for n, b, s in modules if n.lower() == IMAGE_NAME.removesuffix(".exe")
        )
        self.modules = {n.lower(): (b, s) for n, b, s in modules}
        self.regions: dict[int, tuple[int, int]] = {}  # base -> (size, protection at alloc)
        self.pages: dict[int, int] = {}  # page -> current protection
        self.sport = 49700
        self.create_ft = _filetime(run.start)

    def tid(self, index: int) -> int:
        return self.run.pid + 4 + 8 * index

    # -- helpers
    def _tick(self) -> str:
        self.clock += STEP
        return self.clock.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"  # 7 digits, as .NET writes

    def _header(self, provider: str, event_id: int, version: int, tid: int, pid: int) -> dict:
        return {
            "ProviderName": provider,
            "EventId": event_id,
            "Version": version,
            "TimeStamp": self._tick(),
            "Computer": HOST,
            "ProcessId": pid,
            "ThreadId": tid,
            "ProcessName": IMAGE_NAME,
        }

    def _frame(self, pc: int) -> str:
        if self.image_base <= pc < self.image_base + self.image_size:
            return f"{IMAGE_NAME}+0x{pc - self.image_base:x}"
        for name, (base, size) in self.modules.items():
            if base <= pc < base + size:
                return f"{name}.dll+0x{pc - base:x}"
        return f"0x{pc:x}"  # in no module: a bare address, as stack walkers print it

    def _stack(self, api: dict[str, Any]) -> list[str]:
        dll, _, fn = api["api_name"].partition(".")
        return [f"{dll.lower()}.dll!{fn}", self._frame(int(api["pc"], 16))]

    def _caller(self, tid: int) -> dict[str, Any]:
        return {
            "CallingProcessId": self.run.pid,
            "CallingProcessCreateTime": self.create_ft,
            "CallingThreadId": tid,
            "TargetProcessId": self.run.pid,
            "TargetProcessCreateTime": self.create_ft,
        }

    def _region_of(self, addr: int) -> tuple[int, int, int] | None:
        for base, (size, prot) in self.regions.items():
            if base <= addr < base + size:
                return base, size, prot
        return None

    def _vad(self, addr: int) -> dict[str, Any]:
        region = self._region_of(addr)
        if region is None:
            return {"VaVadQueryResult": 0xC0000141}  # STATUS_INVALID_ADDRESS: no VAD
        base, size, prot = region
        return {
            "VaVadQueryResult": 0,
            "VaVadAllocationBase": f"0x{base:x}",
            "VaVadAllocationProtect": prot,
            "VaVadRegionType": MEM_PRIVATE,
            "VaVadRegionSize": f"0x{size:x}",
            "VaVadCommitSize": f"0x{size:x}",
            "VaVadMmfName": "",
        }

    # -- events
    def process_start(self, imports: list[str]) -> None:
        ev = self._header(KPROC, 1, 3, 0, PARENT_PID)
        ev["ProcessName"] = "explorer.exe"
        ev.update(
            ProcessID=self.run.pid,
            CreateTime=self.create_ft,
            ParentProcessID=PARENT_PID,
            SessionID=1,
            ImageName=IMAGE_PATH,
        )
        self.events.append(ev)
        self.image_load(IMAGE_PATH, self.image_base, self.image_size)
        for dll in ("ntdll.dll", "kernel32.dll", *imports):
            self._load_system(dll)

    def _load_system(self, dll: str) -> None:
        name = dll.lower().removesuffix(".dll")
        base, size = self.modules.get(name, (0, 0))
        if base:
            self.image_load(SYSTEM32 + name + ".dll", base, size)

    def image_load(self, path: str, base: int, size: int) -> None:
        ev = self._header(KPROC, 5, 0, self.tid(0), self.run.pid)
        ev.update(
            ImageBase=f"0x{base:x}", ImageSize=f"0x{size:x}", ProcessID=self.run.pid, ImageName=path
        )
        self.events.append(ev)

    def api(self, index: int, api: dict[str, Any]) -> None:
        name = api["api_name"].split(".")[-1]
        args = api["args"]
        tid = self.tid(index)
        ret = _int(api.get("ret_val"))
        if name == "VirtualAlloc":
            prot = _prot(args[3])
            size = -(-_int(args[1]) // PAGE) * PAGE
            if not ret:
                return
            self.regions[ret] = (size, prot)
            for page in range(ret, ret + size, PAGE):
                self.pages[page] = prot
            if self.ti_filter and not prot & EXEC_BITS:
                return
            ev = self._header(TI, 6, 0, tid, self.run.pid)
            ev.update(self._caller(tid))
            ev.update(
                BaseAddress=f"0x{ret:x}",
                RegionSize=f"0x{size:x}",
                AllocationType=_int(args[2]),
                ProtectionMask=prot,
                Stack=self._stack(api),
            )
            self.events.append(ev)
        elif name == "VirtualProtect":
            addr, new = _int(args[0]), _prot(args[2])
            start = addr & ~(PAGE - 1)
            end = -(-(addr + _int(args[1])) // PAGE) * PAGE
            old = self.pages.get(start, 0)
            for page in range(start, end, PAGE):
                self.pages[page] = new
            if self.ti_filter and not (new | old) & EXEC_BITS:
                return
            ev = self._header(TI, 7, 2, tid, self.run.pid)
            ev.update(self._caller(tid))
            ev.update(
                BaseAddress=f"0x{start:x}",
                RegionSize=f"0x{end - start:x}",
                ProtectionMask=new,
                LastProtectionMask=old,
                **self._vad(start),
                Stack=self._stack(api),
            )
            self.events.append(ev)
        elif name == "WriteProcessMemory":
            addr = _int(args[1])
            ev = self._header(TI, 12, 2, tid, self.run.pid)
            ev["OperationStatus"] = 0
            ev.update(self._caller(tid))
            ev.update(
                BaseAddress=f"0x{addr:x}",
                BytesCopied=f"0x{_int(args[3]):x}",
                **self._vad(addr),
                Stack=self._stack(api),
            )
            self.events.append(ev)
        elif name == "CreateThread":
            start = _int(args[2])
            ev = self._header(KPROC, 3, 1, tid, self.run.pid)
            ev.update(
                ProcessID=self.run.pid,
                ThreadID=self.tid(api.get("_child", 0)),
                StartAddr=f"0x{start:x}",
                Win32StartAddr=f"0x{start:x}",
                Stack=self._stack(api),
            )
            self.events.append(ev)
        elif name == "LoadLibraryA":
            if ret:
                self._load_system(str(args[0]))
        elif name == "connect":
            ip, _, port = str(args[1]).rpartition(":")
            self.sport += 1
            ev = self._header(KNET, 12, 0, tid, self.run.pid)
            ev.update(
                PID=self.run.pid,
                size=0,
                daddr=ip,
                saddr="127.0.0.1",
                dport=int(port),
                sport=self.sport,
                connid=0,
            )
            self.events.append(ev)
        elif name == "ExitProcess":
            ev = self._header(KPROC, 2, 2, tid, self.run.pid)
            ev.update(
                ProcessID=self.run.pid,
                CreateTime=self.create_ft,
                ExitCode=_int(args[0]),
                ImageName=IMAGE_NAME,
            )
            self.events.append(ev)


def _int(value: Any) -> int:
    if isinstance(value, int):
        return value
    s = str(value)
    return int(s, 16) if s.lower().startswith("0x") else int(s)


def _prot(value: Any) -> int:
    return PROTECTIONS[value] if value in PROTECTIONS else _int(value)


def _filetime(when: datetime) -> int:
    return FILETIME_EPOCH + int((when - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()) * 10**7


#: output format -> file extension (flat is the fixtures' shape; the others via shapes.py)
FORMATS = {"flat": ".jsonl", "silketw": ".json", "xml": ".xml", "elastic": ".ndjson"}


def record(
    out_dir: Path, build_dir: Path, *, ti_filter: bool = False, fmt: str = "flat"
) -> list[Path]:
    """Build, emulate and write one ``<group>/<run>.<ext>`` per run into ``out_dir``."""
    exes = build(build_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for run in RUNS:
        entry_points, modules, imports = emulate(exes[run.name])
        rec = Recorder(run, modules, ti_filter)
        rec.process_start([d for d in imports if d not in ("kernel32.dll", "ntdll.dll")])
        for index, api in timeline(entry_points):
            rec.api(index, api)
        path = out_dir / run.group / f"{run.name}{FORMATS[fmt]}"
        path.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "flat":
            text = "".join(json.dumps(ev, separators=(",", ":")) + "\n" for ev in rec.events)
        else:
            from shapes import render  # tools/winlab/shapes.py, beside this script

            text = render(rec.events, fmt)
        path.write_text(text, encoding="utf-8", newline="\n")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument(
        "--out", type=Path, required=True, help="directory for baseline/ and triggered/ runs"
    )
    ap.add_argument("--build", type=Path, help="build directory (default: a temporary one)")
    ap.add_argument(
        "--ti-filter",
        action="store_true",
        help="drop allocations/protections without an executable bit, as the provider does",
    )
    ap.add_argument(
        "--format",
        choices=sorted(FORMATS),
        default="flat",
        help="flat manifest JSON (the fixtures), or as SilkETW, event XML or Elastic Defend",
    )
    args = ap.parse_args(argv)
    if shutil.which(CC) is None:
        print(f"{CC} not found (apt-get install gcc-mingw-w64-x86-64)", file=sys.stderr)
        return 2
    try:
        import speakeasy  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        print("speakeasy not importable (pip install speakeasy-emulator)", file=sys.stderr)
        return 2
    if args.build is not None:
        paths = record(args.out, args.build, ti_filter=args.ti_filter, fmt=args.format)
    else:
        with tempfile.TemporaryDirectory(prefix="winlab-") as tmp:
            paths = record(args.out, Path(tmp), ti_filter=args.ti_filter, fmt=args.format)
    for p in paths:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
