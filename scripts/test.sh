#!/usr/bin/env bash
# Set everything up, then run the whole test suite (what CI runs: .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. scripts/python.sh
py=$(choose_python)
export PATH="$(dirname "$("$py" -c 'import sys; print(sys.executable)')"):$PATH"
exec "$py" -m pytest -q -p no:cacheprovider "$@"
