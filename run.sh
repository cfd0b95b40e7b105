#!/usr/bin/env bash
# ciuic's entry point on a fresh Debian or Ubuntu machine, with or without the CUDA toolkit.
#   ./run.sh demo              build, then train GPT-2 (tiny on the CPU, 124M FP16 on a GPU)
#   ./run.sh test              build, then run every test (CUDA tests skip without a GPU)
#   ./run.sh bench NAME [ARGS] build, then run the benchmark binary bench/NAME
#   ./run.sh build             configure and build only
#   ./run.sh test-emulated     build with the emulated CUDA device, run the [cuda] suite on it (two profiles, two orders)
#   ./run.sh sanitize          CPU-only build under ASan + UBSan (+ float-cast-overflow), then every test
# Environment: BUILD_DIR (default build), MESON_ARGS (extra `meson setup` arguments, e.g. -Dcuda=disabled).
set -euo pipefail
cd "$(dirname "$0")"
BUILD_DIR=${BUILD_DIR:-build}

log() { printf '[run.sh] %s\n' "$*"; }

# OpenBLAS picks its kernels from the CPU model; on VMs that hide it, it falls back to its
# SSE3 (Prescott) kernels, 5-7x slower than the AVX-512 ones (engine/src/ops/cpu_gemm.cpp).
# Name the kernels from the CPU's flags unless the caller chose.
if [ -z "${OPENBLAS_CORETYPE:-}" ] && [ -r /proc/cpuinfo ]; then
  flags=$(grep -m1 '^flags' /proc/cpuinfo || true)
  has() { case " $flags " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
  if has avx512f && has avx512bw && has avx512vl && has avx512dq; then export OPENBLAS_CORETYPE=SkylakeX
  elif has avx2 && has fma; then export OPENBLAS_CORETYPE=Haswell
  fi
fi

# nvcc lives outside PATH in a default toolkit install.
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH="/usr/local/cuda/bin:$PATH"
fi

# Debian package -> a command or file proving it is installed.
missing_packages() {
  local missing=()
  command -v meson >/dev/null 2>&1 || missing+=(meson)
  command -v ninja >/dev/null 2>&1 || missing+=(ninja-build)
  command -v g++ >/dev/null 2>&1 || missing+=(g++)
  command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
  [ -f /usr/include/catch2/catch.hpp ] || pkg-config --exists catch2 2>/dev/null || missing+=(catch2)
  [ -f /usr/include/nlohmann/json.hpp ] || pkg-config --exists nlohmann_json 2>/dev/null || missing+=(nlohmann-json3-dev)
  pkg-config --exists openblas 2>/dev/null || missing+=(libopenblas-dev)
  [ -f /usr/include/gloo/config.h ] || missing+=(libgloo-dev)  # the Gloo communicator (comm/)
  [ -f /usr/include/boost/context/detail/fcontext.hpp ] || missing+=(libboost-context-dev)  # the emulated device's fibers
  echo "${missing[@]:-}"
}

ensure_dependencies() {
  local missing
  missing=$(missing_packages)
  [ -z "$missing" ] && return 0
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo"; else
      log "missing packages: $missing"
      log "install them with: sudo apt-get update && sudo apt-get install -y $missing"
      exit 1
    fi
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    log "missing packages: $missing (Debian names); no apt-get here: install their equivalents and rerun"
    exit 1
  fi
  log "installing: $missing"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing >/dev/null
}

configure_and_build() {
  ensure_dependencies
  if [ ! -f "$BUILD_DIR/build.ninja" ]; then
    # shellcheck disable=SC2086
    meson setup "$BUILD_DIR" ${MESON_ARGS:-}
  fi
  meson compile -C "$BUILD_DIR"
}

# One run of the emulated [cuda] suite: LABEL names it in the log; the rest are Catch2 arguments.
run_one_emulated() {
  local dir=$1 label=$2
  shift 2
  log "emulated device ($label): ciuic_tests $*"
  local out status=0
  out=$(mktemp)
  "$dir/tests/ciuic_tests" "$@" >"$out" 2>&1 || status=$?
  grep -E "All tests passed|test cases:|assertions:|emulated kernels launched" "$out" | sed "s/^/[catch2, $label] /" || true
  if [ $status -ne 0 ]; then tail -n 200 "$out"; fi
  rm -f "$out"
  return $status
}

run_emulated_suites() {
  local dir=$1
  shift
  local status=0
  CIUIC_EMU_PROFILE=sm_90 CIUIC_EMU_ORDER=forward CIUIC_EMU_REQUIRE_COVERAGE=1 \
    run_one_emulated "$dir" "sm_90, forward" '[cuda],[emu]' "$@" || status=1
  CIUIC_EMU_PROFILE=sm_86 CIUIC_EMU_ORDER=reverse run_one_emulated "$dir" "sm_86, reverse" '[cuda],[emu]' "$@" || status=1
  CIUIC_EMU_PROFILE=sm_90 CIUIC_EMU_ORDER=random:7 run_one_emulated "$dir" "sm_90, random:7" '[emu],[kernels]' "$@" ||
    status=1
  return $status
}

cmd=${1:-help}
shift || true
case "$cmd" in
  build)
    configure_and_build ;;
  test)
    configure_and_build
    status=0
    meson test -C "$BUILD_DIR" --print-errorlogs "$@" || status=$?
    # Catch2's own summary line: how many test cases and assertions ran.
    grep -hE "All tests passed|test cases:|assertions:" "$BUILD_DIR"/meson-logs/testlog.txt | sed 's/^/[catch2] /' || true
    exit $status ;;
  test-emulated)
    # The emulated CUDA device (kernels/emu/README.md): the kernels' .cu source compiled as C++
    # and run on the CPU, so every [cuda] test runs its kernels (raw-pointer launchers included).
    # Run 1: sm_90 profile, forward thread order, and every kernel instantiation must have run.
    # Run 2: sm_86 profile (99 KiB opt-in shared memory), reverse order. Run 3: seeded random
    # order on the emulator's own tests and the kernel tests.
    BUILD_DIR=${EMU_BUILD_DIR:-build-emulated}
    MESON_ARGS="-Dgpu_emulation=true -Dcuda=disabled -Dbench=disabled ${MESON_ARGS:-}"
    ensure_dependencies
    # shellcheck disable=SC2086
    [ -f "$BUILD_DIR/build.ninja" ] || meson setup "$BUILD_DIR" $MESON_ARGS
    meson compile -C "$BUILD_DIR" ciuic_tests comm_tests ciuic-launch
    status=0
    run_emulated_suites "$BUILD_DIR" "$@" || status=1
    # Data parallel over Gloo with the gradients on the emulated device: the reducer's
    # buckets, streams and events run asynchronously (NCCL is not emulated).
    meson test -C "$BUILD_DIR" --no-rebuild --print-errorlogs comm_single comm_dist_2ranks || status=1
    exit $status ;;
  sanitize)
    # A separate CPU-only build under ASan + UBSan; any sanitizer report fails the run. Huge
    # requests must come back as null, not abort, so that the library can answer them with
    # OutOfMemory. (The emulated CUDA device under the sanitizers: SANITIZE_EMULATED=1, which
    # builds the emulated device instead and runs the [cuda] suite on it as well.)
    BUILD_DIR=${SANITIZE_BUILD_DIR:-build-sanitize}
    emulated=${SANITIZE_EMULATED:-0}
    if [ "$emulated" = 1 ]; then
      BUILD_DIR=${SANITIZE_BUILD_DIR:-build-sanitize-emulated}
      MESON_ARGS="-Dgpu_emulation=true -Dcuda=disabled ${MESON_ARGS:-}"
    else
      MESON_ARGS="-Dcuda=disabled ${MESON_ARGS:-}"
    fi
    MESON_ARGS="$MESON_ARGS -Dbench=disabled -Dbuildtype=plain -Db_sanitize=address,undefined -Db_lundef=false"
    # Read by `meson setup` only. float-cast-overflow is not part of GCC's -fsanitize=undefined;
    # -O1 -g1 keep the build cheap and the reports readable.
    export CXXFLAGS="-O1 -g1 -fsanitize=float-cast-overflow -fno-sanitize-recover=all"
    export LDFLAGS="-fsanitize=float-cast-overflow"
    ensure_dependencies
    # shellcheck disable=SC2086
    [ -f "$BUILD_DIR/build.ninja" ] || meson setup "$BUILD_DIR" $MESON_ARGS
    # The core suite and the README example (the comm/ rank tests run in `test`; on the
    # emulated device, two ranks of them run here too, their gradients on the device).
    meson compile -C "$BUILD_DIR" ciuic_tests readme_example
    [ "$emulated" = 1 ] && meson compile -C "$BUILD_DIR" comm_tests ciuic-launch
    # LeakSanitizer needs ptrace, which some containers deny: probe it on a tiny program first and run
    # without leak detection (saying so) where it cannot work, rather than fail on the tool itself.
    leaks=1
    probe_dir=$(mktemp -d)
    printf 'int main() { return 0; }\n' > "$probe_dir/p.cpp"
    if g++ -fsanitize=address "$probe_dir/p.cpp" -o "$probe_dir/p" 2>/dev/null &&
       ! ASAN_OPTIONS=detect_leaks=1 "$probe_dir/p" >/dev/null 2>&1; then
      leaks=0
      log "LeakSanitizer cannot run here (ptrace denied?): sanitize without leak detection"
    fi
    rm -rf "$probe_dir"
    export ASAN_OPTIONS=${ASAN_OPTIONS:-allocator_may_return_null=1:detect_leaks=$leaks:abort_on_error=0}
    export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
    status=0
    if [ "$emulated" = 1 ]; then
      # The whole suite, [cuda] on the emulated device (sm_90, forward order); every kernel
      # instantiation must run. Slower under the sanitizers: twice meson's timeout.
      CIUIC_EMU_PROFILE=sm_90 CIUIC_EMU_ORDER=forward CIUIC_EMU_REQUIRE_COVERAGE=1 \
        meson test -C "$BUILD_DIR" --no-rebuild --print-errorlogs --timeout-multiplier 2 unit readme_example "$@" ||
        status=$?
    else
      meson test -C "$BUILD_DIR" --no-rebuild --print-errorlogs unit readme_example "$@" || status=$?
    fi
    grep -hE "All tests passed|test cases:|assertions:|emulated kernels launched" "$BUILD_DIR"/meson-logs/testlog.txt |
      sed 's/^/[catch2, sanitized] /' || true
    if [ "$emulated" = 1 ]; then
      # Two ranks, gradients on the emulated device (not under the coverage rule: these
      # binaries launch a few kernels only).
      meson test -C "$BUILD_DIR" --no-rebuild --print-errorlogs --timeout-multiplier 2 comm_single comm_dist_2ranks ||
        status=1
    fi
    # Emulated: attention (whose kernel choice depends on the device's shared memory; N4's
    # 65537-block grid aside) and the emulator's own tests (among them every schedule giving
    # bit-identical results) again under the second profile and thread order.
    if [ "$emulated" = 1 ]; then
      CIUIC_EMU_PROFILE=sm_86 CIUIC_EMU_ORDER=reverse run_one_emulated "$BUILD_DIR" "sanitized, sm_86, reverse" \
        '[attention]~[grid],[emu]' || status=1
    fi
    exit $status ;;
  demo)
    configure_and_build
    # With a usable GPU: GPT-2 124M in FP16 for a few dozen steps (tokens/s, MFU). Without: the tiny
    # byte-level GPT on the embedded corpus (the project's README and headers) for a minute or two.
    if [ -x "$BUILD_DIR/bench/train_gpt2" ] && grep -q "CIUIC_WITH_CUDA" "$BUILD_DIR/build.ninja" 2>/dev/null \
       && command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
      exec "$BUILD_DIR/bench/train_gpt2" --model d12 --precision fp16 --device cuda --batch 16 --seq 1024 \
        --steps 40 --lr 6e-4 --warmup 10 --val-batches 0 "$@"
    fi
    exec "$BUILD_DIR/bench/train_gpt2" --model tiny --batch 8 --seq 64 --steps 300 --lr 2e-3 --warmup 20 \
      --val-every 100 --val-batches 8 --sample-every 150 --sample-tokens 96 "$@" ;;
  bench)
    [ $# -ge 1 ] || { log "usage: ./run.sh bench NAME [ARGS]; available: $(ls bench/*.cpp 2>/dev/null | xargs -n1 basename | sed 's/\.cpp$//' | tr '\n' ' ')"; exit 2; }
    name=$1; shift
    configure_and_build
    exec "$BUILD_DIR/bench/$name" "$@" ;;
  *)
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
    [ "$cmd" = help ] || exit 2 ;;
esac
