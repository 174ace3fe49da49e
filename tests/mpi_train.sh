#!/usr/bin/env bash
# mpi_train.sh: distributed training on 2 ranks of mpirun on this machine (docs/distributed.md).
#  - data parallel against one process with --grad-accum 2: loss of every step within
#    1e-6 relative, final parameters within 1e-5 relative (per tensor, max |a-b| / max |a|),
#    the same routing counts; every rank's parameters identical (the trainer checks it
#    at each save);
#  - --shard-optimizer against plain data parallel: bit-identical parameters, m and v
#    after 20 steps;
#  - --init with --train experts=1 under --shard-optimizer trains expert 1 only;
#  - resume under MPI bit-exact; a resume on 1 process re-splits the global batch
#    (grad-accum 2), one on 3 ranks is refused naming both numbers;
#  - a rank killed with kill -9 ends the job within seconds with a message, and the
#    newest checkpoint reads back whole;
#  - a rank given another data file is refused at start, naming what differs.
# Runs in the normal ctest pass only (CMakeLists.txt: OpenMPI's own allocations look
# like leaks to LeakSanitizer).
fail() { echo "mpi_train: FAIL: $*" >&2; exit 1; }
source "$(dirname "$0")/mpi_common.bash"

# 1. Data parallel (2 ranks x micro-batch 2) against one process with --grad-accum 2.
"$bin" train "${common[@]}" --steps 8 --grad-accum 2 --out "$tmp/one" >/dev/null 2>&1 || fail "1-process run"
mpi 2 "$bin" train "${common[@]}" --steps 8 --out "$tmp/dp" >"$tmp/dp.out" 2>"$tmp/dp.err" \
  || fail "2-rank run: $(cat "$tmp/dp.err")"
compare "$tmp/one" "$tmp/dp" 1e-6 1e-5 || fail "data parallel differs from --grad-accum 2"
[ "$(grep -c '^step ' "$tmp/dp.err")" -eq 8 ] || fail "progress not printed once per step (only rank 0 prints)"
grep -q "2 ranks x 1 x 2 x 32" "$tmp/dp.err" || fail "the summary does not count the ranks: $(head -1 "$tmp/dp.err")"
[ "$(grep -c '"type": "train"' "$tmp/dp/metrics.jsonl")" -eq 8 ] || fail "metrics.jsonl: not 8 train lines"

# 2. --shard-optimizer against plain data parallel, 20 steps: the same bits.
mpi 2 "$bin" train "${common[@]}" --steps 20 --save-every 10 --out "$tmp/plain" >/dev/null 2>&1 || fail "plain DP, 20 steps"
mpi 2 "$bin" train "${common[@]}" --steps 20 --save-every 10 --shard-optimizer --out "$tmp/shard" >/dev/null \
  2>"$tmp/shard.err" || fail "sharded optimizer: $(cat "$tmp/shard.err")"
grep -q "optimizer sharded" "$tmp/shard.err" || fail "the summary does not say the optimizer is sharded"
compare "$tmp/plain" "$tmp/shard" 0 0 || fail "--shard-optimizer differs from plain data parallel"

# --init and a freeze mask under the sharded optimizer: only expert 1 (its slices and
# router row) changes, everything else keeps its bits.
mpi 2 "$bin" train --init "$tmp/shard/latest.h5" --data "code=$tmp/code.h5" --data "kern=$tmp/kern.h5" --batch 2 \
  --seq 32 --steps 3 --warmup 1 --eval-every 0 --eval-batches 1 --threads 1 --train experts=1 --shard-optimizer \
  --out "$tmp/ft" >/dev/null 2>"$tmp/ft.err" || fail "--init --train experts=1 on 2 ranks: $(cat "$tmp/ft.err")"
only_expert_1_changed "$tmp/shard/latest.h5" "$tmp/ft/latest.h5" || fail "--train experts=1 under --shard-optimizer changed other parameters"

