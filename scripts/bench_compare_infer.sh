#!/usr/bin/env bash
# bench_compare_infer.sh: inference side by side: the PyTorch peer
# (scripts/peer_torch_moe.py --mode infer) and `monolith bench infer` on the same
# bench-S shapes (prefill 256 tokens, then 128 greedy single-token decode steps with a KV
# cache, batch 1), in alternating rounds under the same OPENBLAS_CORETYPE, and the ratios
# monolith / peer.
#
#   scripts/bench_compare_infer.sh [--threads N] [--coretype NAME] [--rounds R] [--weights W]...
#
#   --threads N      threads for both programs (default 2)
#   --coretype NAME  OPENBLAS_CORETYPE for both (default Cooperlake, what monolith sets on
#                    AVX512_BF16 CPUs when unset, docs/threading.md; the shell here exports Haswell)
#   --rounds R       rounds of (peer, monolith) (default 1); each program's best round is kept
#   --weights W      monolith's variant: f32 or int8 weights, bf16 (f32 weights, --precision bf16:
#                    bf16 prefill and KV cache) or int8-bf16 (int8 weights, --precision bf16)
#                    (repeatable; default all four, the bf16 ones where the CPU has AVX512_BF16); peer fp32
#
# Both run with OMP_WAIT_POLICY=PASSIVE: Debian's torch oversubscribes two threads
# otherwise, and on a machine shared with other jobs monolith's OpenMP loops (prefill)
# degrade less with sleeping than with spinning threads. Its single-token decode runs one
# parallel region per token, whose threads meet at their own bounded spin-then-sleep
# barrier (docs/threading.md) whatever the policy. Each figure is given as
# wall-clock tokens/s and as tokens per CPU-second (the CPU time of all the process's
# threads: on a machine shared with other jobs the steadier one); the peer measures both
# itself around its prefill and its decode steps. llama.cpp is not installed here: the figures
# printed for it are the ones docs/benchmarks.md quotes, not re-measured.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=2 coretype=Cooperlake rounds=1 weights=()
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads=$2; shift 2 ;;
    --coretype) coretype=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --weights) weights+=("$2"); shift 2 ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "bench_compare_infer.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[ ${#weights[@]} -gt 0 ] || { weights=(f32 int8); ! grep -q avx512_bf16 /proc/cpuinfo || weights+=(bf16 int8-bf16); }
. scripts/bench_peer_common.sh
bench_peer_setup bench_compare_infer.sh "$coretype"

for r in $(seq 1 "$rounds"); do
  echo "round $r/$rounds: peer (infer, $threads threads)" >&2
  /usr/bin/python3 "$peer" --mode infer --threads "$threads" >"$tmp/peer_$r.out" 2>/dev/null
  for w in "${weights[@]}"; do
    echo "round $r/$rounds: monolith (infer, $w, $threads threads)" >&2
    case "$w" in
      f32|int8) flags=(--weights "$w") ;;
      bf16) flags=(--weights f32 --precision bf16) ;;
      int8-bf16) flags=(--weights int8 --precision bf16) ;;
      *) echo "bench_compare_infer.sh: --weights $w: use f32, int8, bf16 or int8-bf16" >&2; exit 2 ;;
    esac
    "$bin" bench infer --threads "$threads" "${flags[@]}" --json >"$tmp/mono_${w}_$r.json" 2>/dev/null
  done
done

/usr/bin/python3 - "$tmp" "$rounds" "$threads" "$coretype" "${weights[@]}" <<'PY'
import json, sys
tmp, rounds, threads, coretype, weights = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5:]
def peer(r):
    res = next(json.loads(l[7:]) for l in open(f"{tmp}/peer_{r}.out") if l.startswith("RESULT "))
    return dict(pre=res["prefill_tok_s"], dec=res["decode_tok_s"], pre_cpu=res["prefill_tok_per_cpu_s"],
                dec_cpu=res["decode_tok_per_cpu_s"])
