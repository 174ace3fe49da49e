#!/usr/bin/env bash
# reliability_train.sh: faults during `monolith train` lose nothing.
#
# 1. Out of memory: a model or batch too large for this machine is refused before
#    anything is allocated, with the estimate, in well under a second.
# 2. Disk full while saving: the save fails with one line naming the last complete
#    checkpoint, which stays intact (and latest.h5 points at it); nothing half-written
#    is left; after space is freed, --resume finishes the run.
# 3. kill -9 at random moments, several times (one of them inside a save, through the
#    MONOLITH_FAULT_KILL_IN_SAVE hook of train/state.c), each followed by --resume: the
#    final parameters and Adam state are bitwise identical to an uninterrupted run with
#    the same threads.
#
# CI sizes: tiny preset, tens of steps. KILLS (default 4) and STEPS (default 60) make it
# longer (docs/reliability.md); NO_MOUNT=1 takes the ulimit -f path of test 2 as root.
set -euo pipefail
bin=${MONOLITH_BIN:?MONOLITH_BIN must point at the monolith binary}
src=${MONOLITH_SOURCE_DIR:?}
kills=${KILLS:-4}
steps=${STEPS:-60}
py=python3
/usr/bin/python3 -c 'import h5py' 2>/dev/null && py=/usr/bin/python3
$py -c 'import h5py, numpy' || { echo "reliability_train: needs python3-h5py (scripts/setup.sh)"; exit 1; }
tmp=$(mktemp -d)
mnt=""
cleanup() {
  [ -n "$mnt" ] && umount "$mnt" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "reliability_train: FAIL: $*" >&2; exit 1; }
vlimit=(ulimit -v 4000000)
if ldd "$bin" 2>/dev/null | grep libasan >/dev/null; then  # not -q: an early exit SIGPIPEs ldd under pipefail
  export ASAN_OPTIONS=fast_unwind_on_malloc=0 LSAN_OPTIONS=suppressions=$src/tests/sanitizers/lsan.supp:print_suppressions=0
  vlimit=(true)  # ASan's shadow memory needs terabytes of address space
fi

tok=$src/tests/fuzz/vocab.tiktoken
"$bin" data prepare --tokenizer "$tok" --domain code --val-fraction 0.2 --input "$src/engine" \
  -o "$tmp/code.h5" >/dev/null 2>&1 || fail "data prepare"
common=(--preset tiny --tokenizer "$tok" --data "code=$tmp/code.h5" --batch 2 --seq 16 --warmup 2
        --eval-every 0 --eval-batches 1 --threads 2)

# same DIR_A DIR_B STEP: the two runs' checkpoints of STEP hold bitwise the same model,
# Adam state and /train state.
same() {
  $py "$src/tests/same_checkpoint.py" "$1/ckpt-$(printf %08d "$3").h5" "$2/ckpt-$(printf %08d "$3").h5" --train
}

# ---------------------------------------------------------------- 1. out of memory
for flags in "--n-experts 1024 --preset small" "--batch 16384 --seq 128"; do
  # shellcheck disable=SC2086
  set +e
  start=$(date +%s%N)
  ("${vlimit[@]}"; exec "$bin" train "${common[@]}" --steps 10 $flags --out "$tmp/oom") \
    >/dev/null 2>"$tmp/err"
  rc=$?
  set -e
  ms=$((($(date +%s%N) - start) / 1000000))
  [ $rc -eq 1 ] || fail "OOM ($flags): exit $rc, expected 1: $(cat "$tmp/err")"
  [ "$(wc -l <"$tmp/err")" -eq 1 ] || fail "OOM ($flags): not one line: $(cat "$tmp/err")"
  grep -q "this run needs .* GB .*more than 90% of this machine" "$tmp/err" ||
    fail "OOM ($flags): no estimate: $(cat "$tmp/err")"
  [ $ms -lt 5000 ] || fail "OOM ($flags): took $ms ms (allocated before refusing?)"
  ls "$tmp/oom"/ckpt-* >/dev/null 2>&1 && fail "OOM ($flags): wrote a checkpoint"
  rm -rf "$tmp/oom"
done
echo "out of memory: refused before allocating, with the estimate"

# ---------------------------------------------------------------- reference run
"$bin" train "${common[@]}" --steps "$steps" --save-every 5 --keep 2 --out "$tmp/ref" >/dev/null 2>&1 ||
  fail "reference run"
ckpt_bytes=$(stat -c %s "$tmp/ref/ckpt-$(printf %08d "$steps").h5")

# ---------------------------------------------------------------- 2. disk full
# Step 4's save is killed (MONOLITH_FAULT_KILL_IN_SAVE), leaving ckpt-2; the resume then
# has room for ckpt-2 plus less than one more checkpoint. A tmpfs of that size when this
# user may mount one, else a per-file size limit (ulimit -f; SIGXFSZ ignored so the write
# fails with EFBIG like a full disk).
dir=$tmp/full
common_full=("${common[@]}" --steps 10 --save-every 2 --keep 3)
if [ -z "${NO_MOUNT:-}" ] && [ "$(id -u)" = 0 ] && mkdir -p "$tmp/mnt" &&
   mount -t tmpfs -o size=$((ckpt_bytes * 3 / 2 / 1024))k tmpfs "$tmp/mnt" 2>/dev/null; then
  mnt=$tmp/mnt; dir=$mnt/run; how="a $((ckpt_bytes * 3 / 2 / 1024)) KB tmpfs"
  limit=()
