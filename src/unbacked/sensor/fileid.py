"""File identity of an executable: ELF build-id, else a content hash, read once per file.

A program is more than its name: a loader copied to ``/tmp/x/node`` is not Node.js. The sensor
reports the executable's device and inode from the kernel (``mm->exe_file``); user space adds
the ELF ``NT_GNU_BUILD_ID`` note, or the SHA-256 of the file when it has none. The file is read
through ``/proc/PID/exe`` while the process lives (the very file it runs, even when the path was
replaced or deleted), else through its path when that still has the same device and inode.
Work is per distinct file, never per event.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass

#: files larger than this get no content hash (the build-id is still read)
MAX_HASH_BYTES = 256 << 20
_PT_NOTE = 4
_NT_GNU_BUILD_ID = 3


@dataclass(frozen=True, slots=True)
class FileIdentity:
    """What identifies an executable file: ``build_id`` (hex) or ``sha256`` (hex)."""

    build_id: str | None = None
    sha256: str | None = None


def kernel_dev_to_st_dev(dev: int) -> int:
    """The kernel's internal ``dev_t`` (major << 20 | minor) as ``os.stat().st_dev``."""
    return os.makedev(dev >> 20, dev & 0xFFFFF)


def elf_build_id(data: bytes) -> str | None:
    """The NT_GNU_BUILD_ID of a 64-bit little-endian ELF image's program headers, or None."""
    if len(data) < 64 or data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return None
    (phoff,) = struct.unpack_from("<Q", data, 32)
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    if phentsize < 56 or phnum > 256:
        return None
    for i in range(phnum):
        at = phoff + i * phentsize
        if at + 56 > len(data):
            return None
        (p_type,) = struct.unpack_from("<I", data, at)
        if p_type != _PT_NOTE:
            continue
        (off,) = struct.unpack_from("<Q", data, at + 8)
        (size,) = struct.unpack_from("<Q", data, at + 32)
        note = data[off : off + min(size, 4096)]
        pos = 0
        while pos + 12 <= len(note):
            namesz, descsz, ntype = struct.unpack_from("<III", note, pos)
            name_end = pos + 12 + ((namesz + 3) & ~3)
            desc_end = name_end + ((descsz + 3) & ~3)
            if desc_end > len(note) + 3:
                break
            name = note[pos + 12 : pos + 12 + namesz].rstrip(b"\0")
            if ntype == _NT_GNU_BUILD_ID and name == b"GNU":
                desc = note[name_end : name_end + descsz]
                return desc.hex() if desc else None
            pos = desc_end
    return None


def _read_identity(path: str) -> FileIdentity:
    with open(path, "rb") as fh:
        head = fh.read(64 << 10)
        bid = elf_build_id(head)
        if bid is not None:
            return FileIdentity(build_id=bid)
        size = os.fstat(fh.fileno()).st_size
        if size > MAX_HASH_BYTES:
            return FileIdentity()
        h = hashlib.sha256(head)
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
        return FileIdentity(sha256=h.hexdigest())


class FileIdentities:
    """Cache of file identities by (device, inode)."""

    def __init__(self) -> None:
        self._cache: dict[tuple[int, int], FileIdentity] = {}
        #: files that could not be read, with the processes tried: a failure is not retried for
        #: the same process (each distinct value of a batch asks again), only through another
        #: one that runs the file, at most ``RETRIES`` of them
        self._failed: dict[tuple[int, int], set[int | None]] = {}

    RETRIES = 4

    def get(self, path: str | None, st_dev: int, ino: int, pid: int | None) -> FileIdentity:
        key = (st_dev, ino)
        found = self._cache.get(key)
        if found is not None:
            return found
        tried = self._failed.get(key)
        if tried is not None and (pid in tried or len(tried) >= self.RETRIES):
            return FileIdentity()
        ident = FileIdentity()
        candidates = [f"/proc/{pid}/exe"] if pid else []
        if path and not path.startswith("/memfd:"):
            candidates.append(path)
        for cand in candidates:
            try:
                st = os.stat(cand)
                if ino and (st.st_ino != ino or st.st_dev != st_dev):
                    continue  # another file now: never credit it to this one
                ident = _read_identity(cand)
                break
            except OSError:
                continue
        if ident.build_id or ident.sha256:
            self._cache[key] = ident
            self._failed.pop(key, None)
        else:
            self._failed.setdefault(key, set()).add(pid)
        return ident


__all__ = ["FileIdentities", "FileIdentity", "elf_build_id", "kernel_dev_to_st_dev"]
