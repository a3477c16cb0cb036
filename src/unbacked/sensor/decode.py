"""Turn raw sensor records (``EVENT_DTYPE``) into ``EVENT_SCHEMA`` tables, column by column.

Numeric columns are numpy operations over the whole batch. Strings (paths, module names,
process identities) repeat heavily, so they are rendered once per *distinct* value (``np.unique``
on the raw bytes) and emitted as dictionary arrays; the Python work grows with the number of
distinct paths and processes, not with the number of events.

Conventions of the Linux rows (see docs/sensor.md):

* ``protection``/``old_protection`` are ``PROT_*`` masks; ``alloc_type`` holds the mmap flags.
* ``region_type`` is what the VMA at the region is after the call: ``anonymous``, ``file``,
  ``stack``, ``heap`` or ``vdso``; ``backing_path`` the file behind it (``/memfd:NAME`` for
  memfd files); ``reservation_size`` the VMA's size; ``alloc_base`` the start of the run of
  adjacent anonymous VMAs the region lies in (the allocation a loader split with mprotect).
* ``header_kind``: ``elf``/``pe`` when the in-kernel probe found a header at or up to 16 pages
  below the region (anonymous regions) or at the region (file-backed), ``none`` when it read
  the pages and found none, null when nothing was readable.
* ``caller_*`` is the return address found on top of the user stack when the syscall
  instruction ran (for libc's leaf wrappers: the code that called ``mmap``/``mprotect``);
  ``syscall_module`` the file holding the syscall instruction; ``caller_unbacked`` /
  ``syscall_outside_libc`` are derived from them.
* Cross-process acts (ptrace, process_vm_writev, /proc/PID/mem): ``process``/``open``,
  ``memory``/``write`` and ``thread``/``set_context`` rows with ``target_*`` set; their region
  columns describe the *target's* mapping at the address (docs/sensor.md).
* ``call_trace`` of exec-memory events: up to eight scanned stack frames, ``module+0xoffset``
  or ``UNKNOWN(0xaddr)``, `` (indirect)`` after one reached by an indirect call.
* ``image_device``/``image_inode`` from the kernel, ``image_build_id``/``image_hash`` read once
  per distinct file (``sensor/fileid.py``).
* Memory syscalls that failed are left out of the table (and counted in the sensor stats):
  the schema has no status column yet.
"""

from __future__ import annotations

import os
import pwd
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
import pyarrow as pa

from unbacked.model.schema import EVENT_SCHEMA, conform
from unbacked.sensor.fileid import FileIdentities, kernel_dev_to_st_dev
from unbacked.sensor.layout import (
    COMP_LEN,
    EVENT_DTYPE,
    FRAME_INDIRECT,
    PATH_COMPS,
    STR_LEN,
    EvType,
    Header,
    PtraceReq,
    VmaKind,
)

SRC_FORMAT = "unbacked-sensor"

#: Modules whose syscall instructions count as "libc": the C runtime and its dynamic loader,
#: which maps every shared object itself.
LIBC_MODULES = frozenset(
    {"libc.so.6", "ld-linux-x86-64.so.2", "libc.so", "ld-musl-x86_64.so.1", "libc.musl-x86_64.so.1"}
)

