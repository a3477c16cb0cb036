#!/usr/bin/env bash
# What a user gets from `pip install unbacked`: build the wheel and the sdist (python -m build),
# install each in a fresh venv with no extras and no dev tools, and run every command README.md
# shows, checking its output; then each extra (memscan, yara, spark, report) on its own venv.
# The sensor commands run with no compiler on PATH and an empty object cache: the wheel's
# prebuilt eBPF object must be what loads.
#
# Usage: scripts/bare-install-check.sh [--no-extras]
#   BARE_SPARK=0   leave out the spark extra (a JVM: minutes on a small machine; checked by
#                  default where a Java runtime is found)
#   BARE_WORK=DIR  keep the venvs and outputs there (default: a temporary directory, removed)
#   PYTHON=python3 the interpreter to build venvs from
# Exit 0 when every check passed; the first failing check is printed and exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
py=${PYTHON:-python3}
extras=1
[ "${1:-}" = "--no-extras" ] && extras=0

work=${BARE_WORK:-}
if [ -z "$work" ]; then
  work=$(mktemp -d "${TMPDIR:-/tmp}/unbacked-bare.XXXXXX")
  trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$work"
log=$work/log
pipq=(--quiet --disable-pip-version-check --no-input)

step() { echo "bare-install: $*"; }
fail() { echo "bare-install: FAILED: $*" >&2; [ -f "$log" ] && tail -30 "$log" >&2; exit 1; }
# run NAME EXPECTED_RC CMD...: run, keep stdout+stderr in $log, check the exit status
run() {
  local want=$1; shift
  set +e; "$@" >"$log" 2>&1; local rc=$?; set -e
  [ "$rc" = "$want" ] || fail "$* exited $rc, expected $want"
  ! grep -q "Traceback (most recent call last)" "$log" || fail "$* printed a traceback"
}
has() { grep -q -- "$1" "$log" || fail "expected '$1' in the output of the last command"; }
lines() {  # lines FILE MIN: FILE holds at least MIN OCSF Detection Findings
  local n
  n=$("$vpy" -c 'import json,sys
n=0
for line in open(sys.argv[1]):
    assert json.loads(line)["class_uid"] == 2004
    n += 1
print(n)' "$1") || fail "$1 is not OCSF JSON lines"
  [ "$n" -ge "$2" ] || fail "$1 holds $n alerts, expected at least $2"
}
venv() {  # venv DIR SPEC: a fresh venv with SPEC installed
  rm -rf "$1"
  "$py" -m venv "$1"
  "$1/bin/pip" install "${pipq[@]}" "$2" 2>&1 | grep -v "is ignored: it is neither" >&2 || true
  "$1/bin/python" -c "import unbacked" || fail "installing $2 into $1"
}

# -- build --------------------------------------------------------------------------------
step "python -m build (wheel and sdist)"
# the build front-end in a venv of its own: the system Python is never written to
[ -x "$work/tools/bin/python" ] || "$py" -m venv "$work/tools"
"$work/tools/bin/pip" install "${pipq[@]}" build 2>&1 | grep -v "is ignored: it is neither" >&2 || true
rm -rf "$work/dist"
UNBACKED_BPF=${UNBACKED_BPF:-auto} "$work/tools/bin/python" -m build --outdir "$work/dist" "$repo" \
  >"$work/build.log" 2>&1 || { tail -30 "$work/build.log" >&2; fail "python -m build"; }
whl=$(ls "$work"/dist/unbacked-*.whl)
sdist=$(ls "$work"/dist/unbacked-*.tar.gz)
ships_object=0
"$py" -c 'import sys, zipfile
sys.exit(0 if "unbacked/sensor/bpf/unbacked.bpf.o" in zipfile.ZipFile(sys.argv[1]).namelist() else 1)' \
  "$whl" && ships_object=1
# the x86-64 object makes the wheel x86-64 Linux only; without it the wheel is pure
case "$ships_object:$(basename "$whl")" in
  1:*-py3-none-linux_x86_64.whl | 0:*-py3-none-any.whl) ;;
  *) fail "wheel $(basename "$whl") is tagged wrongly for ships_object=$ships_object" ;;
