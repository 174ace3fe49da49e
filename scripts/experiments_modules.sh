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
#   (d) demix        the tiny MoE trained with --route-by-domain (domain d -> expert d; the
#                    router taught the domains by --router-ce ROUTER_CE), then its router
#                    alone trained on the mixture with normal routing
# and then fine-tuning one new expert: a fifth, unseen domain (Python's standard library,
# /usr/lib/python3.*/*.py) added to (d) with `expert add` and trained alone
# (--route-by-domain --train experts=4: its slices and router rows), the rest frozen: on
# python alone, and on the mixture of the old domains and python (the old domains forced
# to their experts, python to 4, so the router term gives row 4 negatives as well).
#
# Every method gets STEPS optimizer steps of B x T tokens in all, summed over its stages.
# Environment: MONOLITH (binary, default build/monolith), OUT (default runs/modules),
# STEPS (default 1200), THREADS (default 2), ROUTER_CE (default 0.1), PARTS (default all of
# "dense moe btx demix variants ft": the parts to train and evaluate; `variants` is the
# seed-2 runs of (a) and (b) and DEMix without the router term with two router-stage
# variants). Each stage is skipped when its output exists, so the script can be stopped
# and run again, and PARTS="demix ft" redoes only (d) and the fifth domain. Prints
# markdown tables at the end, leaving out the rows whose evaluation is missing.
set -euo pipefail

M=${MONOLITH:-build/monolith}
OUT=${OUT:-runs/modules}
STEPS=${STEPS:-1200}
THREADS=${THREADS:-2}
RCE=${ROUTER_CE:-0.1}
PARTS=" ${PARTS:-dense moe btx demix variants ft} "
NAME=experiments_modules
source "$(dirname "$0")/experiments_lib.sh"
COMMON="--tokenizer $TOK --batch 8 --seq 64 --lr 3e-3 --warmup 50 --eval-every 0 --eval-batches 25 --save-every 0 --threads $THREADS --log-every 200"
S8=$((STEPS / 8))

# (a) dense and (b) MoE from scratch.
if part dense; then train $OUT/dense $STEPS --preset tiny --moe-layers 0,0 $COMMON $DATA; fi
if part moe; then train $OUT/moe $STEPS --preset tiny $COMMON $DATA; fi

# (c) BTX: seed 2/8 of the steps, four branches 1/8 each, router 1/8, all 1/8.
BTX=$(ckpt $OUT/btx/all $S8)
if part btx; then
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
fi

# (d) DEMix: 7/8 of the steps with forced routing (and the router term), then 1/8 training
# the router alone with normal routing.
NOWARM=$(echo $COMMON | sed 's/--warmup 50//')
DEMIX_EXPERTS=$(ckpt $OUT/demix_experts $((STEPS - S8)))
DEMIX=$(ckpt $OUT/demix $S8)
if part demix; then
    train $OUT/demix_experts $((STEPS - S8)) --preset tiny --route-by-domain --router-ce $RCE $COMMON $DATA
    train $OUT/demix $S8 --init "$DEMIX_EXPERTS" --train router --warmup 20 $NOWARM $DATA
fi

# Run-to-run spread of (a) and (b); DEMix without the router term (--router-ce 0: the
# router learns nothing during forced routing) and two variants of its router stage: lr
# 3e-2, and the router trained at top_k 4 (every expert gets gradient) then used at
# top_k 2 (the experts re-assembled by expert extract + compose --top-k 2).
NOCE_EXPERTS=$(ckpt $OUT/demix_noce_experts $((STEPS - S8)))
if part variants; then
    train $OUT/dense_s2 $STEPS --preset tiny --moe-layers 0,0 $COMMON $DATA --seed 2
    train $OUT/moe_s2 $STEPS --preset tiny $COMMON $DATA --seed 2
    train $OUT/demix_noce_experts $((STEPS - S8)) --preset tiny --route-by-domain --router-ce 0 $COMMON $DATA
    train $OUT/demix_noce $S8 --init "$NOCE_EXPERTS" --train router --warmup 20 $NOWARM $DATA
    train $OUT/demix_lr30 $S8 --init "$NOCE_EXPERTS" --train router --warmup 20 $NOWARM --lr 3e-2 $DATA
    train $OUT/demix_r4 $S8 --init "$NOCE_EXPERTS" --train router --warmup 20 $NOWARM --top-k 4 $DATA
    if [ ! -e $OUT/demix_r4_k2.h5 ]; then
        for e in 0 1 2 3; do "$M" expert extract $(ckpt $OUT/demix_r4 $S8) --expert $e -o $OUT/r4_e$e.h5; done
        "$M" compose --base $(ckpt $OUT/demix_r4 $S8) --expert $OUT/r4_e0.h5 --expert $OUT/r4_e1.h5 \
            --expert $OUT/r4_e2.h5 --expert $OUT/r4_e3.h5 --top-k 2 -o $OUT/demix_r4_k2.h5
    fi