_KINDS = ["memory", "process", "network", "thread"]
_ACTIVITIES = [
    "allocate",
    "protect",
    "map_view",
    "memfd",
    "exec",
    "launch",
    "terminate",
    "connect",
    "write",
    "open",
    "set_context",
]
_REGION_TYPES = {
    VmaKind.ANON: "anonymous",
    VmaKind.FILE: "file",
    VmaKind.STACK: "stack",
    VmaKind.HEAP: "heap",
    VmaKind.VDSO: "vdso",
}
_HEADERS = {Header.NONE: "none", Header.ELF: "elf", Header.PE: "pe"}
_CODES = {
    EvType.MMAP: "linux:mmap",
    EvType.MPROTECT: "linux:mprotect",
    EvType.PKEY_MPROTECT: "linux:pkey_mprotect",
    EvType.MEMFD_CREATE: "linux:memfd_create",
    EvType.EXEC: "linux:execve",
    EvType.CONNECT: "linux:connect",
    EvType.FORK: "linux:fork",
    EvType.EXIT: "linux:exit",
    EvType.PTRACE: "linux:ptrace",
    EvType.VM_WRITE: "linux:process_vm_writev",
    EvType.MEM_OPEN: "linux:open_mem",
    EvType.MEM_WRITE: "linux:write_mem",
}
#: event codes of the cross-process acts, by ptrace request / write syscall
_PTRACE_CODES = {
    PtraceReq.TRACEME: "linux:ptrace_traceme",
    PtraceReq.POKETEXT: "linux:ptrace_poketext",
    PtraceReq.POKEDATA: "linux:ptrace_pokedata",
    PtraceReq.POKEUSER: "linux:ptrace_pokeuser",
    PtraceReq.SETREGS: "linux:ptrace_setregs",
    PtraceReq.ATTACH: "linux:ptrace_attach",
    PtraceReq.SETREGSET: "linux:ptrace_setregset",
    PtraceReq.SEIZE: "linux:ptrace_seize",
}
_WRITE_CODES = ["linux:write_mem", "linux:pwrite_mem", "linux:writev_mem", "linux:pwritev_mem"]
_MEM_TYPES = (EvType.MMAP, EvType.MPROTECT, EvType.PKEY_MPROTECT)
_SYSCALL_TYPES = (*_MEM_TYPES, EvType.MEMFD_CREATE, EvType.CONNECT)
_XPROC_TYPES = (EvType.PTRACE, EvType.VM_WRITE, EvType.MEM_OPEN, EvType.MEM_WRITE)
PAGE = 4096


def _dict_array(
    codes: np.ndarray, values: Sequence[str | None], mask: np.ndarray | None = None
) -> pa.Array:
    """A dictionary<int32, string> array; ``None`` values and masked rows become null."""
    codes = codes.astype(np.int32, copy=False)
    nulls = np.array([v is None for v in values], dtype=bool)
    if nulls.any():
        extra = nulls[codes] if len(codes) else np.zeros(0, dtype=bool)
        mask = extra if mask is None else (mask | extra)
    idx = pa.array(codes, type=pa.int32(), mask=mask)
    dictionary = pa.array(["" if v is None else v for v in values], type=pa.string())
    return pa.DictionaryArray.from_arrays(idx, dictionary)


_T = TypeVar("_T")
Groups = tuple[np.ndarray, np.ndarray]  # (first row of each distinct key, code per row)

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_MULT = np.uint64(0x100000001B3)


def _row_keys(*parts: np.ndarray) -> Groups:
    """Group rows by the bytes of several per-row arrays (a 64-bit hash of the bytes per row,
    then ``np.unique`` on integers: far cheaper than sorting wide byte strings)."""
    n = len(parts[0])
    h = np.full(n, _FNV_OFFSET, dtype=np.uint64)
    for p in parts:
        raw = np.ascontiguousarray(p).reshape(n, -1).view(np.uint8).reshape(n, -1)
        width = raw.shape[1]
        if width % 8:
            raw = np.concatenate([raw, np.zeros((n, 8 - width % 8), np.uint8)], axis=1)
        words = np.ascontiguousarray(raw).view(np.uint64)
        for j in range(words.shape[1]):
            col = words[:, j]
            if j and not col.any():
                continue  # all-zero word (unused path components): skip, same for every row
            h = (h ^ col) * _MULT
            h ^= h >> np.uint64(29)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int32)
    _, first, inverse = np.unique(h, return_index=True, return_inverse=True)
    return first, inverse.reshape(-1).astype(np.int32)


def _unique_render(groups: Groups, render: Callable[[int], _T]) -> tuple[np.ndarray, list[_T]]:
    """Render each distinct key once: returns (codes per row, rendered values)."""
    first, codes = groups
    return codes, [render(int(i)) for i in first]


def render_path(comps: np.ndarray, depth: int, trunc: int) -> str | None:
    """Join innermost-first path components.

    ``[b"libc.so.6", b"lib", b"usr"]`` → ``/usr/lib/libc.so.6``; a path cut short (deeper than
    ``PATH_COMPS``) starts with ``/…``.
    """
    depth = min(depth, len(comps))
    if depth <= 0:
        return None
    names = [bytes(comps[i]).split(b"\0", 1)[0].decode("utf-8", "replace") for i in range(depth)]
    path = "/" + "/".join(reversed(names))
    return ("/…" + path) if trunc else path


