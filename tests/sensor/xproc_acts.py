"""Cross-process and self-modification acts for the live sensor tests, through libc (ctypes).

    python3 xproc_acts.py MODE

Each mode does its act and exits 0 (it prints ``OK MODE`` last); the tests record it under
``record_command`` and check what the sensor saw. The code written is real: a run of NOPs ending
in ``exit_group(0)``, so a process made to run it exits cleanly.

* ``decoy-vmwrite``: a process (not the writer's child) holds a writable data buffer and a
  writable+executable page; the writer writes with one ``process_vm_writev`` of two remote
  iovecs, an 8-byte decoy into the data first, 64 bytes of code into the executable page second.
* ``scatter-vmwrite``: one ``process_vm_writev`` of eight 8-byte iovecs 64 bytes apart into the
  executable page (scattered, not a run).
* ``flood-vmwrite N``: N writes into its data, then one of 64 bytes into its code.
* ``traceme-poke``: a child asks to be traced and stops; the parent pokes 64 bytes of code at
  its current instruction pointer (its own text) and lets it continue.
* ``pokeuser-rip``: as above, but the code goes 256 bytes further and the parent moves the
  child's instruction pointer there with ``PTRACE_POKEUSER`` at ``regs.rip``.
* ``ns-vmwrite``: run inside a new pid namespace: writes into a child by its namespace pid.
* ``procmem-bypass``: opens its own mem file by four paths a text prefix check misses
  (``//proc/self/mem``, ``openat(rootfd, "./proc/self/mem")``, ``chdir("/proc")`` +
  ``self/mem``, a symlink) and writes 64 bytes into an executable anonymous page of its own
  through each.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import tempfile

libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.restype = ctypes.c_long
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
libc.process_vm_writev.restype = ctypes.c_ssize_t
libc.process_vm_writev.argtypes = [
    ctypes.c_int,
    ctypes.c_void_p,
    ctypes.c_ulong,
    ctypes.c_void_p,
    ctypes.c_ulong,
    ctypes.c_ulong,
]
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_long,
]

PTRACE_TRACEME, PTRACE_POKETEXT, PTRACE_POKEUSER, PTRACE_CONT = 0, 4, 6, 7
PTRACE_GETREGS, PTRACE_DETACH = 12, 17
RIP_INDEX = 16  # struct user_regs_struct: rip is the 17th word (offset 128)
#: 58 NOPs, xor edi, edi; mov eax, 231 (exit_group); syscall
CODE = b"\x90" * 55 + b"\x31\xff\xb8\xe7\x00\x00\x00\x0f\x05"
assert len(CODE) == 64


class Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


def _check(ret: int, what: str) -> int:
    if ret < 0 or ret == ctypes.c_void_p(-1).value:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def _anon(prot: int) -> int:
    return _check(libc.mmap(None, 4096, prot, 0x22, -1, 0), "mmap")  # MAP_PRIVATE|MAP_ANONYMOUS


def _target(child: bool = False) -> tuple[int, int, int]:
    """A process with a data buffer and an RWX page, paused until killed: (pid, data, code).
    Not the caller's child (a double fork: it is reparented) unless ``child``."""
    data = _anon(3)
    code = _anon(7)
    if child:
        pid = os.fork()
        if pid == 0:
            while True:
                signal.pause()
        return pid, data, code
    r, w = os.pipe()
    mid = os.fork()
    if mid == 0:
        pid = os.fork()
        if pid == 0:
            while True:
                signal.pause()
        os.write(w, pid.to_bytes(4, "little"))
        os._exit(0)
    os.waitpid(mid, 0)
    pid = int.from_bytes(os.read(r, 4), "little")
    os.close(r)
    os.close(w)
    return pid, data, code


def _vmwrite(pid: int, pieces: list[tuple[int, bytes]]) -> int:
    local = (Iovec * len(pieces))()
    remote = (Iovec * len(pieces))()
    bufs = []
    for i, (addr, data) in enumerate(pieces):
        buf = ctypes.create_string_buffer(data, len(data))
        bufs.append(buf)
        local[i] = Iovec(ctypes.addressof(buf), len(data))
        remote[i] = Iovec(addr, len(data))
    n = libc.process_vm_writev(pid, local, len(pieces), remote, len(pieces), 0)
    return _check(n, "process_vm_writev")


