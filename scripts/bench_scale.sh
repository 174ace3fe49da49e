#!/usr/bin/env bash
# bench_scale.sh: every figure of issue 18's table in one run, as one markdown table with
# the goal beside each figure (docs/benchmarks.md, "Issue 18's table in one command").
# Meant for a quiet machine: an estimated 20 minutes on 2 idle cores with the defaults
# (from the step times measured there before; the peer's 1 x 4096 steps are the longest
# part), a few more with --big; --parts runs some of it.
#
#   scripts/bench_scale.sh [--parts LIST] [--threads N] [--rounds R] [--long-rounds R]
#                          [--steps S] [--seqs LIST] [--decode-runs N] [--coretype NAME]
#                          [--big] [--out DIR] [--table-only]
#
#   --parts LIST     comma-separated, default long,8192,finetune,kernels:
#                      long      bench-S at batch x seq 8 x 256, 1 x 1024, 1 x 2048, 1 x 4096
#                                (--seqs), monolith and the PyTorch peer side by side
#                                (scripts/bench_compare.sh, alternating rounds; the peer's
#                                attention chunked from 4096 on): tokens/s and peak memory
#                      8192      seq 8192 x batch 1 with and without --recompute: peak
#                                memory, and the FLOP rate against seq 256's
#                      finetune  `--train experts=0` against a full step, alternating: the
#                                step-time ratio
#                      kernels   fp32 training's share of the in-run sgemm rate, bf16 over
#                                fp32 (beside the bf16 product's rate over sgemm's in the
#                                same runs: the ceiling this CPU sets), and fp32 / 8-bit decode against the read rate measured
#                                right after each run (median of --decode-runs runs)
#                      big       the 2.07B-parameter MoE, one expert fine-tuned: its peak
#                                memory (about 9 GB and a few minutes; also --big), and
#                                with AVX512_BF16 the same under --precision bf16, whose
#                                frozen weights are kept as bf16 only (about 5 GB)
#   --threads N      threads for every program (default 2)
#   --rounds R       alternating rounds of each comparison (default 2)
#   --long-rounds R  rounds of the shapes from seq 2048 on, 8192 included (default 1: the
#                    peer's 1 x 4096 step alone takes minutes)
#   --steps S        timed steps of each training run (default 2; each adds a warm-up)
#   --seqs LIST      the `long` part's sequence lengths (default 256,1024,2048,4096;
#                    256 runs at batch 8, the others at batch 1)
#   --decode-runs N  decode runs of each weight type, a multiple of 3 (default 9)
#   --coretype NAME  OPENBLAS_CORETYPE for both programs (default Cooperlake)
#
# Figures: wall-clock (for a quiet machine), with the CPU-time ratio beside where a
# comparison is made; every `bench` JSON and the table are kept in --out DIR (default a
# fresh /tmp directory, printed at the end); --table-only --out DIR prints the table of
# an earlier run's DIR again without running anything. A short try: --parts
# finetune,kernels --rounds 1 --decode-runs 3.
set -euo pipefail
cd "$(dirname "$0")/.."
parts=long,8192,finetune,kernels threads=2 rounds=2 long_rounds=1 steps=2 seqs=256,1024,2048,4096 decode_runs=9
coretype=Cooperlake out= table_only=0
while [ $# -gt 0 ]; do
  case "$1" in
    --parts) parts=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --long-rounds) long_rounds=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --seqs) seqs=$2; shift 2 ;;
    --decode-runs) decode_runs=$2; shift 2 ;;
    --coretype) coretype=$2; shift 2 ;;
    --big) parts=$parts,big; shift ;;
    --out) out=$2; shift 2 ;;
    --table-only) table_only=1; shift ;;
    -h|--help) sed -n '2,40p' "$0"; exit 0 ;;
    *) echo "bench_scale.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[ $((decode_runs % 3)) -eq 0 ] && [ "$decode_runs" -gt 0 ] ||
  { echo "bench_scale.sh: --decode-runs $decode_runs: give a multiple of 3 (bench infer times 3 runs)" >&2; exit 2; }
for p in ${parts//,/ }; do
  case "$p" in long|8192|finetune|kernels|big) ;; *) echo "bench_scale.sh: --parts: unknown part '$p'" >&2; exit 2 ;; esac