def _cstr(b: bytes) -> str:
    return bytes(b).split(b"\0", 1)[0].decode("utf-8", "replace")


class EventDecoder:
    """Stateful decoder: remembers process identities and command lines across batches."""

    def __init__(
        self,
        *,
        host: str | None = None,
        clock_offset_ns: int = 0,
        src_file: str | None = None,
        read_proc: bool = True,
    ) -> None:
        self.host = host or socket.gethostname()
        self.clock_offset_ns = clock_offset_ns
        self.src_file = src_file
        self.read_proc = read_proc
        self._cmdlines: dict[tuple[int, int, str | None], str | None] = {}
        self._images: dict[tuple[int, int], str] = {}
        self._users: dict[int, str] = {}
        self._files = FileIdentities()

    # -- per-process lookups (per distinct process, not per event) ------------------------
    def _cmdline(self, pid: int, start: int, image: str | None) -> str | None:
        key = (pid, start, image)
        if key in self._cmdlines:
            return self._cmdlines[key]
        cmd = None
        if self.read_proc:
            try:
                raw = Path(f"/proc/{pid}/cmdline").read_bytes()
                cmd = " ".join(a.decode("utf-8", "replace") for a in raw.split(b"\0") if a) or None
            except OSError:
                cmd = None
        self._cmdlines[key] = cmd
        return cmd

    def _image_of(self, pid: int, start: int) -> str | None:
        """The image of process (pid, start): seen in the records, else ``/proc/PID/exe``."""
        img = self._images.get((pid, start))
        if img is None and self.read_proc and pid > 0:
            try:
                img = os.readlink(f"/proc/{pid}/exe")
            except OSError:
                img = None
        return img

    def _user(self, uid: int) -> str:
        name = self._users.get(uid)
        if name is None:
            try:
                name = pwd.getpwuid(uid).pw_name
            except KeyError:
                name = str(uid)
            self._users[uid] = name
        return name

    # -- the batch ------------------------------------------------------------------------
    def to_table(self, recs: np.ndarray) -> pa.Table:
        """Decode ``recs`` (``EVENT_DTYPE``) into a table of ``EVENT_SCHEMA``."""
        if recs.dtype != EVENT_DTYPE:
            raise TypeError(f"expected EVENT_DTYPE records, got {recs.dtype}")
        typ = recs["type"]
        ret = recs["ret"]
        keep = ~(np.isin(typ, [*_MEM_TYPES, EvType.MEMFD_CREATE, *_XPROC_TYPES]) & (ret < 0))
        keep &= np.isin(typ, list(_CODES))
        recs = recs[keep].copy()
        n = len(recs)
        _sanitize(recs)
        if n == 0:
            return EVENT_SCHEMA.empty_table()
        typ = recs["type"]
        is_mem = np.isin(typ, _MEM_TYPES)
        is_sys = np.isin(typ, _SYSCALL_TYPES)
        is_mmap = typ == EvType.MMAP
        is_protect = is_mem & ~is_mmap
        is_memfd = typ == EvType.MEMFD_CREATE
        is_exec = typ == EvType.EXEC
        is_conn = typ == EvType.CONNECT
        is_xproc = np.isin(typ, _XPROC_TYPES)
        req = recs["flags"]
        is_ptrace = typ == EvType.PTRACE
        is_poke = is_ptrace & np.isin(req, [PtraceReq.POKETEXT, PtraceReq.POKEDATA])
        is_setctx = is_ptrace & np.isin(
            req, [PtraceReq.SETREGS, PtraceReq.SETREGSET, PtraceReq.POKEUSER]
        )
        is_write = is_poke | (typ == EvType.VM_WRITE) | (typ == EvType.MEM_WRITE)
        is_open = (is_ptrace & ~is_poke & ~is_setctx) | (typ == EvType.MEM_OPEN)
        vkind = recs["vma_kind"]
        vma_found = vkind != VmaKind.UNKNOWN
        bcodes, bvals = _unique_render(
            _row_keys(recs["path"], recs["path_depth"], recs["path_trunc"], typ, recs["str"]),
            lambda i: self._backing(recs[i]),
        )
        # shared anonymous memory (MAP_SHARED|MAP_ANONYMOUS, SysV shm) has a shmem file behind
        # its VMA ("/dev/zero", "/SYSV…"): no file on disk backs it, it is anonymous
        shm_val = np.array([_is_shared_anon(v) for v in bvals], dtype=bool)
        shared_anon = (shm_val[bcodes] if len(bvals) else np.zeros(n, bool)) & (
            vkind == VmaKind.FILE
        )
        shared_anon &= is_mem | is_write | is_setctx
        vkind = np.where(shared_anon, np.uint8(VmaKind.ANON), vkind)
        off = np.int64(self.clock_offset_ns)

        cols: dict[str, pa.Array] = {}
        cols["time"] = pa.array(
            recs["ts"].astype(np.int64) + off, type=pa.timestamp("ns", tz="UTC")
        )

        kind = np.select([is_mem | is_memfd | is_write, is_conn, is_setctx], [0, 2, 3], default=1)
        cols["kind"] = _dict_array(kind, _KINDS)
        act = np.select(
            [
                is_mmap & (vkind == VmaKind.FILE),
                is_mmap,
                is_protect,
                is_memfd,
                is_exec,
                typ == EvType.FORK,
                typ == EvType.EXIT,
                is_conn,
                is_write,
                is_open,
                is_setctx,
            ],
            [2, 0, 1, 3, 4, 5, 6, 7, 8, 9, 10],
        )
        cols["activity"] = _dict_array(act, _ACTIVITIES)
        code_names = [_CODES[t] for t in EvType]
        code = np.searchsorted([int(t) for t in EvType], typ)
        extra = ["linux:execveat", *_PTRACE_CODES.values(), *_WRITE_CODES]
        code = np.where(is_exec & (recs["len"] == 1), len(code_names), code)
        base = len(code_names) + 1
        for j, r in enumerate(_PTRACE_CODES):
            code = np.where(is_ptrace & (req == r), base + j, code)
        base += len(_PTRACE_CODES)
        is_mw = typ == EvType.MEM_WRITE
        code = np.where(is_mw, base + np.minimum(req, 3).astype(np.int64), code)
        cols["event_code"] = _dict_array(code, [*code_names, *extra])
        cols["os"] = _dict_array(np.zeros(n, np.int32), ["linux"])
        cols["host"] = _dict_array(np.zeros(n, np.int32), [self.host])

        pid = recs["pid"].astype(np.int64)
        ppid = recs["ppid"].astype(np.int64)
        start = recs["proc_start"].astype(np.int64) + off
        pstart = recs["parent_start"].astype(np.int64) + off

        # image: the executable path from the kernel, per distinct path
        exe_codes, exe_vals = _unique_render(
            _row_keys(recs["exe"], recs["exe_depth"], recs["exe_trunc"]),
            lambda i: render_path(
                recs["exe"][i], int(recs["exe_depth"][i]), int(recs["exe_trunc"][i])
            ),
        )
        image_arr = _dict_array(exe_codes, exe_vals)
        cols["image"] = image_arr

        # file identity of the executable: device and inode from the kernel, build-id or
        # content hash read once per distinct file
        ino = recs["exe_ino"]
        has_ino = ino != 0
        st_dev = _st_dev_vec(recs["exe_dev"])
        cols["image_device"] = pa.array(st_dev, mask=~has_ino)
        cols["image_inode"] = pa.array(ino, mask=~has_ino)
        files = self._files

        def file_id(i: int) -> tuple[str | None, str | None]:
            if not ino[i]:
                return (None, None)
            img = exe_vals[exe_codes[i]]
            ident = files.get(img, int(st_dev[i]), int(ino[i]), int(recs["pid"][i]) or None)
            return (ident.build_id, ident.sha256)

        fid_codes, fid_vals = _unique_render(_row_keys(st_dev, ino), file_id)
        cols["image_build_id"] = _dict_array(fid_codes, [v[0] for v in fid_vals])
        cols["image_hash"] = _dict_array(
            fid_codes, [None if v[1] is None else "sha256:" + v[1] for v in fid_vals]
        )

        # process identity, command line, user: per distinct (pid, start, image)
        pkeys = _row_keys(pid, start, exe_codes)
        host = self.host

        def proc_uid(i: int) -> str:
            return f"{host}:{int(pid[i])}:{int(start[i])}"

        puid_codes, puid_vals = _unique_render(pkeys, proc_uid)
        cols["process_uid"] = _dict_array(puid_codes, puid_vals)
        for i in np.unique(puid_codes, return_index=True)[1]:
            img = exe_vals[exe_codes[i]] if exe_vals else None
            if img is not None:
                self._images[(int(pid[i]), int(start[i]))] = img

        # exec records carry the new command line (argv, truncated to 127 bytes) from the kernel
        for i in np.flatnonzero(is_exec):
            argv = bytes(recs["str"][i])[: int(recs["addr"][i])]
            cmd = " ".join(a.decode("utf-8", "replace") for a in argv.split(b"\0") if a)
            if cmd:
                self._cmdlines[(int(pid[i]), int(start[i]), exe_vals[exe_codes[i]])] = cmd

        def cmdline(i: int) -> str | None:
            img = exe_vals[exe_codes[i]]
            return self._cmdline(int(pid[i]), int(start[i]), img)

        cmd_codes, cmd_vals = _unique_render(pkeys, cmdline)
        cols["cmd_line"] = _dict_array(cmd_codes, cmd_vals)
        uid = recs["uid"]
        ucodes, uvals = _unique_render(_row_keys(uid), lambda i: self._user(int(uid[i])))
        cols["user"] = _dict_array(ucodes, uvals)
        cols["pid"] = pa.array(pid)
        cols["tid"] = pa.array(recs["tid"].astype(np.int64))
        cols["process_start"] = pa.array(start, type=pa.timestamp("ns", tz="UTC"))
        cols["parent_pid"] = pa.array(ppid, mask=ppid == 0)
        pp_keys = _row_keys(ppid, pstart)
        pcodes, pvals = _unique_render(pp_keys, lambda i: f"{host}:{int(ppid[i])}:{int(pstart[i])}")
        cols["parent_uid"] = _dict_array(pcodes, pvals, mask=ppid == 0)

        picodes, pivals = _unique_render(
            pp_keys, lambda i: self._image_of(int(ppid[i]), int(pstart[i]))
        )
        cols["parent_image"] = _dict_array(picodes, pivals, mask=ppid == 0)

        # target of a cross-process act (ptrace, process_vm_writev, /proc/PID/mem)
        tpid_known = recs["target_pid"] != 0
        tpid = np.where(tpid_known, recs["target_pid"], recs["target_tid"]).astype(np.int64)
        tstart = recs["target_start"].astype(np.int64) + off
        has_target = is_xproc & (tpid != 0)
        cols["target_pid"] = pa.array(tpid, mask=~has_target)
        cols["target_tid"] = pa.array(recs["target_tid"].astype(np.int64), mask=~has_target)
        tkeys = _row_keys(tpid, tstart)
        tcodes, tvals = _unique_render(tkeys, lambda i: f"{host}:{int(tpid[i])}:{int(tstart[i])}")
        cols["target_uid"] = _dict_array(tcodes, tvals, mask=~(has_target & tpid_known))

        ticodes, tivals = _unique_render(
            tkeys, lambda i: self._image_of(int(tpid[i]), int(tstart[i]))
        )
        cols["target_image"] = _dict_array(ticodes, tivals, mask=~has_target)
        tppid = recs["target_ppid"].astype(np.int64)
        cols["target_parent_pid"] = pa.array(tppid, mask=~(has_target & tpid_known))

        # memory region (cross-process acts: the target's mapping at the address)
        addr = recs["addr"]
        is_region = is_mem | is_write
        cols["base_address"] = pa.array(addr, mask=~is_region)
        cols["region_size"] = pa.array(recs["len"], mask=~is_region)
        alloc = np.where(recs["alloc_start"] != 0, recs["alloc_start"], recs["vma_start"])
        cols["alloc_base"] = pa.array(alloc, mask=~(is_mem & vma_found))
        cols["alloc_type"] = pa.array(recs["flags"].astype(np.uint32), mask=~is_mmap)
        cols["protection"] = pa.array(recs["prot"], mask=~is_mem)
        cols["old_protection"] = pa.array(recs["old_prot"], mask=~is_protect)
        rt_vals = [_REGION_TYPES.get(VmaKind(k)) for k in range(6)]
        in_vma = (is_mem | is_write | is_setctx) & vma_found
        cols["region_type"] = _dict_array(vkind.astype(np.int32), rt_vals, mask=~in_vma)
        cols["backing_path"] = _dict_array(bcodes, bvals, mask=shared_anon)
        cols["reservation_size"] = pa.array(recs["vma_end"] - recs["vma_start"], mask=~in_vma)
        fd = recs["fd"]
        fd_valid = (is_mmap & (fd >= 0)) | is_memfd | is_conn | (is_exec & (recs["len"] == 1))
        fd_valid |= np.isin(typ, [EvType.MEM_OPEN, EvType.MEM_WRITE])
        cols["fd"] = pa.array(fd, mask=~fd_valid)
        cols["vm_flags"] = pa.array(recs["vma_flags"], mask=~in_vma)
        # set_context: the new instruction pointer and the module it lies in (null: no file);
        # cross-process writes: the target thread's instruction pointer (where it resumes)
        tip = recs["target_ip"]
        has_tip = is_write & is_xproc & (tip != 0)
        cols["start_address"] = pa.array(
            np.where(is_setctx, addr, tip), mask=~(is_setctx | has_tip)
        )
        cols["start_module"] = _dict_array(
            bcodes,
            [None if v is None else v.rsplit("/", 1)[-1] for v in bvals],
            mask=~(is_setctx & (vkind == VmaKind.FILE)),
        )
        hk = recs["header_kind"].astype(np.int32)
        cols["header_kind"] = _dict_array(
            hk, [_HEADERS.get(Header(k)) for k in range(4)], mask=~is_mem
        )

        # who asked (syscall_outside_libc: executable-memory syscalls only)
        is_sys_any = is_sys | is_xproc
        ck = recs["caller_kind"]
        sk = recs["sc_kind"]
        cmod_codes, cmod_vals = _module_names(recs["caller_name"], ck)
        cols["caller_module"] = _dict_array(cmod_codes, cmod_vals, mask=~is_sys_any)
        caller_off = recs["caller_ip"] - recs["caller_vma_start"] + recs["caller_pgoff"] * PAGE
        cols["caller_offset"] = pa.array(caller_off, mask=~(is_sys_any & (ck == VmaKind.FILE)))
        unbacked = np.isin(ck, [VmaKind.ANON, VmaKind.HEAP, VmaKind.STACK])
        cols["caller_unbacked"] = pa.array(unbacked, mask=~(is_sys_any & (ck != VmaKind.UNKNOWN)))
        smod_codes, smod_vals = _module_names(recs["sc_name"], sk)
        cols["syscall_module"] = _dict_array(smod_codes, smod_vals, mask=~is_sys_any)
        in_libc = np.array([v in LIBC_MODULES for v in smod_vals], dtype=bool)
        outside = ~in_libc[smod_codes] if len(smod_vals) else np.zeros(n, bool)
        cols["syscall_outside_libc"] = pa.array(outside, mask=~(is_sys & (sk != VmaKind.UNKNOWN)))
        pair = smod_codes.astype(np.int64) * (len(cmod_vals) + 1) + cmod_codes
        _, pfirst, sum_codes = np.unique(pair, return_index=True, return_inverse=True)
        sum_vals: list[str | None] = [
            f"{smod_vals[smod_codes[i]] or 'unbacked'}|{cmod_vals[cmod_codes[i]] or 'unbacked'}"
            for i in pfirst
        ]
        cols["call_stack_summary"] = _dict_array(sum_codes.reshape(-1), sum_vals, mask=~is_sys_any)

        # the user stack of exec-memory events: "module+0xoffset" / "UNKNOWN(0xaddr)" frames
        has_frames = is_mem & (recs["frame_ip"][:, 0] != 0)
        if has_frames.any():
            fkeys = _row_keys(
                recs["frame_ip"], recs["frame_off"], recs["frame_kind"], recs["frame_name"]
            )
            f_codes, f_vals = _unique_render(fkeys, lambda i: _frames(recs[i]))
            cols["call_trace"] = _dict_array(f_codes, f_vals, mask=~has_frames)

        # network
        cols["direction"] = _dict_array(np.zeros(n, np.int32), ["outbound"], mask=~is_conn)
        ip_codes, ip_vals = _unique_render(
            _row_keys(recs["family"], recs["remote_addr"]),
            lambda i: _ip(int(recs["family"][i]), bytes(recs["remote_addr"][i])),
        )
        cols["remote_ip"] = _dict_array(ip_codes, ip_vals, mask=~is_conn)
        cols["remote_port"] = pa.array(recs["remote_port"].astype(np.int32), mask=~is_conn)

        # provenance
        cols["src_format"] = _dict_array(np.zeros(n, np.int32), [SRC_FORMAT])
        cols["src_file"] = _dict_array(np.zeros(n, np.int32), [self.src_file])
        cols["src_record"] = pa.array(recs["seq"].astype(np.int64))
        for name in (
            "image",
            "process_uid",
            "cmd_line",
            "user",
            "parent_uid",
            "parent_image",
            "backing_path",
            "caller_module",
            "syscall_module",
            "call_stack_summary",
            "remote_ip",
            "target_uid",
            "target_image",
            "start_module",
            "image_build_id",
            "image_hash",
            "call_trace",
        ):
            if name in cols:
                cols[name] = cols[name].cast(pa.string())
        return conform(cols)

    @staticmethod
    def _backing(rec: np.void) -> str | None:
        t = int(rec["type"])
        if t == EvType.MEMFD_CREATE:
            return "/memfd:" + _cstr(rec["str"])
        return render_path(rec["path"], int(rec["path_depth"]), int(rec["path_trunc"]))


