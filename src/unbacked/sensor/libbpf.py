"""A thin ctypes binding to Debian's ``libbpf.so.1``: open, load, attach, map access.

Only the handful of stable libbpf 1.x entry points the sensor needs are declared. The ring
buffer itself is not consumed through libbpf (whose per-record C callback would cost a Python
call per event) but mapped directly, see ``ringbuf.py``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from pathlib import Path

from unbacked.errors import SensorError

_lib: ctypes.CDLL | None = None


def lib() -> ctypes.CDLL:
    """The loaded libbpf, with argument and return types declared."""
    global _lib
    if _lib is not None:
        return _lib
    names = ["libbpf.so.1", ctypes.util.find_library("bpf") or ""]
    last: OSError | None = None
    for name in filter(None, names):
        try:
            cdll = ctypes.CDLL(name, use_errno=True)
            break
        except OSError as exc:
            last = exc
    else:
        raise SensorError(
            "libbpf (libbpf.so.1) is not installed",
            hint="apt-get install libbpf1 (or run scripts/install-sensor-deps.sh)",
        ) from last
    vp, cp, i, u32, u64 = (
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_uint32,
        ctypes.c_uint64,
    )
    sigs: dict[str, tuple[object, list[object]]] = {
        "bpf_object__open_file": (vp, [cp, vp]),
        "bpf_object__load": (i, [vp]),
        "bpf_object__close": (None, [vp]),
        "bpf_object__find_map_by_name": (vp, [vp, cp]),
        "bpf_object__next_program": (vp, [vp, vp]),
        "bpf_program__name": (cp, [vp]),
        "bpf_program__attach": (vp, [vp]),
        "bpf_link__destroy": (i, [vp]),
        "bpf_map__fd": (i, [vp]),
        "bpf_map__set_max_entries": (i, [vp, u32]),
        "bpf_map__max_entries": (u32, [vp]),
        "bpf_map_update_elem": (i, [i, vp, vp, u64]),
        "bpf_map_lookup_elem": (i, [i, vp, vp]),
        "bpf_map_delete_elem": (i, [i, vp]),
        "libbpf_num_possible_cpus": (i, []),
        "libbpf_set_print": (vp, [vp]),
    }
    for name, (res, args) in sigs.items():
        fn = getattr(cdll, name)
        fn.restype = res
        fn.argtypes = args
    _lib = cdll
    return cdll


def _err(what: str, hint: str | None = None) -> SensorError:
    err = ctypes.get_errno()
    return SensorError(f"{what}: {os.strerror(err) if err else 'failed'}", hint=hint)


class BpfObject:
    """An opened and loaded eBPF object file with its attached programs."""

    def __init__(self, path: Path, *, max_entries: dict[str, int] | None = None) -> None:
        self._lib = lib()
        self._obj: int | None = None
        self._links: list[int] = []
        obj = self._lib.bpf_object__open_file(str(path).encode(), None)
        if not obj:
            raise _err(f"cannot open eBPF object {path}")
        self._obj = obj
        for name, n in (max_entries or {}).items():
            if self._lib.bpf_map__set_max_entries(self.map_ptr(name), n) != 0:
                raise _err(f"cannot size map {name} to {n}")
        if self._lib.bpf_object__load(obj) != 0:
            err = ctypes.get_errno()
            self.close()
            raise SensorError(
                f"the kernel refused the eBPF programs: {os.strerror(err)}",
                hint="needs root (CAP_BPF + CAP_PERFMON), a kernel with BTF, bpf_find_vma "
                "(Linux >= 5.17); the verifier log above says which program and why",
            )

    def map_ptr(self, name: str) -> int:
        assert self._obj is not None
        m = self._lib.bpf_object__find_map_by_name(self._obj, name.encode())
        if not m:
            raise SensorError(f"eBPF object has no map {name!r}")
        return int(m)

    def map_fd(self, name: str) -> int:
        fd = int(self._lib.bpf_map__fd(self.map_ptr(name)))
        if fd < 0:
            raise SensorError(f"map {name!r} has no file descriptor (object not loaded?)")
        return fd

    def max_entries(self, name: str) -> int:
        return int(self._lib.bpf_map__max_entries(self.map_ptr(name)))

    def programs(self) -> list[tuple[str, int]]:
        assert self._obj is not None
        out: list[tuple[str, int]] = []
        prog = self._lib.bpf_object__next_program(self._obj, None)
        while prog:
            out.append((self._lib.bpf_program__name(prog).decode(), int(prog)))
            prog = self._lib.bpf_object__next_program(self._obj, prog)
        return out

    def attach_all(self) -> list[str]:
        """Attach every program by its section name; return their names."""
        names = []
        for name, prog in self.programs():
            link = self._lib.bpf_program__attach(prog)
            if not link:
                raise _err(
                    f"cannot attach {name}",
                    hint="the kernel needs syscall tracepoints (CONFIG_FTRACE_SYSCALLS) and "
                    "tracefs mounted at /sys/kernel/tracing",
                )
            self._links.append(int(link))
            names.append(name)
        return names

    def update(self, map_name: str, key: ctypes._CData, value: ctypes._CData) -> None:
        fd = self.map_fd(map_name)
        if self._lib.bpf_map_update_elem(fd, ctypes.byref(key), ctypes.byref(value), 0) != 0:
            raise _err(f"cannot update map {map_name}")

    def lookup(self, map_name: str, key: ctypes._CData, value: ctypes._CData) -> bool:
        fd = self.map_fd(map_name)
        return bool(self._lib.bpf_map_lookup_elem(fd, ctypes.byref(key), ctypes.byref(value)) == 0)

    def delete(self, map_name: str, key: ctypes._CData) -> None:
        self._lib.bpf_map_delete_elem(self.map_fd(map_name), ctypes.byref(key))

    def close(self) -> None:
        """Detach every program and free the object (idempotent)."""
        for link in self._links:
            self._lib.bpf_link__destroy(link)
        self._links.clear()
        if self._obj is not None:
            self._lib.bpf_object__close(self._obj)
            self._obj = None


def possible_cpus() -> int:
    n = int(lib().libbpf_num_possible_cpus())
    if n <= 0:
        raise SensorError("cannot tell the number of possible CPUs")
    return n