done
has() { [[ ",$parts," == *",$1,"* ]]; }
run_part() { [ $table_only -eq 0 ] && has "$1"; }
. scripts/bench_peer_common.sh
bench_peer_setup bench_scale.sh "$coretype"
[ $table_only -eq 0 ] || [ -d "$out" ] || { echo "bench_scale.sh: --table-only needs --out DIR of an earlier run" >&2; exit 2; }
[ -n "$out" ] || out=$(mktemp -d /tmp/bench_scale.XXXXXX)
mkdir -p "$out"
say() { echo "[$(date -u +%H:%M:%S), load $(cut -d' ' -f1 /proc/loadavg)] $*" >&2; }
train() { "$bin" bench train --threads "$threads" --json "$@" 2>/dev/null | tail -1; }
[ $table_only -eq 1 ] || echo "$(date -u +%Y-%m-%d\ %H:%M) UTC, load $(cut -d' ' -f1-3 /proc/loadavg)" >"$out/started"

# ---------------------------------------------------------------- long sequences vs the peer
if [ $table_only -eq 0 ] && { has long || has kernels || has 8192; }; then
  list=$seqs
  has long || list=256  # the seq-256 runs are the reference of the kernel shares and of 8192's rate
  for s in ${list//,/ }; do
    b=1 att=full precs=(--precision fp32) n=$rounds
    [ "$s" -gt 256 ] || { b=8; ! grep -q avx512_bf16 /proc/cpuinfo || precs+=(--precision bf16); }
    [ "$s" -lt 4096 ] || att=chunked
    [ "$s" -lt 2048 ] || n=$long_rounds
    say "seq $s x batch $b: peer and monolith, $n round(s)"
    scripts/bench_compare.sh --mode train --threads "$threads" --coretype "$coretype" --rounds "$n" \
      --seq "$s" --batch "$b" --steps "$steps" --attention "$att" "${precs[@]}" --json "$out/seq$s.json" \
      >"$out/seq$s.txt"
  done
fi

# ---------------------------------------------------------------- seq 8192
if run_part 8192; then
  for r in $(seq 1 "$long_rounds"); do
    for rc in none recompute; do
      say "seq 8192 x batch 1, $rc, round $r"
      flag=(); [ $rc = none ] || flag=(--recompute)
      train --seq 8192 --batch 1 --steps 1 "${flag[@]}" >"$out/seq8192_${rc}_$r.json"
    done
  done
fi

# ---------------------------------------------------------------- fine-tuning one expert
if run_part finetune; then
  for r in $(seq 1 "$rounds"); do
    for m in all experts=0; do
      say "fine-tune ratio: --train $m, round $r"
      train --steps $((steps + 1)) --train "$m" >"$out/finetune_${m%%=*}_$r.json"
    done
  done
fi
if run_part big; then
  big=(--batch 1 --seq 256 --steps 1 --train experts=0 --set d-model=1024 --set n-layers=16 --set n-heads=16
       --set n-kv-heads=4 --set head-dim=64 --set n-experts=40 --set d-ff=1024
       --set moe-layers=1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1)
  say "the 2.07B MoE, --train experts=0, batch 1 x 256"
  train "${big[@]}" >"$out/big.json"
  if grep -q avx512_bf16 /proc/cpuinfo; then  # the frozen weights as bf16 only
    say "the 2.07B MoE, --train experts=0, --precision bf16"
    train "${big[@]}" --precision bf16 >"$out/big_bf16.json"
  fi
fi

# ---------------------------------------------------------------- decode against the read rate
if run_part kernels; then
  for r in $(seq 1 $((decode_runs / 3))); do
    for w in f32 int8; do
      say "decode, $w weights, 3 runs ($r of $((decode_runs / 3)))"
      "$bin" bench infer --threads "$threads" --weights "$w" --json 2>/dev/null | tail -1 >"$out/decode_${w}_$r.json"
    done
  done
fi

[ $table_only -eq 1 ] || echo "load $(cut -d' ' -f1-3 /proc/loadavg)" >"$out/ended"
when="$(cat "$out/started" 2>/dev/null || echo '?') -> $(cat "$out/ended" 2>/dev/null || echo '?')"
/usr/bin/python3 - "$out" "$parts" "$threads" "$coretype" "$when" \
  "$(git rev-parse --short HEAD 2>/dev/null || echo '?')" <<'PY' | tee "$out/table.md"
import glob, json, os, re, statistics as st, sys
out, parts, threads, coretype, when, commit = sys.argv[1:7]
parts = parts.split(",")
med = st.median
rows = []
def row(what, value, goal="", holds=None):
    rows.append((what, value, goal, "" if holds is None else ("yes" if holds else "**no**")))
def load(path):
    return json.load(open(path))
def all_of(pattern):
    return [load(p) for p in sorted(glob.glob(os.path.join(out, pattern)))]

seq = {}
for p in glob.glob(os.path.join(out, "seq*.json")):
    if re.fullmatch(r"seq\d+\.json", os.path.basename(p)):
        d = load(p)
        seq[d["seq"]] = d
seq = dict(sorted(seq.items()))
if "long" in parts:
    for s, d in seq.items():
        mono, peer = d["monolith"]["fp32"], d["peer"]
        mt, pt = med([x["train_tok_s"] for x in mono]), med([x["train_tok_s"] for x in peer])
        mc, pc = med([x["train_tok_per_cpu_s"] for x in mono]), med([x["train_tok_per_cpu_s"] for x in peer])
        mm, pm = max(x["peak_rss_mb"] for x in mono), max(x["peak_rss_mb"] for x in peer)
        shape = f"{d['batch']} x {s}"
        row(f"train fp32 {shape}: monolith / peer tokens/s (per CPU-s)",
            f"{mt:.1f} / {pt:.1f} = {mt / pt:.2f}x ({mc / pc:.2f}x)", "ahead of the peer", mt > pt)
        goal, holds = "", None
        if s == 4096: goal, holds = "< 4000 MB", mm < 4000
        row(f"train fp32 {shape}: peak memory, monolith / peer ({d['attention']} attention)",
            f"{mm:.0f} / {pm:.0f} MB", goal, holds)
ref = seq.get(256)
ref_gflops = med([x["gflops"] for x in ref["monolith"]["fp32"]]) if ref else None
if "8192" in parts:
    for rc, goal in (("none", "< 6000 MB"), ("recompute", "< 6000 MB")):
        runs = all_of(f"seq8192_{rc}_*.json")
        if not runs: continue
        mem = max(x["peak_rss_mb"] for x in runs)
        label = "with --recompute" if rc == "recompute" else "every activation kept"
        row(f"train fp32 1 x 8192, {label}: peak memory", f"{mem:.0f} MB", goal, mem < 6000)
        if rc == "none" and ref_gflops:
            g = med([x["gflops"] for x in runs])
            row("train fp32 1 x 8192: FLOP rate / that of 8 x 256 (attention FLOPs counted)",
                f"{g:.1f} / {ref_gflops:.1f} GFLOP/s = {g / ref_gflops:.2f}", ">= 0.7", g / ref_gflops >= 0.7)
if "finetune" in parts:
    full, ft = all_of("finetune_all_*.json"), all_of("finetune_experts_*.json")
    if full and ft:
        fs, ts = med([x["step_s_median"] for x in full]), med([x["step_s_median"] for x in ft])
        fc, tc = med([x["cpu_s_median"] for x in full]), med([x["cpu_s_median"] for x in ft])
        r = ts / fs
        row("bench-S 8 x 256 `--train experts=0` step / full step (CPU time)",
            f"{ts:.2f} / {fs:.2f} s = {r:.2f} ({tc / fc:.2f})", "<= 0.5", r <= 0.5)
if "big" in parts and os.path.exists(os.path.join(out, "big.json")):
    b = load(os.path.join(out, "big.json"))
    row("2.07B MoE, `--train experts=0`, 1 x 256: peak memory", f"{b['peak_rss_mb']:.0f} MB",
        "runs in 24 GB", b["peak_rss_mb"] < 24 * 1024)
    if os.path.exists(os.path.join(out, "big_bf16.json")):
        h = load(os.path.join(out, "big_bf16.json"))
        row("2.07B MoE, `--train experts=0 --precision bf16` (frozen weights bf16 only): peak memory, tokens/s "
            "(fp32's)", f"{h['peak_rss_mb']:.0f} MB, {h['train_tok_s']:.1f} ({b['train_tok_s']:.1f})",
            "runs in 24 GB", h["peak_rss_mb"] < 24 * 1024)
if "kernels" in parts and ref:
    f32, bf = ref["monolith"]["fp32"], ref["monolith"].get("bf16", [])
    share = med([x["gflops"] / x["sgemm_gflops"] for x in f32])
    row("fp32 training 8 x 256: GFLOP/s / the in-run sgemm rate (median of rounds)",
        f"{med([x['gflops'] for x in f32]):.1f} / {med([x['sgemm_gflops'] for x in f32]):.1f} = {share:.2f}",
        ">= 0.9", share >= 0.9)
    if bf:
        # same rounds, fp32 and bf16 right after each other
        ratios = [b["train_tok_s"] / a["train_tok_s"] for a, b in zip(f32, bf)]
        row("bf16 training / fp32 tokens/s (per round)", " ".join(f"{x:.2f}" for x in ratios) +
            f" (median {med(ratios):.2f})", ">= 1.9", med(ratios) >= 1.9)
        prod = [b["bf16_gemm_gflops"] / b["sgemm_gflops"] for b in bf if "bf16_gemm_gflops" in b]
        if prod:  # what this CPU's bf16 product gives over its sgemm: the ratio's ceiling on the products
            row("bf16 / sgemm 1024^3 product rate, same bf16 runs (per round)", " ".join(f"{x:.2f}" for x in prod) +
                f" (median {med(prod):.2f})")
if "kernels" in parts:
    for w, goal in (("f32", 0.9), ("int8", 0.85)):
        shares, before, toks, huge = [], [], [], []
        for d in all_of(f"decode_{w}_*.json"):
            nbytes = d["decode_weight_bytes_per_token"] + d["decode_kv_bytes_per_token"]
            for t, rd in zip(d["decode_all"], d["read_after_run_gbs"]):
                shares.append(t * nbytes / 1e9 / rd)
                toks.append(t)
            for t, rd in zip(d["decode_all"], d.get("read_before_run_gbs", [])):
                before.append(t * nbytes / 1e9 / rd)
            if "weights_huge_share" in d:
                huge.append(f"{d['weights_huge_share']:.2f}/{d['read_buffer_huge_share']:.2f}")
        if shares:
            m = med(shares)
            extra = f"; against the read right before: {med(before):.2f}" if before else ""
            extra += f"; huge pages, weights/read buffer: {' '.join(huge)}" if huge else ""
            row(f"{w} decode: share of the read rate right after each run (median of {len(shares)}; min-max)",
                f"{m:.2f} ({min(shares):.2f}-{max(shares):.2f}; {med(toks):.0f} tokens/s{extra})", f">= {goal}",
                m >= goal)
        # decode's products alone against a plain read of their bytes, same run (infer_probe)
        probes = [d for d in all_of(f"decode_{w}_*.json") if "probe_read_gbs" in d]
        if probes:
            k = lambda key: med([d[key] for d in probes])
            regions = f", {k('probe_regions_share'):.2f}" if all("probe_regions_share" in d for d in probes) else ""
            stream = (f"; halves with the fp32 rows one after the other (decode's until 2026-12-07) "
                      f"{k('probe_stream_share'):.2f}" if w == "f32" and all("probe_stream_share" in d for d in probes) else "")
            row(f"{w} decode's products alone / a plain read of their bytes ({k('probe_read_gbs'):.1f} GB/s), "
                "medians of the runs: in guided chunks (decode's until 2026-12-07), in contiguous halves (decode's), "
                "with decode's meetings, and a parallel region a token; decode itself",
                f"{k('probe_products_share'):.2f}, {k('probe_halves_share'):.2f}, {k('probe_meetings_share'):.2f}"
                f"{regions}; "
                f"{k('probe_decode_share'):.2f}{stream}")
print(f"bench-S, {threads} threads, OPENBLAS_CORETYPE={coretype}, OMP_WAIT_POLICY=PASSIVE, commit {commit}, {when}")
print()
print("| figure | measured | goal | holds |")
print("|---|---|---|---|")
for r in rows:
    print("| " + " | ".join(r) + " |")
PY
echo "bench_scale.sh: every JSON and table.md are in $out" >&2