def mono(w, r):
    t = json.load(open(f"{tmp}/mono_{w}_{r}.json"))
    return dict(pre=t["prefill_tok_s"], dec=t["decode_tok_s"], pre_cpu=t["prefill_tok_per_cpu_s"],
                dec_cpu=t["decode_tok_per_cpu_s"], roof=t["decode_roofline_share"], sg=t["prefill_sgemm_share"],
                run_roof=t["decode_run_roofline_share"],
                kacc=t.get("bf16_decode_top1_agreement"), kmax=t.get("bf16_decode_logit_max_abs"),
                kmean=t.get("bf16_decode_logit_mean_abs"),
                acc=t.get("int8_top1_agreement"), dmax=t.get("int8_logit_max_abs"), dmean=t.get("int8_logit_mean_abs"),
                bacc=t.get("bf16_top1_agreement"), bmax=t.get("bf16_logit_max_abs"), bmean=t.get("bf16_logit_mean_abs"))
rs = range(1, rounds + 1)
best = lambda rows, k: max(x[k] for x in rows)
P = [peer(r) for r in rs]
pp = {k: best(P, k) for k in ("pre", "dec", "pre_cpu", "dec_cpu")}
print(f"bench-S inference, batch 1, prefill 256 + decode 128, {threads} threads, OPENBLAS_CORETYPE={coretype}, "
      f"best of {rounds} round(s)")
print(f"{'program':<22}{'prefill tok/s':>14}{'tok/CPU-s':>11}{'ratio':>7}{'decode tok/s':>14}{'tok/CPU-s':>11}"
      f"{'ratio':>7}{'ratio CPU':>10}{'% roofline':>11}{'% read after':>13}")
print(f"{'pytorch peer fp32':<22}{pp['pre']:>14.1f}{pp['pre_cpu']:>11.1f}{'1.00':>7}{pp['dec']:>14.1f}"
      f"{pp['dec_cpu']:>11.1f}{'1.00':>7}{'1.00':>10}{'':>11}")
for w in weights:
    M = [mono(w, r) for r in rs]
    m = {k: best(M, k) for k in ("pre", "dec", "pre_cpu", "dec_cpu")}
    fastest = max(M, key=lambda x: x["dec"])  # the roofline shares of the fastest decode round
    m["roof"], m["run_roof"] = fastest["roof"], fastest["run_roof"]
    label = {"bf16": "f32, bf16", "int8-bf16": "int8, bf16"}.get(w, w)
    print(f"{'monolith ' + label:<22}{m['pre']:>14.1f}{m['pre_cpu']:>11.1f}{m['pre'] / pp['pre']:>7.2f}{m['dec']:>14.1f}"
          f"{m['dec_cpu']:>11.1f}{m['dec'] / pp['dec']:>7.2f}{m['dec_cpu'] / pp['dec_cpu']:>10.2f}"
          f"{100 * m['roof']:>10.0f}%{100 * m['run_roof']:>12.0f}%")
    if M[0]["acc"] is not None:
        print(f"  {w} vs f32 logits: max |diff| {M[0]['dmax']:.4f}, mean {M[0]['dmean']:.5f}, "
              f"top-1 agreement {100 * M[0]['acc']:.1f}%")
    if M[0]["bacc"] is not None:
        print(f"  bf16 vs fp32 prefill logits (8 prompts): max |diff| {M[0]['bmax']:.4f}, mean {M[0]['bmean']:.5f}, "
              f"top-1 agreement {100 * M[0]['bacc']:.0f}%")
    if M[0]["kacc"] is not None:
        print(f"  bf16 vs fp32 decode logits (129 positions, bf16 KV cache): max |diff| {M[0]['kmax']:.4f}, "
              f"mean {M[0]['kmean']:.5f}, top-1 agreement {100 * M[0]['kacc']:.1f}%")
print("llama.cpp (not installed here; docs/benchmarks.md's quoted figures, Zen 5, 2 threads): prefill F32 ~2070 tok/s, "
      "decode F32 ~268, Q8_0 ~465 tok/s")
PY
