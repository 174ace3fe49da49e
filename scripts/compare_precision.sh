#!/usr/bin/env bash
# compare_precision.sh: trains the `small` preset twice, same seed, same data, same
# batches, once with --precision fp32 (the reference) and once with bf16, then compares
# the two loss curves step by step and the final validation losses.
#
#   scripts/compare_precision.sh [STEPS] [THREADS]     defaults: 1000 steps, 1 thread per run
#   EVAL_EVERY=N evaluates every N steps as well (default: only at the end)
#
# The two runs go side by side (one thread each by default), so that load from other jobs
# falls on both alike. Data: the quickstart's token sets (runs/quickstart/data; run
# scripts/quickstart.sh once first). Output: runs/precision/{fp32,bf16}/ and a summary:
#   - mean |loss_bf16 - loss_fp32| over the last 20% of the steps, against the
#     step-to-step noise of the fp32 curve itself over the same steps (the standard
#     deviation of its first differences / sqrt 2): "within noise" when the former is
#     below the latter;
#   - the final per-domain validation loss of each run.
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-1000}
threads=${2:-1}
bin=${MONOLITH_BIN:-build/monolith}
data=runs/quickstart/data
out=runs/precision
py=python3
[ -x /usr/bin/python3 ] && py=/usr/bin/python3
[ -x "$bin" ] || { echo "compare_precision.sh: $bin not found; build first (scripts/test.sh)" >&2; exit 1; }
[ -f "$data/tok4096.tiktoken" ] || {
  echo "compare_precision.sh: no token sets in $data; run scripts/quickstart.sh once first" >&2; exit 1; }
data_flags=()
for d in speeches code math legal; do data_flags+=(--data "$d=$data/$d.h5"); done
mkdir -p "$out"
pids=()
for p in fp32 bf16; do
  rm -rf "${out:?}/$p"
  "$bin" train --preset small --tokenizer "$data/tok4096.tiktoken" "${data_flags[@]}" --precision "$p" \
    --steps "$steps" --batch 8 --seq 256 --lr 2e-3 --warmup $(( steps / 10 )) --seed 1 \
    --eval-every "${EVAL_EVERY:-$steps}" --eval-batches 8 --save-every 0 --log-every 50 --threads "$threads" \
    --out "$out/$p" >"$out/$p.log" 2>&1 &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
$py - "$out" <<'PY'
import json, math, statistics, sys
out = sys.argv[1]
def read(p):
    train, evals = {}, {}
    for line in open(f"{out}/{p}/metrics.jsonl"):
        r = json.loads(line)
        if r.get("type") == "train":
            train[r["step"]] = r
        elif r.get("type") == "eval":
            evals = r
    return train, evals
a, ea = read("fp32")
b, eb = read("bf16")
steps = sorted(set(a) & set(b))
tail = steps[int(0.8 * len(steps)):]
diff = [abs(b[s]["loss"] - a[s]["loss"]) for s in tail]
d1 = [a[s]["loss"] - a[t]["loss"] for s, t in zip(tail[1:], tail)]
noise = statistics.pstdev(d1) / math.sqrt(2) if len(d1) > 1 else float("nan")
speed = lambda r: statistics.median(x["tokens_per_s"] for x in r.values())
print(f"steps compared: {len(steps)} (last 20%: steps {tail[0]}..{tail[-1]})")
print(f"loss at the last step: fp32 {a[steps[-1]]['loss']:.4f}  bf16 {b[steps[-1]]['loss']:.4f}")
print(f"mean |bf16 - fp32| over the last 20%: {statistics.mean(diff):.4f}; fp32 step-to-step noise: {noise:.4f}"
      f" -> {'within noise' if statistics.mean(diff) < noise else 'NOT within noise'}")
print(f"median tokens/s: fp32 {speed(a):.0f}  bf16 {speed(b):.0f}  ({speed(b) / speed(a):.2f}x)")
for dom, v in ea.get("val", {}).items():
    w = eb.get("val", {}).get(dom, {})
    print(f"final validation loss {dom}: fp32 {v['loss']:.4f}  bf16 {w.get('loss', float('nan')):.4f}")
PY
