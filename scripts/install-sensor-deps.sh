#!/usr/bin/env bash
# Install what the Linux live sensor and its tests need, from Debian's packages.
#
# Idempotent: packages already present are skipped, so CI and the README setup can call it on
# every run. Needs root (or sudo) and Debian 12 or newer.
#
#   build of the eBPF object : clang (BPF target), llvm (llvm-strip), bpftool (vmlinux.h), libbpf-dev
#   run time                 : libbpf1 (libbpf.so.1, loaded through ctypes)
#   positive controls        : gcc, libc6-dev, make (public tools built in the tests);
#                              Windows test programs: gcc-mingw-w64-x86-64
#   benign debuggers         : gdb, strace (ptrace and /proc/PID/mem look-alikes)
#   the project venv (.venv) : python3-venv
#   benign JIT suite         : nodejs, openjdk (javac), luajit, pypy3, chromium
#
# Usage: scripts/install-sensor-deps.sh [--no-jit]   (--no-jit: skip the benign JIT suite)
set -euo pipefail

want_jit=1
for arg in "$@"; do
  case "$arg" in
    --no-jit) want_jit=0 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

pkgs=(clang llvm bpftool libbpf-dev libbpf1 gcc libc6-dev make gcc-mingw-w64-x86-64 gdb strace python3-venv)
if [ "$want_jit" = 1 ]; then
  pkgs+=(nodejs luajit pypy3 chromium)
  # javac: any JDK will do; keep the one already installed rather than pull a second.
  command -v javac >/dev/null 2>&1 || pkgs+=(default-jdk-headless)
fi

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-sensor-deps: all present"
else
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "install-sensor-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get -o DPkg::Lock::Timeout=900 update -qq
  $SUDO apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# bpftool from Debian lives in /usr/sbin; make sure it answers.
command -v bpftool >/dev/null 2>&1 || [ -x /usr/sbin/bpftool ] || {
  echo "install-sensor-deps: bpftool missing after install" >&2; exit 1; }
