#!/bin/sh
# Builds the libFuzzer targets (fuzz/*_fuzz.cpp) with clang under
# AddressSanitizer + UndefinedBehaviorSanitizer in build-fuzz/, then runs
# each from its seed corpus (fuzz/corpus/<name>/) for a bounded time. Fails
# on the first crash, leak, undefined behaviour or timeout; the input that
# caused it is left in build-fuzz/crashes/.
#   tools/fuzz.sh [seconds-per-target]   (default 10: about a minute in all)
# New inputs a run finds go to build-fuzz/found/<name>/, never into the
# committed corpus; see the README's "Fuzzing" section for longer runs.
set -eu
cd "$(dirname "$0")/.."
seconds=${1:-10}
jobs=$(nproc 2>/dev/null || echo 2)

launcher=""
if command -v ccache >/dev/null 2>&1; then
  launcher="-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache"
fi
# shellcheck disable=SC2086
cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
  -DCMAKE_CXX_COMPILER=clang++ -DMESH_FUZZ=ON -DMESH_BUILD_TESTS=OFF -DMESH_BUILD_TOOLS=OFF \
  $launcher
cmake --build build-fuzz -j "$jobs"

mkdir -p build-fuzz/crashes
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
failed=0
ran=0
for target in build-fuzz/fuzz/*_fuzz; do
  name=$(basename "$target" _fuzz)
  mkdir -p "build-fuzz/found/$name"
  echo "== $name: ${seconds}s"
  if "$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="build-fuzz/crashes/$name-" \
    "build-fuzz/found/$name" "fuzz/corpus/$name"; then
    ran=$((ran + 1))
  else
    echo "fuzz target $name failed: see build-fuzz/crashes/" >&2
    failed=$((failed + 1))
  fi
done
echo "fuzz: $ran passed, $failed failed"
[ "$failed" -eq 0 ]
