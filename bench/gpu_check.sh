#!/usr/bin/env bash
# One call on the GPU machine does every GPU check, in under 6 minutes on an H200: configure and build for sm_90
# with all cores, run every test (the [cuda] ones on the GPU), the PyTorch kernel baseline and bench_kernels in
# the same call (ratios from one card), then compute-sanitizer memcheck and racecheck on the [cuda] tests.
# Every step runs under a time limit and the whole script under a deadline (CIUIC_GPU_DEADLINE_S, default 345 s):
# a step that would start past it is SKIPPED and says so, one that runs out of time says TIMEOUT. Nothing is
# reported as passed that did not run to the end.
# What comes back ($OUT, at most 5 files): summary.txt (card, one line per step: status and seconds, test and
# sanitizer counts), log.txt (every step's output, one header per step), bench.jsonl (bench_kernels and
# bench_alloc rows), torch_baseline.jsonl (the PyTorch rows), and build_times.txt (the slowest compile steps).
# Prepare first on the development machine: bash bench/prepare_gpu_carry.sh; then run this with carry [".gpu"].
# Usage: bash bench/gpu_check.sh [--quick] [--models]
#   --quick: build and tests only; --models: also bench_checkpoint / bench_amp at GPT-2 124M shapes if time is left.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
quick=0 models=0
for a in "$@"; do
  case "$a" in
    --quick) quick=1 ;;
    --models) models=1 ;;
    *) echo "usage: bash bench/gpu_check.sh [--quick] [--models]" >&2; exit 2 ;;
  esac
done
export PATH="/usr/local/cuda/bin:$PATH"
export PKG_CONFIG_PATH="$PWD/.gpu/pkgconfig:${PKG_CONFIG_PATH:-}"
summary="$OUT/summary.txt"
log="$OUT/log.txt"
: > "$summary"
: > "$log"
BUILD=build-gpu
JOBS=$(nproc)
T_START=$(date +%s)
DEADLINE=$(( T_START + ${CIUIC_GPU_DEADLINE_S:-345} ))
failed=0

# step NAME LIMIT_S CMD...: runs CMD with its output appended to log.txt, under min(LIMIT_S, time to the
# deadline); records PASS / FAIL(rc) / TIMEOUT / SKIPPED and the seconds taken in summary.txt.
step() {
  local name=$1 limit=$2; shift 2
  local now left t0 rc st
  now=$(date +%s)
  left=$(( DEADLINE - now ))
  if [ "$left" -lt 5 ]; then
    printf '%-16s %-12s %5ss\n' "$name" "SKIPPED" 0 | tee -a "$summary"
    echo "==== $name: SKIPPED (deadline)" >> "$log"
    failed=1
    return 1
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "==== $name (limit ${limit}s): $*" >> "$log"
  t0=$(date +%s)
  timeout --kill-after=5 "$limit" "$@" >> "$log" 2>&1
  rc=$?
  case $rc in
    0) st=PASS ;;
    124|137) st=TIMEOUT ;;
    *) st="FAIL(rc=$rc)" ;;
  esac
  [ "$st" = PASS ] || failed=1
  printf '%-16s %-12s %5ss\n' "$name" "$st" "$(( $(date +%s) - t0 ))" | tee -a "$summary"
  [ "$st" = PASS ]
}

{
  echo "GPU check $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $JOBS cores"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -4
  nvcc --version 2>&1 | tail -1
} >> "$summary"

# A kept build folder is reconfigured; a fresh machine gets a fresh one (meson 1.0 refuses --reconfigure there).
if [ -f "$BUILD/build.ninja" ]; then reconf=--reconfigure; else reconf=; fi
targets=(tests/ciuic_tests bench/bench_kernels bench/bench_alloc tests/comm_tests comm/ciuic-launch bench/bench_allreduce)
[ $models = 1 ] && targets+=(bench/bench_checkpoint bench/bench_amp)
step configure 60 meson setup "$BUILD" $reconf -Dgpu_archs=90 -Dbuildtype=release -Dcuda=enabled || {
  cat "$summary"; exit 1; }
step build 240 ninja -C "$BUILD" -j "$JOBS" "${targets[@]}"
# The slowest compile steps, from ninja's log (start and end in ms): where build time goes.
if [ -f "$BUILD/.ninja_log" ]; then
  awk -F'\t' 'NR > 1 { printf "%7.1f s  %s\n", ($2 - $1) / 1000, $4 }' "$BUILD/.ninja_log" | sort -rn | head -25 \
    > "$OUT/build_times.txt"
fi
if [ ! -x "$BUILD/tests/ciuic_tests" ]; then
  echo "no test binary: see log.txt" | tee -a "$summary"
  exit 1
fi

# Every test, the [cuda] ones running on cuda:0 (tests/device_under_test.h).
step tests 120 "$BUILD/tests/ciuic_tests" --order decl
if [ $quick = 0 ]; then
  # The PyTorch kernel baseline first, so that bench_kernels prints ratios from the same card.
  torch_json="$OUT/torch_baseline.jsonl"
  if [ -f .gpu/torch_gpt2.py ]; then
    RESULTS_DIR="$OUT" step torch_kernels 60 python3 .gpu/torch_gpt2.py kernels
  fi
  # The conv2d rows' baseline (the shared script has no conv): the project's own script.
  RESULTS_DIR="$OUT" step torch_conv 45 python3 bench/torch_conv.py
  step bench_kernels 60 "$BUILD/bench/bench_kernels" --json "$OUT/bench.jsonl" \
    $([ -f "$torch_json" ] && echo --torch "$torch_json")
  step bench_alloc 20 "$BUILD/bench/bench_alloc" --cuda --json "$OUT/bench.jsonl"
  # comm/: the NCCL communicator and the reducer at world size 1, and NCCL allreduce bandwidth on one GPU.
  step tests_nccl 45 "$BUILD/tests/comm_tests" "[nccl]"
  step bench_allreduce_nccl 30 "$BUILD/comm/ciuic-launch" --nproc-per-node 1 "$BUILD/bench/bench_allreduce" --backend nccl
  # Sanitizers on the [cuda] tests; [large] (2^31 + 7 elements, ~34 GiB) runs only without them.
  step memcheck 90 compute-sanitizer --tool memcheck --error-exitcode 9 --print-limit 20 \
    "$BUILD/tests/ciuic_tests" "[cuda]~[large]"
  step racecheck 75 compute-sanitizer --tool racecheck --error-exitcode 9 --print-limit 20 \
    "$BUILD/tests/ciuic_tests" "[cuda]~[large]"
  if [ $models = 1 ]; then
    gpt=(--cuda --B 16 --T 1024 --C 768 --layers 12 --heads 12 --vocab 50304 --json "$OUT/bench.jsonl")
    step bench_checkpoint 60 "$BUILD/bench/bench_checkpoint" "${gpt[@]}"
    step bench_amp 60 "$BUILD/bench/bench_amp" "${gpt[@]}"
  fi
fi

{
  echo "---- test and sanitizer counts"
  grep -hE "All tests passed|test cases|assertions|ERROR SUMMARY|RACECHECK SUMMARY" "$log" | head -12
  echo "---- total $(( $(date +%s) - T_START ))s"
} >> "$summary"
echo
cat "$summary"
exit $failed