esac
if [ "$ships_object" = 1 ]; then
  step "the pure wheel (UNBACKED_BPF=skip) for other platforms, from a tree an earlier build left an object in"
  # the sdist unpacked, with the object in build/lib as a build before this one leaves it: a
  # wheel built in place must not take it (stale, and not what UNBACKED_BPF=skip asks for)
  rm -rf "$work/pure-src" "$work/dist-pure"
  mkdir -p "$work/pure-src"
  tar -xzf "$sdist" -C "$work/pure-src"
  tree=$(ls -d "$work"/pure-src/unbacked-*)
  mkdir -p "$tree/build/lib/unbacked/sensor/bpf"
  "$py" -c 'import sys, zipfile
open(sys.argv[2], "wb").write(zipfile.ZipFile(sys.argv[1]).read("unbacked/sensor/bpf/unbacked.bpf.o"))' \
    "$whl" "$tree/build/lib/unbacked/sensor/bpf/unbacked.bpf.o"
  UNBACKED_BPF=skip "$work/tools/bin/python" -m build --wheel --outdir "$work/dist-pure" "$tree" \
    >"$work/build-pure.log" 2>&1 || { tail -30 "$work/build-pure.log" >&2; fail "pure build"; }
  pure=$(ls "$work"/dist-pure/unbacked-*-py3-none-any.whl 2>/dev/null) \
    || fail "UNBACKED_BPF=skip did not build a py3-none-any wheel"
  "$py" -c 'import sys, zipfile
sys.exit("unbacked/sensor/bpf/unbacked.bpf.o" in zipfile.ZipFile(sys.argv[1]).namelist())' \
    "$pure" || fail "the pure wheel carries the object a build before it left"
  if command -v readelf >/dev/null 2>&1; then
    "$py" -c 'import sys, zipfile
open(sys.argv[2], "wb").write(zipfile.ZipFile(sys.argv[1]).read("unbacked/sensor/bpf/unbacked.bpf.o"))' \
      "$whl" "$work/object.o"
    readelf -S "$work/object.o" | grep -q '\.BTF ' || fail "the shipped object has no BTF"
    ! readelf -S "$work/object.o" | grep -q '\.debug_info' || fail "the shipped object keeps DWARF"
  fi
fi

samples=$repo/samples
winfx=$repo/tests/fixtures/windows
shared=${UNBACKED_SHARED_DATA:-$repo/../shared/data}
can_sense=0
if [ "$(id -u)" = 0 ] && [ -e /sys/kernel/btf/vmlinux ] && [ "$ships_object" = 1 ]; then can_sense=1; fi

