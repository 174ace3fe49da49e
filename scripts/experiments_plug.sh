#!/bin/bash
# experiments_plug.sh: the numbers of docs/experiments.md, "Branch-train-plug against
# training whole" (issue 16).
#
#   scripts/experiments_plug.sh            (from the repository root, after a build and
#                                           the four token sets of docs/data.md)
#
# The `small` preset at vocabulary 8192 (d_model 256, 4 layers, 8 heads / 4 kv heads),
# --precision bf16, batch 8 x 256 tokens, on the four domains (code, math, legal,
# speeches; equal weights), every method STEPS optimizer steps in all, summed over its
# stages:
#   dense        d_ff 1024 (the active size of the MoE's two experts of 512)
#   moe          4 experts of d_ff 512, top-2, from scratch
#   btx-S        monolith pipeline btx from a dense seed of d_ff 512 trained for S% of
#                STEPS: four branches (all parameters, one domain each), mix (branch FFNs
#                as experts, the rest averaged, fresh router), router, all
#   plug-S       monolith pipeline plug from the same seed: four branches (the FFN alone,
#                one domain each, as separate runs), plug (the seed's trunk, no averaging;
#                router rows from the domains' mean router inputs), router only
#   plugall-S    the same branches, then a shorter router stage and all parameters at
#                the seed's final learning rate (plugallpeak-25: restarted at the peak)
# for S = 25 and 50, and (bound) a dense d_ff 512 model trained for all STEPS. A module
# of another run (a second math branch of the 25% seed) replaces plug-25's math expert,
# and plug-25 without its math expert is scored (replace). Then the fifth domain (Python's standard library) as one more branch
# of the 25% seed, added to plug-25 with its router row started two ways (below the
# trained rows, or from python's mean router input) and fitted with the router term on
# the mixture of the five domains.
#
# Environment: MONOLITH (default build/monolith), OUT (default runs/plug), STEPS (default
# 256), THREADS (default 1), EVAL_BATCHES (default 0 = the whole val splits; N = the first
# N batches of 8 x 256 tokens; EVAL_BATCHES_ADD, default 8, the same for the fifth
# domain's and the replaced module's comparisons), PARTS (default all of "seeds bound dense moe btx25 plug25
# btx50 plug50 fifth branchlr replace eval eval25 eval50 evalfifth evalreplace evalpeak evalseeds report"; fifth and
# replace need plug25, the evaluations the runs). Each run is skipped when its output
# exists, so the script can be stopped and run again; two instances with different PARTS
# (e.g. PARTS="seeds dense" and PARTS="moe") use two cores. Prints markdown tables at the
# end (PARTS containing "report").
set -euo pipefail

M=${MONOLITH:-build/monolith}
OUT=${OUT:-runs/plug}
STEPS=${STEPS:-256}
THREADS=${THREADS:-1}
EVAL_BATCHES=${EVAL_BATCHES:-0}
EVAL_BATCHES_ADD=${EVAL_BATCHES_ADD:-8}
EB=$EVAL_BATCHES
PARTS=" ${PARTS:-seeds bound dense moe btx25 plug25 btx50 plug50 fifth branchlr replace eval eval25 eval50 evalfifth evalreplace evalpeak evalseeds report} "
NAME=experiments_plug
source "$(dirname "$0")/experiments_lib.sh"
MODEL="--preset small --vocab-size 8192"
COMMON="--tokenizer $TOK --precision bf16 --batch 8 --seq 256 --lr 2e-3 --eval-every 0 --eval-batches 1 --save-every 0 --threads $THREADS --log-every 50"

# Dense seeds of d_ff 512 (one expert's width) for the 25% and 50% splits.
S25=$((STEPS / 4))
S50=$((STEPS / 2))
if part seeds; then
    train $OUT/seed25 $S25 $MODEL --moe-layers 0,0,0,0 --d-ff-dense 512 $COMMON --warmup $((S25 / 10)) $DATA
    train $OUT/seed50 $S50 $MODEL --moe-layers 0,0,0,0 --d-ff-dense 512 $COMMON --warmup $((S50 / 10)) $DATA
fi
# The bound of plug: its model is its seed plus experts that moved little, so a dense
# d_ff 512 model trained on the mixture for all STEPS is what a seed of any split could give.
if part bound; then
    train $OUT/seed100 $STEPS $MODEL --moe-layers 0,0,0,0 --d-ff-dense 512 $COMMON --warmup $((STEPS / 10)) $DATA
fi
if part dense; then
    train $OUT/dense $STEPS $MODEL --moe-layers 0,0,0,0 --d-ff-dense 1024 $COMMON --warmup $((STEPS / 10)) $DATA
