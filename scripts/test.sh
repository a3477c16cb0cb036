#!/usr/bin/env bash
# Set everything up, then run the whole test suite (what CI runs: .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${PYTHON:-python3}" -m pytest -q -p no:cacheprovider "$@"
