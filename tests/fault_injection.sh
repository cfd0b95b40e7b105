#!/usr/bin/env bash
# Injects known kernel and stream faults, one at a time, into a copy of the tree and checks
# that the emulated-device suite notices each: the suite must fail, and the script prints
# which test cases caught the fault. The tree itself is never touched.
#
#   tests/fault_injection.sh [RESULT_FILE]
#
# Faults (each a one-line change of the real source):
#   no_syncthreads   the barrier between the warp partials' write and read in kc::block_allreduce
#   smem_off_by_one  a shared-memory index off by one (the tiled transpose's tile column)
#   grid_stride      a grid-stride loop bound off by one (fill: i <= n)
#   no_stream_wait   the reducer's wait of the communication stream on backward's event
#   shfl_wrong_mask  a warp shuffle with a mask that leaves out lane 31 (kc::kFullMask)
# Environment: FAULT_WORK_DIR (default /tmp/ciuic-faults) holds the copy and its build; ccache,
# when installed, makes the copy's first build cheap after the tree's own.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=${FAULT_WORK_DIR:-/tmp/ciuic-faults}
result=${1:-}
src="$work/src"
build="$work/build"

log() { printf '[faults] %s\n' "$*"; }

mkdir -p "$work"
rm -rf "$src"
mkdir -p "$src"
# Tracked files and the uncommitted changes to them, as they are in the tree now.
(cd "$root" && git ls-files -z | xargs -0 cp --parents -t "$src")
export CCACHE_BASEDIR="$work" CCACHE_NOHASHDIR=1
if [ ! -f "$build/build.ninja" ]; then
  meson setup "$build" "$src" -Dgpu_emulation=true -Dcuda=disabled -Dbench=disabled >/dev/null || exit 1
fi

build_tests() { ninja -C "$build" tests/ciuic_tests tests/comm_tests comm/ciuic-launch >"$work/build.log" 2>&1; }

# Runs the emulated suites a fault could break; prints the names of failing test cases.
# Returns 0 when everything passed.
run_suites() {
  local status=0 xml
  for filter in '[cuda],[emu]'; do
    xml="$work/junit.xml"
    CIUIC_EMU_ORDER=forward "$build/tests/ciuic_tests" "$filter" -r junit -o "$xml" >/dev/null 2>&1 || status=1
    python3 - "$xml" <<'EOF'
import sys, xml.etree.ElementTree as ET
try:
    root = ET.parse(sys.argv[1]).getroot()
except Exception as e:
    print(f'    (no report: the test binary died: {e})')
    sys.exit(0)
for tc in root.iter('testcase'):
    if tc.find('failure') is not None or tc.find('error') is not None:
        print(f'    caught by: {tc.get("name")}')
EOF
  done
  # The reducer runs on streams only with ranks: two ranks of the data-parallel tests.
  if ! CIUIC_TEST_DEVICE=cuda timeout 600 "$build/comm/ciuic-launch" --nproc-per-node 2 "$build/tests/comm_tests" '[dist]' \
      >"$work/dist.log" 2>&1; then
    status=1
    grep -hE '^[^ ].*FAILED|^-+$|^[A-Za-z].*\[dist\]' "$work/dist.log" | grep -v '^-' | sort -u | head -5 |
      sed 's/^/    caught by (2 ranks): /'
  fi
  return $status
}

# apply NAME FILE OLD NEW: replaces the one occurrence of OLD in FILE (relative to the copy).
apply() {
  python3 - "$src/$2" "$3" "$4" <<'EOF'
import sys
path, old, new = sys.argv[1:4]
text = open(path).read()
if text.count(old) != 1:
    sys.exit(f'fault not applicable: {old!r} occurs {text.count(old)} times in {path}')
open(path, 'w').write(text.replace(old, new))
EOF
}

faults=(
  "no_syncthreads|kernels/src/kernel_common.cuh|  if (lane == 0) sh[warp] = s;
  __syncthreads();|  if (lane == 0) sh[warp] = s;"
  "smem_off_by_one|kernels/src/cast_transpose.cu|= tile[threadIdx.x][j];|= tile[threadIdx.x][j + 1];"
  "grid_stride|kernels/src/fill.cu|i < n;|i <= n;"
  "no_stream_wait|comm/src/reducer.cpp|@REDUCER_WAIT@|"
  "shfl_wrong_mask|kernels/src/kernel_common.cuh|constexpr unsigned kFullMask = 0xffffffffu;|constexpr unsigned kFullMask = 0x7fffffffu;"
)

log "building the copy at $src (build: $build)"
build_tests || { log "the unmodified copy does not build: see $work/build.log"; exit 1; }
log "baseline: the unmodified copy must pass"
if ! run_suites; then log "the unmodified copy fails its suites; fix that first"; exit 1; fi

summary=()
all_caught=1
for f in "${faults[@]}"; do
  IFS='|' read -r name file old new <<<"$f"
  if [ "$old" = "@REDUCER_WAIT@" ]; then
    old=$(grep -m1 -E 'wait_on\(|cudaStreamWaitEvent' "$src/$file" || true)
    if [ -z "$old" ]; then summary+=("$name: NOT APPLIED (no stream wait found in $file)"); all_caught=0; continue; fi
    new="/* fault: stream wait removed */"
  fi
  cp "$src/$file" "$work/original"
  if ! apply "$name" "$file" "$old" "$new"; then
    summary+=("$name: NOT APPLIED"); all_caught=0; continue
  fi
  log "fault $name in $file"
  if ! build_tests; then
    summary+=("$name: caught at compile time")
  elif run_suites >"$work/$name.txt" 2>&1; then
    summary+=("$name: NOT CAUGHT"); all_caught=0
  else
    summary+=("$name: caught"); sed 's/^/  /' "$work/$name.txt"
  fi
  cp "$work/original" "$src/$file"
done
build_tests >/dev/null 2>&1 || true

report=$(printf '%s\n' "${summary[@]}")
log "summary:"
printf '%s\n' "$report" | sed 's/^/  /'
if [ -n "$result" ]; then
  {
    echo "# Fault injection on the emulated device ($(date -u +%Y-%m-%d), $(uname -m), emulated profile sm_90, forward order)"
    echo
    for f in "${faults[@]}"; do IFS='|' read -r name file _ <<<"$f"; echo "- $name: $file"; done
    echo
    printf '%s\n' "$report"
    for f in "${faults[@]}"; do
      IFS='|' read -r name _ <<<"$f"
      [ -f "$work/$name.txt" ] && { echo; echo "## $name"; cat "$work/$name.txt"; }
    done
  } >"$result"
fi
[ $all_caught -eq 1 ]
