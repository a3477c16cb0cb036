#!/usr/bin/env bash
# Install unbacked and everything its tests and sensor need on a fresh machine (Debian, root).
#
#   Python package (editable) with the dev extra  : pip, from PyPI, into the Python that
#                                                   scripts/python.sh chooses (.venv unless
#                                                   the system Python is unmanaged and we are root)
#   sensor build/run, positive controls, JIT suite: scripts/install-sensor-deps.sh (apt)
#
# Idempotent; safe to run on every CI run. Without root, system packages are skipped with a
# message and the tests that need them skip with their reason.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/python.sh
py=$(choose_python)
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  bash scripts/install-sensor-deps.sh || echo "setup: system packages could not all be installed; dependent tests will skip" >&2
else
  echo "setup: not root or no apt-get: skipping system packages (sensor tests will skip)" >&2
fi
if [ "$py" = "$PWD/.venv/bin/python" ] && [ ! -x .venv/bin/python ]; then
  if ! python3 -m venv .venv; then
    echo "setup: python3 -m venv failed (Debian: apt-get install python3-venv)" >&2
    exit 1
  fi
  echo "setup: installing into the project venv .venv (activate: . .venv/bin/activate)" >&2
fi
"$py" -m pip install --quiet --disable-pip-version-check -e '.[dev]'
