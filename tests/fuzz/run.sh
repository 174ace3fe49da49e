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
# -timeout=20: only real hangs (infinite loops) count, not a slow input on a busy machine.
# FUZZ_RUNS=N (what ctest sets): exactly N inputs from seed 1 instead of a time bound, so
# the run is the same on every machine and a CI result never depends on luck; a longer
# exploratory run (docs/reliability.md) leaves FUZZ_RUNS unset and gives seconds.
limit=(-max_total_time="$secs")
[ -n "${FUZZ_RUNS:-}" ] && limit+=(-runs="$FUZZ_RUNS")
exec_opts=(-seed=1 "${limit[@]}" -rss_limit_mb=2048 -malloc_limit_mb=256 -timeout=20
           -print_final_stats=1 -artifact_prefix="./$(basename "$bin")-")
# Leak checking is off in these short runs: telling libhdf5's own leaks on corrupt files
# from ours (tests/sanitizers/lsan.supp) needs full malloc stacks, which cut the input rate
# tenfold. The sanitized build's fuzz_replay_* tests check leaks on every committed input,
# and docs/reliability.md's long run turns them on.
log=$scratch.log
set +e
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0} "$bin" "${exec_opts[@]}" "$scratch" "$@" >"$log" 2>&1
rc=$?
set -e
tail -n 25 "$log"
rm -f "$log"
exit $rc
