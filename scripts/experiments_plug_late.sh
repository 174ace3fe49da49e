#!/bin/bash
# experiments_plug_late.sh: the numbers of docs/experiments.md, "Branch-train-plug from a
# late seed" (issue 16): plug's seed is the dense baseline's own run at 75% or 90% of its
# steps (as wide as the baselines' active FFN), the plugged model routes top-1 over its
# domains' copies of that FFN, and the branches and router spend the remaining 25% / 10%
# of the tokens continuing the seed's learning-rate schedule ([seed] continue = true).
#
#   scripts/experiments_plug_late.sh       (from the repository root, after a build and
#                                           the four token sets of docs/data.md)
#
# The `small` preset at vocabulary 8192 (d_model 256, 4 layers), --precision bf16, batch
# 8 x 256 tokens, the four domains (code, math, legal, speeches) at equal weights, STEPS
# optimizer steps per method in all, summed over its stages:
#   dense      d_ff 1024, warmup STEPS/10 then cosine to 0.1 x 2e-3; a checkpoint every
#              STEPS/20 steps kept (plug's seeds are two of them)
#   moe        4 experts of d_ff 512, top-2 (active FFN 1024), from scratch
#   plug-S     monolith pipeline plug from dense's checkpoint at S% of STEPS (S = 75, 90):
#              four branches of B = (REM - REM/10)/4 steps each (the FFN alone, one domain
#              each, separate runs), plug (4 experts of d_ff 1024, top-1, router rows from
#              the domains' mean router inputs), router REM - 4B steps (the router alone,
#              taught the domains with --route-by-domain --router-ce 0.1, lr 2e-3), where
#              REM = STEPS - S% of STEPS: the same tokens dense spends after its checkpoint
#   plugall-S  the same modules, half the router steps, then all parameters for the other
#              half at the seed run's floor rate
#   btx-S      monolith pipeline btx from the same seed and budget (branches train every
#              parameter; mix averages the trunks; top-1; router half, all half)
# Then the fifth domain (Python's standard library) as one more branch of the 75% seed,
# added to plug-75 with its router row below the trained rows or from python's mean router
# input, and the row fitted with the router term on the five-domain mixture. Every model is
# evaluated on the whole val splits (EVAL_BATCHES=0) with its routing shares.
#
# The last round (docs/experiments.md, "Closing the gap"), each part its own:
#   gap_lr      plug-90 with the branches at 1e-3 constant, re-warmed (2 steps to 2e-3,
#               cosine to 2e-4) and at 1e-4 constant, against the continued rate
#   gap_router  plug-90 with 4 router steps and branches of 24 (the rest of the tokens)
#   gap_late    dense at 95% as the seed: branches 11 + router 6 (gap_late_r2: 12 + 2)
#   gap_batch   plug-90 with branches of batch 2 and 88 steps (the same tokens, 4x the updates)
#   control     dense from step 90% on its FFN alone (--train dense) on the mixture
#   dense2      the dense run again with --seed 2 (another initialisation and data order)
#   noise95     plug-95 from dense2's step 950, and that step's evaluation
#   noise       evaluations of dense2 and its step 900, plug-90 from dense2's checkpoint,
#               and the MoE from scratch with --seed 2 (needs dense2)
#   fifth_fit75 the fifth domain's row on plug75 fitted on code + python only (R and 4R
#               steps) and on python alone, and the forced-routing bound
#   fifth_fit75_all  the same with the whole router refitted on the five domains, R steps
#               (fifth_fit75_all_long: 4R)
#   eval_plugged  plug-90's plugged model before its router stage
# The longer budget (docs/experiments.md, "A longer budget"):
#   late_b2     plug-95 with branches of batch 2 (the same tokens, 4x the updates)
#   late_b2_2   the same from dense2's checkpoint (the second seed)
#   fifth_late  the fifth domain added to late_b2's model (FIFTH_ON=v95: gap_late's;
#               python's branch from the same seed, the row below the trained rows, fitted
#               on the five domains; the whole router refitted so too)
# Every split is a share of STEPS (B, R above; variant() refuses one whose stages do not
# add up to the steps dense has left), so `--steps 3000 --out runs/plug_3000` runs the same
# parts at 3x the budget.
# Environment (or options --steps, --out, --parts): MONOLITH (default build/monolith), OUT
# (default runs/plug_late), STEPS (default 1000; a multiple of 20), THREADS (default 1),
# EVAL_BATCHES (default 0: the whole val splits), PARTS (default every part above and
# "report"; the plug and btx parts need dense's checkpoints, fifth needs plug75). Each run is skipped
# when its output exists, so the script can be stopped and run again; two instances with
# different PARTS (e.g. PARTS=dense and PARTS=moe) use two cores. Prints markdown tables
# (PARTS containing "report").
set -euo pipefail

