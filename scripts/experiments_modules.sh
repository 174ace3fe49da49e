#!/bin/bash
# experiments_modules.sh: the numbers of docs/experiments.md, "Experts as modules".
#
#   scripts/experiments_modules.sh            (from the repository root, after a build)
#
# On the four real domains (data/corpora/{code,math,legal,speeches}.h5, made by
# scripts/fetch_corpora.sh + tokenizer train + data prepare, docs/data.md), at equal
# training tokens, per-domain validation loss of
#   (a) dense        the tiny preset with dense layers (moe_layers 0,0)
#   (b) moe          the tiny preset (4 experts, top-2) trained from scratch
#   (c) btx          monolith pipeline btx: dense seed, a branch per domain, mix, router, all
#   (d) demix        the tiny MoE trained with --route-by-domain (domain d -> expert d), then
#                    its router alone trained on the mixture with normal routing
# and then fine-tuning one new expert: a fifth, unseen domain (Python's standard library,
# /usr/lib/python3.*/*.py) added to (d) with `expert add` and trained alone
# (--route-by-domain --train experts=4), the rest frozen.
#
# Every method gets STEPS optimizer steps of B x T tokens in all, summed over its stages.
# Environment: MONOLITH (binary, default build/monolith), OUT (default runs/modules),
# STEPS (default 1200), THREADS (default 2). Each stage is skipped when its output
# exists, so the script can be stopped and run again. Prints markdown tables at the end.
set -euo pipefail

M=${MONOLITH:-build/monolith}
OUT=${OUT:-runs/modules}
STEPS=${STEPS:-1200}
THREADS=${THREADS:-2}
C=data/corpora
TOK=$C/mono8k.tiktoken
DOMAINS="code math legal speeches"
for d in $DOMAINS; do
    [ -e $C/$d.h5 ] || { echo "experiments_modules: $C/$d.h5 missing; see docs/data.md" >&2; exit 1; }
done
mkdir -p "$OUT"
DATA=""
for d in $DOMAINS; do DATA="$DATA --data $d=$C/$d.h5"; done
COMMON="--tokenizer $TOK --batch 8 --seq 64 --lr 3e-3 --warmup 50 --eval-every 0 --eval-batches 25 --save-every 0 --threads $THREADS"
ckpt() { printf '%s/ckpt-%08d.h5' "$1" "$2"; }
# train DIR STEPS ARGS...: a run folder, skipped when its final checkpoint exists.
train() {
    local dir=$1 steps=$2
    shift 2
    if [ -e "$(ckpt "$dir" "$steps")" ]; then echo "skip $dir"; return; fi
    rm -rf "$dir"
    echo "train $dir ($steps steps)"
    "$M" train "$@" --steps "$steps" --out "$dir" --log-every 200
}
S8=$((STEPS / 8))

# (a) dense and (b) MoE from scratch.
train $OUT/dense $STEPS --preset tiny --moe-layers 0,0 $COMMON $DATA
train $OUT/moe $STEPS --preset tiny $COMMON $DATA

# (c) BTX: seed 2/8 of the steps, four branches 1/8 each, router 1/8, all 1/8.
cat > $OUT/btx.ini <<EOF
[pipeline]
out = $OUT/btx

[train]
tokenizer = $TOK
$(for d in $DOMAINS; do echo "data = $d=$C/$d.h5"; done)
batch = 8
seq = 64
lr = 3e-3
warmup = 50
eval-every = 0
eval-batches = 25
save-every = 0
threads = $THREADS

[seed]
preset = tiny
moe_layers = 0,0
steps = $((2 * S8))

[branch]
steps = $S8
warmup = 20

[mix]
top_k = 2

[router]
steps = $S8
warmup = 20

[all]
steps = $S8
warmup = 20
EOF
"$M" pipeline btx --config $OUT/btx.ini | tee $OUT/btx_summary.txt
BTX=$(ckpt $OUT/btx/all $S8)

