#!/usr/bin/env bash
# bench_compare.sh: the PyTorch peer (scripts/peer_torch_moe.py) and monolith on the
# same bench-S shapes, one after the other in alternating rounds, under the same
# OPENBLAS_CORETYPE and OMP_WAIT_POLICY, and the ratios monolith / peer.
#
#   scripts/bench_compare.sh [--threads N] [--coretype NAME] [--rounds R] [--precision P]...
#                            [--seq T] [--batch B] [--steps S] [--attention full|chunked]
#
#   --threads N      threads for both programs (default 2)
#   --coretype NAME  OPENBLAS_CORETYPE for both (default Cooperlake, what monolith sets on
#                    AVX512_BF16 CPUs when unset, docs/threading.md; the shell here exports Haswell)
#   --rounds R       rounds of (peer, monolith) (default 1); each program's best round is kept
#   --precision P    monolith's precision, fp32 and/or bf16 (repeatable; default both);
#                    the peer always runs fp32, the reference
#   --mode M         train, infer or both (default): infer runs scripts/bench_compare_infer.sh
#                    (prefill 256 + decode 128, monolith f32 and int8) with the same settings
#   --seq T, --batch B  training shape for both (default 256 and 8)
#   --steps S        timed steps of each program (default 3; each also runs warm-up steps)
#   --attention A    the peer's attention: full (default; it keeps every layer's T x T
#                    probabilities and refuses past 8 GB of them) or chunked (query blocks
#                    recomputed in backward, for long sequences)
#   --json FILE      also write every round's results (the peer's RESULT object and
#                    monolith's `bench train --json` object per precision) to FILE
#                    (scripts/bench_scale.sh reads it)
#
# Training: tokens/s of a full step (forward, backward, AdamW), each program's median
# step, as wall-clock tokens/s and as tokens per CPU-second (the CPU time of all the
# process's threads: on a machine shared with other jobs the steadier one), and each
# process's peak RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=2 coretype=Cooperlake rounds=1 precs=() mode=both seq=256 batch=8 steps=3 attention=full json=
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads=$2; shift 2 ;;
    --coretype) coretype=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --precision) precs+=("$2"); shift 2 ;;
    --mode) mode=$2; shift 2 ;;
    --seq) seq=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --attention) attention=$2; shift 2 ;;
    --json) json=$2; shift 2 ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
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

for r in $(seq 1 "$rounds"); do
  echo "round $r/$rounds: peer (train, batch $batch x seq $seq, $threads threads)" >&2
  /usr/bin/python3 "$peer" --mode train --threads "$threads" --seq "$seq" --batch "$batch" --steps "$steps" \
    --warmup 1 --attention "$attention" >"$tmp/peer_train_$r.out" 2>"$tmp/peer_train_$r.err" ||
    { echo "bench_compare.sh: the peer failed: $(tail -1 "$tmp/peer_train_$r.err")" >&2; exit 1; }
  for p in "${precs[@]}"; do
    echo "round $r/$rounds: monolith (train, $p, $threads threads)" >&2
    "$bin" bench train --threads "$threads" --precision "$p" --seq "$seq" --batch "$batch" --steps "$steps" \
      --json >"$tmp/mono_train_${p}_$r.json" 2>/dev/null
  done
done

/usr/bin/python3 - "$tmp" "$rounds" "$threads" "$coretype" "$batch" "$seq" "$attention" "$json" "${precs[@]}" <<'PY'
import json, sys
tmp, rounds, threads, coretype, batch, seq, attention, out = sys.argv[1:9]
rounds, precs = int(rounds), sys.argv[9:]
def peer(r):
    t = next(json.loads(l[7:]) for l in open(f"{tmp}/peer_train_{r}.out") if l.startswith("RESULT "))
    return t["train_tok_s"], t["train_tok_per_cpu_s"], t["peak_rss_mb"]
def mono(p, r):
    t = json.load(open(f"{tmp}/mono_train_{p}_{r}.json"))
    return t["train_tok_s"], t["train_tok_per_cpu_s"], t["peak_rss_mb"], t["sgemm_gflops"], t["gflops"]
rs = range(1, rounds + 1)
if out:
    json.dump({"threads": int(threads), "batch": int(batch), "seq": int(seq), "attention": attention,
               "peer": [next(json.loads(l[7:]) for l in open(f"{tmp}/peer_train_{r}.out") if l.startswith("RESULT "))
                        for r in rs],
               "monolith": {p: [json.load(open(f"{tmp}/mono_train_{p}_{r}.json")) for r in rs] for p in precs}},
              open(out, "w"))
P = [peer(r) for r in rs]
pw, pc, pm = max(x[0] for x in P), max(x[1] for x in P), max(x[2] for x in P)
print(f"bench-S training, batch {batch} x seq {seq}, {threads} threads, OPENBLAS_CORETYPE={coretype}, "
      f"OMP_WAIT_POLICY=PASSIVE, best of {rounds} round(s); the peer's attention: {attention}")
print(f"{'program':<28}{'tokens/s':>10}{'tok/CPU-s':>11}{'ratio':>8}{'ratio CPU':>11}{'% sgemm':>9}{'peak MB':>9}")
print(f"{'pytorch peer fp32':<28}{pw:>10.1f}{pc:>11.1f}{'1.00':>8}{'1.00':>11}{'':>9}{pm:>9.0f}")
for p in precs:
    M = [mono(p, r) for r in rs]
    best = max(M, key=lambda x: x[0])
    bc, bm = max(x[1] for x in M), max(x[2] for x in M)
    print(f"{'monolith ' + p:<28}{best[0]:>10.1f}{bc:>11.1f}{best[0] / pw:>8.2f}{bc / pc:>11.2f}"
          f"{100 * best[4] / best[3]:>8.0f}%{bm:>9.0f}")
PY

if [ "$mode" = both ]; then
  echo
  scripts/bench_compare_infer.sh --threads "$threads" --coretype "$coretype" --rounds "$rounds"
fi