def _sanitize(recs: np.ndarray) -> None:
    """Clamp enum fields to known values (a corrupt spool segment must not break decoding:
    unknown becomes 'unknown', never an index out of range)."""
    for field, enum in (
        ("vma_kind", VmaKind),
        ("sc_kind", VmaKind),
        ("caller_kind", VmaKind),
        ("header_kind", Header),
    ):
        col = recs[field]
        col[col > max(enum)] = 0
    for field, limit in (("exe_depth", PATH_COMPS), ("path_depth", PATH_COMPS)):
        col = recs[field]
        col[col > limit] = limit
    recs["addr"][(recs["type"] == EvType.EXEC) & (recs["addr"] > STR_LEN)] = STR_LEN


def _is_shared_anon(path: str | None) -> bool:
    return path is not None and (path == "/dev/zero" or path.startswith("/SYSV"))


def _frames(rec: np.void) -> str | None:
    """One record's stack frames, innermost first, ``|``-joined like Windows call traces."""
    out = []
    for ip, off, kind, name in zip(
        rec["frame_ip"], rec["frame_off"], rec["frame_kind"], rec["frame_name"], strict=True
    ):
        if not ip:
            break
        indirect = " (indirect)" if int(kind) & FRAME_INDIRECT else ""
        kind = int(kind) & (FRAME_INDIRECT - 1)
        if kind == VmaKind.FILE:
            out.append(f"{_cstr(name) or '?'}+0x{int(off):x}{indirect}")
        elif kind == VmaKind.VDSO:
            out.append(f"[vdso]+0x{int(off):x}")  # from the vDSO's start (it spans pages)
        else:
            out.append(f"UNKNOWN(0x{int(ip):x})")
    return "|".join(out) or None


