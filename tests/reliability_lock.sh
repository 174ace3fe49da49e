#!/usr/bin/env bash
# reliability_lock.sh: a run folder has one owner (train/run_lock.h), with two real
# processes on one folder, and a run stopped before its first checkpoint is no dead end.
#
# 1. `train --out C` runs (saving every step); the same command again, and a
#    `train --resume C`, are refused with one line while it runs, change nothing in C
#    (no .tmp of the live run deleted, no metrics line lost), and the first run ends
#    with every step's metrics line and its last checkpoint.
# 2. kill -9 leaves no stale lock: --resume right after it continues.
# 3. A run killed inside its first save (no checkpoint, a .tmp left): --resume starts it
#    again from step 0 saying so, and ends bitwise equal to an uninterrupted run; a new
#    `train --out` on such a folder starts over, saying so.
set -euo pipefail
bin=${MONOLITH_BIN:?}
src=${MONOLITH_SOURCE_DIR:?}
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "reliability_lock: FAIL: $*" >&2; exit 1; }
py=python3  # Debian's, which has h5py (scripts/setup.sh), even when another python3 comes first
/usr/bin/python3 -c 'import h5py' 2>/dev/null && py=/usr/bin/python3
$py -c 'import h5py' || fail "needs python3-h5py (scripts/setup.sh installs it)"
tok=$src/tests/fuzz/vocab.tiktoken
"$bin" data prepare --tokenizer "$tok" --domain code --val-fraction 0.2 --input "$src/engine" \
  -o "$tmp/code.h5" >/dev/null 2>&1 || fail "data prepare"
common=(--preset tiny --tokenizer "$tok" --data "code=$tmp/code.h5" --batch 2 --seq 16 --warmup 2
        --eval-every 0 --eval-batches 1 --threads 1)
steps=30
owner_steps=150  # section 1: long enough to outlast three refused starts on a loaded machine (30 did not)

# wait_steps DIR N: until DIR/metrics.jsonl has N train lines (at most 30 s).
wait_steps() {
  local n
  for _ in $(seq 300); do
    n=$(grep -c '"type": "train"' "$1/metrics.jsonl" 2>/dev/null) || true
    [ "${n:-0}" -ge "$2" ] && return 0
    sleep 0.1
  done
  fail "the run in $1 did not reach step $2"
}

# refused LABEL CMD...: exits 1 with one line saying the folder is in use.
refused() {
  local label=$1
  shift
  set +e
  "$@" >/dev/null 2>"$tmp/err"
  local rc=$?
  set -e
  [ $rc -eq 1 ] || fail "$label: exit $rc, expected 1: $(cat "$tmp/err")"
  [ "$(wc -l <"$tmp/err")" -eq 1 ] || fail "$label: not one line: $(cat "$tmp/err")"
  grep -q "in use by another monolith process (pid $pid)" "$tmp/err" || fail "$label: $(cat "$tmp/err")"
}

# ---------------------------------------------------------------- 1. one owner
"$bin" train "${common[@]}" --steps $owner_steps --save-every 1 --keep 2 --out "$tmp/C" >/dev/null 2>&1 &
pid=$!
pids+=($pid)
wait_steps "$tmp/C" 5
refused "second train" "$bin" train "${common[@]}" --steps $owner_steps --save-every 1 --keep 2 --out "$tmp/C"
refused "concurrent resume" "$bin" train --resume "$tmp/C"
refused "concurrent resume --threads 2" "$bin" train --resume "$tmp/C" --threads 2
kill -0 $pid 2>/dev/null || fail "the first run died while others were refused"
wait $pid || fail "the first run failed after the refusals"
n=$(grep -c '"type": "train"' "$tmp/C/metrics.jsonl")
[ "$n" -eq $owner_steps ] || fail "metrics.jsonl has $n step lines, expected $owner_steps"
[ -f "$tmp/C/ckpt-$(printf %08d $owner_steps).h5" ] || fail "the first run's last checkpoint is missing"
echo "one owner: a second train and two resumes refused while the run went on; it finished intact"

# ---------------------------------------------------------------- 2. no stale lock
rm -rf "$tmp/K"
"$bin" train "${common[@]}" --steps $steps --save-every 2 --out "$tmp/K" >/dev/null 2>&1 &
pid=$!
pids+=($pid)
wait_steps "$tmp/K" 6
kill -9 $pid
wait $pid 2>/dev/null || true
"$bin" train --resume "$tmp/K" >/dev/null 2>&1 || fail "resume right after kill -9"
[ -f "$tmp/K/ckpt-$(printf %08d $steps).h5" ] || fail "the resumed run did not finish"
echo "kill -9: no stale lock"

# ---------------------------------------------------------------- 3. no dead-end folder
short=("${common[@]}" --steps 8 --save-every 4)
"$bin" train "${short[@]}" --out "$tmp/ref" >/dev/null 2>&1 || fail "reference run"
set +e
(MONOLITH_FAULT_KILL_IN_SAVE=4 exec "$bin" train "${short[@]}" --out "$tmp/D") >/dev/null 2>&1
rc=$?
set -e
[ $rc -eq 137 ] || fail "the kill in the first save did not happen (exit $rc)"
[ -f "$tmp/D/ckpt-00000004.h5.tmp" ] || fail "no .tmp left by the kill in the first save"
cp -r "$tmp/D" "$tmp/D2"
"$bin" train --resume "$tmp/D" >/dev/null 2>"$tmp/err" || fail "resume without a checkpoint: $(cat "$tmp/err")"
grep -q "no checkpoint yet .*starting it again from step 0" "$tmp/err" || fail "resume did not say it restarts: $(cat "$tmp/err")"
ls "$tmp/D"/*.tmp >/dev/null 2>&1 && fail "a .tmp survived the restart"
$py "$src/tests/same_checkpoint.py" "$tmp/ref/ckpt-00000008.h5" "$tmp/D/ckpt-00000008.h5" --train ||
  fail "the restarted run differs from an uninterrupted one"
"$bin" train "${short[@]}" --out "$tmp/D2" >/dev/null 2>"$tmp/err" || fail "train over a folder without checkpoint: $(cat "$tmp/err")"
grep -q "stopped before its first checkpoint; starting over" "$tmp/err" || fail "train did not say it starts over: $(cat "$tmp/err")"
refused_run() { "$bin" train "${short[@]}" --out "$tmp/D2" >/dev/null 2>"$tmp/err"; }
set +e
refused_run
rc=$?
set -e
[ $rc -eq 1 ] && grep -q "already holds a run; continue it with --resume" "$tmp/err" ||
  fail "a folder with checkpoints was not refused to a new run: $(cat "$tmp/err")"
echo "no dead end: resume and train restart a run that has no checkpoint, saying so"
echo "reliability_lock: ok"
