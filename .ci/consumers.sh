#!/usr/bin/env bash
# Builds ciuic the way a client project does and runs a training step each time:
#   1. an empty Meson project that pulls ciuic in as a subproject with the README's
#      snippet (no cpp_std of its own; ciuic's tests must not be built or run);
#   2. a plain g++ consumer of the installed ciuic.pc (installed from BUILD_DIR);
#   3. a CMake pkg_check_modules(IMPORTED_TARGET) consumer when cmake is available.
# Usage: .ci/consumers.sh [BUILD_DIR]   (BUILD_DIR: an already built ciuic build, default build)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
BUILD_DIR=${1:-build}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
log() { printf '[consumers] %s\n' "$*"; }

# ---- 1. Meson subproject ----------------------------------------------------
client=$WORK/client
mkdir -p "$client/subprojects/ciuic"
# The working tree without build folders or git metadata, as a checkout would be.
tar --exclude='./build*' --exclude='./.git' --exclude='./.gpu' -cf - . | tar -xf - -C "$client/subprojects/ciuic"
cp .ci/consumer/train.cpp "$client/"
# The README's snippet, verbatim (the two lines between the markers).
snippet=$(sed -n '/<!-- subproject-snippet -->/,/<!-- \/subproject-snippet -->/p' README.md | grep -E "^(ciuic_dep|executable)")
[ "$(printf '%s\n' "$snippet" | wc -l)" -eq 2 ] || { log "README subproject snippet not found"; exit 1; }
{
  echo "project('client', 'cpp')"
  printf '%s\n' "$snippet"
  echo "test('train', executable('train_test', 'train.cpp', dependencies: ciuic_dep))"
} > "$client/meson.build"
log "client meson.build:"; sed 's/^/    /' "$client/meson.build"
# --force-fallback-for: use the subproject even where a ciuic.pc is installed.
# CUDA off: the subproject check is about the Meson integration, not the kernels.
meson setup "$client/build" "$client" --force-fallback-for=ciuic -Dciuic:cuda=disabled >/dev/null
meson compile -C "$client/build"
# ciuic's own suite is neither built nor run inside the client.
if [ -e "$client/build/subprojects/ciuic/tests/ciuic_tests" ]; then log "ciuic's tests were built in a subproject"; exit 1; fi
tests=$(meson test -C "$client/build" --list --no-rebuild 2>/dev/null)
{ printf '%s\n' "$tests" | grep -q train && ! printf '%s\n' "$tests" | grep -qE 'unit|readme_example'; } ||
  { log "client's meson test lists: $tests (expected only its own 'train')"; exit 1; }
# The library is optimised although the client's buildtype is debug.
grep -q -- '-O3' "$client/build/compile_commands.json" || { log "ciuic not built with -O3 in a debug client"; exit 1; }
meson test -C "$client/build" --print-errorlogs
"$client/build/train"
log "subproject consumer: ok"

# ---- 2. installed ciuic.pc, plain g++ ------------------------------------------
stage=$WORK/stage
meson install -C "$BUILD_DIR" --destdir "$stage" --no-rebuild >/dev/null
prefix=$(meson introspect "$BUILD_DIR" --buildoptions | python3 -c "import json,sys; print([o['value'] for o in json.load(sys.stdin) if o['name']=='prefix'][0])")
pcdir=$(dirname "$(find "$stage" -name ciuic.pc | head -1)")
export PKG_CONFIG_PATH=$pcdir
pc() { pkg-config --define-variable=prefix="$stage$prefix" "$@" ciuic; }
log "ciuic.pc:"; sed 's/^/    /' "$pcdir/ciuic.pc"
if grep -q nlohmann_json "$pcdir/ciuic.pc" && ! grep -rq nlohmann "$REPO/engine/include" "$REPO/kernels/include"; then
  log "ciuic.pc requires nlohmann_json, which no public header includes"; exit 1
fi
# -lcudart needs a -L folder that holds libcudart (the toolkit's lib64, wherever it is installed:
# /usr/local/cuda/lib64 here, /usr/local/lib64 on a machine whose nvcc is /usr/local/bin/nvcc).
if pc --libs | grep -q -- '-lcudart'; then
  found=""
  for d in $(pc --libs-only-L | sed 's/-L//g'); do
    [ -e "$d/libcudart.so" ] && found=$d
  done
  [ -n "$found" ] || { log "ciuic.pc links -lcudart but none of its -L folders holds libcudart.so"; exit 1; }
fi
# shellcheck disable=SC2046
g++ -o "$WORK/train_pc" .ci/consumer/train.cpp $(pc --cflags --libs)
# The CUDA runtime, when linked, is found through the same directory at run time.
LD_LIBRARY_PATH=$(pc --libs-only-L | sed 's/-L//g; s/ /:/g')${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} "$WORK/train_pc"
log "pkg-config g++ consumer: ok"

# ---- 3. CMake pkg_check_modules ----------------------------------------------
if ! command -v cmake >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || { command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null && sudo=sudo; }
  if [ "$(id -u)" -eq 0 ] || [ -n "$sudo" ]; then
    log "installing cmake for the CMake consumer"
    { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq cmake; } >/dev/null 2>&1 ||
      log "could not install cmake"
  fi
fi
if command -v cmake >/dev/null 2>&1; then
  cm=$WORK/cmake
  mkdir -p "$cm"
  cp .ci/consumer/train.cpp "$cm/"
  cat > "$cm/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.16)
project(client CXX)
find_package(PkgConfig REQUIRED)
pkg_check_modules(CIUIC REQUIRED IMPORTED_TARGET ciuic)
add_executable(train train.cpp)
target_link_libraries(train PRIVATE PkgConfig::CIUIC)
CMAKE
  # pkg_check_modules reads PKG_CONFIG_PATH; the staged prefix goes in through a copy of the .pc.
  mkdir -p "$cm/pc"
  sed "s|^prefix=.*|prefix=$stage$prefix|" "$pcdir/ciuic.pc" > "$cm/pc/ciuic.pc"
  PKG_CONFIG_PATH=$cm/pc cmake -S "$cm" -B "$cm/build" >/dev/null
  cmake --build "$cm/build" -j2 >/dev/null
  LD_LIBRARY_PATH=$(pc --libs-only-L | sed 's/-L//g; s/ /:/g')${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} "$cm/build/train"
  log "CMake pkg_check_modules consumer: ok"
else
  log "cmake not installed: CMake consumer skipped (apt-get install cmake to run it)"
fi
