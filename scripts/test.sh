#!/usr/bin/env bash
# Set everything up, then run the whole test suite (what CI runs: .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. scripts/python.sh
py=$(choose_python)
export PATH="$(dirname "$("$py" -c 'import sys; print(sys.executable)')"):$PATH"
shared=${UNBACKED_SHARED_DATA:-$PWD/../shared/data}
[ -d "$shared" ] || echo "test: no shared data at $shared: the tests on real public telemetry" \
  "will skip (set UNBACKED_SHARED_DATA=DIR)" >&2
exec "$py" -m pytest -q -p no:cacheprovider "$@"
