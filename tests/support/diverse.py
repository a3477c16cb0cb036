"""A fleet as diverse as real ones: every process instance its own program, on 1,000 hosts,
each with its own command line, module and call trace, built column by column (no Python
object per event). One reflective loader among them is the positive control.

``diverse_fleet(programs=10_000, hosts=1_000)`` has ``programs`` distinct images, about four
events per instance (launch, module load, process open with a call trace, connection) and the
loader's four events on host 0. ``src_file``: the provenance every event names (the path the
table is written to, for ``eval`` to match alerts to their file).
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from unbacked.model.schema import EVENT_SCHEMA, conform

T0_NS = int(datetime(2024, 3, 1, tzinfo=UTC).timestamp() * 1e9)
SYS = "C:\\Windows\\System32"
#: the loader's host, uid and its target (the injected notepad)
LOADER_HOST = "host0000.corp.example"
LOADER_UID = "{00000000-aaaa-bbbb-cccc-000000000001}"
VICTIM_UID = "{00000000-aaaa-bbbb-cccc-000000000002}"
LOADER_IMAGE = "C:\\Users\\bob\\Downloads\\invoice.exe"
VICTIM_IMAGE = SYS + "\\notepad.exe"


def _str(values) -> pa.Array:
    return pa.array(values, pa.string())


def diverse_fleet(
    programs: int = 10_000, hosts: int = 1_000, src_file: str = "diverse.parquet"
) -> pa.Table:
    i = np.arange(programs)
    host = np.char.add("host", np.char.zfill((i % hosts).astype(str), 4))
    host = np.char.add(host, ".corp.example")
    uid = np.char.add(
        np.char.add("{", np.char.zfill(i.astype(str), 8)), "-0000-0000-0000-000000000000}"
    )
    image = np.char.add(np.char.add("C:\\Apps\\Vendor", (i % 97).astype(str)), "\\tool")
    image = np.char.add(np.char.add(image, i.astype(str)), ".exe")
    parent = np.char.add("{", np.char.add(np.char.zfill((i % hosts).astype(str), 8),
                                          "-ffff-0000-0000-000000000000}"))  # fmt: skip
    cmd = np.char.add(np.char.add(image, " --job "), (i * 7919 % 100_003).astype(str))
    module = np.char.add(np.char.add("C:\\Apps\\Vendor", (i % 97).astype(str)), "\\lib")
    module = np.char.add(np.char.add(module, i.astype(str)), ".dll")
    # distinct call traces: the program's own module at its own offset; every 50th instance
    # has JIT-like unbacked frames in the image range, every 70th a hosted-code shape
    own = np.char.add(np.char.add(image, "+"), np.char.mod("%x", 0x1000 + i))
    head = SYS + "\\ntdll.dll+9d4c4|" + SYS + "\\KERNELBASE.dll+2c13e|"
    tail = "|" + SYS + "\\KERNEL32.DLL+17bd4|" + SYS + "\\ntdll.dll+6ce51"
    trace = np.char.add(np.char.add(head, own), tail)
    jit = np.char.add(
        SYS + "\\ntdll.dll+9d4c4|" + SYS + "\\KERNELBASE.dll+2c13e|UNKNOWN(",
        np.char.add(np.char.mod("%016X", 0x7FFE00000000 + i * 0x40), ")"),
    )
    hosted = np.char.add(np.char.add(SYS + "\\ntdll.dll+1|" + SYS + "\\KERNEL32.DLL+2|UNKNOWN(",
                                     np.char.mod("%012X", 0x24F00000000 + i * 0x40)),
                         np.char.add(")|", own))  # fmt: skip
    trace = np.where(i % 50 == 7, jit, np.where(i % 70 == 3, hosted, trace))
    target = np.roll(uid, 1)
    target_image = np.roll(image, 1)
    t = T0_NS + i.astype(np.int64) * 1_000_000

    n = programs
    cols: dict[str, list[pa.Array]] = {name: [] for name in EVENT_SCHEMA.names}

    def block(kind: str, activity: str, code: str, **values) -> None:
        m = len(next(iter(values.values())))
        for name in EVENT_SCHEMA.names:
            v = values.get(name)
            if v is None:
                if name == "kind":
                    v = [kind] * m
                elif name == "activity":
                    v = [activity] * m
                elif name == "event_code":
                    v = [code] * m
                elif name == "os":
                    v = ["windows"] * m
                elif name == "src_format":
                    v = ["test"] * m
                elif name == "src_file":
                    v = [src_file] * m
            typ = EVENT_SCHEMA.field(name).type
            typ = typ.value_type if pa.types.is_dictionary(typ) else typ
            cols[name].append(pa.nulls(m, typ) if v is None else pa.array(v, typ))

    pid = (i % 60_000 + 100).astype(np.int64)
    block("process", "launch", "sysmon:1", time=t, host=host, process_uid=uid, pid=pid,
          image=image, cmd_line=cmd, parent_uid=parent, parent_image=[SYS + "\\services.exe"] * n,
          process_start=t)  # fmt: skip
    block("module", "load", "sysmon:7", time=t + 1000, host=host, process_uid=uid, pid=pid,
          image=image, module_path=module)  # fmt: skip
    block("process", "open", "sysmon:10", time=t + 2000, host=host, process_uid=uid, pid=pid,
          image=image, target_uid=target, target_image=target_image, call_trace=trace,
          granted_access=np.full(n, 0x1000, np.uint32))  # fmt: skip
    block("network", "connect", "sysmon:3", time=t + 3000, host=host, process_uid=uid, pid=pid,
          image=image, remote_ip=np.char.add("198.51.100.", (i % 250).astype(str)),
          remote_port=(i % 50_000 + 1024).astype(np.int32), direction=["outbound"] * n)  # fmt: skip
    # the positive control: a loader opens notepad from unbacked code and starts a thread in
    # memory no module backs; notepad calls out
    tl = T0_NS + n * 1_000_000 + np.arange(4, dtype=np.int64) * 1000
    block("process", "launch", "sysmon:1", time=tl[:2], host=[LOADER_HOST] * 2,
          process_uid=[VICTIM_UID, LOADER_UID], pid=[4100, 4444],
          image=[VICTIM_IMAGE, LOADER_IMAGE], process_start=tl[:2])  # fmt: skip
    block("process", "open", "sysmon:10", time=tl[2:3], host=[LOADER_HOST],
          process_uid=[LOADER_UID], pid=[4444], image=[LOADER_IMAGE], target_uid=[VICTIM_UID],
          target_image=[VICTIM_IMAGE], call_trace=["UNKNOWN(000001F3C35A0014)"],
          granted_access=[0x1FFFFF])  # fmt: skip
    block("thread", "remote_thread", "sysmon:8", time=tl[3:4], host=[LOADER_HOST],
          process_uid=[LOADER_UID], pid=[4444], image=[LOADER_IMAGE], target_uid=[VICTIM_UID],
          target_image=[VICTIM_IMAGE], start_address=[0x1F3C35A0000])  # fmt: skip
    arrays = [pa.concat_arrays(cols[name]) for name in EVENT_SCHEMA.names]
    total = len(arrays[0])
    table = pa.Table.from_arrays(arrays, names=EVENT_SCHEMA.names)
    table = table.set_column(
        EVENT_SCHEMA.names.index("src_line"), "src_line", pa.array(np.arange(1, total + 1))
    )
    return conform(table)


def label_file(data_file: str, programs: int = 10_000) -> dict:
    """A label in the shared schema for ``diverse_fleet``'s positive control (each program
    one instance, its services.exe parents per host one more each, not counted)."""
    return {
        "file": data_file,
        "format": "unbacked parquet",
        "scope": "attack-mixed",
        "process_instances": programs + 2,
        "malicious": [
            {"role": "injector", "host": LOADER_HOST, "process_guid": LOADER_UID, "pid": 4444,
             "image": LOADER_IMAGE, "technique": "remote thread into unbacked memory",
             "attack_ids": ["T1055"], "disk_backed": False, "confidence": "confirmed",
             "evidence": []},
            {"role": "injected", "host": LOADER_HOST, "process_guid": VICTIM_UID, "pid": 4100,
             "image": VICTIM_IMAGE, "technique": "remote thread into unbacked memory",
             "attack_ids": ["T1055"], "disk_backed": False, "confidence": "confirmed",
             "evidence": []},
        ],
    }  # fmt: skip
