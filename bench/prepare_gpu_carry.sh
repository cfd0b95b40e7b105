#!/usr/bin/env bash
# Fills .gpu/ (git-ignored; listed in .git/info/exclude) with what the GPU machine lacks, so that one
# device-tool call can carry it: Catch2 (header + .pc), nlohmann-json (header + .pc), and the PyTorch
# baseline script. Run on the development machine before calling bench/gpu_check.sh remotely.
#   bash bench/prepare_gpu_carry.sh [SHARED_DIR]    (default ../shared)
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${1:-../shared}
rm -rf .gpu && mkdir -p .gpu/pkgconfig .gpu/include
cp -r "$shared/gpu/catch2" .gpu/catch2
cp "$shared/gpu/pkgconfig/catch2.pc" .gpu/pkgconfig/
cp "$shared/baselines/torch_gpt2.py" .gpu/
cp -r /usr/include/nlohmann .gpu/include/
cat > .gpu/pkgconfig/nlohmann_json.pc <<'PC'
prefix=${pcfiledir}/..
includedir=${prefix}/include
Name: nlohmann_json
Description: JSON for Modern C++ (carried copy)
Version: 3.11.2
Cflags: -I${includedir}
PC
du -sh .gpu
