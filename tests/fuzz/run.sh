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
# The one known third-party failure (docs/reliability.md, "Known and not ours"): libhdf5
# 1.10 never returns from H5HG_read when a mutation lands inside a global heap collection
# (which no HDF5 format checksums). Reported, not failed; any other timeout or crash fails.
if [ $rc -ne 0 ] && grep -q "ERROR: libFuzzer: timeout" "$log" && grep -q "in H5HG_read" "$log" &&
   ! grep -q "ERROR: AddressSanitizer\|runtime error\|invariant broken" "$log"; then
  echo "run.sh: known libhdf5 hang in H5HG_read (docs/reliability.md); not a monolith failure"
  rm -f "$log"
  exit 0
fi
# The same damaged global heap can also make H5HG_read memcpy a negative size (ASan
# stops it: in a normal build it reads garbage into a string and our checks refuse the
# file, or it crashes inside libhdf5). Reported, not failed, when H5HG_read is the first
# frame past the memcpy interceptor; anything reached through our own code fails.
if [ $rc -ne 0 ] && grep -q "ERROR: AddressSanitizer: negative-size-param" "$log" &&
   grep -A2 "ERROR: AddressSanitizer: negative-size-param" "$log" | grep -q "#1 .* in H5HG_read"; then
  echo "run.sh: known libhdf5 crash in H5HG_read on a damaged global heap (docs/reliability.md); not a monolith failure"
  rm -f "$log"
  exit 0
fi
rm -f "$log"
exit $rc
