#!/usr/bin/env bash
# run.sh: fuzzes one libFuzzer target for a bounded time from its committed inputs.
#
#   tests/fuzz/run.sh BINARY SECONDS INPUT_DIR...
#
# New interesting inputs go to a scratch folder (the committed corpus is never modified;
# copy from the scratch folder by hand to grow it). A crash leaves crash-* in the current
# folder and fails; replay it with the normal build's fuzz_<name> binary, then commit it
# under tests/fuzz/regressions/<name>/ with the fix. Every allocation over 256 MB counts
# as a crash: no reader may trust a size a file claims.
set -euo pipefail
bin=$1 secs=$2
shift 2
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
# -seed=1: reruns start the same way (with a time bound the run count still varies).
exec_opts=(-seed=1 -max_total_time="$secs" -rss_limit_mb=2048 -malloc_limit_mb=256 -timeout=10
           -print_final_stats=1 -artifact_prefix="./$(basename "$bin")-")
# Leaks count as crashes, except libhdf5's own (tests/sanitizers/lsan.supp, which needs
# full malloc stacks to tell them apart).
supp=$(cd "$(dirname "$0")/../sanitizers" && pwd)/lsan.supp
ASAN_OPTIONS=${ASAN_OPTIONS:-fast_unwind_on_malloc=0} LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$supp} \
  "$bin" "${exec_opts[@]}" "$scratch" "$@" 2>&1 | tail -n 25
exit "${PIPESTATUS[0]}"