fi

# Evaluations: 50 val batches of 8 x 64 tokens per domain (25,600 tokens), normal routing;
# DEMix also with the oracle domain -> expert routing. ev NAME CKPT [FLAGS]: writes
# OUT/eval_NAME.json when CKPT exists.
ev() {
    local name=$1 ck=$2
    shift 2
    [ -e "$ck" ] || return 0
    "$M" eval --checkpoint "$ck" $DATA --batch 8 --seq 64 --batches 50 --threads $THREADS --json "$@" \
        > $OUT/eval_$name.json
}
if part dense; then ev dense $(ckpt $OUT/dense $STEPS); fi
if part moe; then ev moe $(ckpt $OUT/moe $STEPS); fi
if part btx; then ev btx $BTX; fi
if part demix; then
    ev demix $DEMIX
    ev demix_oracle $DEMIX --route-by-domain
    ev demix_experts $DEMIX_EXPERTS
fi
if part variants; then
    ev dense_s2 $(ckpt $OUT/dense_s2 $STEPS)
    ev moe_s2 $(ckpt $OUT/moe_s2 $STEPS)
    ev demix_noce $(ckpt $OUT/demix_noce $S8)
    ev demix_noce_oracle $(ckpt $OUT/demix_noce $S8) --route-by-domain
    ev demix_lr30 $(ckpt $OUT/demix_lr30 $S8)
    ev demix_r4 $OUT/demix_r4_k2.h5
fi

# Fine-tune one expert: a fifth domain as a new expert of (d), on python alone
# (ft_python) and on the mixture of the four old domains and python, python at 4 times
# their weight: half of the tokens (ft_mix).
FT_STEPS=$((STEPS / 4))
if part ft; then
    PY=$(ls -d /usr/lib/python3.*/ | head -1)
    if [ ! -e $OUT/python.h5 ]; then
        mkdir -p $OUT/python_src
        cp "$PY"*.py $OUT/python_src/
        "$M" data prepare --tokenizer $TOK --domain python --val-fraction 0.05 --input $OUT/python_src -o $OUT/python.h5
    fi
    [ -e $OUT/demix5.h5 ] || "$M" expert add $DEMIX --init random --router-init random --seed 5 --name python --domain python -o $OUT/demix5.h5
    train $OUT/ft_python $FT_STEPS --init $OUT/demix5.h5 --data python=$OUT/python.h5 --route-by-domain \
        --router-ce $RCE --train experts=4 --warmup 20 $NOWARM
    train $OUT/ft_mix $FT_STEPS --init $OUT/demix5.h5 $DATA --data python=$OUT/python.h5:4 --route-by-domain \
        --router-ce $RCE --train experts=4 --warmup 20 $NOWARM
    DATA4=$DATA
    DATA="$DATA4 --data python=$OUT/python.h5"
    ev ft_before $OUT/demix5.h5
    ev ft_before_oracle $OUT/demix5.h5 --route-by-domain
    for f in ft_python ft_mix; do
        ev ${f}_after $(ckpt $OUT/$f $FT_STEPS)
        ev ${f}_after_oracle $(ckpt $OUT/$f $FT_STEPS) --route-by-domain
    done
    DATA=$DATA4
    # The gate of expert 4 per domain: its weight in a token's output (summed over the
    # slots, averaged over tokens and MoE layers) in 32 val windows of 64 tokens, from
    # monolith dump's /routing.
    /usr/bin/python3 - "$M" "$OUT" $FT_STEPS $DOMAINS <<'EOF'
import h5py, json, subprocess, sys
import numpy as np
m, out, steps, doms = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
files = {d: f"data/corpora/{d}.h5" for d in doms} | {"python": f"{out}/python.h5"}
cks = {"after expert add": f"{out}/demix5.h5", "fine-tuned on python alone": f"{out}/ft_python/ckpt-{steps:08d}.h5",
       "fine-tuned on the mixture": f"{out}/ft_mix/ckpt-{steps:08d}.h5"}
res = {}
for d, path in files.items():
    v = h5py.File(path, "r")["val/tokens"][()]
    starts = np.linspace(0, len(v) - 66, 32).astype(int)
    with h5py.File(f"{out}/gates_{d}.tokens.h5", "w") as f:
        f["tokens"] = np.stack([v[s:s + 65] for s in starts]).astype(np.int64)
