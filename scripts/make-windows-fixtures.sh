#!/usr/bin/env bash
# Regenerate tests/fixtures/windows/*.jsonl: build the winlab Windows programs with mingw-w64,
# run them in the speakeasy emulator and record ETW-TI-shaped events (tools/winlab/record.py).
#
# Needs: x86_64-w64-mingw32-gcc (Debian: apt-get install -y gcc-mingw-w64-x86-64) and Python 3.
# speakeasy-emulator pins old dependencies (unicorn 1.0.2), so it gets a virtual environment of
# its own, outside the work tree: $WINLAB_VENV (default ~/.cache/unbacked/winlab-venv).
#
# Usage: scripts/make-windows-fixtures.sh [OUT_DIR]   (default tests/fixtures/windows)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$root/tests/fixtures/windows}"
venv="${WINLAB_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/unbacked/winlab-venv}"
python="${PYTHON:-python3}"

if ! command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1; then
    echo "x86_64-w64-mingw32-gcc not found: apt-get install -y gcc-mingw-w64-x86-64" >&2
    exit 2
fi
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import speakeasy" 2>/dev/null; then
    echo "setting up speakeasy in $venv" >&2
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "speakeasy-emulator==1.5.11"
fi
exec "$venv/bin/python" "$root/tools/winlab/record.py" --out "$out"
