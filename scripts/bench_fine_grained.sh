#!/usr/bin/env bash
# bench_fine_grained.sh: fine-grained experts against bench-S, in alternating rounds
# (docs/benchmarks.md, "Fine-grained experts").
#
#   scripts/bench_fine_grained.sh [--rounds R] [--steps N] [--out FILE] [BIN...]
#
# Every round runs `BIN bench train --threads 1` once per model and binary, in this order:
#   bench-S                     8 experts x d_ff 1024, top-2
#   e64                         64 x 128, top-16   (bench-S's active FLOPs, granularity 8)
#   e256                        256 x 64, top-32   (granularity 16)
#   fine-S                      the preset's shape: 64 x 128, top-8 + one shared expert of
#                               width 1005 (as --set flags, so older binaries run it too)
# and appends one JSON line per run (the bench's own fields plus model, bin, round and the
# 1-minute load average before it) to FILE (default runs/bench_fine_grained.jsonl). Then
# prints, per binary and model, the median and range over rounds of tokens/s and of tokens
# per CPU-second, and each model's ratio to bench-S of the same binary and round (median
# and range). BIN defaults to build/monolith; give two binaries to compare them, round by
# round. On a shared machine the CPU-second figure is the steadier one.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=3 steps=2 out=runs/bench_fine_grained.jsonl bins=()
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) bins+=("$1"); shift ;;
  esac
done
[ ${#bins[@]} -gt 0 ] || bins=(build/monolith)
for b in "${bins[@]}"; do [ -x "$b" ] || { echo "bench_fine_grained.sh: $b is not an executable" >&2; exit 1; }; done
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Cooperlake} OMP_WAIT_POLICY=PASSIVE
mkdir -p "$(dirname "$out")"
models=("bench-S|--preset bench-S"
        "e64|--preset bench-S --set n-experts=64 --set top-k=16 --set d-ff=128"
        "e256|--preset bench-S --set n-experts=256 --set top-k=32 --set d-ff=64"
        "fine-S|--preset bench-S --set n-experts=64 --set top-k=8 --set d-ff=128 --set n-shared-experts=1 --set d-ff-shared=1005")
for r in $(seq 1 "$rounds"); do
  for m in "${models[@]}"; do
    name=${m%%|*} flags=${m#*|}
    for b in "${bins[@]}"; do
      load=$(cut -d' ' -f1 /proc/loadavg)
      # shellcheck disable=SC2086
      j=$(nice -n 10 "$b" bench train --threads 1 --steps "$steps" --json $flags)
      echo "$j" | python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); d.update(model=sys.argv[1], bin=sys.argv[2], round=int(sys.argv[3]), load=float(sys.argv[4])); print(json.dumps(d))' \
        "$name" "$b" "$r" "$load" >>"$out"
      echo "round $r $name $b: $(echo "$j" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["train_tok_s"], "tok/s,", d["train_tok_per_cpu_s"], "tok/CPU-s")') (load $load)"
    done
  done
done
python3 - "$out" "${bins[@]}" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
bins = sys.argv[2:]
rows = [r for r in rows if r["bin"] in bins]
def fmt(v): return f"{statistics.median(v):.1f} ({min(v):.1f}-{max(v):.1f})" if v else "-"
def rfmt(v): return f"{statistics.median(v):.3f} ({min(v):.3f}-{max(v):.3f})" if v else "-"
print("| binary | model | runs | load | tokens/s | tokens/CPU-s | x bench-S (tokens/s) | x bench-S (tokens/CPU-s) |")
print("|---|---|---:|---|---|---|---|---|")
for b in bins:
    for m in ["bench-S", "e64", "e256", "fine-S"]:
        rs = [r for r in rows if r["bin"] == b and r["model"] == m]
        if not rs: continue
        base = {r["round"]: r for r in rows if r["bin"] == b and r["model"] == "bench-S"}
        rw = [r["train_tok_s"] / base[r["round"]]["train_tok_s"] for r in rs if r["round"] in base]
        rc = [r["train_tok_per_cpu_s"] / base[r["round"]]["train_tok_per_cpu_s"] for r in rs if r["round"] in base]
        loads = [r["load"] for r in rs]
        print(f"| {b} | {m} | {len(rs)} | {min(loads):.1f}-{max(loads):.1f} | {fmt([r['train_tok_s'] for r in rs])} | "
              f"{fmt([r['train_tok_per_cpu_s'] for r in rs])} | {rfmt(rw)} | {rfmt(rc)} |")
PY
