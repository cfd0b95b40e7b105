#!/usr/bin/env bash
# One call on the GPU machine does every GPU check: configure and build for the card, run every test
# (the [cuda] ones included), run the [cuda] tests under compute-sanitizer memcheck and racecheck, run the
# benchmarks and the PyTorch baseline in the same call so ratios come from one card. Full logs go to
# $OUT (the device tool returns them); a short table is printed last.
# Prepare first on the development machine: bash bench/prepare_gpu_carry.sh; then run this with
# carry [".gpu"]. Usage: bash bench/gpu_check.sh [--quick]   (--quick: no sanitizer, no baseline)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
quick=0
[ "${1:-}" = "--quick" ] && quick=1
export PATH="/usr/local/cuda/bin:$PATH"
export PKG_CONFIG_PATH="$PWD/.gpu/pkgconfig:${PKG_CONFIG_PATH:-}"
summary="$OUT/summary.txt"
: > "$summary"
BUILD=build-gpu
JOBS=$(nproc)

step() {  # step NAME CMD...: run, log to $OUT/NAME.log, record status and seconds
  local name=$1; shift
  local t0=$(date +%s) st
  if "$@" > "$OUT/$name.log" 2>&1; then st=PASS; else st="FAIL(rc=$?)"; fi
  printf '%-22s %-12s %5ss\n' "$name" "$st" "$(( $(date +%s) - t0 ))" | tee -a "$summary"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
# A kept build folder is reconfigured; a fresh machine gets a fresh one (meson 1.0 refuses --reconfigure there).
if [ -f "$BUILD/build.ninja" ]; then reconf=--reconfigure; else reconf=; fi
step configure meson setup "$BUILD" $reconf -Dgpu_archs=90 -Dbuildtype=release -Dcuda=enabled
step build ninja -C "$BUILD" -j "$JOBS"
step tests_all "$BUILD/tests/ciuic_tests" --order decl
step tests_cuda "$BUILD/tests/ciuic_tests" "[cuda]" --order decl -s
# comm/: the NCCL communicator and the reducer at world size 1, and NCCL allreduce bandwidth on one GPU.
step tests_nccl "$BUILD/tests/comm_tests" "[nccl]" -s
step bench_allreduce_nccl "$BUILD/comm/ciuic-launch" --nproc-per-node 1 "$BUILD/bench/bench_allreduce" --backend nccl
if [ $quick = 0 ]; then
  step memcheck compute-sanitizer --tool memcheck --error-exitcode 9 "$BUILD/tests/ciuic_tests" "[cuda]"
  step racecheck compute-sanitizer --tool racecheck --error-exitcode 9 "$BUILD/tests/ciuic_tests" "[cuda]"
fi
# The PyTorch baseline first, so that bench_kernels can print ratios from the same card.
if [ $quick = 0 ] && [ -f .gpu/torch_gpt2.py ]; then
  RESULTS_DIR="$OUT" step torch_kernels python3 .gpu/torch_gpt2.py kernels
  RESULTS_DIR="$OUT" step torch_train_ckpt python3 .gpu/torch_gpt2.py train ckpt
fi
# The conv2d rows' baseline (the shared script has no conv): the project's own script.
[ $quick = 0 ] && RESULTS_DIR="$OUT" step torch_conv python3 bench/torch_conv.py
torch_json="$OUT/torch_baseline.jsonl"
step bench_kernels "$BUILD/bench/bench_kernels" --json "$OUT/bench.jsonl" $([ -f "$torch_json" ] && echo --torch "$torch_json")
step bench_alloc "$BUILD/bench/bench_alloc" --cuda --json "$OUT/bench.jsonl"
# GPT-2 124M shapes (needs CUDA attention, which does not exist yet: expected to fail with NotImplementedError).
step bench_checkpoint "$BUILD/bench/bench_checkpoint" --cuda --B 16 --T 1024 --C 768 --layers 12 --heads 12 --vocab 50304 --json "$OUT/bench.jsonl"
step bench_amp "$BUILD/bench/bench_amp" --cuda --B 16 --T 1024 --C 768 --layers 12 --heads 12 --vocab 50304 --json "$OUT/bench.jsonl"

echo
echo "==== GPU check on $(head -2 "$OUT/gpu.txt" | tail -1), $(date -u +%Y-%m-%d) ===="
grep -hE "All tests passed|test cases|assertions|FAILED|ERROR SUMMARY" "$OUT"/tests_*.log "$OUT"/memcheck.log "$OUT"/racecheck.log 2>/dev/null | head -20
cat "$summary"