for name, ck in cks.items():
    res[name] = {}
    for d in files:
        subprocess.run([m, "dump", "--checkpoint", ck, "--tokens", f"{out}/gates_{d}.tokens.h5", "-o",
                        f"{out}/gates_dump.h5", "--threads", "1"], check=True, capture_output=True)
        with h5py.File(f"{out}/gates_dump.h5", "r") as f:
            r = f["routing"]
            res[name][d] = float(np.mean([np.where(r[l]["experts"][()] == 4, r[l]["weights"][()], 0).sum(1).mean()
                                          for l in r]))
json.dump(res, open(f"{out}/gates_ft.json", "w"))
EOF
fi

# Routing heatmaps (PNG) of the MoE runs' last evaluations, when matplotlib is there.
if /usr/bin/python3 -c 'import matplotlib' 2>/dev/null; then
    for r in moe btx/all demix ft_python ft_mix; do
        if [ -e $OUT/$r/metrics.jsonl ]; then /usr/bin/python3 scripts/plot_run.py $OUT/$r >/dev/null || true; fi
    done
fi

# Tables.
/usr/bin/python3 - "$OUT" <<'EOF'
import json, os, sys
out = sys.argv[1]
def load(name):
    path = f"{out}/{name}.json"
    return json.load(open(path)) if os.path.exists(path) else None
doms = ["code", "math", "legal", "speeches"]
rows = [("(a) dense", "eval_dense"), ("(b) MoE from scratch", "eval_moe"), ("(c) BTX", "eval_btx"),
        ("(d) DEMix, learned router", "eval_demix"), ("(d) DEMix, oracle domain routing", "eval_demix_oracle"),
        ("(d) DEMix, forced stage only, learned router", "eval_demix_experts"),
        ("(d) DEMix without the router term, learned router", "eval_demix_noce"),
        ("(d) DEMix without the router term, oracle routing", "eval_demix_noce_oracle"),
        ("(a) dense, seed 2", "eval_dense_s2"), ("(b) MoE, seed 2", "eval_moe_s2"),
        ("(d) DEMix without the term, router lr 3e-2", "eval_demix_lr30"),
        ("(d) DEMix without the term, router trained at top_k 4", "eval_demix_r4")]
print("| model | " + " | ".join(doms) + " | mean |")
print("|---|" + "---:|" * (len(doms) + 1))
for label, f in rows:
    if not load(f):
        continue
    v = load(f)["val"]
    xs = [v[d]["loss"] for d in doms]
    print(f"| {label} | " + " | ".join(f"{x:.3f}" for x in xs) + f" | {sum(xs) / len(xs):.3f} |")
def routing(label, f, ds):
    j = load(f)
    if not j:
        return
    r = j["routing_share"]
    print(f"\nrouting share, {label} (rows: domain, columns: expert, mean over the MoE layers)\n")
    n = len(r[ds[0]]["mean"])
    print("| domain | " + " | ".join(f"e{e}" for e in range(n)) + " |")
    print("|---|" + "---:|" * n)
    for d in ds:
        print(f"| {d} | " + " | ".join(f"{x:.2f}" for x in r[d]["mean"]) + " |")
for label, f in [rows[1], rows[2], rows[3], rows[6]]:
    routing(label, f, doms)
for ft, what in [("ft_python", "on python alone"), ("ft_mix", "on the mixture of the five domains")]:
    if not load(f"eval_{ft}_after"):
        continue
    print(f"\nfine-tuning expert 4 (python) of (d) {what}, everything else frozen\n")
    print("| domain | routing | before | after | change |")
    print("|---|---|---:|---:|---:|")
    for mode, b, a in [("oracle", "eval_ft_before_oracle", f"eval_{ft}_after_oracle"),
                       ("learned", "eval_ft_before", f"eval_{ft}_after")]:
        vb, va = load(b)["val"], load(a)["val"]
        for d in doms + ["python"]:
            x, y = vb[d]["loss"], va[d]["loss"]
            print(f"| {d} | {mode} | {x:.3f} | {y:.3f} | {100 * (y - x) / x:+.2f}% |")
    routing(f"after the fine-tune {what}, learned router", f"eval_{ft}_after", doms + ["python"])
g = load("gates_ft")
if g:
    ds = doms + ["python"]
    print("\nmean gate of expert 4 per token (summed over its slots, averaged over the MoE layers)\n")
    print("| gate of expert 4 | " + " | ".join(ds) + " |")
    print("|---|" + "---:|" * len(ds))
    for name, row in g.items():
        print(f"| {name} | " + " | ".join(f"{row[d]:.2f}" for d in ds) + " |")
EOF