def _st_dev_vec(dev: np.ndarray) -> np.ndarray:
    """``kernel_dev_to_st_dev`` over an array, once per distinct device."""
    uniq, inv = np.unique(dev, return_inverse=True)
    conv = np.array([kernel_dev_to_st_dev(int(d)) for d in uniq], dtype=np.uint64)
    return conv[inv.reshape(-1)] if len(uniq) else np.zeros(0, np.uint64)


def _module_names(names: np.ndarray, kinds: np.ndarray) -> tuple[np.ndarray, list[str | None]]:
    """Module per row: the file's basename, ``[vdso]``, or None (unbacked/unknown)."""
    keys = _row_keys(names, kinds)

    def render(i: int) -> str | None:
        k = int(kinds[i])
        if k == VmaKind.FILE:
            return _cstr(names[i]) or None
        if k == VmaKind.VDSO:
            return "[vdso]"
        return None

    return _unique_render(keys, render)


def _ip(family: int, raw: bytes) -> str | None:
    if family == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, raw[:4])
    if family == socket.AF_INET6:
        return socket.inet_ntop(socket.AF_INET6, raw[:16])
    return None


def empty_records(n: int = 0) -> np.ndarray:
    """Zeroed records (for tests and synthetic input)."""
    return np.zeros(n, dtype=EVENT_DTYPE)


__all__ = ["COMP_LEN", "PATH_COMPS", "EventDecoder", "empty_records", "render_path"]
