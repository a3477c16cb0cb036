"""A true-positive and a false-positive event set for every rule (the conformance test fails
for a registered rule without an entry here)."""

from __future__ import annotations

import base64

from tests.support.events import (
    CALLBACK_TRACE,
    CLEAN_TRACE,
    CRYPT32_CALLBACK_TRACE,
    GDI_CALLBACK_TRACE,
    HOSTED_TRACE,
    IMAGE_RANGE_TRACE,
    KERNEL_TRACE,
    MANAGED_TRACE,
    ONLY_TRACE,
    launch,
    memory,
    module_load,
    open_process,
    remote_thread,
)

PS = r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe"
NOTEPAD = r"C:\Windows\System32\notepad.exe"
CSRSS = r"C:\Windows\System32\csrss.exe"
IE = r"C:\Program Files\Internet Explorer\iexplore.exe"
EXCHANGE = r"C:\Program Files\Microsoft\Exchange Server\V15\Bin\Search\Ceres"
EXCHANGE_HOST = EXCHANGE + r"\HostController\hostcontrollerservice.exe"
EXCHANGE_WORKER = EXCHANGE + r"\Runtime\1.0\NodeRunner.exe"
AGENT = r"C:\Packages\Agent\agent.exe"
STAGER = (
    "powershell.exe -nop -w hidden -c &([scriptblock]::create((New-Object IO.StreamReader("
    "New-Object IO.Compression.GzipStream((New-Object IO.MemoryStream(,[Convert]::"
    "FromBase64String('H4sIAIuvyFwCA7VW'))),[IO.Compression.CompressionMode]::Decompress)))"
    ".ReadToEnd()))"
)
BENIGN_ENC = (
    "powershell.exe -NoProfile -EncodedCommand "
    + base64.b64encode(
        "Get-Process | Sort-Object CPU -Descending | Select-Object -First 5".encode("utf-16-le")
    ).decode()
)
ENC_LOADER = (
    "powershell.exe -enc "
    + base64.b64encode(
        "$a=[System.Reflection.Assembly]::Load($bytes); $a.EntryPoint.Invoke($null,$null)".encode(
            "utf-16-le"
        )
    ).decode()
)
LINUX = {"os": "linux"}


def _xwrite(actor: str, target: str, base: int, size: int, *, vm_flags: int = 0x75, **kw) -> dict:
    """A write into a process's memory (ptrace POKE, process_vm_writev, /proc/PID/mem)."""
    return {
        "kind": "memory",
        "activity": "write",
        "event_code": kw.pop("event_code", "linux:ptrace_poketext"),
        "process_uid": actor,
        "pid": kw.pop("pid", 200),
        "image": kw.pop("image", "/tmp/inject"),
        "target_uid": target,
        "target_pid": kw.pop("target_pid", 300),
        "target_image": kw.pop("target_image", "/usr/bin/sleep"),
        "target_parent_pid": kw.pop("target_parent_pid", 1),
        "base_address": base,
        "region_size": size,
        "region_type": kw.pop("region_type", "file"),
        "backing_path": kw.pop("backing_path", "/usr/bin/sleep"),
        "vm_flags": vm_flags,
        **LINUX,
        **kw,
    }


def _setregs(actor: str, target: str, ip: int, **kw) -> dict:
    return {
        "kind": "thread",
        "activity": "set_context",
        "event_code": "linux:ptrace_setregs",
        "process_uid": actor,
        "image": kw.pop("image", "/tmp/inject"),
        "target_uid": target,
        "start_address": ip,
        **LINUX,
        **kw,
    }


TEXT = 0x5555_5555_5000


def _anon_flip(uid: str, image: str, old: int, new: int, caller: str | None, **kw) -> dict:
    """A Linux mprotect of an anonymous page, as the sensor records it."""
    return {
        "kind": "memory",
        "activity": "protect",
        "process_uid": uid,
        "image": image,
        "base_address": 0x7F0000001000,
        "region_size": 0x1000,
        "protection": new,
        "old_protection": old,
        "region_type": "anonymous",
        "caller_module": caller,
        "caller_unbacked": caller is None,
        **LINUX,
        **kw,
    }


def _connect_linux(uid: str, image: str) -> dict:
    return {
        "kind": "network",
        "activity": "connect",
        "process_uid": uid,
        "image": image,
        "remote_ip": "10.0.0.5",
        "remote_port": 443,
        "direction": "outbound",
        **LINUX,
    }