fi
if part moe; then
    train $OUT/moe $STEPS $MODEL --n-experts 4 $COMMON --warmup $((STEPS / 10)) $DATA
fi

# The pipelines. split NAME SEED_CKPT BRANCH_STEPS: BTX and plug from the same seed. Each
# method gets STEPS in all: seed + 4 branches + a tail of TAIL steps (plug: router only;
# plugall and btx: router TAIL_R then all parameters TAIL - TAIL_R).
TAIL=$((STEPS / 8))
TAIL_R=$((TAIL * 3 / 8))
ini() {  # ini METHOD OUTDIR SEED_CKPT BRANCH_STEPS ROUTER_STEPS ALL_STEPS [EXTRA DATA LINE]
    local method=$1 out=$2 seed=$3 bs=$4 rs=$5 as=$6 extra=${7:-}
    ini_train $out "$extra"
    echo "[seed]"
    echo "init = $seed"
    echo
    echo "[branch]"
    echo "steps = $bs"
    echo "warmup = $((bs / 10 > 0 ? bs / 10 : 1))"
    echo
    [ $method = btx ] && echo "[mix]" || echo "[plug]"
    echo "top_k = 2"
    echo
    echo "[router]"
    echo "steps = $rs"
    echo "warmup = $((rs / 10 > 0 ? rs / 10 : 1))"
    if [ "$as" -gt 0 ]; then
        echo
        echo "[all]"
        echo "steps = $as"
        # Unset, plug's [all] continues at the seed's final rate (lr * lr-floor, constant);
        # ALL_PEAK=1 restarts it at the peak rate with a warmup, as before that default.
        if [ -n "${ALL_PEAK:-}" ]; then printf 'lr = 2e-3\nschedule = cosine\n'; fi
        if [ $method = btx ] || [ -n "${ALL_PEAK:-}" ]; then echo "warmup = $((as / 10 > 0 ? as / 10 : 1))"; fi
    fi
}
for split in 25 50; do
    seed=$(ckpt $OUT/seed$split $((STEPS * split / 100)))
    bs=$(((STEPS - STEPS * split / 100 - TAIL) / 4))
    if part btx$split; then pipeline btx btx$split $seed $bs $TAIL_R $((TAIL - TAIL_R)); fi
    if part plug$split; then
        pipeline plug plug$split $seed $bs $TAIL 0
        # plug + all: the same modules (taken from plug's folder, as modules made on other
        # machines would be), a shorter router stage, then all parameters.
        mkdir -p $OUT/plugall$split/modules
        for d in $DOMAINS; do ln -sf ../../plug$split/modules/$d.h5 $OUT/plugall$split/modules/$d.h5; done
        pipeline plug plugall$split $seed $bs $TAIL_R $((TAIL - TAIL_R))
        # seed 25%: the same with the [all] stage restarted at the peak rate (the default
        # before it continued at the seed's final rate); the router stage is plugall's.
        if [ $split = 25 ]; then
            mkdir -p $OUT/plugallpeak$split/modules
            for d in $DOMAINS; do ln -sf ../../plug$split/modules/$d.h5 $OUT/plugallpeak$split/modules/$d.h5; done
            ln -sf ../plugall$split/plug.h5 $OUT/plugallpeak$split/plug.h5
            ln -sfn ../plugall$split/router $OUT/plugallpeak$split/router
            ALL_PEAK=1 pipeline plug plugallpeak$split $seed $bs $TAIL_R $((TAIL - TAIL_R))
        fi
    fi
done

# The fifth domain, Python's standard library: one more branch of the 25% seed, run alone
# (`pipeline plug --branch python`: it reads the seed and python's token set only), then
# added to plug25 with its router row below the trained rows or at python's mean router
# input, and the row fitted with the router term on the mixture of the five domains
# (--route-by-domain --router-ce 0.1 --train router=4: row 4 alone moves).
PLUG25=$(ckpt $OUT/plug25/router $TAIL)
FIT=$TAIL
if part fifth; then
    fifth_domain python25 $(ckpt $OUT/seed25 $((STEPS / 4))) $(((STEPS - STEPS / 4 - TAIL) / 4)) $TAIL $PLUG25 plug25 $FIT \
        --warmup 3 $COMMON
    # the below row fitted with ten times the router term (old domains' tokens pushed off
    # row 4 harder)
    train $OUT/fit_below_ce1 $FIT --init $OUT/plug25_py_below.h5 $DATA --data python=$OUT/python.h5 --route-by-domain \
        --router-ce 1 --train router=4 --warmup 3 $COMMON
