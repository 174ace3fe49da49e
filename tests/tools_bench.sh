#!/usr/bin/env bash
# tools_bench.sh: `monolith bench train` and `bench infer` run (tiny preset, to stay
# quick) and print one JSON object with every rate and the in-run machine rates they are
# measured against; a bad preset or flag is one line of error.
set -euo pipefail
bin=${MONOLITH_BIN:?MONOLITH_BIN must point at the monolith binary}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$bin" bench train --preset tiny --threads 1 --json >"$tmp/train.json"
"$bin" bench infer --preset tiny --threads 1 --json >"$tmp/infer.json"
python3 - "$tmp" <<'PY'
import json, sys
tmp = sys.argv[1]
t = json.load(open(f"{tmp}/train.json"))
i = json.load(open(f"{tmp}/infer.json"))
for k in ("train_tok_s", "gflops", "sgemm_gflops", "membw_gbs", "sgemm_share", "flops_per_token", "step_s_median"):
    assert t[k] > 0, (k, t)
assert t["bench"] == "train" and t["preset"] == "tiny" and t["batch"] == 8 and t["threads"] == 1, t
assert len(t["step_s_all"]) == 3 and t["optimizer"] == "adamw", t
# gflops and sgemm_gflops are printed to 0.1, so their ratio carries that rounding: up to
# 0.05 (1 + share) / sgemm_gflops, past 1 when a loaded machine slows the in-run sgemm
# more than the steps (a share of 2.83 at an sgemm of 24.5 GFLOP/s under ctest -j2).
assert abs(t["gflops"] / t["sgemm_gflops"] - t["sgemm_share"]) < (0.05 * (1 + t["sgemm_share"]) + 0.01) / t["sgemm_gflops"] + 2e-3, t
# tiny: 2 MoE layers, d 64, 4 heads and 2 kv heads of 16, 4 experts of 128, top-2, vocab 512, T 256.
attn = 2 * 64 * 64 + 2 * 32 * 64
active = 2 * (attn + 4 * 64 + 2 * 3 * 64 * 128 + 2 * 64) + 512 * 64
assert t["params_active"] == active, (t["params_active"], active)
assert t["flops_per_token"] == 6 * active + 12 * 2 * 256 * 64, t
assert t["loss_last"] < t["loss_first"], t  # AdamW steps do train
for k in ("prefill_tok_s", "decode_tok_s", "prefill_gflops", "decode_weight_gbs", "sgemm_gflops", "membw_gbs",
          "prefill_sgemm_share", "decode_membw_share"):
    assert i[k] > 0, (k, i)
# decode reads the active weights, its embedding row and the final norm
assert i["bench"] == "infer" and i["batch"] == 1 and i["decode_weight_bytes_per_token"] == 4 * (active + 2 * 64), i
assert i["prefill_tokens"] + i["decode_tokens"] <= 256, i  # tiny's max_seq_len
assert i["weights"] == "f32" and 0 < i["decode_roofline_share"], i
# decode's products alone beside a plain read of their bytes (infer_probe)
for m in ("read", "products", "halves", "meetings", "regions"):
    assert i[f"probe_{m}_gbs"] > 0 and i[f"probe_{m}_share"] > 0, (m, i)
assert i["probe_read_share"] == 1 and i["probe_decode_share"] > 0, i
PY

# 8-bit weights: 1 + 4/32 bytes per quantized weight (routers, norms, embedding stay fp32),
# and the accuracy against f32 along the same tokens.
"$bin" bench infer --preset tiny --threads 1 --weights int8 --json >"$tmp/int8.json"
python3 - "$tmp" <<'PY'
import json, sys
i = json.load(open(f"{sys.argv[1]}/int8.json"))
attn = 2 * 64 * 64 + 2 * 32 * 64
q = 2 * (attn + 2 * 3 * 64 * 128) + 512 * 64  # quantized weights a token reads
f = 2 * (4 * 64 + 2 * 64) + 2 * 64            # routers, norms, embedding row
assert i["weights"] == "int8" and i["decode_weight_bytes_per_token"] == q * 1.125 + 4 * f, i
assert 0 < i["int8_logit_mean_abs"] <= i["int8_logit_max_abs"] and i["int8_top1_agreement"] > 0.5, i
PY
# A checkpoint instead of a preset (a tiny one with 3 layers and 3 experts, so that it is
# not the preset's model): its shapes show in the byte count.
"$bin" init --preset tiny --n-layers 3 --n-experts 3 -o "$tmp/m.h5" >/dev/null
"$bin" bench infer --checkpoint "$tmp/m.h5" --threads 1 --weights int8 --json >"$tmp/ck.json"
python3 - "$tmp" <<'PY'
import json, sys
i = json.load(open(f"{sys.argv[1]}/ck.json"))
attn = 2 * 64 * 64 + 2 * 32 * 64
q = 3 * (attn + 2 * 3 * 64 * 128) + 512 * 64
f = 3 * (3 * 64 + 2 * 64) + 2 * 64
assert i["decode_weight_bytes_per_token"] == q * 1.125 + 4 * f and i["int8_top1_agreement"] > 0.5, i
PY
if "$bin" bench infer --checkpoint "$tmp/none.h5" 2>"$tmp/err"; then echo "missing checkpoint accepted"; exit 1; fi
grep -q "none.h5" "$tmp/err" || { echo "missing checkpoint: $(cat "$tmp/err")"; exit 1; }
if "$bin" bench infer --preset tiny --weights int4 2>"$tmp/err"; then echo "--weights int4 accepted"; exit 1; fi
grep -q "^monolith: --weights int4" "$tmp/err" || { echo "--weights int4: $(cat "$tmp/err")"; exit 1; }