def _end(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):  # not a child: its new parent reaps it
        os.waitpid(pid, 0)


def decoy_vmwrite() -> None:
    pid, data, code = _target()
    assert _vmwrite(pid, [(data, b"D" * 8), (code, CODE)]) == 72
    _end(pid)


def scatter_vmwrite() -> None:
    pid, _, code = _target()
    assert _vmwrite(pid, [(code + 64 * i, CODE[:8]) for i in range(8)]) == 64
    _end(pid)


def flood_vmwrite(n: int) -> None:
    pid, data, code = _target()
    for _ in range(n):
        _vmwrite(pid, [(data, b"F" * 8)])
    _vmwrite(pid, [(code, CODE)])
    _end(pid)


def ns_vmwrite() -> None:
    pid, _, code = _target(child=True)
    assert os.getpid() == 1, "run me in a new pid namespace (unshare --pid --fork)"
    _vmwrite(pid, [(code, CODE)])
    _end(pid)


def _traced_child() -> tuple[int, int]:
    """A child that asked to be traced and stopped: (pid, its instruction pointer)."""
    pid = os.fork()
    if pid == 0:
        libc.ptrace(PTRACE_TRACEME, 0, None, None)
        os.kill(os.getpid(), signal.SIGSTOP)
        os._exit(3)  # not reached when the code ran
    os.waitpid(pid, os.WUNTRACED)
    regs = (ctypes.c_ulong * 27)()
    _check(libc.ptrace(PTRACE_GETREGS, pid, None, regs), "GETREGS")
    return pid, regs[RIP_INDEX]


def _poke(pid: int, addr: int, code: bytes) -> None:
    for off in range(0, len(code), 8):
        word = int.from_bytes(code[off : off + 8], "little")
        _check(libc.ptrace(PTRACE_POKETEXT, pid, addr + off, word), "POKETEXT")


def _cont(pid: int) -> None:
    _check(libc.ptrace(PTRACE_CONT, pid, None, None), "CONT")
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status


def traceme_poke() -> None:
    pid, rip = _traced_child()
    _poke(pid, rip, CODE)
    _cont(pid)


def pokeuser_rip() -> None:
    pid, rip = _traced_child()
    _poke(pid, rip + 256, CODE)
    _check(libc.ptrace(PTRACE_POKEUSER, pid, 8 * RIP_INDEX, rip + 256), "POKEUSER")
    _cont(pid)


def procmem_bypass() -> None:
    code = _anon(5)
    with tempfile.TemporaryDirectory() as tmp:
        link = os.path.join(tmp, "m")
        os.symlink("/proc/self/mem", link)
        root = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
        cwd = os.getcwd()
        opens = [
            lambda: os.open("//proc/self/mem", os.O_RDWR),
            lambda: os.open("./proc/self/mem", os.O_RDWR, dir_fd=root),
            lambda: (os.chdir("/proc"), os.open("self/mem", os.O_RDWR))[1],
            lambda: os.open(link, os.O_WRONLY),
        ]
        for i, op in enumerate(opens):
            fd = op()
            os.chdir(cwd)
            assert os.pwrite(fd, CODE, code + 64 * i) == 64
            os.close(fd)
        os.close(root)
    assert ctypes.string_at(code, 64) == CODE


MODES = {
    "decoy-vmwrite": decoy_vmwrite,
    "scatter-vmwrite": scatter_vmwrite,
    "ns-vmwrite": ns_vmwrite,
    "traceme-poke": traceme_poke,
    "pokeuser-rip": pokeuser_rip,
    "procmem-bypass": procmem_bypass,
}

if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "flood-vmwrite":
        flood_vmwrite(int(sys.argv[2]))
    else:
        MODES[mode]()
    print(f"OK {mode}", flush=True)
