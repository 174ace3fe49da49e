#!/usr/bin/env bash
# train_cli.sh: `monolith train` and `monolith eval` from the command line: one-line
# errors with exit status 2 (usage) or 1 (failure) before any work, a short run, eval's
# per-domain loss and routing matrix (JSON: shares sum to 1), a bf16 fine-tune holding its
# frozen weights as bf16 only, and the plots.
set -euo pipefail
bin=${MONOLITH_BIN:?}
src=${MONOLITH_SOURCE_DIR:?}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "train_cli: FAIL: $*" >&2; exit 1; }
py=python3
/usr/bin/python3 -c 'import h5py' 2>/dev/null && py=/usr/bin/python3

# expect STATUS NEEDLE cmd...: exit status and a one-line stderr containing NEEDLE.
expect() {
  local want=$1 needle=$2
  shift 2
  set +e
  "$@" >"$tmp/out" 2>"$tmp/err"
  local rc=$?
  set -e
  [ $rc -eq "$want" ] || fail "'$*': exit $rc, want $want: $(cat "$tmp/err")"
  grep -qF -- "$needle" "$tmp/err" || fail "'$*': stderr lacks '$needle': $(cat "$tmp/err")"
  [ "$(wc -l <"$tmp/err")" -eq 1 ] || fail "'$*': more than one line: $(cat "$tmp/err")"
}

