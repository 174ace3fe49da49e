#!/usr/bin/env bash
# bench_mpi.sh: what MPI costs on one machine. In alternating rounds, `monolith bench
# train` as 1 rank x 2 threads, 2 ranks x 1 thread (data parallel), 2 ranks x 1 thread
# with --shard-optimizer and 2 ranks x 1 thread with --expert-parallel 2, then, per round
# and as medians: total tokens/s, the ratio 2x1 / 1x2 (goal >= 0.9), tokens per
# CPU-second, the share of the step inside MPI and the bytes each rank sends per step
# against the formulas of docs/distributed.md (ring all-reduce: 2 (N-1)/N x 4 P bytes;
# sharded: reduce-scatter + all-gather, the same; expert parallel: the all-reduce of the
# replicated part + 2 x crossing rows x 4 d for the expert exchange), and the 1-minute
# load average at the start of each round (other work on the machine skews a round).
#
#   scripts/bench_mpi.sh [--preset NAME] [--rounds R] [--steps S] [--tcp]
#
#   --preset NAME  the model (default small)
#   --rounds R     rounds of the three runs (default 3)
#   --steps S      timed steps per run (default 3)
#   --tcp          MPI over TCP on loopback (--mca btl self,tcp) instead of shared memory,
#                  so the kernel's loopback byte count measures what the ranks sent
set -euo pipefail
cd "$(dirname "$0")/.."
preset=small rounds=3 steps=3 mca=()
while [ $# -gt 0 ]; do
  case "$1" in
    --preset) preset=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --tcp) mca=(--mca btl self,tcp); shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "bench_mpi.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
bin=${MONOLITH_BIN:-build/monolith}
[ -x "$bin" ] || { echo "bench_mpi.sh: build first ($bin not found)" >&2; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
args=(bench train --preset "$preset" --steps "$steps" --json)
for r in $(seq "$rounds"); do
  echo "round $r/$rounds" >&2
  cut -d' ' -f1 /proc/loadavg >"$out/load.$r"
  "$bin" "${args[@]}" --threads 2 >"$out/one.$r.json" 2>/dev/null
  mpirun -np 2 --bind-to none "${mca[@]}" "$bin" "${args[@]}" --threads 1 >"$out/dp.$r.json" 2>/dev/null
  mpirun -np 2 --bind-to none "${mca[@]}" "$bin" "${args[@]}" --threads 1 --shard-optimizer \
    >"$out/zero.$r.json" 2>/dev/null
  mpirun -np 2 --bind-to none "${mca[@]}" "$bin" "${args[@]}" --threads 1 --expert-parallel 2 \
    >"$out/ep.$r.json" 2>/dev/null
done
python3 - "$out" "$rounds" <<'PY'
import json, statistics as st, sys
d, R = sys.argv[1], int(sys.argv[2])
rd = lambda k, r: json.load(open(f"{d}/{k}.{r}.json"))
runs = {k: [rd(k, r) for r in range(1, R + 1)] for k in ("one", "dp", "zero", "ep")}
print(f"preset {runs['one'][0]['preset']}, batch {runs['one'][0]['batch']} x {runs['one'][0]['seq']} per rank, {R} rounds")
print(f"{'run':24} {'tok/s total':>12} {'per rank':>9} {'tok/CPU-s':>10} {'in MPI':>7} {'MB sent/step':>13} {'loopback MB':>12} {'Adam MB':>8}")
for k, name in (("one", "1 rank x 2 threads"), ("dp", "2 ranks x 1 thread"), ("zero", "2 x 1, --shard-optimizer"),
                ("ep", "2 x 1, --expert-parallel 2")):
    for j in runs[k]:
        print(f"{name:24} {j['tok_s_total']:12.1f} {j['tok_s_per_rank']:9.1f} {j['train_tok_per_cpu_s']:10.1f} "
              f"{100 * j['comm_share']:6.1f}% {j['comm_bytes_sent_per_step'] / 1e6:13.2f} "
              f"{j['loopback_bytes_per_step'] / 1e6:12.2f} {j['mem_adam_mb']:8.1f}")
ratio = [b["tok_s_total"] / a["tok_s_total"] for a, b in zip(runs["one"], runs["dp"])]
load = [float(open(f"{d}/load.{r}").read()) for r in range(1, R + 1)]
print(f"1-minute load average at the start of each round: {', '.join(f'{x:.2f}' for x in load)}")
ratio_z = [b["tok_s_total"] / a["tok_s_total"] for a, b in zip(runs["one"], runs["zero"])]
print(f"2x1 / 1x2 tokens/s per round: {', '.join(f'{x:.3f}' for x in ratio)}; median {st.median(ratio):.3f} (goal >= 0.9)")
print(f"sharded 2x1 / 1x2 per round: {', '.join(f'{x:.3f}' for x in ratio_z)}; median {st.median(ratio_z):.3f}")
ratio_e = [b["tok_s_total"] / a["tok_s_total"] for a, b in zip(runs["one"], runs["ep"])]
print(f"expert parallel 2x1 / 1x2 per round: {', '.join(f'{x:.3f}' for x in ratio_e)}; median {st.median(ratio_e):.3f}")
for j in runs["ep"][:3]:
    print(f"expert parallel, rank 0, last step: all-to-all-v {j['alltoall_bytes_per_step'] / 1e6:.3f} MB "
          f"(formula 2 x (R_out + R_in = {j['rows_crossing']:.0f} rows) x 4 d = {j['alltoall_formula_bytes'] / 1e6:.3f} MB); "
          f"all-reduce + rest {(j['comm_bytes_sent_per_step'] - j['alltoall_bytes_per_step']) / 1e6:.3f} MB "
          f"(formula 2 (N-1)/N x 4 P_replicated = {j['allreduce_formula_bytes'] / 1e6:.3f} MB)")
p = runs["dp"][0]["params"]
print(f"formula: each rank sends 2 (N-1)/N x 4 P = {4 * p / 1e6:.2f} MB per step for P = {p} parameters, N = 2 "
      f"(data parallel and sharded alike)")
PY
