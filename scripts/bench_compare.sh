#!/usr/bin/env bash
# bench_compare.sh: the PyTorch peer (../shared/peers/torch_moe.py) and monolith on the
# same bench-S shapes, one after the other in alternating rounds, under the same
# OPENBLAS_CORETYPE and OMP_WAIT_POLICY, and the ratios monolith / peer.
#
#   scripts/bench_compare.sh [--threads N] [--coretype NAME] [--rounds R] [--precision P]...
#
#   --threads N      threads for both programs (default 2)
#   --coretype NAME  OPENBLAS_CORETYPE for both (default Cooperlake, OpenBLAS's own choice
#                    on this CPU; the shell environment here exports Haswell)
#   --rounds R       rounds of (peer, monolith) (default 1); each program's best round is kept
#   --precision P    monolith's precision, fp32 and/or bf16 (repeatable; default both);
#                    the peer always runs fp32, the reference
#   --mode M         train, infer or both (default): infer runs scripts/bench_compare_infer.sh
#                    (prefill 256 + decode 128, monolith f32 and int8) with the same settings
#
# Training: tokens/s of a full step (forward, backward, AdamW), batch 8 x 256, each
# program's median step, as wall-clock tokens/s and as tokens per CPU-second (the CPU time
# of all the process's threads: on a machine shared with other jobs the steadier one).
# The peer's CPU time per step is read around the same step timer it uses for wall time.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=2 coretype=Cooperlake rounds=1 precs=() mode=both
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads=$2; shift 2 ;;
    --coretype) coretype=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --precision) precs+=("$2"); shift 2 ;;
    --mode) mode=$2; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "bench_compare.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[ ${#precs[@]} -gt 0 ] || precs=(fp32 bf16)
case "$mode" in
  train|both) ;;
  infer) exec scripts/bench_compare_infer.sh --threads "$threads" --coretype "$coretype" --rounds "$rounds" ;;
  *) echo "bench_compare.sh: --mode $mode: use train, infer or both" >&2; exit 2 ;;
esac
. scripts/bench_peer_common.sh
bench_peer_setup bench_compare.sh "$coretype"

# The peer with its step timer also reading the process CPU time: bench_train calls
# time.perf_counter() exactly twice per step (start, end), so the pairs give CPU per step.
cat >>"$tmp/peer.py" <<'PY'
steps = [b - a for a, b in zip(cpu[0::2], cpu[1::2])]
warm = 2  # the peer's default --warmup
print("CPU " + json.dumps({"cpu_s_median": statistics.median(steps[warm:])}), flush=True)
PY

for r in $(seq 1 "$rounds"); do
  echo "round $r/$rounds: peer (train, $threads threads)" >&2
  /usr/bin/python3 "$tmp/peer.py" --mode train --threads "$threads" >"$tmp/peer_train_$r.out" 2>/dev/null
  for p in "${precs[@]}"; do
    echo "round $r/$rounds: monolith (train, $p, $threads threads)" >&2
    "$bin" bench train --threads "$threads" --precision "$p" --json >"$tmp/mono_train_${p}_$r.json" 2>/dev/null
  done
done

/usr/bin/python3 - "$tmp" "$rounds" "$threads" "$coretype" "${precs[@]}" <<'PY'
import glob, json, sys
tmp, rounds, threads, coretype, precs = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5:]
def peer(r):
    res = cpu = None
    for line in open(f"{tmp}/peer_train_{r}.out"):
        if line.startswith("RESULT "): res = json.loads(line[7:])
        if line.startswith("CPU "): cpu = json.loads(line[4:])
    return res["train_tok_s"], res["tokens_per_step"] / cpu["cpu_s_median"]
def mono(p, r):
    t = json.load(open(f"{tmp}/mono_train_{p}_{r}.json"))
    return t["train_tok_s"], t["train_tok_per_cpu_s"], t["sgemm_gflops"], t["gflops"]
rs = range(1, rounds + 1)
pw = max(peer(r)[0] for r in rs); pc = max(peer(r)[1] for r in rs)
print(f"bench-S training, batch 8 x 256, {threads} threads, OPENBLAS_CORETYPE={coretype}, "
      f"OMP_WAIT_POLICY=PASSIVE, best of {rounds} round(s)")
print(f"{'program':<28}{'tokens/s':>10}{'tok/CPU-s':>11}{'ratio':>8}{'ratio CPU':>11}{'% sgemm':>9}")
print(f"{'pytorch peer fp32':<28}{pw:>10.1f}{pc:>11.1f}{'1.00':>8}{'1.00':>11}{'':>9}")
for p in precs:
    best = max((mono(p, r) for r in rs), key=lambda x: x[0])
    bc = max(mono(p, r)[1] for r in rs)
    print(f"{'monolith ' + p:<28}{best[0]:>10.1f}{bc:>11.1f}{best[0] / pw:>8.2f}{bc / pc:>11.2f}"
          f"{100 * best[3] / best[2]:>8.0f}%")
PY

if [ "$mode" = both ]; then
  echo
  scripts/bench_compare_infer.sh --threads "$threads" --coretype "$coretype" --rounds "$rounds"
fi
