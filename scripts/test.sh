#!/usr/bin/env bash
# The README's test command: full set-up (packages, MNIST, Release build with -Werror),
# every test in Release, then the unit tests again under AddressSanitizer and
# UndefinedBehaviorSanitizer. Slow end-to-end tests (real MNIST training) run in
# Release only. Usage: scripts/test.sh [--no-sanitizers]
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"

sanitizers=1
for arg in "$@"; do
  case "$arg" in
    --no-sanitizers) sanitizers=0 ;;
    *) echo "test: unknown option $arg" >&2; exit 2 ;;
  esac
done

export ATTN_CMAKE_ARGS="-DATTN_WERROR=ON ${ATTN_CMAKE_ARGS:-}"
bash scripts/setup.sh

echo "test: Release build, all tests"
(cd build && ctest --output-on-failure -j2)

if [ "$sanitizers" = 1 ]; then
  echo "test: ASan + UBSan build, unit tests"
  # -O1 and line tables only (-g1): the sanitizers' usual setting, and it halves the compile
  # time of this stage, the longest of CI, against -O2 -g; reports still name file and line.
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DATTN_SANITIZE=ON -DATTN_WERROR=ON \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" -DATTN_BUILD_BENCH=OFF >/dev/null
  cmake --build build-asan -j"$(nproc)" --target attn_tests attn_cli
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --output-on-failure -j2 -LE slow)
fi
echo "test: all passed"