# The budget and the output folder also as options: --steps N (STEPS), --out DIR (OUT),
# --parts "P ..." (PARTS), e.g. `scripts/experiments_plug_late.sh --steps 3000 --out
# runs/plug_3000 --parts "dense moe"`.
while [ $# -gt 0 ]; do
    case $1 in
        --steps) STEPS=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --parts) PARTS=$2; shift 2 ;;
        *) echo "experiments_plug_late.sh: unknown option '$1' (--steps N, --out DIR, --parts \"P ...\")" >&2; exit 1 ;;
    esac
done
M=${MONOLITH:-build/monolith}
OUT=${OUT:-runs/plug_late}
STEPS=${STEPS:-1000}
THREADS=${THREADS:-1}
PARTS=" ${PARTS:-dense moe plug75 plug90 fifth btx90 btx75 eval dense2 noise noise95 gap_lr gap_router gap_late gap_late_r2 gap_batch control eval_plugged fifth_fit75 fifth_fit75_all fifth_fit75_all_long late_b2 late_b2_2 fifth_late report} "
EVAL_BATCHES=${EVAL_BATCHES:-0}
EB=$EVAL_BATCHES
# plug's seeds are dense's checkpoints at 75/90/95% of STEPS, saved every STEPS/20 steps
[[ $STEPS =~ ^[0-9]+$ ]] && [ $((STEPS % 20)) = 0 ] && [ $STEPS -ge 200 ] ||
    { echo "experiments_plug_late.sh: STEPS=$STEPS must be a multiple of 20, at least 200 (dense's checkpoints every STEPS/20 steps are plug's seeds)" >&2; exit 1; }
NAME=experiments_plug_late
source "$(dirname "$0")/experiments_lib.sh"
MODEL="--preset small --vocab-size 8192"
COMMON="--tokenizer $TOK --precision bf16 --batch 8 --seq 256 --lr 2e-3 --eval-every 0 --eval-batches 1 --threads $THREADS --log-every 50"

if part dense; then
    train $OUT/dense $STEPS $MODEL --moe-layers 0,0,0,0 --d-ff-dense 1024 $COMMON --warmup $((STEPS / 10)) \
        --save-every $((STEPS / 20)) --keep 20 $DATA
fi
# The noise: the same dense run with another initialisation and data order (--seed 2),
# its checkpoints kept too (the best plug variant's second seed is taken from it).
if part dense2; then
    train $OUT/dense2 $STEPS $MODEL --moe-layers 0,0,0,0 --d-ff-dense 1024 $COMMON --warmup $((STEPS / 10)) \
        --save-every $((STEPS / 20)) --keep 20 --seed 2 $DATA
fi
if part moe; then
    train $OUT/moe $STEPS $MODEL --n-experts 4 $COMMON --warmup $((STEPS / 10)) --save-every 0 $DATA
fi

# The pipelines from dense's checkpoint at S% of STEPS. ini METHOD OUTDIR SEED BRANCH_STEPS
# ROUTER_STEPS ALL_STEPS [EXTRA DATA LINE]
ini() {
    local method=$1 out=$2 seed=$3 bs=$4 rs=$5 as=$6 extra=${7:-}
    ini_train $out "$extra"
    printf '[seed]\ninit = %s\ncontinue = true\n\n' $seed
    printf '[branch]\nsteps = %s\n' $bs
    # BRANCH_EXTRA: more [branch] lines (a variant's learning rate), one per line
    [ -n "${BRANCH_EXTRA:-}" ] && printf '%s\n' "$BRANCH_EXTRA"
    echo
    [ $method = btx ] && echo "[mix]" || echo "[plug]"
    printf 'top_k = 1\n\n'
    # top-1 gates are 1 (renormalized over the one chosen expert), so the language-model
    # loss gives the router no gradient: the router term of forced routing teaches it the
    # domains. It is a new part, so it starts at the peak rate (no warmup) not the seed's.
    printf '[router]\nsteps = %s\nroute-by-domain = true\nrouter-ce = 0.1\nlr = 2e-3\n' $rs
    [ "$as" -gt 0 ] && printf '\n[all]\nsteps = %s\n' $as
    return 0
}
split_steps() {  # split_steps S: sets SEEDSTEP, B (branch steps), R (router steps), RA (plugall's router)
    SEEDSTEP=$((STEPS * $1 / 100))
    local rem=$((STEPS - SEEDSTEP))
    B=$(((rem - rem / 10) / 4))
    R=$((rem - 4 * B))
    RA=$((R / 2))
}
for split in 75 90; do
    split_steps $split
    seed=$(ckpt $OUT/dense $SEEDSTEP)
    if part plug$split; then
        pipeline plug plug$split $seed $B $R 0
        # plug + all: the same modules (taken from plug's folder, as modules made on other
        # machines would be), half the router steps, then all parameters.
        mkdir -p $OUT/plugall$split/modules
        for d in $DOMAINS; do ln -sf ../../plug$split/modules/$d.h5 $OUT/plugall$split/modules/$d.h5; done
        pipeline plug plugall$split $seed $B $RA $((R - RA))
    fi
    if part btx$split; then pipeline btx btx$split $seed $B $RA $((R - RA)); fi