# 3. Resume under MPI from the step-10 checkpoint of the sharded run: bit-identical at 20.
stopped_at "$tmp/shard" 10 "$tmp/res"
mpi 2 "$bin" train --resume "$tmp/res" --threads 1 >/dev/null 2>"$tmp/res.err" || fail "resume: $(cat "$tmp/res.err")"
compare "$tmp/shard" "$tmp/res" 0 0 || fail "resumed 2-rank run differs from the uninterrupted one"
# Another number of ranks: 1 process takes both micro-batches of a step; 3 ranks cannot.
mkdir "$tmp/res1"
cp "$tmp/res/run.ini" "$tmp/shard/ckpt-00000010.h5" "$tmp/res1/"
head -10 "$tmp/shard/metrics.jsonl" >"$tmp/res1/metrics.jsonl"
"$bin" train --resume "$tmp/res1" --threads 1 >/dev/null 2>"$tmp/res1.err" || fail "resume on 1 process: $(cat "$tmp/res1.err")"
grep -qF "(2 x 2 x 32)" "$tmp/res1.err" || fail "1-process resume does not take grad-accum 2: $(head -1 "$tmp/res1.err")"
compare "$tmp/shard" "$tmp/res1" 1e-6 1e-5 || fail "1-process resume of a 2-rank run drifted"
set +e
mpi 3 "$bin" train --resume "$tmp/res1" --threads 1 >/dev/null 2>"$tmp/res3.err"
rc=$?
set -e
[ $rc -ne 0 ] || fail "3 ranks resumed a run of 2 micro-batches per step"
grep -q "2 micro-batches per step.*3 ranks cannot split them" "$tmp/res3.err" || fail "no message naming 2 and 3: $(cat "$tmp/res3.err")"

# 4. A rank killed with kill -9 mid-run: the job ends within seconds, with a message.
mpirun -np 2 --oversubscribe --bind-to none "$bin" train "${common[@]}" --steps 1000000 --save-every 2 \
  --out "$tmp/kill" >/dev/null 2>"$tmp/kill.err" &
job=$!
for _ in $(seq 100); do grep -q '^step 3/' "$tmp/kill.err" 2>/dev/null && break; sleep 0.2; done
grep -q '^step 3/' "$tmp/kill.err" || { kill "$job"; fail "the run did not start: $(cat "$tmp/kill.err")"; }
ranks=$(pgrep -P "$job" || true)  # mpirun starts the ranks of its own node itself
[ "$(echo "$ranks" | wc -w)" -eq 2 ] || { kill "$job"; fail "expected 2 rank processes under mpirun $job, got '$ranks'"; }
victim=$(echo "$ranks" | tail -1)
t0=$(date +%s)
kill -9 "$victim"
set +e
timeout 30 tail --pid="$job" -f /dev/null
wait "$job"
rc=$?
set -e
dt=$(($(date +%s) - t0))
[ "$dt" -le 10 ] || fail "the job took ${dt}s to stop after a rank was killed"
[ $rc -ne 0 ] || fail "mpirun exited 0 after a rank was killed"
grep -qi "signal 9\|killed" "$tmp/kill.err" || fail "no message about the killed rank: $(tail -5 "$tmp/kill.err")"
# The newest checkpoint is complete (every tensor's checksum read) and usable.
"$bin" eval --checkpoint "$tmp/kill/latest.h5" --data "code=$tmp/code.h5" --seq 32 --batches 1 >/dev/null 2>"$tmp/ev.err" \
  || fail "the last checkpoint after the kill: $(cat "$tmp/ev.err")"

# 5. A rank started with another data file is refused before any step, naming it.
set +e
other=("${common[@]/$tmp\/code.h5/$tmp/other.h5}")
mpirun --oversubscribe --bind-to none -np 1 "$bin" train "${common[@]}" --steps 2 --out "$tmp/mm" : \
  -np 1 "$bin" train "${other[@]}" --steps 2 --out "$tmp/mm" \
  >/dev/null 2>"$tmp/mm.err"
rc=$?
set -e
[ $rc -ne 0 ] || fail "a rank with another data file was not refused"
grep -q "rank 1's training data.*differ from rank 0's" "$tmp/mm.err" || fail "no message naming the data: $(cat "$tmp/mm.err")"
[ ! -e "$tmp/mm/run.ini" ] || fail "the refused run wrote a run folder"
echo "mpi_train: ok"