"$bin" tokenizer train --vocab-size 300 --input "$src"/engine/*.c -o "$tmp/tok.tiktoken" >/dev/null 2>&1
"$bin" data prepare --tokenizer "$tmp/tok.tiktoken" --domain code --input "$src/engine" -o "$tmp/code.h5" >/dev/null 2>&1
"$bin" data prepare --tokenizer "$tmp/tok.tiktoken" --domain kern --input "$src/kernels" -o "$tmp/kern.h5" >/dev/null 2>&1
"$bin" tokenizer train --vocab-size 280 --input "$src"/kernels/*.c -o "$tmp/other.tiktoken" >/dev/null 2>&1
"$bin" data prepare --tokenizer "$tmp/other.tiktoken" --domain kern --input "$src/kernels" -o "$tmp/other.h5" >/dev/null 2>&1

base=(--preset tiny --tokenizer "$tmp/tok.tiktoken" --data "code=$tmp/code.h5" --data "kern=$tmp/kern.h5"
      --steps 6 --batch 2 --seq 32 --warmup 1 --eval-every 3 --eval-batches 1 --threads 2)
expect 2 "unknown flag '--stepz'" "$bin" train --stepz 3
expect 2 "--steps: expected a whole number" "$bin" train --steps x
expect 2 "only --threads may be given" "$bin" train --resume "$tmp/r" --steps 5
expect 1 "missing.h5" "$bin" train "${base[@]}" --data "x=$tmp/missing.h5" --out "$tmp/e1"
expect 1 "another tokenizer" "$bin" train "${base[@]}" --tokenizer "$tmp/other.tiktoken" --out "$tmp/e2"
expect 1 "max_seq_len" "$bin" train "${base[@]}" --seq 4096 --out "$tmp/e3"
expect 1 "--train" "$bin" train "${base[@]}" --train experts=7 --out "$tmp/e4"
printf '[train]\nsteps = 5\nbogus = 1\n' >"$tmp/bad.ini"
expect 2 "bad.ini:3: unknown option 'bogus'" "$bin" train --config "$tmp/bad.ini"
expect 1 "--warmup 10 must be between 0 and --steps 6" "$bin" train "${base[@]}" --warmup 10 --out "$tmp/e5"
for d in e1 e2 e3 e4 e5; do [ ! -e "$tmp/$d" ] || fail "a failed setup created --out $d"; done

# Without --warmup any --steps works: the warmup is min(100, steps/10), recorded in run.ini.
"$bin" train --preset tiny --tokenizer "$tmp/tok.tiktoken" --data "code=$tmp/code.h5" --steps 30 --batch 2 --seq 32 \
  --eval-every 0 --eval-batches 1 --threads 2 --out "$tmp/w" 2>"$tmp/log" || fail "--steps 30: $(cat "$tmp/log")"
grep -qx "warmup = 3" "$tmp/w/run.ini" || fail "run.ini: $(grep warmup "$tmp/w/run.ini")"

# A short run, then the same folder again (refused) and eval.
"$bin" train "${base[@]}" --out "$tmp/run" 2>"$tmp/log" || fail "training: $(cat "$tmp/log")"
grep -q "^eval step 6:" "$tmp/log" || fail "no final evaluation in the log"
[ "$(grep -c '"type": "train"' "$tmp/run/metrics.jsonl")" -eq 6 ] || fail "metrics.jsonl: not 6 train lines"
[ "$(grep -c '"type": "eval"' "$tmp/run/metrics.jsonl")" -eq 2 ] || fail "metrics.jsonl: not 2 eval lines"
expect 1 "already holds a run" "$bin" train "${base[@]}" --out "$tmp/run"
expect 1 "--checkpoint" "$bin" eval --checkpoint "$tmp/nothing.h5" --data "code=$tmp/code.h5"
expect 1 "max_seq_len" "$bin" eval --checkpoint "$tmp/run/latest.h5" --data "code=$tmp/code.h5" --seq 4096
expect 1 "other.h5" "$bin" eval --checkpoint "$tmp/run/latest.h5" --data "code=$tmp/code.h5" --data "o=$tmp/other.h5"
"$bin" eval --checkpoint "$tmp/run/latest.h5" --data "code=$tmp/code.h5" --data "kern=$tmp/kern.h5" --seq 32 \
  --batches 2 --json >"$tmp/eval.json" || fail "eval"
$py - "$tmp/eval.json" <<'PY' || fail "eval JSON"
import json, math, sys
r = json.load(open(sys.argv[1]))
assert set(r["val"]) == {"code", "kern"}, r["val"]
for d, v in r["val"].items():
    assert 0 < v["loss"] < 10 and abs(math.exp(v["loss"]) - v["ppl"]) < 1e-2 * v["ppl"] and v["tokens"] > 0, v
for d, layers in r["routing_share"].items():
    assert set(layers) == {"0", "1", "mean"}, layers
    for row in layers.values():
        assert len(row) == 4 and abs(sum(row) - 1) < 1e-3, row
PY
# A bf16 fine-tune from it keeps its frozen weights as bf16 only and writes, readable by
# h5py, the checkpoint of --frozen-fp32 (which keeps their fp32 values) bit for bit.
if grep -q avx512_bf16 /proc/cpuinfo && $py -c 'import h5py' 2>/dev/null; then
  ft=(--init "$tmp/run/latest.h5" --data "code=$tmp/code.h5" --steps 3 --batch 2 --seq 32 --warmup 1 --eval-every 0
      --eval-batches 1 --threads 2 --precision bf16 --train experts=1,norms)
  "$bin" train "${ft[@]}" --out "$tmp/held" 2>"$tmp/log" || fail "bf16 fine-tune: $(cat "$tmp/log")"
  grep -q "kept as bf16 only" "$tmp/log" || fail "bf16 fine-tune: no bf16-only note in: $(head -2 "$tmp/log")"
  "$bin" train "${ft[@]}" --frozen-fp32 --out "$tmp/fp32" 2>"$tmp/log" || fail "--frozen-fp32: $(cat "$tmp/log")"
  $py "$src/tests/same_checkpoint.py" "$tmp/held/latest.h5" "$tmp/fp32/latest.h5" --train ||
    fail "bf16 fine-tune: its checkpoint differs from --frozen-fp32's"
fi
"$bin" eval --checkpoint "$tmp/run/latest.h5" --data "code=$tmp/code.h5" --seq 32 --batches 1 | grep -q "routing share" ||
  fail "eval tables"
# Without --seq, eval scores windows of the run's own --seq (32, from /train), and says so.
"$bin" eval --checkpoint "$tmp/run/latest.h5" --data "code=$tmp/code.h5" --batches 1 >"$tmp/eval.txt" || fail "eval"
grep -q "^windows of 32 tokens (the run's --seq" "$tmp/eval.txt" || fail "eval seq: $(head -1 "$tmp/eval.txt")"
"$bin" eval --checkpoint "$tmp/run/latest.h5" --data "code=$tmp/code.h5" --batches 1 --json | grep -q '"seq": 32,' ||
  fail "eval --json has no seq 32"
"$bin" init --preset tiny -o "$tmp/init.h5" >/dev/null
"$bin" eval --checkpoint "$tmp/init.h5" --data "code=$tmp/code.h5" --batches 1 | grep -q "^windows of 256 tokens (the model's max_seq_len" ||
  fail "eval of a checkpoint without /train: not the model's max_seq_len"

if $py -c 'import matplotlib' 2>/dev/null; then
  $py "$src/scripts/plot_run.py" "$tmp/run" >/dev/null || fail "plot_run.py"
  for p in loss training routing load; do [ -s "$tmp/run/$p.png" ] || fail "no $p.png"; done
fi
echo "train_cli: ok"