done

# The fifth domain, Python's standard library: one more branch of the 75% seed, run alone
# (`pipeline plug --branch python`: it reads the seed and python's token set only), added
# to plug75 with its router row below the trained rows or at python's mean router input,
# and the row fitted with the router term on the mixture of the five domains
# (--route-by-domain --router-ce 0.1 --train router=4: row 4 alone moves), R steps.
split_steps 75
PLUG75=$(ckpt $OUT/plug75/router $R)
FIT=$R
# Closing the gap (the last round): plug variants from dense's checkpoints, each spending
# exactly the tokens dense spends after its checkpoint. variant NAME PCT B R [BRANCH_LINES]:
# pipeline plug from dense's checkpoint at PCT% of STEPS, branches of B steps, router of R
# steps (4B + R = the steps dense has left), BRANCH_LINES added to [branch]; then its
# evaluation on the whole val splits. DENSE (default OUT/dense) is the run the seed is from.
variant() {
    local name=$1 pct=$2 b=$3 r=$4
    BRANCH_EXTRA=${5:-}
    local seedstep=$((STEPS * pct / 100))
    [ $((4 * b + r)) = $((STEPS - seedstep)) ] || { echo "$NAME: $name spends $((4 * b + r)) steps, not $((STEPS - seedstep))" >&2; exit 1; }
    # BRANCH_BATCH=N: the branches take batches of N sequences, 8/N times as many steps
    # (the same tokens, more updates)
    local bb=${BRANCH_BATCH:-8}
    [ $bb = 8 ] || BRANCH_EXTRA="batch = $bb${BRANCH_EXTRA:+$'\n'$BRANCH_EXTRA}"
    pipeline plug $name $(ckpt ${DENSE:-$OUT/dense} $seedstep) $((b * 8 / bb)) $r 0
    ev $name $(ckpt $OUT/$name/router $r)
    BRANCH_EXTRA=
}
# std PCT: "B R", the branch and router steps of split_steps PCT (at 1,000 steps: 90 ->
# 22 12, 95 -> 11 6); with_router PCT R: "B R" with the router's R steps given and the
# branches the rest (variant refuses the split when 4B + R does not add up)
std() { split_steps $1; echo $B $R; }
with_router() { split_steps $1; echo $(((STEPS - SEEDSTEP - $2) / 4)) $2; }
# the branches at a higher rate than the seed's decayed one: constant 1e-3, or re-warmed
# (2 steps to the peak 2e-3, cosine to 2e-4)
LR_CONST=$'lr = 1e-3\nschedule = constant'
LR_REWARM=$'lr = 2e-3\nlr-floor = 0.1\nschedule = cosine\nwarmup = 2'
if part gap_lr; then
    variant v90_lrc 90 $(std 90) "$LR_CONST"
    variant v90_rewarm 90 $(std 90) "$LR_REWARM"
fi
# a lower rate than the continued one (the higher ones lost)
if part gap_lr; then variant v90_lrlow 90 $(std 90) $'lr = 1e-4\nschedule = constant'; fi
# the router's share cut from 12 steps to 4 (the plugged model before any router step is
# within 0.002 of the trained one), the branches get the rest
if part gap_router; then variant v90_r4 90 $(with_router 90 $((STEPS / 250))); fi
# the seed at 95%: 50 steps left
if part gap_late; then
    variant v95 95 $(std 95)
    ev seed95 $(ckpt $OUT/dense $((STEPS * 95 / 100)))
