#!/usr/bin/env bash
# test.sh: set up, build and run every test. This is the README's test command and what
# CI runs (.ci/run). Warnings are errors here.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
build=${BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMONOLITH_WERROR=ON >/dev/null
cmake --build "$build" -j"$(nproc)"
(cd "$build" && ctest --output-on-failure -j"$(nproc)" "$@")

# Reliability (docs/reliability.md). MONOLITH_QUICK=1 skips both passes below.
[ -n "${MONOLITH_QUICK:-}" ] && exit 0
# The whole suite again under AddressSanitizer + UBSan (UB aborts; leaks fail, except
# libhdf5's own, tests/sanitizers/lsan.supp).
root=$(pwd)
san=${SANITIZE_BUILD_DIR:-build-sanitize}
cmake -S . -B "$san" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMONOLITH_WERROR=ON -DMONOLITH_SANITIZE=ON >/dev/null
cmake --build "$san" -j"$(nproc)"
(cd "$san" && LSAN_OPTIONS="suppressions=$root/tests/sanitizers/lsan.supp:print_suppressions=0" \
  ctest --output-on-failure -j"$(nproc)" "$@")
# Each libFuzzer target for a few seconds from its committed corpus (clang; only the
# fuzz targets are built in this folder).
fuzz=${FUZZ_BUILD_DIR:-build-fuzz}
cmake -S . -B "$fuzz" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMONOLITH_FUZZ=ON >/dev/null
targets=$(cd tests/fuzz && ls fuzz_*.c | sed 's/\.c$//')
# shellcheck disable=SC2086
cmake --build "$fuzz" -j"$(nproc)" --target $targets
(cd "$fuzz" && ctest --output-on-failure -j"$(nproc)" -R '^fuzz_')