# (d) DEMix: 7/8 of the steps with forced routing, then 1/8 training the router alone.
train $OUT/demix_experts $((STEPS - S8)) --preset tiny --route-by-domain $COMMON $DATA
train $OUT/demix $S8 --init "$(ckpt $OUT/demix_experts $((STEPS - S8)))" --train router --warmup 20 \
    $(echo $COMMON | sed 's/--warmup 50//') $DATA
DEMIX=$(ckpt $OUT/demix $S8)

# Run-to-run spread of (a) and (b), and two variants of DEMix's router stage: lr 3e-2, and
# the router trained at top_k 4 (every expert gets gradient) then used at top_k 2 (the
# experts re-assembled by expert extract + compose --top-k 2).
train $OUT/dense_s2 $STEPS --preset tiny --moe-layers 0,0 $COMMON $DATA --seed 2
train $OUT/moe_s2 $STEPS --preset tiny $COMMON $DATA --seed 2
NOWARM=$(echo $COMMON | sed 's/--warmup 50//')
train $OUT/demix_lr30 $S8 --init "$(ckpt $OUT/demix_experts $((STEPS - S8)))" --train router --warmup 20 $NOWARM \
    --lr 3e-2 $DATA
train $OUT/demix_r4 $S8 --init "$(ckpt $OUT/demix_experts $((STEPS - S8)))" --train router --warmup 20 $NOWARM \
    --top-k 4 $DATA
if [ ! -e $OUT/demix_r4_k2.h5 ]; then
    for e in 0 1 2 3; do "$M" expert extract $(ckpt $OUT/demix_r4 $S8) --expert $e -o $OUT/r4_e$e.h5; done
    "$M" compose --base $(ckpt $OUT/demix_r4 $S8) --expert $OUT/r4_e0.h5 --expert $OUT/r4_e1.h5 \
        --expert $OUT/r4_e2.h5 --expert $OUT/r4_e3.h5 --top-k 2 -o $OUT/demix_r4_k2.h5
fi

# Evaluations: 50 val batches of 8 x 64 tokens per domain (25,600 tokens), normal routing;
# DEMix also with the oracle domain -> expert routing.
ev() { "$M" eval --checkpoint "$1" $DATA --batch 8 --seq 64 --batches 50 --threads $THREADS --json; }
ev $(ckpt $OUT/dense $STEPS) > $OUT/eval_dense.json
ev $(ckpt $OUT/moe $STEPS) > $OUT/eval_moe.json
ev $BTX > $OUT/eval_btx.json
ev $DEMIX > $OUT/eval_demix.json
ev $(ckpt $OUT/dense_s2 $STEPS) > $OUT/eval_dense_s2.json
ev $(ckpt $OUT/moe_s2 $STEPS) > $OUT/eval_moe_s2.json
ev $(ckpt $OUT/demix_lr30 $S8) > $OUT/eval_demix_lr30.json
ev $OUT/demix_r4_k2.h5 > $OUT/eval_demix_r4.json
"$M" eval --checkpoint $DEMIX $DATA --batch 8 --seq 64 --batches 50 --threads $THREADS --json --route-by-domain \
    > $OUT/eval_demix_oracle.json

# Fine-tune one expert: a fifth domain as a new expert of (d).
PY=$(ls -d /usr/lib/python3.*/ | head -1)
if [ ! -e $OUT/python.h5 ]; then
    mkdir -p $OUT/python_src
    cp "$PY"*.py $OUT/python_src/
    "$M" data prepare --tokenizer $TOK --domain python --val-fraction 0.05 --input $OUT/python_src -o $OUT/python.h5
fi
[ -e $OUT/demix5.h5 ] || "$M" expert add $DEMIX --init random --seed 5 --name python --domain python -o $OUT/demix5.h5
FT_STEPS=$((STEPS / 4))
train $OUT/ft_python $FT_STEPS --init $OUT/demix5.h5 --data python=$OUT/python.h5 --route-by-domain \
    --train experts=4 --warmup 20 $(echo $COMMON | sed 's/--warmup 50//')