FIXTURES: dict[str, dict] = {
    "UNB-W-001": {
        "tp": [remote_thread("inj", PS, "victim", NOTEPAD, 0x590000)],
        "fp": [
            remote_thread("dwm", r"C:\Windows\System32\dwm.exe", "c1", CSRSS, 0xFFFFF80012345678),
            remote_thread(
                "c1",
                CSRSS,
                "p1",
                PS,
                0x7FFEA99B61E0,
                module=r"C:\Windows\System32\KERNELBASE.dll",
                function="CtrlRoutine",
            ),
        ],
        "subject": "victim",
        "actor": "inj",
    },
    "UNB-W-002": {
        "tp": [
            open_process("sc", r"C:\Users\Public\za3bollo.exe", "n", NOTEPAD, ONLY_TRACE),
            # exploit shellcode in a browser run from a callback, opening its own child
            launch("cmd", r"C:\Windows\System32\cmd.exe", parent="ie", parent_image=IE),
            open_process("ie", IE, "cmd", r"C:\Windows\System32\cmd.exe", CALLBACK_TRACE),
            # shellcode run as an EnumFonts / CertEnumSystemStore callback (Windows DLLs call it)
            open_process("gdi", r"C:\Users\Public\a.exe", "n", NOTEPAD, GDI_CALLBACK_TRACE),
            open_process("cry", r"C:\Users\Public\b.exe", "n", NOTEPAD, CRYPT32_CALLBACK_TRACE),
            # a JIT engine's name dropped beside the payload makes no managed host
            module_load("dr", r"C:\Users\Public\c.exe", r"C:\Users\Public\node.dll"),
            open_process("dr", r"C:\Users\Public\c.exe", "n", NOTEPAD, ONLY_TRACE),
        ],
        "fp": [
            open_process("ex", r"C:\Windows\explorer.exe", "n", NOTEPAD, KERNEL_TRACE),
            open_process("svc", r"C:\Windows\System32\svchost.exe", "n", NOTEPAD, CLEAN_TRACE),
            open_process("ps", PS, "n", NOTEPAD, MANAGED_TRACE),
            # a .NET service's JIT code in the image range, querying its worker process
            open_process("hc", EXCHANGE_HOST, "w", EXCHANGE_WORKER, IMAGE_RANGE_TRACE, 0x101400),
            # an agent's own binary calling generated code that starts its child
            launch("ns", r"C:\Windows\System32\netsh.exe", parent="ag", parent_image=AGENT),
            open_process("ag", AGENT, "ns", r"C:\Windows\System32\netsh.exe", HOSTED_TRACE),
        ],
        "subject": "sc",
    },
    "UNB-W-003": {
        "tp": [launch("stager", PS, cmd=STAGER), launch("enc", PS, cmd=ENC_LOADER, pid=101)],
        "fp": [
            launch("admin", PS, cmd=BENIGN_ENC),
            launch("conv", PS, cmd="powershell -c \"[Convert]::FromBase64String('aGVsbG8=')\""),
        ],
        "subject": "stager",
    },
    "UNB-W-004": {
        "tp": [
            *[
                module_load(f"np{i}", NOTEPAD, r"C:\Windows\System32\comctl32.dll", pid=200 + i)
                for i in range(5)
            ],
            module_load("np0", NOTEPAD, r"C:\Windows\Microsoft.NET\Framework64\v4.0.30319\clr.dll"),
        ],
        "fp": [
            *[
                module_load(
                    f"ps{i}",
                    PS,
                    r"C:\Windows\Microsoft.NET\Framework64\v4.0.30319\clr.dll",
                    pid=300 + i,
                )
                for i in range(6)
            ],
        ],
        "subject": "np0",
    },
    "UNB-W-005": {
        "tp": [
            {
                "kind": "process",
                "activity": "tamper",
                "process_uid": "hollow",
                "image": NOTEPAD,
                "description": "Image is replaced",
            }
        ],
        "fp": [
            {
                "kind": "process",
                "activity": "tamper",
                "process_uid": "x",
                "image": NOTEPAD,
                "description": "Image is locked for access",
            }
        ],
        "subject": "hollow",
    },
    "UNB-W-006": {
        "tp": [
            remote_thread(
                "mav",
                r"C:\Windows\System32\mavinject.exe",
                "np",
                NOTEPAD,
                0x7FFB9285E540,
                module=r"C:\Windows\System32\KERNEL32.DLL",
                function="LoadLibraryW",
            )
        ],
        "fp": [
            remote_thread(
                "c1",
                CSRSS,
                "p1",
                PS,
                0x7FFEA99B61E0,
                module=r"C:\Windows\System32\KERNELBASE.dll",
                function="CtrlRoutine",
            )
        ],
        "subject": "np",
        "actor": "mav",
    },
    "UNB-M-001": {
        "tp": [
            memory(
                "ld",
                "/usr/bin/loader",
                "protect",
                0x7F0000000000,
                0x4000,
                0x5,
                old=0x3,
                header_kind="elf",
                region_type="anonymous",
                **LINUX,
            )
        ],
        "fp": [
            memory(
                "ok",
                "/usr/bin/python3",
                "allocate",
                0x7F0000100000,
                0x4000,
                0x5,
                header_kind="elf",
                region_type="file",
                backing_path="/usr/lib/libc.so.6",
                **LINUX,
            )
        ],
        "subject": "ld",
    },
    "UNB-M-002": {
        "tp": [
            memory(
                "s1",
                r"C:\x\doc.exe",
                "protect",
                0x2000000,
                0x1000,
                0x20,
                old=0x04,
                caller_unbacked=True,
            )
        ],
        "fp": [
            memory(
                "s2",
                r"C:\x\doc.exe",
                "protect",
                0x2000000,
                0x1000,
                0x20,
                old=0x04,
                caller_unbacked=False,
                caller_module=r"C:\x\doc.exe",
            )
        ],
        "subject": "s1",
    },
    "UNB-M-003": {
        "tp": [
            memory(
                "r1",
                r"C:\x\acrord32.exe",
                "allocate",
                0x3000000,
                0x3A000,
                0x40,
                caller_module=r"C:\x\acrord32.exe",
            ),
            # a payload named like the runtime, but not it
            memory(
                "r2",
                "/tmp/.x/run",
                "allocate",
                0x7F0000000000,
                0x10000,
                7,
                os="linux",
                region_type="anonymous",
                caller_module="libclrjit-x.so",
            ),
        ],
        "fp": [
            memory(
                "j1",
                r"C:\x\app.exe",
                "allocate",
                0x3000000,
                0x10000,
                0x40,
                caller_module=r"C:\Windows\Microsoft.NET\Framework64\v4.0.30319\clrjit.dll",
            ),
            # .NET's JIT on Linux, and QEMU's code translator (its own executable)
            memory(
                "j2",
                "/usr/bin/dotnet",
                "allocate",
                0x7F0000000000,
                0x10000,
                7,
                os="linux",
                region_type="anonymous",
                caller_module="libclrjit.so",
            ),
            memory(
                "j3",
                "/usr/bin/qemu-aarch64",
                "allocate",
                0x7F0000000000,
                0x10000,
                7,
                os="linux",
                region_type="anonymous",
                caller_module="qemu-aarch64",
            ),
        ],
        "subject": "r1",
    },
    "UNB-M-004": {
        "tp": [
            memory("ld", r"C:\x\doc.exe", "allocate", 0x5000000, 0x2000, 0x04),
            memory("ld", r"C:\x\doc.exe", "protect", 0x5000000, 0x2000, 0x20, old=0x04),
            {
                "kind": "thread",
                "activity": "thread_create",
                "process_uid": "ld",
                "image": r"C:\x\doc.exe",
                "start_address": 0x5000100,
            },
        ],
        "fp": [
            memory("jit", r"C:\x\doc.exe", "protect", 0x6000000, 0x2000, 0x20, old=0x04),
            {
                "kind": "thread",
                "activity": "thread_create",
                "process_uid": "jit",
                "image": r"C:\x\doc.exe",
                "start_address": 0x7000000,
            },
        ],
        "subject": "ld",
    },
    "UNB-M-005": {
        "tp": [
            {
                "kind": "process",
                "activity": "exec",
                "process_uid": "mf",
                "image": "/memfd:x",
                **LINUX,
            }
        ],
        "fp": [
            {
                "kind": "process",
                "activity": "exec",
                "process_uid": "ls",
                "image": "/usr/bin/ls",
                **LINUX,
            }
        ],
        "subject": "mf",
    },
    "UNB-M-006": {
        "tp": [
            memory(
                "raw",
                "/tmp/loader",
                "protect",
                0x7F0000000000,
                0x1000,
                0x5,
                old=0x3,
                syscall_outside_libc=True,
                **LINUX,
            )
        ],
        "fp": [
            memory(
                "lc",
                "/usr/bin/python3",
                "protect",
                0x7F0000000000,
                0x1000,
                0x5,
                old=0x3,
                syscall_outside_libc=False,
                **LINUX,
            )
        ],
        "subject": "raw",
    },
    "UNB-L-001": {
        # ctypes flipping its own page RW -> RX through libffi (a shellcode runner)
        "tp": [_anon_flip("py", "/usr/bin/python3.11", 0x3, 0x5, "libffi.so.8")],
        "fp": [
            _anon_flip("lj", "/usr/bin/luajit", 0x3, 0x5, "luajit"),  # LuaJIT's own toggles
            _anon_flip("nd", "/usr/bin/node", 0x0, 0x7, "node"),  # V8 carve-out
        ],
        "subject": "py",
    },
    "UNB-L-003": {
        # DDexec: the shell writes a stub into its own libc text through /proc/self/mem
        "tp": [
            _xwrite(
                "sh",
                "sh",
                0x7F00_0000_12AD,
                80,
                event_code="linux:write_mem",
                image="/usr/bin/bash",
                backing_path="/usr/lib/x86_64-linux-gnu/libc.so.6",
            )
        ],
        "fp": [
            # a write into its own data (not code), and a debugger's write into its tracee
            _xwrite(
                "db",
                "db",
                0x7F00_0000_0000,
                64,
                vm_flags=0x73,
                event_code="linux:write_mem",
                image="/usr/bin/python3",
                region_type="heap",
            ),
            _xwrite("gdb", "tr", TEXT, 1, event_code="linux:pwrite_mem", image="/usr/bin/gdb"),
        ],
        "subject": "sh",
    },
    "UNB-L-004": {
        # linux-inject: stub poked word by word into a non-child's text, RIP set into it
        "tp": [
            _setregs("inj", "victim", TEXT + 2),
            *[_xwrite("inj", "victim", TEXT + 8 * i, 8) for i in range(12)],
        ],
        "fp": [
            # gdb -p: one-byte breakpoints in a non-child, RIP moved back onto its own code
            *[
                _xwrite(
                    "gdb",
                    "prog",
                    TEXT + 0x100 * i,
                    1,
                    event_code="linux:pwrite_mem",
                    image="/usr/bin/gdb",
                )
                for i in range(8)
            ],
            _setregs("gdb", "prog", TEXT + 0x100, image="/usr/bin/gdb"),
            # a tracer patching a few words of its own child (rr-style), no redirect into them
            *[
                _xwrite(
                    "rr",
                    "kid",
                    TEXT + 8 * i,
                    8,
                    image="/usr/bin/rr",
                    pid=500,
                    target_parent_pid=500,
                )
                for i in range(8)
            ],
        ],
        "subject": "victim",
    },
    "UNB-L-005": {
        # a loader copied as `node` into /tmp: not Node.js
        "tp": [_anon_flip("fk", "/tmp/x/node", 0x0, 0x7, "node")],
        "fp": [_anon_flip("nd", "/usr/bin/node", 0x0, 0x7, "node")],
        "subject": "fk",
    },
    "UNB-W-007": {
        # a loader named svchost.exe in a user's profile; a JIT engine's name in Temp
        "tp": [
            launch(
                "fake", r"C:\Users\bob\AppData\Roaming\svchost.exe", image_hash="md5:" + "1" * 32
            ),
            memory(
                "fake",
                r"C:\Users\bob\AppData\Roaming\svchost.exe",
                "protect",
                0x10000,
                4096,
                0x40,
                0x04,
            ),
            launch("nd", r"C:\Users\bob\AppData\Local\Temp\x\node.exe"),
        ],
        "fp": [
            # the real ones, a new hash of svchost at its usual place, a name without a path
            launch("svc", r"C:\Windows\System32\svchost.exe", image_hash="md5:" + "2" * 32),
            launch("wow", r"\Device\HarddiskVolume2\Windows\SysWOW64\rundll32.exe"),
            launch("ex", r"C:\Windows\explorer.exe"),
            launch("node", r"C:\Program Files\nodejs\node.exe"),
            launch("bare", "svchost.exe"),
        ],
        "subject": "fake",
    },
    "UNB-L-002": {
        "tp": [
            _anon_flip("ld", "/tmp/loader", 0x3, 0x5, "loader", header_kind="elf"),
            _connect_linux("ld", "/tmp/loader"),
        ],
        "fp": [
            _connect_linux("cr", "/usr/lib/chromium/chromium"),
            _anon_flip("cr", "/usr/lib/chromium/chromium", 0x0, 0x7, "chromium"),
        ],
        "subject": "ld",
    },
}