fi

# The branches' learning rate: the code and math branches of the 25% seed again, each
# alone, at three more peak rates than [train]'s 2e-3 (the summaries give each branch's
# loss on its own domain).
if part branchlr; then
    for lr in 2e-4 6e-4 6e-3; do
        sed -e "s#^out = .*#out = $OUT/br_$lr#" -e "/^\[branch\]/a lr = $lr" $OUT/plug25.ini > $OUT/br_$lr.ini
        for d in math code; do
            [ -e $OUT/br_$lr/modules/$d.h5 ] || "$M" pipeline plug --config $OUT/br_$lr.ini --branch $d > $OUT/br_${lr}_$d.txt
        done
    done
fi

# Replacing and removing a module (issue 16, item 3): "another team's" math module, a
# math branch of the same 25% seed run alone with another data order (seed = 2) and
# twice the steps, overwrites plug25's math expert (`expert insert`; router rows and the
# other experts untouched); and plug25 without its math expert (`expert remove`).
if part replace; then
    sed -e "s#^out = .*#out = $OUT/mathB#" -e "/^\[branch\]/a seed = 2" -e "s#^steps = $(((STEPS - STEPS / 4 - TAIL) / 4))\$#steps = $(((STEPS - STEPS / 4 - TAIL) / 2))#" \
        $OUT/plug25.ini > $OUT/mathB.ini
    [ -e $OUT/mathB/modules/math.h5 ] || "$M" pipeline plug --config $OUT/mathB.ini --branch math > $OUT/mathB_summary.txt
    [ -e $OUT/plug25_mathB.h5 ] || "$M" expert insert $PLUG25 $OUT/mathB/modules/math.h5 --slot 1 -o $OUT/plug25_mathB.h5
    [ -e $OUT/plug25_nomath.h5 ] || "$M" expert remove $PLUG25 --expert math -o $OUT/plug25_nomath.h5
fi

# Validation loss of every final model on the first EVAL_BATCHES batches of 8 x 256 tokens
# of each domain's val split (0: the whole split), the same windows for every model, with
# the routing shares (ev, experiments_lib.sh).
if part eval; then
    ev dense $(ckpt $OUT/dense $STEPS)
    ev moe $(ckpt $OUT/moe $STEPS)
fi
for split in 25 50; do
    if part eval$split; then
        ev plug$split $(ckpt $OUT/plug$split/router $TAIL)
        ev plugall$split $(ckpt $OUT/plugall$split/all $((TAIL - TAIL_R)))
        ev btx$split $(ckpt $OUT/btx$split/all $((TAIL - TAIL_R)))
    fi
done
# The fifth domain's and the replaced/removed module's changes are differences between
# models on the same windows: the first EVAL_BATCHES_ADD batches of each split.
if part evalfifth; then
    EB=$EVAL_BATCHES_ADD
    DATA4=$DATA
    DATA="$DATA --data python=$OUT/python.h5"
    ev py_before $PLUG25
    for how in below mean; do
        ev py_${how}_added $OUT/plug25_py_$how.h5
        ev py_${how}_fit $(ckpt $OUT/fit_$how $FIT)
    done
    ev py_below_ce1_fit $(ckpt $OUT/fit_below_ce1 $FIT)
    DATA=$DATA4
fi
if part evalreplace; then
    EB=$EVAL_BATCHES_ADD
    ev replace_math $OUT/plug25_mathB.h5
    ev remove_math $OUT/plug25_nomath.h5
fi
if part evalpeak; then
    EB=$EVAL_BATCHES
    for split in 25 50; do
        ev plugallpeak$split $(ckpt $OUT/plugallpeak$split/all $((TAIL - TAIL_R)))
    done
fi
if part evalseeds; then
    EB=$EVAL_BATCHES
    ev seed25 $(ckpt $OUT/seed25 $((STEPS / 4)))
    ev seed50 $(ckpt $OUT/seed50 $((STEPS / 2)))
    ev seed100 $(ckpt $OUT/seed100 $STEPS)
fi

# Tables (markdown), leaving out what has not been evaluated.
if part report; then
/usr/bin/python3 - "$OUT" "$(dirname "$0")" <<'PY'
import json, os, sys
out = sys.argv[1]
def load(name):
    path = f"{out}/eval_{name}.json"
    return json.load(open(path)) if os.path.exists(path) else None