DATA5="$DATA --data python=$OUT/python.h5"
ev5() { "$M" eval --checkpoint "$1" $DATA5 --batch 8 --seq 64 --batches 50 --threads $THREADS --json "${@:2}"; }
ev5 $OUT/demix5.h5 > $OUT/eval_ft_before.json
ev5 $OUT/demix5.h5 --route-by-domain > $OUT/eval_ft_before_oracle.json
ev5 $(ckpt $OUT/ft_python $FT_STEPS) > $OUT/eval_ft_after.json
ev5 $(ckpt $OUT/ft_python $FT_STEPS) --route-by-domain > $OUT/eval_ft_after_oracle.json

# Routing heatmaps (PNG) of the MoE runs' last evaluations, when matplotlib is there.
if /usr/bin/python3 -c 'import matplotlib' 2>/dev/null; then
    for r in moe btx/all demix ft_python; do /usr/bin/python3 scripts/plot_run.py $OUT/$r >/dev/null || true; done
fi

# Tables.
/usr/bin/python3 - "$OUT" <<'EOF'
import json, math, sys
out = sys.argv[1]
def load(name):
    return json.load(open(f"{out}/{name}.json"))
doms = ["code", "math", "legal", "speeches"]
rows = [("(a) dense", "eval_dense"), ("(b) MoE from scratch", "eval_moe"), ("(c) BTX", "eval_btx"),
        ("(d) DEMix, learned router", "eval_demix"), ("(d) DEMix, oracle domain routing", "eval_demix_oracle"),
        ("(a) dense, seed 2", "eval_dense_s2"), ("(b) MoE, seed 2", "eval_moe_s2"),
        ("(d) DEMix, router lr 3e-2", "eval_demix_lr30"), ("(d) DEMix, router trained at top_k 4", "eval_demix_r4")]
print("| model | " + " | ".join(doms) + " | mean |")
print("|---|" + "---:|" * (len(doms) + 1))
for label, f in rows:
    v = load(f)["val"]
    xs = [v[d]["loss"] for d in doms]
    print(f"| {label} | " + " | ".join(f"{x:.3f}" for x in xs) + f" | {sum(xs) / len(xs):.3f} |")
for label, f in [rows[1], rows[2], rows[3]]:
    r = load(f)["routing_share"]
    print(f"\nrouting share, {label} (rows: domain, columns: expert, mean over the MoE layers)\n")
    n = len(r[doms[0]]["mean"])
    print("| domain | " + " | ".join(f"e{e}" for e in range(n)) + " |")
    print("|---|" + "---:|" * n)
    for d in doms:
        print(f"| {d} | " + " | ".join(f"{x:.2f}" for x in r[d]["mean"]) + " |")
print("\nfine-tuning expert 4 (python) of (d), everything else frozen\n")
print("| domain | routing | before | after | change |")
print("|---|---|---:|---:|---:|")
for mode, b, a in [("oracle", "eval_ft_before_oracle", "eval_ft_after_oracle"), ("learned", "eval_ft_before", "eval_ft_after")]:
    vb, va = load(b)["val"], load(a)["val"]
    for d in doms + ["python"]:
        if d not in vb:
            continue
        x, y = vb[d]["loss"], va[d]["loss"]
        print(f"| {d} | {mode} | {x:.3f} | {y:.3f} | {100 * (y - x) / x:+.2f}% |")
r = load("eval_ft_after")["routing_share"]
print("\nrouting share after the fine-tune, learned router (mean over the MoE layers)\n")
n = len(r["python"]["mean"])
print("| domain | " + " | ".join(f"e{e}" for e in range(n)) + " |")
print("|---|" + "---:|" * n)
for d in doms + ["python"]:
    print(f"| {d} | " + " | ".join(f"{x:.2f}" for x in r[d]["mean"]) + " |")
EOF