check_bare() {  # check_bare VENV [quick]: every README command in a venv without extras
  local v=$1 quick=${2:-} out=$work/out-$(basename "$1")
  vpy=$v/bin/python
  local ub=$v/bin/unbacked
  rm -rf "$out"; mkdir -p "$out"; cd "$out"

  step "$(basename "$v"): --version, package and OCSF versions agree"
  run 0 "$ub" --version
  local cli_version pkg_version
  cli_version=$(awk '{print $NF}' "$log")
  pkg_version=$("$vpy" -c 'import importlib.metadata as m, unbacked
assert m.version("unbacked") == unbacked.__version__, (m.version("unbacked"), unbacked.__version__)
print(unbacked.__version__)') || fail "package metadata and unbacked.__version__ differ"
  [ "$cli_version" = "$pkg_version" ] || fail "--version says $cli_version, the package $pkg_version"
  ! "$vpy" -c "import pandas" 2>/dev/null || fail "pandas is installed in a bare venv"

  step "$(basename "$v"): hunt on the Linux sensor captures (alerts, no pandas)"
  run 3 "$ub" hunt "$samples/linux" -o linux.jsonl --report run.json
  lines linux.jsonl 5
  "$vpy" -c 'import json,sys
v = sys.argv[2]
for line in open(sys.argv[1]):
    assert json.loads(line)["metadata"]["product"]["version"] == v
' linux.jsonl "$pkg_version" || fail "OCSF metadata.product.version is not $pkg_version"
  run 0 "$ub" hunt "$samples/linux" --format table --fail-on none --quiet
  has "Critical"
  # the README's first command, as it is written (labels lie beside the data: not lost)
  run 3 "$ub" hunt "$samples" --format table
  has "Critical"
  ! grep -q "lost whole" "$log" || fail "hunt samples/ reports lost inputs"
  run 0 "$ub" hunt "$samples/linux" --format ecs --fail-on none --quiet
  has '"kind":"alert"'

  if [ "$quick" != quick ]; then
  step "$(basename "$v"): hunt on Windows telemetry (alerts)"
  run 3 "$ub" hunt "$winfx" -o win.jsonl
  lines win.jsonl 1
  if [ -d "$shared/windows" ]; then
    run 3 "$ub" hunt "$shared/windows" -o shared.jsonl --quiet
    lines shared.jsonl 10
  else
    step "  (no shared data at $shared: skipped the OTRF hunt)"
  fi

  step "$(basename "$v"): train / detect"
  run 0 "$ub" train "$winfx/baseline" -o baseline
  has "baseline:"
  run 3 "$ub" detect "$winfx/triggered" --baseline baseline -o detect.jsonl
  lines detect.jsonl 1

  step "$(basename "$v"): eval on the project's labelled captures"
  run 0 "$ub" eval "$samples/linux" "$winfx" --labels "$samples/labels" --data-root "$repo"
  grep -Eq "recall [1-9][0-9]*/" "$log" || fail "eval caught nothing on the labelled captures"

  step "$(basename "$v"): scan a live pid; a minidump names the [memscan] extra"
  sleep 30 & local victim=$!
  run 0 "$ub" scan --pid "$victim"
  has "scanned 1 of 1"
  run 0 "$ub" scan --pid "$victim" -o scan.jsonl
  kill "$victim" 2>/dev/null || true
  echo "MDMP" >fake.dmp
  run 1 "$ub" scan fake.dmp
  has "unbacked\[memscan\]"
  run 1 "$ub" hunt "$samples/linux" --engine spark
  has "unbacked\[spark\]"
  echo 'rule r { condition: false }' >r.yar
  run 1 "$ub" scan --pid $$ --yara r.yar
  has "unbacked\[yara\]"

  step "$(basename "$v"): export, report, the notebook API"
  run 0 "$ub" export "$samples/linux" --parquet lake
  [ -n "$(find lake -name '*.parquet' | head -1)" ] || fail "export wrote no Parquet"
  # above --memory-events the lake is read in place, host by host, with the same alerts
  run 3 "$ub" hunt lake --memory-events 100 -o lake.jsonl
  has "lake file"
  lines lake.jsonl 5
  run 0 "$ub" report linux.jsonl -o report.html
  grep -q "<html" report.html || fail "report.html is not HTML"
  run 0 "$vpy" -c 'import sys, unbacked
result = unbacked.hunt([sys.argv[1]])
assert len(result.alerts) >= 5, result
doc = result.alerts[0].to_ocsf()
assert doc["class_uid"] == 2004
print(repr(result)); print(repr(result.alerts))' "$samples/linux"
  fi

  if [ "$can_sense" = 1 ]; then
    step "$(basename "$v"): record and sensor with no compiler on PATH (the shipped object)"
    local cache=$out/cache
    run 0 env PATH="$v/bin" UNBACKED_CACHE="$cache" "$ub" record -o rec.jsonl -- /bin/true
    has "recorded"
    [ -s rec.jsonl ] || fail "record wrote nothing"
    run 0 timeout 120 env PATH="$v/bin" UNBACKED_CACHE="$cache" "$ub" sensor \
      -o events.parquet --alerts sensor-alerts.jsonl --duration 2 --fail-on none
    [ -s events.parquet ] || fail "sensor wrote no events"
    [ ! -e "$cache" ] || fail "the sensor compiled an object instead of loading the shipped one"
  else
    step "  (not root, no BTF, or no object in the wheel: record/sensor skipped)"
  fi
  cd "$repo"
}

venv "$work/wheel" "$whl"
check_bare "$work/wheel"
venv "$work/sdist" "$sdist"
check_bare "$work/sdist" quick  # the same files: what differs is how they were built

# the oldest version of each dependency pyproject.toml allows (its ">=" floors, as wheels):
# what a user with older libraries gets must be the same alerts, not a crash
step "the oldest dependencies pyproject.toml allows"
floors=$("$py" -c 'import re, sys, tomllib
deps = tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]
print(" ".join(re.sub(r">=", "==", d.split(";")[0].replace(" ", "")) for d in deps))' \
  "$repo/pyproject.toml")
rm -rf "$work/floor"
"$py" -m venv "$work/floor"
# shellcheck disable=SC2086  # one argument per requirement
"$work/floor/bin/pip" install "${pipq[@]}" --only-binary :all: $floors >"$log" 2>&1 \
  || fail "installing the oldest dependencies ($floors)"
"$work/floor/bin/pip" install "${pipq[@]}" --no-deps "$whl" >"$log" 2>&1 \
  || fail "installing the wheel beside the oldest dependencies"
"$work/floor/bin/pip" check >"$log" 2>&1 || fail "pip check in the oldest dependencies' venv"
step "  $floors"
check_bare "$work/floor" quick
cmp -s "$work/out-floor/linux.jsonl" "$work/out-wheel/linux.jsonl" \
  || fail "the oldest dependencies gave other alerts on samples/linux"
cd "$work/out-floor"
run 3 "$work/floor/bin/unbacked" hunt "$winfx" -o win.jsonl
cmp -s win.jsonl "$work/out-wheel/win.jsonl" \
  || fail "the oldest dependencies gave other alerts on the Windows fixtures"
# no events at all (every record ignored, a quiet sensor window): pyarrow before 26 crashed
# on an empty chunked mask here
printf '%s\n' '{"EventID": 4624, "Channel": "Security", "Hostname": "h", "EventTime": "2024-01-01 00:00:00"}' \
  >ignored.json
run 0 "$work/floor/bin/unbacked" hunt ignored.json -o ignored-alerts.jsonl
has "0 events"
run 0 "$work/floor/bin/python" -c 'from unbacked.engine.local import detect_events
from unbacked.model import EVENT_SCHEMA
result = detect_events(EVENT_SCHEMA.empty_table())
assert result.signals.num_rows == 0 and not result.alerts'
cd "$repo"

if [ "$extras" = 1 ]; then
  step "extra memscan"
  venv "$work/x-memscan" "$whl[memscan]"
  vpy=$work/x-memscan/bin/python
  cd "$work"
  test_dmp=$shared/minidump/rust-minidump/testdata/test.dmp
  if [ -f "$test_dmp" ]; then
    run 1 "$work/x-memscan/bin/unbacked" scan "$test_dmp"
    has "not assessable: the dump holds no memory regions"
  fi
  run 0 "$work/x-memscan/bin/unbacked" scan --pid $$ --format detail
  has "scanned 1 of 1"

  step "extra yara"
  venv "$work/x-yara" "$whl[yara]"
  echo 'rule elf { strings: $m = { 7f 45 4c 46 } condition: $m at 0 }' >"$work/elf.yar"
  run 0 "$work/x-yara/bin/unbacked" scan --pid $$ --yara "$work/elf.yar"
  has "scanned 1 of 1"

  step "extra report"
  venv "$work/x-report" "$whl[report]"
  run 3 "$work/x-report/bin/unbacked" hunt "$samples/linux" -o "$work/r.jsonl" --quiet
  run 0 "$work/x-report/bin/unbacked" report "$work/r.jsonl" -o "$work/r.html"
  grep -q "bokeh" "$work/r.html" || fail "the report extra drew no chart"

  # Spark starts a JVM (a minute or two on a 2-core machine); BARE_SPARK=0 leaves it out
  if [ "${BARE_SPARK:-1}" = 1 ] && command -v java >/dev/null 2>&1; then
    step "extra spark: an exported lake, then the sample folder as it is (same alerts as embedded)"
    venv "$work/x-spark" "$whl[spark]"
    vpy=$work/x-spark/bin/python
    local_spark=(--engine spark --spark-master 'local[2]' --spark-conf spark.ui.enabled=false
                 --spark-conf spark.sql.shuffle.partitions=4)
    run 0 "$work/x-spark/bin/unbacked" export "$samples/linux" --parquet "$work/lake" --quiet
    run 3 "$work/x-spark/bin/unbacked" hunt "$work/lake" "${local_spark[@]}" -o "$work/s.jsonl" \
      --quiet
    lines "$work/s.jsonl" 5
    cmp -s "$work/s.jsonl" "$work/r.jsonl" || fail "spark on the lake wrote other alerts than embedded"
    run 3 "$work/x-spark/bin/unbacked" hunt "$samples/linux" "${local_spark[@]}" \
      -o "$work/s2.jsonl" --quiet
    has "converting the inputs to a temporary one"
    cmp -s "$work/s2.jsonl" "$work/r.jsonl" \
      || fail "spark on the sample folder wrote other alerts than embedded"
  else
    step "  (the spark extra: needs a Java runtime; BARE_SPARK=${BARE_SPARK:-1})"
  fi
fi
step "all checks passed"