doms = ["code", "math", "legal", "speeches"]
rows = [("dense (d_ff 1024)", "dense"), ("MoE from scratch (4 x 512, top-2)", "moe"),
        ("seed 25% alone (dense d_ff 512)", "seed25"), ("seed 50% alone", "seed50"), ("dense d_ff 512 for all steps (seed 100%)", "seed100"),
        ("BTX, seed 25%", "btx25"), ("branch-train-plug, seed 25%", "plug25"), ("plug + all, seed 25%", "plugall25"),
        ("plug + all restarted at the peak lr, seed 25%", "plugallpeak25"),
        ("BTX, seed 50%", "btx50"), ("branch-train-plug, seed 50%", "plug50"), ("plug + all, seed 50%", "plugall50"),
        ("plug + all restarted at the peak lr, seed 50%", "plugallpeak50")]
print("| method | " + " | ".join(doms) + " | mean |")
print("|---|" + "---:|" * (len(doms) + 1))
for label, f in rows:
    j = load(f)
    if not j:
        continue
    xs = [j["val"][d]["loss"] for d in doms]
    print(f"| {label} | " + " | ".join(f"{x:.3f}" for x in xs) + f" | {sum(xs) / len(xs):.3f} |")
sys.path.insert(0, sys.argv[2])
from experiments_plug_report import routing as routing_of, summaries
def routing(label, f, ds):
    routing_of(label, f, ds, load)
for label, f in rows[1:]:
    routing(label, f, doms)
five = doms + ["python"]
if load("py_before"):
    print("\nthe fifth domain added to plug25 (expert 4 = the python branch of the 25% seed)\n")
    print("| model | " + " | ".join(five) + " |")
    print("|---|" + "---:|" * len(five))
    base = load("py_before")["val"]
    names = [("plug25 (4 experts)", None)]
    for how in ["below", "mean"]:
        names += [(f"+ python, row {how}, before the fit", f"py_{how}_added"), (f"+ python, row {how}, fitted", f"py_{how}_fit")]
    names += [("+ python, row below, fitted with --router-ce 1", "py_below_ce1_fit")]
    for label, f in names:
        j = {"val": base} if f is None else load(f)
        if not j:
            continue
        cells = []
        for d in five:
            x = j["val"][d]["loss"]
            cells.append(f"{x:.3f}" + ("" if f is None or d == "python" else f" ({100 * (x - base[d]['loss']) / base[d]['loss']:+.2f}%)"))
        print(f"| {label} | " + " | ".join(cells) + " |")
    for how in ["below", "mean"]:
        routing(f"+ python, row {how}, fitted", f"py_{how}_fit", five)
if load("py_before") and (load("replace_math") or load("remove_math")):
    print("\nreplacing and removing plug25's math expert (change against plug25)\n")
    print("| model | " + " | ".join(doms) + " |")
    print("|---|" + "---:|" * len(doms))
    base = load("py_before")["val"]
    for label, f in [("math expert replaced (expert insert)", "replace_math"), ("math expert removed (expert remove)", "remove_math")]:
        j = load(f)
        if j:
            print(f"| {label} | " + " | ".join(f"{j['val'][d]['loss']:.3f} ({100 * (j['val'][d]['loss'] - base[d]['loss']) / base[d]['loss']:+.2f}%)" for d in doms) + " |")
brs = [(lr, d) for lr in ["2e-4", "6e-4", "6e-3"] for d in ["code", "math"] if os.path.exists(f"{out}/br_{lr}_{d}.txt")]
if brs:
    print("\nbranch learning rate: each branch's loss on its own domain after its 40 steps (pipeline summaries)\n")
    print("| branch | seed | 2e-4 | 6e-4 | 2e-3 | 6e-3 |")
    print("|---|---:|---:|---:|---:|---:|")
    for d in ["code", "math"]:
        i = doms.index(d)
        cells = []
        for lr in ["2e-4", "6e-4", "2e-3", "6e-3"]:
            path = f"{out}/plug25_summary.txt" if lr == "2e-3" else f"{out}/br_{lr}_{d}.txt"
            val = "-"
            if os.path.exists(path):
                for line in open(path):
                    f = line.split()
                    if f and f[0] == f"branch-{d}":
                        val = f[-1] if lr != "2e-3" else f[-5 + i]
            cells.append(val)
        s0 = [line.split() for line in open(f"{out}/plug25_summary.txt") if line.startswith("seed ")][0]
        print(f"| {d} | {s0[-5 + i]} | " + " | ".join(cells) + " |")
summaries(out, ["btx25", "plug25", "plugall25", "plugallpeak25", "btx50", "plug50", "plugall50", "plugallpeak50"], "plug25")
PY
fi