if "$bin" bench infer --preset huge 2>"$tmp/err"; then echo "preset huge accepted"; exit 1; fi
grep -q "unknown preset 'huge'" "$tmp/err" || { echo "error: $(cat "$tmp/err")"; exit 1; }
[ "$(wc -l <"$tmp/err")" -eq 1 ] || { echo "error is not one line: $(cat "$tmp/err")"; exit 1; }
if "$bin" bench train --bogus 3 2>"$tmp/err"; then echo "unknown flag accepted"; exit 1; fi
for bad in "--precision fp16" "--steps 0" "--set n-experts" "--set no-such-field=3"; do
  # shellcheck disable=SC2086
  if "$bin" bench train --preset tiny $bad 2>"$tmp/err"; then echo "bench train $bad accepted"; exit 1; fi
  grep -q "^monolith: " "$tmp/err" || { echo "bench train $bad: $(cat "$tmp/err")"; exit 1; }
done
grep -q "unknown\|no-such-field" "$tmp/err" || { echo "--set of an unknown field: $(cat "$tmp/err")"; exit 1; }

# --precision bf16 (refused with one line where the CPU has no AVX512_BF16), --steps,
# --set, and the step memory: computed arenas against the peak RSS.
if "$bin" bench train --preset tiny --threads 1 --precision bf16 --steps 2 --set n-experts=8 --json \
    >"$tmp/bf16.json" 2>"$tmp/err"; then
  python3 - "$tmp" <<'PY'
import json, sys
t = json.load(open(f"{sys.argv[1]}/bf16.json"))
assert t["precision"] == "bf16" and t["n_experts"] == 8 and len(t["step_s_all"]) == 2, t
assert t["loss_last"] < t["loss_first"], t
assert t["mem_bf16_mb"] > 0 and abs(t["mem_adam_mb"] - 2 * t["mem_params_mb"]) < 0.11, t  # printed to 0.1
parts = t["mem_params_mb"] + t["mem_grads_mb"] + t["mem_adam_mb"] + t["mem_activations_mb"] + t["mem_bf16_mb"]
assert abs(parts - t["mem_computed_mb"]) < 0.5, t
assert t["peak_rss_mb"] > 0.8 * t["mem_computed_mb"], t  # the arenas are touched at allocation
assert t["bf16_gemm_gflops"] > 0 and t["sgemm_gflops"] > 0, t  # the products' own rates, same run
PY
else
  grep -q "AVX512_BF16" "$tmp/err" || { echo "bench train --precision bf16: $(cat "$tmp/err")"; exit 1; }
fi
# --seq past the preset's max_seq_len (raised to it), --batch, --train, --recompute.
"$bin" bench train --preset tiny --threads 1 --steps 2 --seq 300 --batch 2 --train experts=0 --recompute --json \
  >"$tmp/long.json"
python3 - "$tmp" <<'PY'
import json, sys
t = json.load(open(f"{sys.argv[1]}/long.json"))
assert t["seq"] == 300 and t["batch"] == 2 and t["recompute"] == 1 and t["train"] == "experts=0", t
# tiny: expert 0's slices of w1, w3, w2 and router row 0 in both layers
assert t["params_trained"] == 2 * (3 * 128 * 64 + 64) < t["params_total"], t
assert t["flops_per_token"] == 6 * t["params_active"] + 12 * 2 * 300 * 64 and t["peak_rss_mb"] > 0, t
# gradients and AdamW moments only for what trains
assert abs(t["mem_grads_mb"] - 4 * t["params_trained"] / 2**20) < 0.06 < t["mem_params_mb"] - t["mem_grads_mb"], t
assert abs(t["mem_adam_mb"] - 2 * t["mem_grads_mb"]) < 0.11, t
PY
for bad in "--seq 0" "--batch x" "--train experts=9"; do
  # shellcheck disable=SC2086
  if "$bin" bench train --preset tiny $bad 2>"$tmp/err"; then echo "bench train $bad accepted"; exit 1; fi
  grep -q "^monolith: " "$tmp/err" || { echo "bench train $bad: $(cat "$tmp/err")"; exit 1; }
done
echo "tools_bench: ok"
