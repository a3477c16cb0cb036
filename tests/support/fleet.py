"""A generated multi-host fleet: ordinary programs with executable-memory churn on every host,
and one reflective loader on one host (the positive control of the parity tests)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pyarrow as pa

from tests.support.events import (
    API_TRACE,
    CLEAN_TRACE,
    MANAGED_TRACE,
    T0,
    connect,
    events,
    launch,
    memory,
    module_load,
    open_process,
    remote_thread,
)

NOTEPAD = r"C:\Windows\System32\notepad.exe"
EXPLORER = r"C:\Windows\explorer.exe"
POWERSHELL = r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe"
CLRJIT = r"C:\Windows\Microsoft.NET\Framework64\v4.0.30319\clrjit.dll"
CLR = r"C:\Windows\Microsoft.NET\Framework64\v4.0.30319\clr.dll"
SMA = r"C:\Windows\assembly\NativeImages\System.Management.Automation.ni.dll"
LOADER = r"C:\Users\bob\Downloads\invoice.exe"
#: the host, injector and target of the loader
VICTIM_HOST = "ws03.corp.example"
INJECTOR_UID = f"{VICTIM_HOST}:loader"
TARGET_UID = f"{VICTIM_HOST}:notepad:1"


def fleet(hosts: int = 6, notepads: int = 3) -> pa.Table:
    """Events of ``hosts`` hosts, interleaved in time the way a collector would deliver them."""
    rows: list[dict[str, Any]] = []
    for h in range(hosts):
        rows += _host(f"ws{h:02d}.corp.example", notepads, seed=h)
    # one shared clock: host streams are interleaved, each host keeps its own order
    rows.sort(key=lambda r: (r["time"], r["host"]))
    table = events(rows)
    return table


def _host(host: str, notepads: int, seed: int) -> list[dict[str, Any]]:
    t = T0 + timedelta(milliseconds=seed * 7)
    out: list[dict[str, Any]] = []

    def add(row: dict[str, Any]) -> None:
        nonlocal t
        t += timedelta(milliseconds=250)
        out.append({**row, "host": host, "time": t, "src_file": f"{host}.jsonl",
                    "src_line": len(out) + 1})  # fmt: skip

    explorer = f"{host}:explorer"
    add(launch(explorer, EXPLORER, pid=1000))
    for i in range(notepads):
        uid = f"{host}:notepad:{i}"
        base = 0x10000000 + 0x100000 * i + 0x10000 * seed
        add(launch(uid, NOTEPAD, parent=explorer, parent_image=EXPLORER, pid=2000 + i))
        add(module_load(uid, NOTEPAD, r"C:\Windows\System32\ntdll.dll"))
        add(memory(uid, NOTEPAD, "allocate", base, 0x1000, 0x04))
        add(memory(uid, NOTEPAD, "protect", base, 0x1000, 0x20, old=0x04, caller_module=NOTEPAD))
        add(memory(uid, NOTEPAD, "allocate", base + 0x10000, 0x2000 << (i % 2), 0x20,
                   region_type="image", backing_path=NOTEPAD, caller_module=NOTEPAD))  # fmt: skip
    for i in range(2):
        uid = f"{host}:powershell:{i}"
        add(launch(uid, POWERSHELL, parent=explorer, parent_image=EXPLORER, pid=3000 + i))
        add(module_load(uid, POWERSHELL, CLR))
        add(module_load(uid, POWERSHELL, SMA))
        for j in range(3 + seed % 3):
            add(memory(uid, POWERSHELL, "allocate", 0x20000000 + 0x10000 * j, 0x10000, 0x40,
                       caller_module=CLRJIT))  # fmt: skip
        add(open_process(uid, POWERSHELL, f"{host}:notepad:0", NOTEPAD, MANAGED_TRACE,
                         access=0x1000))  # fmt: skip
        add(open_process(uid, POWERSHELL, explorer, EXPLORER, CLEAN_TRACE, access=0x1000))
        if seed % 2:
            add(launch(f"{host}:cmd:{i}", r"C:\Windows\System32\cmd.exe", parent=uid,
                       parent_image=POWERSHELL, pid=3100 + i))  # fmt: skip
    if host == VICTIM_HOST:
        # the loader: open notepad from unbacked code, write a PE into fresh RWX memory there,
        # start a thread in it; notepad then calls out
        add(launch(INJECTOR_UID, LOADER, parent=explorer, parent_image=EXPLORER, pid=4444))
        add(open_process(INJECTOR_UID, LOADER, TARGET_UID, NOTEPAD, API_TRACE))
        add(memory(INJECTOR_UID, LOADER, "allocate", 0x7FF00000, 0x3A000, 0x40,
                   target_uid=TARGET_UID, target_image=NOTEPAD, header_kind="pe",
                   caller_unbacked=True))  # fmt: skip
        add(remote_thread(INJECTOR_UID, LOADER, TARGET_UID, NOTEPAD, 0x7FF01000))
        add(connect(TARGET_UID, NOTEPAD))
    return out
