#!/usr/bin/env bash
# Set everything up, then hunt on the sample data this project recorded itself
# (Linux sensor captures of its positive controls and benign JIT programs, and Windows
# ETW-TI-shaped telemetry of its own test programs). Alerts: out/alerts.jsonl; table on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. scripts/python.sh
py=$(choose_python)
export PATH="$(dirname "$("$py" -c 'import sys; print(sys.executable)')"):$PATH"
mkdir -p out
inputs=()
for d in samples tests/fixtures/windows; do [ -e "$d" ] && inputs+=("$d"); done
unbacked hunt "${inputs[@]}" -o out/alerts.jsonl --report out/run.json --fail-on none
unbacked hunt "${inputs[@]}" --format table --fail-on none --quiet
echo "alerts written to out/alerts.jsonl (OCSF Detection Findings); run report: out/run.json"