fi
# the branches with 4x as many updates (batch 2, 88 steps: the same tokens), since one FFN
# trained on the mixture (control, below) got 100 updates to each branch's 22
if part gap_batch; then BRANCH_BATCH=2 variant v90_b2 90 $(std 90); fi
# The control: dense's last 10% spent on its FFN alone (trunk frozen, --train dense) on the
# mixture, at the rate plug's branches get: what one shared FFN gains where plug's four
# domain FFNs gained 0.023.
if part control; then
    s0=$((STEPS * 90 / 100))
    r0=$(awk -v s=$s0 -v n=$STEPS -v w=$((STEPS / 10)) 'BEGIN { printf "%.10g", 2e-4 + 1.8e-3 * (1 + cos(3.14159265358979 * (s - w) / (n - w))) / 2 }')
    train $OUT/ffn_only90 $((STEPS - s0)) --init $(ckpt $OUT/dense $s0) $DATA --train dense --lr $r0 \
        --lr-floor $(awk -v r=$r0 'BEGIN { printf "%.10g", 2e-4 / r }') --warmup 0 --tokenizer $TOK --precision bf16 \
        --batch 8 --seq 256 --eval-every 0 --eval-batches 1 --threads $THREADS --log-every 50 --save-every 0
    ev ffn_only90 $(ckpt $OUT/ffn_only90 $((STEPS - s0)))
fi
# plug-95 with the branches of batch 2 (4x the updates at the same tokens, as v90_b2), from
# dense's step 95% and from dense2's
if part late_b2; then BRANCH_BATCH=2 variant v95_b2 95 $(std 95); fi
if part late_b2_2; then DENSE=$OUT/dense2 BRANCH_BATCH=2 variant plug95_b2_2 95 $(std 95); fi
if part gap_late_r2; then variant v95_r2 95 $(with_router 95 $((STEPS / 500))); fi
# The noise: dense, the MoE and plug-90 again with --seed 2 (initialisation and data
# order; dense2 above, then plug from its own checkpoint)
if part noise; then
    ev dense2 $(ckpt $OUT/dense2 $STEPS)
    ev seed90_2 $(ckpt $OUT/dense2 $((STEPS * 90 / 100)))
    DENSE=$OUT/dense2 variant plug90_2 90 $(std 90)
    train $OUT/moe2 $STEPS $MODEL --n-experts 4 $COMMON --warmup $((STEPS / 10)) --save-every 0 --seed 2 $DATA
    ev moe2 $(ckpt $OUT/moe2 $STEPS)
fi
# the second seed of plug-95 (the best variant), from dense2's own step 950
if part noise95; then
    DENSE=$OUT/dense2 variant plug95_2 95 $(std 95)
    ev seed95_2 $(ckpt $OUT/dense2 $((STEPS * 95 / 100)))
fi
if part fifth; then
    fifth_domain python75 $(ckpt $OUT/dense $SEEDSTEP) $B $R $PLUG75 plug75 $FIT --warmup 0 --save-every 0 $COMMON
    # the below row fitted four times as long (the router term keeps old tokens off it)
    train $OUT/fit_below_long $((4 * FIT)) --init $OUT/plug75_py_below.h5 $DATA --data python=$OUT/python.h5 \
        --route-by-domain --router-ce 0.1 --train router=4 --warmup 0 --save-every 0 $COMMON
fi

# The fifth domain's router-row fit, so that python's tokens reach its expert and the old
# four move < 0.5%. fit NAME INIT STEPS DATA_FLAGS [TRAIN_FLAGS]: row 4 alone (--train
# router=4) with the router term of forced routing on DATA_FLAGS' domains, then NAME's
# evaluation on the five domains' whole val splits.
D5="$DATA --data python=$OUT/python.h5"
fit() {
    local name=$1 init=$2 steps=$3 data=$4
    shift 4
    train $OUT/$name $steps --init $init $data --route-by-domain --router-ce 0.1 --train ${FIT_TRAIN:-router=4} --warmup 0 \
        --save-every 0 $COMMON "$@"
    DATA=$D5 ev $name $(ckpt $OUT/$name $steps)
}
CP="--data code=$C/code.h5 --data python=$OUT/python.h5"
if part fifth_fit75; then
    split_steps 75
    # the perfect routing (every domain forced to its expert): the best the row can give
    DATA=$D5 ev py_below_forced $OUT/plug75_py_below.h5 --route-by-domain
    fit fit75_cp $OUT/plug75_py_below.h5 $R "$CP"               # the router term on code and python only
    fit fit75_cp_long $OUT/plug75_py_below.h5 $((4 * R)) "$CP"
    fit fit75_py $OUT/plug75_py_below.h5 $R "--data python=$OUT/python.h5"   # python alone