else
  how="ulimit -f $((ckpt_bytes / 2 / 1024)) KB"
  limit=(ulimit -f $((ckpt_bytes / 2 / 1024)))
fi
set +e
(MONOLITH_FAULT_KILL_IN_SAVE=4 exec "$bin" train "${common_full[@]}" --out "$dir") >/dev/null 2>&1 </dev/null
[ $? -eq 137 ] || fail "disk full: the set-up kill did not happen"
if [ -n "$mnt" ]; then
  "$bin" train --resume "$dir" --threads 2 >/dev/null 2>"$tmp/err"
else
  (trap '' XFSZ; "${limit[@]}"; exec "$bin" train --resume "$dir" --threads 2) >/dev/null 2>"$tmp/err"
fi
rc=$?
set -e
[ $rc -eq 1 ] || fail "disk full ($how): exit $rc, expected 1: $(cat "$tmp/err")"
# stderr carries the progress lines too: exactly one error line, and it is the last.
[ "$(grep -c '^monolith: ' "$tmp/err")" -eq 1 ] && tail -1 "$tmp/err" | grep -q '^monolith: ' ||
  fail "disk full: not one error line: $(cat "$tmp/err")"
grep -q "saving step 4 failed: .*last complete checkpoint .*ckpt-00000002.h5 (step 2) is intact" "$tmp/err" ||
  fail "disk full: the message does not name the intact checkpoint: $(cat "$tmp/err")"
[ "$(readlink "$dir/latest.h5")" = ckpt-00000002.h5 ] || fail "disk full: latest.h5 moved"
ls "$dir"/*.tmp >/dev/null 2>&1 && fail "disk full: a .tmp file was left: $(ls "$dir")"
[ ! -e "$dir/ckpt-00000004.h5" ] || fail "disk full: a partial ckpt-4 exists"
"$bin" inspect "$dir/ckpt-00000002.h5" >/dev/null || fail "disk full: ckpt-2 does not load"
if [ -n "$mnt" ]; then
  mount -o remount,size=$((ckpt_bytes * 5 / 1024))k "$mnt" || fail "remount"
fi
"$bin" train --resume "$dir" --threads 2 >/dev/null 2>&1 || fail "disk full: resume after freeing space"
"$bin" train "${common_full[@]}" --out "$tmp/full_ref" >/dev/null 2>&1 || fail "disk full: reference"
same "$tmp/full_ref" "$dir" 10 || fail "disk full: the resumed run differs from an uninterrupted one"
echo "disk full ($how): refused naming the intact checkpoint, resumed to the same result"

# ---------------------------------------------------------------- 3. kill -9 and resume
# Each round starts (or resumes) the run and kills it after a random delay; one round
# kills inside the save of a random checkpoint instead. Rounds that finish early are fine.
run=$tmp/kill
save_kill=$((RANDOM % kills))
for ((i = 0; i < kills; i++)); do
  args=(--resume "$run" --threads 2)
  ls "$run"/ckpt-*.h5 >/dev/null 2>&1 || { rm -rf "$run"; args=("${common[@]}" --steps "$steps" --save-every 5 --keep 2 --out "$run"); }
  if [ $i -eq $save_kill ]; then
    have=$(ls "$run"/ckpt-*.h5 2>/dev/null | sed 's/.*ckpt-0*\([0-9]*\)\.h5/\1/' | sort -n | tail -1 || true)
    at=$(( ${have:-0} + 5 ))
    [ $at -le "$steps" ] || continue
    set +e
    (MONOLITH_FAULT_KILL_IN_SAVE=$at exec "$bin" train "${args[@]}") >/dev/null 2>&1
    rc=$?
    set -e
    [ $rc -eq 137 ] || fail "kill in the save of step $at did not happen (exit $rc)"
    [ -e "$run/ckpt-$(printf %08d $at).h5.tmp" ] || fail "no half-written .tmp after the kill in save"
    echo "round $i: killed inside the save of step $at"
  else
    "$bin" train "${args[@]}" >/dev/null 2>&1 &
    pid=$!
    sleep "0.$((RANDOM % 7 + 2))"
    kill -9 $pid 2>/dev/null || true
    wait $pid 2>/dev/null || true
    echo "round $i: killed; newest checkpoint: $(ls "$run"/ckpt-*.h5 2>/dev/null | tail -1 | sed 's/.*ckpt-//' || true)"
  fi
done
if ls "$run"/ckpt-*.h5 >/dev/null 2>&1; then
  "$bin" train --resume "$run" --threads 2 >/dev/null 2>&1 || fail "the final resume"
else
  rm -rf "$run"
  "$bin" train "${common[@]}" --steps "$steps" --save-every 5 --keep 2 --out "$run" >/dev/null 2>&1 || fail "rerun"
fi
same "$tmp/ref" "$run" "$steps" || fail "after $kills kills and resumes the run differs from an uninterrupted one"
ls "$run"/*.tmp >/dev/null 2>&1 && fail "a .tmp file survived the resumes"
echo "reliability_train: ok ($kills kills, $steps steps, bitwise equal)"
