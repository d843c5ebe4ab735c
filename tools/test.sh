#!/bin/sh
# Builds and runs every test: once in a normal build, once under
# AddressSanitizer + UndefinedBehaviorSanitizer; then builds every target in
# Release too, so that each CMake build type is proven to build. Warnings are
# errors here (MESH_WERROR), unlike in an operator's build. Installs the
# Debian packages first (a no-op when they are there).
set -eu
cd "$(dirname "$0")/.."
tools/setup-debian.sh
command -v promtool >/dev/null 2>&1 || tools/setup-debian.sh --promtool

jobs=$(nproc 2>/dev/null || echo 2)

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMESH_WERROR=ON
cmake --build build -j "$jobs"
ctest --test-dir build --output-on-failure -j "$jobs" --timeout 600

cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DMESH_SANITIZE=ON -DMESH_WERROR=ON
cmake --build build-asan -j "$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan --output-on-failure -j "$jobs" --timeout 900

cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DMESH_WERROR=ON
cmake --build build-release -j "$jobs"

# The parsers under libFuzzer (clang, ASan+UBSan): about a minute in all.
tools/fuzz.sh

tools/check-deploy.sh build/relay/mesh-relay

if [ -x tools/bench-smoke.sh ]; then
  tools/bench-smoke.sh build/relay/mesh-relay build/tools/mesh-bench/mesh-bench
fi
echo "all tests passed"
