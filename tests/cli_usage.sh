#!/usr/bin/env bash
# Every binary answers a bad command line with its usage on stderr and exit status 2, and
# --help with the usage on stdout and status 0 (issue 10, item 6). Arguments: the binaries.
# No valid command line is run here: that would train or benchmark.
set -u
fail=0

# expect STATUS STREAM-PATTERN BINARY ARGS...
expect() {
  local want=$1 pattern=$2 bin=$3; shift 3
  local out err status
  out=$(mktemp) err=$(mktemp)
  timeout 20 "$bin" "$@" >"$out" 2>"$err"
  status=$?
  if [ "$status" -ne "$want" ] || ! grep -q "$pattern" "$out" "$err"; then
    echo "FAIL: $(basename "$bin") $* -> status $status (want $want), output:"
    cat "$out" "$err" | sed 's/^/    /'
    fail=1
  else
    echo "ok:   $(basename "$bin") $* -> $status"
  fi
  rm -f "$out" "$err"
}

for bin in "$@"; do
  name=$(basename "$bin")
  expect 2 "usage: $name" "$bin" --no-such-flag
  expect 0 "usage: $name" "$bin" --help
  case "$name" in
    demo)
      for v in abc 12abc "" -5 0 99999999999999999999 1e3 " 7"; do
        expect 2 "usage: demo" "$bin" --mlp-steps "$v"
      done
      expect 2 "'abc' is not an integer" "$bin" --cnn-steps abc
      expect 2 "needs a value" "$bin" --out ;;
    bench_checkpoint|bench_amp|bench_gpt2_fused)
      expect 2 "'abc' is not an integer" "$bin" --B abc
      expect 2 "usage: $name" "$bin" --repeats -1
      expect 2 "usage: $name" "$bin" --layers 3x
      expect 2 "needs a value" "$bin" --T ;;
    bench_kernels)
      expect 2 "not an integer in \[20" "$bin" --repeats 5
      expect 2 "usage: $name" "$bin" --repeats abc ;;
    bench_alloc)
      expect 2 "needs a value" "$bin" --json ;;
    bench_safetensors)
      expect 2 "usage: $name" "$bin" --repeats x ;;
    bench_allreduce)
      expect 2 "expected gloo or nccl" "$bin" --backend mpi
      expect 2 "not an integer" "$bin" --min-bytes 1k ;;
    bench_reducer_overlap)
      expect 2 "not a number" "$bin" --bucket-mib abc
      expect 2 "not a number" "$bin" --first-bucket-mib nan
      expect 2 "not an integer" "$bin" --width 0 ;;
  esac
done
exit $fail