fi
# the whole router (every row, the old four too) refitted on the five domains: the old
# rows may learn to give python away, as the forced bound shows they lose nothing by it
if part fifth_fit75_all; then
    split_steps 75
    FIT_TRAIN=router fit fit75_all $OUT/plug75_py_below.h5 $R "$D5"
fi
if part fifth_fit75_all_long; then
    split_steps 75
    FIT_TRAIN=router fit fit75_all_long $OUT/plug75_py_below.h5 $((4 * R)) "$D5"
fi
# The fifth domain on plug-95 (FIFTH_ON: v95_b2, part late_b2, by default; v95, part
# gap_late, with branches of batch 8): python's branch from the same seed (dense's step
# 95%, the batch and steps each old branch got; run alone with --branch python), `expert
# add --router-init below`, then the recipe that kept plug75's old four within 0.5%: the
# row alone fitted with the router term on the five domains for as many steps as there
# (plug75's router steps: 26 at 1,000; fit95_b2 / fit95), and the whole router refitted so
# (fit95_b2_all / fit95_all); the model before (v95_b2_5 / v95_5: the four experts on the
# five val splits) and the forced bound.
if part fifth_late; then
    on=${FIFTH_ON:-v95_b2}
    bb=8
    [[ $on == *_b2 ]] && bb=2
    split_steps 75
    FIT5=$R
    split_steps 95
    python_set
    PLUGGED=$(ckpt $OUT/$on/router $R)
    [ -e $PLUGGED ] || { echo "$NAME: fifth_late needs $PLUGGED (part late_b2 or gap_late)" >&2; exit 1; }
    [ $bb = 8 ] || BRANCH_EXTRA="batch = $bb"
    ini plug $OUT/python${on#v} $(ckpt $OUT/dense $SEEDSTEP) $((B * 8 / bb)) $R 0 python=$OUT/python.h5 \
        > $OUT/python${on#v}.ini
    BRANCH_EXTRA=
    [ -e $OUT/python${on#v}/modules/python.h5 ] || "$M" pipeline plug --config $OUT/python${on#v}.ini --branch python \
        > $OUT/python${on#v}_summary.txt
    [ -e $OUT/${on}_py_below.h5 ] || "$M" expert add $PLUGGED $OUT/python${on#v}/modules/python.h5 --router-init below \
        $D5 -o $OUT/${on}_py_below.h5 | tee $OUT/${on}_py_below.txt
    DATA=$D5 ev ${on}_5 $PLUGGED
    DATA=$D5 ev ${on}_py_forced $OUT/${on}_py_below.h5 --route-by-domain
    fit fit${on#v} $OUT/${on}_py_below.h5 $FIT5 "$D5"
    FIT_TRAIN=router fit fit${on#v}_all $OUT/${on}_py_below.h5 $FIT5 "$D5"
fi
# Validation loss of every final model on the whole val splits (EVAL_BATCHES=0), with the
# routing shares (ev, experiments_lib.sh).
if part eval_plugged; then
    ev plug90_plugged $OUT/plug90/plug.h5
fi
if part eval; then
    ev dense $(ckpt $OUT/dense $STEPS)
    ev moe $(ckpt $OUT/moe $STEPS)
    ev seed95 $(ckpt $OUT/dense $((STEPS * 95 / 100)))
    for split in 75 90; do
        split_steps $split
        ev seed$split $(ckpt $OUT/dense $SEEDSTEP)
        if [ $split = 90 ]; then ev plug$split $(ckpt $OUT/plug$split/router $R); fi
        ev plugall$split $(ckpt $OUT/plugall$split/all $((R - RA)))
        ev btx$split $(ckpt $OUT/btx$split/all $((R - RA)))
    done
    # plug75 on the five domains' val splits: its row of the main table and the "before"
    # of the fifth domain's.
    split_steps 75
    DATA="$DATA --data python=$OUT/python.h5"
    ev plug75 $PLUG75
    ln -sf eval_plug75.json $OUT/eval_py_before.json
    ev py_below_long_fit $(ckpt $OUT/fit_below_long $((4 * FIT)))
    for how in below mean; do
        ev py_${how}_fit $(ckpt $OUT/fit_$how $FIT)
        ev py_${how}_added $OUT/plug75_py_$how.h5
    done
fi

if part report; then
    /usr/bin/python3 "$(dirname "$0")/experiments_plug_report.py" "$OUT"
fi
