#!/usr/bin/env bash
# reliability_longrun.sh: a long training run on the tiny preset does not grow in memory
# and does not drift: the same run stopped half way and resumed ends bitwise equal to the
# uninterrupted one.
#
# Memory: the resident set (VmRSS from /proc) is sampled every 50 ms; after the first
# checkpoint (every arena allocated, HDF5 and the allocator warmed up) it may not rise by
# more than GROWTH_KB (default 2048) for the rest of the run, saves and evaluations
# included: a leak of 10 KB per step, or of a fraction of a checkpoint per save, fails.
# Under AddressSanitizer (whose quarantine holds freed memory) only LeakSanitizer judges.
#
# CI: STEPS=1000, a save and an evaluation every 100 (enough 50 ms memory samples even
# on an idle machine, where 120 steps took 0.6 s). The documented long run
# (docs/reliability.md): STEPS=20000 SAVE_EVERY=1000 GROWTH_KB=1024 tests/reliability_longrun.sh
set -euo pipefail
bin=${MONOLITH_BIN:?MONOLITH_BIN must point at the monolith binary}
src=${MONOLITH_SOURCE_DIR:?}
sanitized=0
ldd "$bin" 2>/dev/null | grep libasan >/dev/null && sanitized=1  # not -q: SIGPIPE under pipefail
# Under AddressSanitizer (about 10x slower) the run is shorter: there LeakSanitizer, not
# the RSS samples, judges memory.
steps=${STEPS:-$((sanitized ? 60 : 1000))}
every=${SAVE_EVERY:-$((sanitized ? 10 : 100))}
growth_kb=${GROWTH_KB:-2048}
py=python3
/usr/bin/python3 -c 'import h5py' 2>/dev/null && py=/usr/bin/python3
$py -c 'import h5py, numpy' || { echo "reliability_longrun: needs python3-h5py (scripts/setup.sh)"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "reliability_longrun: FAIL: $*" >&2; exit 1; }
if [ $sanitized = 1 ]; then  # ASan's quarantine holds freed memory back: RSS is no leak measure
  export ASAN_OPTIONS=fast_unwind_on_malloc=0 LSAN_OPTIONS=suppressions=$src/tests/sanitizers/lsan.supp:print_suppressions=0
fi

tok=$src/tests/fuzz/vocab.tiktoken
"$bin" data prepare --tokenizer "$tok" --domain code --val-fraction 0.2 --input "$src/engine" "$src/kernels" \
  -o "$tmp/code.h5" >/dev/null 2>&1 || fail "data prepare"
common=(--preset tiny --tokenizer "$tok" --data "code=$tmp/code.h5" --steps "$steps" --batch 2 --seq 16
        --warmup 10 --save-every "$every" --eval-every "$every" --eval-batches 1 --keep 2 --threads 2)

# The uninterrupted run, its memory sampled.
"$bin" train "${common[@]}" --out "$tmp/ref" >"$tmp/log" 2>&1 &
pid=$!
: >"$tmp/rss"
saved=""
while kill -0 $pid 2>/dev/null; do  # bash builtins only: the sampler must not load the CPU
  rss=""
  while read -r key val _; do [ "$key" = VmRSS: ] && rss=$val; done </proc/$pid/status 2>/dev/null || true
  [ -z "$saved" ] && for f in "$tmp/ref"/ckpt-*.h5; do [ -e "$f" ] && saved=saved; done
  [ -n "$rss" ] && echo "$rss $saved" >>"$tmp/rss"
  sleep 0.05
done
wait $pid || fail "the uninterrupted run failed: $(tail -3 "$tmp/log")"
[ -f "$tmp/ref/ckpt-$(printf %08d "$steps").h5" ] || fail "the run did not reach step $steps"
read -r base peak n <<<"$(awk '$2 == "saved" { if (!b) b = $1; if ($1 > p) p = $1; n++ } END { print b, p, n }' \
  "$tmp/rss")"
echo "RSS after the first save ${base} KB, peak afterwards ${peak} KB, $n samples"
if [ $sanitized = 0 ]; then
  [ "${n:-0}" -ge 5 ] || fail "too few memory samples ($n): the run is too short to judge"
  [ $((peak - base)) -le "$growth_kb" ] || fail "resident memory grew by $((peak - base)) KB during the run"
fi

# The same run stopped inside the save half way (kill -9) and resumed.
half=$(((steps / 2 / every + 1) * every))
(MONOLITH_FAULT_KILL_IN_SAVE=$half exec "$bin" train "${common[@]}" --out "$tmp/res") >/dev/null 2>&1 || true
"$bin" train --resume "$tmp/res" --threads 2 >/dev/null 2>&1 || fail "resume"
$py "$src/tests/same_checkpoint.py" "$tmp/ref/ckpt-$(printf %08d "$steps").h5" "$tmp/res/ckpt-$(printf %08d "$steps").h5" ||
  fail "the resumed run drifted from the uninterrupted one"
echo "reliability_longrun: ok ($steps steps, save every $every, resumed at $half, bitwise equal)"
