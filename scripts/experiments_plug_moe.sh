#!/bin/bash
# experiments_plug_moe.sh: the numbers of docs/experiments.md, "Branch-train-plug from a MoE
# seed" (issue 16): plug whose seed is the MoE-from-scratch run itself at 95% of its steps,
# each domain's branch training one of that MoE's experts, at the budget of
# experiments_plug_late.sh --steps 3000 (its dense, moe and plug-95 are the baselines; run
# that script's parts dense and moe first, into the same OUT).
#
#   scripts/experiments_plug_moe.sh        (from the repository root, after a build, the
#                                           four token sets of docs/data.md and
#                                           `scripts/experiments_plug_late.sh --steps 3000
#                                           --out runs/plug_3000 --parts "dense moe"`)
#
# Parts (PARTS, default all of them and "report"):
#   moe_seed   the MoE run (OUT/moe: small preset, 4 experts of d_ff 512, top-2) again from
#              its checkpoint at step 1013 with the same run.ini, checkpoints every 950 steps:
#              its step 2850 is the seed (95% of 3,000) and its step 3000 is the MoE baseline
#              of this table (resume continues the same cosine schedule: --save-every only
#              decides which steps are written). Needs OUT/moe/ckpt-00001013.h5 (the run was
#              stopped there by a signal); from a fresh MoE run use any checkpoint below 2850.
#   assign     the seed's routing shares on the first 16 val batches of each domain
#              (eval_moeseed95_assign.json) and expert_of: the one-to-one domain -> expert map
#              with the largest summed share (mean over the MoE layers), into
#              OUT/moe95_expert_of.txt
#   pmoe95     monolith pipeline plug from the seed: four branches of 33 steps (one chosen
#              expert each, --train experts=E, on its own domain, separate runs), plug into =
#              replace (module d over expert E_d), router 18 steps on the mixture with the
#              language-model loss (top-2 gates train it), continuing the seed's rate;
#              4 x 33 + 18 = 150 steps = the MoE run's last 5%
#   pmoe95_add the same modules beside the seed's four experts (8 experts, top-2: the same
#              active FLOPs per token), new rows below, router 18 steps taught the domains
#              with the router term of forced routing (--route-by-domain --router-ce 0.1)
#   fifth      the fifth domain (Python's standard library) on pmoe95: a branch of the seed
#              on python training the expert python's tokens route to most (alone, --branch
#              python), `expert add --router-init below`, then the row fitted with the router
#              term on the five domains (26 steps, as plug's fifth domain before); the old
#              four's movement against pmoe95 on the five val splits
#   eval       every model on the whole val splits (EVAL_BATCHES=0) with its routing shares
#   pall_33_18, pall_25_50
#              branch-train-plug + an all-parameter stage: the same 150 steps as branches of
#              33 / 25 steps, no router stage ([router] steps = 0), [all] 18 / 50 steps at the
#              seed run's floor rate with fresh Adam moments (each evaluated whole)
#   pall_33_18m, pall_25_50m
#              the same with [all] moments-from = the seed (its Adam moments and step count)
#   pall_12_102m
#              branches 12, all 102 (the seed's moments)
#   pall_25_50bm, pmoe95bm
#              the seed's moments in the branches too (with all 50; with router 18)
#   all150, all150m
#              controls: every parameter for 150 steps from the seed (fresh Adam; the seed's
#              moments), the [all] stage's rate
#   fifth_all  the fifth domain on pall_25_50m (FIFTH_ON): python's branch from that final
#              model (its trunk moved), expert add below, the row fitted 26 steps
#   fifth_fit  the fifth domain on FIFTH_ON with `expert add --router-init fit`, then the row
#              refined 26 steps by the router term under supervised routing
#              (FIFTH_ON=pall_25_50m_2 PARTS="fifth_all fifth_fit": on the seed-2 plug)
#   moesup     a seed whose router separates the domains: the MoE run again from its step
#              1900 with supervised routing (--route-by-domain --supervise-routing), to 3000
#   sup_plug   branches 25 + all 50 (the seed's moments) from moesup's step 2850, against
#              the MoE from scratch and moesup's own step 3000
#   moe2       (not in the default PARTS) the MoE from scratch with --seed 2, checkpoints every
#              950 steps (over an hour on one core)
#   seed2      pall_25_50m from moe2's step 2850 against moe2's step 3000
#   pilot      (not in the default PARTS) the same at the tiny preset and 1,000 steps, in
#              OUT/pilot_tiny: a MoE from scratch (tiny: 4 experts, top-2) with checkpoints
#              every 50 steps, plug from its step 950 (branches 11, router 6: its last 5%),
#              replace and add, each evaluated on the whole val splits against the MoE's own
#              step 1000
# Environment: MONOLITH (default build/monolith), OUT (default runs/plug_3000), THREADS
# (default 1), EVAL_BATCHES (default 0), PARTS. Each run is skipped when its output exists.
set -euo pipefail
M=${MONOLITH:-build/monolith}
OUT=${OUT:-runs/plug_3000}
STEPS=3000
THREADS=${THREADS:-1}
PARTS=" ${PARTS:-moe_seed assign pmoe95 pmoe95_add fifth eval report} "
EVAL_BATCHES=${EVAL_BATCHES:-0}
EB=$EVAL_BATCHES
NAME=experiments_plug_moe
source "$(dirname "$0")/experiments_lib.sh"
SEED_RUN=$OUT/moe_to2850
SEED=$(ckpt $SEED_RUN 2850)
B=33 R=18
# branches + router spend the MoE run's last 5%
[ $((4 * B + R)) = $((STEPS - 2850)) ] || { echo "$NAME: 4 x $B + $R is not $((STEPS - 2850))" >&2; exit 1; }

# the second seed: the MoE from scratch again with --seed 2 (another initialisation and data
# order), checkpoints every 950 steps so that its step 2850 is the seed of the paired plug runs
if part moe2; then
    train $OUT/moe2_to2850 $STEPS --preset small --vocab-size 8192 --n-experts 4 --tokenizer $TOK --precision bf16 \
        --batch 8 --seq 256 --lr 2e-3 --warmup $((STEPS / 10)) --eval-every 0 --eval-batches 1 --threads $THREADS \
        --log-every 50 --save-every 950 --keep 3 --seed 2 $DATA
fi

if part moe_seed && [ ! -e $(ckpt $SEED_RUN $STEPS) ]; then
    if [ ! -e $SEED_RUN/run.ini ]; then
        [ -e $OUT/moe/ckpt-00001013.h5 ] || { echo "$NAME: needs $OUT/moe/ckpt-00001013.h5" >&2; exit 1; }
        mkdir -p $SEED_RUN
        cp $OUT/moe/ckpt-00001013.h5 $SEED_RUN/
        sed -e 's/^save-every = 0$/save-every = 950/' -e "s#^out = .*#out = $SEED_RUN#" $OUT/moe/run.ini > $SEED_RUN/run.ini
        # the metrics up to the checkpoint (a resumed run drops later lines anyway)
        python3 -c "import json,sys; [sys.stdout.write(l) for l in open('$OUT/moe/metrics.jsonl') if json.loads(l).get('step', 0) <= 1013]" \
            > $SEED_RUN/metrics.jsonl
    fi
    echo "resume $SEED_RUN $(date -u +%H:%M:%S)"
    "$M" train --resume $SEED_RUN --threads $THREADS
fi

# the plug INI over the seed: ini_plug NAME INTO EXPERT_OF [EXTRA DATA LINE]
ini_plug() {
    local name=$1 into=$2 of=$3 extra=${4:-}
    ini_train $OUT/$name "$extra"
    printf '[seed]\ninit = %s\ncontinue = true\n\n[branch]\nsteps = %s\n\n' $SEED $B
    printf '[plug]\nexpert_of = %s\ninto = %s\n\n[router]\nsteps = %s\n' "$of" $into $R
    # the all-parameter stage (parts pall_*): at the seed run's floor rate, constant; MOM=all
    # or MOM=both: Adam's moments (and step count) continued from the seed (--moments-from)
    if [ "${A:-0}" -gt 0 ]; then printf '\n[all]\nsteps = %s\n' $A; fi
    if [ "${A:-0}" -gt 0 ] && [ "${MOM:-}" ]; then printf 'moments-from = %s\n' $SEED; fi
    if [ "${MOM:-}" = both ]; then printf '\n[branch]\nmoments-from = %s\n' $SEED; fi
    # add: the new rows start below and take no token, so the language-model loss cannot
    # lift them: the router term of forced routing teaches them the domains (a new part:
    # the peak rate, as plug-95's router)
    if [ $into = add ]; then printf 'route-by-domain = true\nrouter-ce = 0.1\nlr = 2e-3\n'; fi
    return 0
}
# assign: the seed's shares on 16 val batches per domain, then the one-to-one domain ->
# expert map with the largest summed share into OUT/moe95_expert_of.txt
assign() {  # assign [SEED TAG FILE]: defaults $SEED, moeseed95, OUT/moe95_expert_of.txt
    local seed=${1:-$SEED} tag=${2:-moeseed95} of=${3:-$OUT/moe95_expert_of.txt}
    EB=16 ev ${tag}_assign $seed
    [ -e $of ] || python3 - $OUT/eval_${tag}_assign.json > $of <<'EOF'
import itertools, json, sys
share = json.load(open(sys.argv[1]))["routing_share"]
doms = ["code", "math", "legal", "speeches"]
best = max(itertools.permutations(range(4)), key=lambda p: sum(share[d]["mean"][p[i]] for i, d in enumerate(doms)))
print(", ".join(f"{d}={e}" for d, e in zip(doms, best)))
EOF
}
if part assign; then assign; fi
OF=$(cat $OUT/moe95_expert_of.txt 2>/dev/null || true)
plug_run() {  # plug_run NAME INTO
    [ -n "$OF" ] || { echo "$NAME: part assign first ($OUT/moe95_expert_of.txt)" >&2; exit 1; }
    ini_plug $1 $2 "$OF" > $OUT/$1.ini
    if grep -qs '^final model' $OUT/$1_summary.txt; then echo "skip $1"; return; fi
    echo "pipeline plug $1 $(date -u +%H:%M:%S)"
    "$M" pipeline plug --config $OUT/$1.ini > $OUT/$1_summary.txt
}
if part pmoe95; then plug_run pmoe95 replace; fi
if part pmoe95_add; then
    # the same modules (made by pmoe95's branches, taken as modules from elsewhere would be)
    mkdir -p $OUT/pmoe95_add/modules
    for d in $DOMAINS; do ln -sf ../../pmoe95/modules/$d.h5 $OUT/pmoe95_add/modules/$d.h5; done
    plug_run pmoe95_add add
fi

# Branch-train-plug + an all-parameter stage: the same 150-step tail spent as branches of B
# steps, a router stage of R (0: none) and every parameter on the mixture for A steps (the
# [all] stage: from the plugged model, at the seed run's floor rate 2e-4, constant, fresh
# Adam), 4 B + R + A = 150. plug_tail NAME B R A [FOLDER whose modules are taken]
plug_tail() {
    local name=$1 from=${5:-}
    [ $((4 * $2 + $3 + $4)) = $((STEPS - 2850)) ] || { echo "$NAME: $name: 4 x $2 + $3 + $4 is not 150" >&2; exit 1; }
    if [ -n "$from" ]; then
        mkdir -p $OUT/$name/modules
        for d in $DOMAINS; do ln -sf ../../$from/modules/$d.h5 $OUT/$name/modules/$d.h5; done
    fi
    B=$2 R=$3 A=$4 plug_run $name replace
    ev $name "$(sed -n 's/^final model: //p' $OUT/${name}_summary.txt)"
}
# branches 33 (pmoe95's modules), no router stage, all 18
if part pall_33_18; then plug_tail pall_33_18 33 0 18 pmoe95; fi
# branches 25, all 50
if part pall_25_50; then plug_tail pall_25_50 25 0 50; fi
# the same with the seed's Adam moments in the all stage (m), and in the branches too (bm)
if part pall_33_18m; then MOM=all plug_tail pall_33_18m 33 0 18 pmoe95; fi
if part pall_25_50m; then MOM=all plug_tail pall_25_50m 25 0 50 pall_25_50; fi
# a third of the tail in branches: branches 12, all 102 (the seed's moments)
if part pall_12_102m; then MOM=all plug_tail pall_12_102m 12 0 102; fi
if part pall_25_50bm; then MOM=both plug_tail pall_25_50bm 25 0 50; fi
if part pmoe95bm; then MOM=both plug_tail pmoe95bm 33 18 0; fi
# the control: all 150 steps from the seed itself, as the [all] stage runs them (fresh Adam,
# constant 2e-4); against the MoE run's own last 150 steps (its Adam state, the cosine's
# last 150 steps) it says what the [all] stage's restart costs
if part all150; then
    train $OUT/all150 150 --init $SEED $DATA --tokenizer $TOK --precision bf16 --batch 8 --seq 256 --lr 2e-4 \
        --schedule constant --warmup 0 --eval-every 0 --eval-batches 1 --save-every 0 --threads $THREADS --log-every 50
    ev all150 $(ckpt $OUT/all150 150)
fi
# and with the seed's moments: the MoE run's own last 150 steps but for the rate (constant at
# the floor instead of the cosine's last 150 steps) and the data order (a new run's)
if part all150m; then
    train $OUT/all150m 150 --init $SEED --moments-from $SEED $DATA --tokenizer $TOK --precision bf16 --batch 8 \
        --seq 256 --lr 2e-4 --schedule constant --warmup 0 --eval-every 0 --eval-batches 1 --save-every 0 \
        --threads $THREADS --log-every 50
    ev all150m $(ckpt $OUT/all150m 150)
fi

# the fifth domain on pmoe95: python's branch trains the seed's expert python routes to most
D5="$DATA --data python=$OUT/python.h5"
PM=$(ckpt $OUT/pmoe95/router $R)
FIT5=26
if part fifth; then
    python_set
    DATA=$D5 EB=16 ev moeseed95_5_assign $SEED
    pe=$(python3 -c "import json; m=json.load(open('$OUT/eval_moeseed95_5_assign.json'))['routing_share']['python']['mean']; print(m.index(max(m)))")
    # every domain of [train] needs an expert in expert_of, and python's may be one an old
    # domain also trains (into = add allows that); the lone branch reads python's data alone
    ini_plug python_moe95 add "$OF, python=$pe" python=$OUT/python.h5 > $OUT/python_moe95.ini
    [ -e $OUT/python_moe95/modules/python.h5 ] || "$M" pipeline plug --config $OUT/python_moe95.ini --branch python \
        > $OUT/python_moe95_summary.txt
    [ -e $OUT/pmoe95_py_below.h5 ] || "$M" expert add $PM $OUT/python_moe95/modules/python.h5 --router-init below \
        $D5 -o $OUT/pmoe95_py_below.h5 | tee $OUT/pmoe95_py_below.txt
    DATA=$D5 ev pmoe95_5 $PM
    train $OUT/fit_pmoe95 $FIT5 --init $OUT/pmoe95_py_below.h5 $D5 --route-by-domain --router-ce 0.1 --train router=4 \
        --warmup 0 --save-every 0 --tokenizer $TOK --precision bf16 --batch 8 --seq 256 --lr 2e-3 --eval-every 0 \
        --eval-batches 1 --threads $THREADS --log-every 50
    DATA=$D5 ev fit_pmoe95 $(ckpt $OUT/fit_pmoe95 $FIT5)
fi

# the fifth domain on a plugged model whose all stage moved the trunk (pall_25_50m): its
# modules' seed_hash is no longer the model's trunk, so python's branch starts from the
# final model itself ([seed] init = it, the expert python's tokens route to most there,
# 33 steps, a separate run that reads that file and python's data only), then `expert add
# --router-init below` and the row fitted as above; the old four's movement against that
# model on the five val splits
FIFTH_ON=${FIFTH_ON:-pall_25_50m}
# FIFTH_INIT: where python's router row starts (below, the default; mean: at python's mean
# router input, the row's norm bounded; outputs ..._py_mean.h5, fit_..._mean)
FIFTH_INIT=${FIFTH_INIT:-below}
if part fifth_all; then
    python_set
    FIN=$(sed -n 's/^final model: //p' $OUT/${FIFTH_ON}_summary.txt)
    [ -e "$FIN" ] || { echo "$NAME: fifth_all needs $FIFTH_ON's final model (part $FIFTH_ON)" >&2; exit 1; }
    DATA=$D5 EB=16 ev ${FIFTH_ON}_5_assign $FIN
    pe=$(python3 -c "import json; m=json.load(open('$OUT/eval_${FIFTH_ON}_5_assign.json'))['routing_share']['python']['mean']; print(m.index(max(m)))")
    SEED=$FIN ini_plug python_$FIFTH_ON add "$OF, python=$pe" python=$OUT/python.h5 > $OUT/python_$FIFTH_ON.ini
    [ -e $OUT/python_$FIFTH_ON/modules/python.h5 ] || "$M" pipeline plug --config $OUT/python_$FIFTH_ON.ini \
        --branch python > $OUT/python_${FIFTH_ON}_summary.txt
    added=$OUT/${FIFTH_ON}_py_$FIFTH_INIT.h5 fit=$OUT/fit_$FIFTH_ON
    [ $FIFTH_INIT = below ] || fit=${fit}_$FIFTH_INIT
    [ -e $added ] || "$M" expert add $FIN $OUT/python_$FIFTH_ON/modules/python.h5 --router-init $FIFTH_INIT $D5 \
        -o $added | tee ${added%.h5}.txt
    DATA=$D5 ev ${FIFTH_ON}_5 $FIN
    train $fit $FIT5 --init $added $D5 --route-by-domain --router-ce 0.1 --train router=4 --warmup 0 --save-every 0 \
        --tokenizer $TOK --precision bf16 --batch 8 --seq 256 --lr 2e-3 --eval-every 0 --eval-batches 1 \
        --threads $THREADS --log-every 50
    DATA=$D5 ev ${fit#$OUT/} $(ckpt $fit $FIT5)
fi

# the fifth domain with a fitted row (part fifth_all first, for python's module and the
# 4-expert model's evaluation): `expert add --router-init fit` (the row's logit above the
# trained rows' on python's sampled tokens and below the k-th on the old four's, a
# regularised logistic fit on 8 batches per domain; a layer where it does not separate
# leaves the expert out), evaluated as it is; then the row refined by the router term with
# supervised routing (the domains' experts as targets, routing stays top-2, row 4 alone)
if part fifth_fit; then
    FIN=$(sed -n 's/^final model: //p' $OUT/${FIFTH_ON}_summary.txt)
    added=$OUT/${FIFTH_ON}_py_fit.h5
    [ -e $added ] || "$M" expert add $FIN $OUT/python_$FIFTH_ON/modules/python.h5 --router-init fit --batches 8 $D5 \
        -o $added | tee ${added%.h5}.txt
    DATA=$D5 ev ${FIFTH_ON}_py_fit $added
    train $OUT/fit_${FIFTH_ON}_fit_sup $FIT5 --init $added $D5 --route-by-domain --supervise-routing --router-ce 1 \
        --train router=4 --warmup 0 --save-every 0 --tokenizer $TOK --precision bf16 --batch 8 --seq 256 --lr 2e-3 \
        --eval-every 0 --eval-batches 1 --threads $THREADS --log-every 50
    DATA=$D5 ev fit_${FIFTH_ON}_fit_sup $(ckpt $OUT/fit_${FIFTH_ON}_fit_sup $FIT5)
fi

# A seed whose router separates the domains: the MoE run continued from its step 1900 (a
# copy of the run folder, resumed: the same cosine schedule, data stream and Adam state)
# with supervised routing (--route-by-domain --supervise-routing --router-ce 0.1: domain d's
# tokens are the router term's targets for expert d, routing stays top-2), checkpoints every
# 950 steps; its step 2850 is the seed of the best variant (branches 25, all 50 with the
# seed's moments, expert_of from its own routing), its step 3000 the supervised MoE itself.
# The seed's tokens are the MoE run's: steps 1 to 1900 as it ran, 1901 to 2850 supervised.
# SUP_CE: the router term's weight (default 0.1; another value adds its digits to every
# name: SUP_CE=0.03 -> moesup003_to2850, pall_25_50m_sup003, ...)
SUP_CE=${SUP_CE:-0.1}
SUP=$( [ "$SUP_CE" = 0.1 ] || echo "$SUP_CE" | tr -d .)
SUP_RUN=$OUT/moesup${SUP}_to2850
if part moesup && [ ! -e $(ckpt $SUP_RUN 2850) ]; then
    if [ ! -e $SUP_RUN/run.ini ]; then
        mkdir -p $SUP_RUN
        cp $SEED_RUN/ckpt-00001900.h5 $SUP_RUN/
        sed -e 's/^route-by-domain = false$/route-by-domain = true\nsupervise-routing = true/' \
            -e "s#^out = .*#out = $SUP_RUN#" -e "s/^router-ce = .*/router-ce = $SUP_CE/" $SEED_RUN/run.ini \
            > $SUP_RUN/run.ini
        python3 -c "import json,sys; [sys.stdout.write(l) for l in open('$SEED_RUN/metrics.jsonl') if json.loads(l).get('step', 0) <= 1900]" \
            > $SUP_RUN/metrics.jsonl
    fi
    echo "resume $SUP_RUN $(date -u +%H:%M:%S)"
    "$M" train --resume $SUP_RUN --threads $THREADS
fi
if part sup_plug; then
    SEEDS=$(ckpt $SUP_RUN 2850)
    [ -e $SEEDS ] || { echo "$NAME: sup_plug needs $SEEDS (part moesup)" >&2; exit 1; }
    assign $SEEDS moesup${SUP}seed95 $OUT/moesup${SUP}95_expert_of.txt
    SEED=$SEEDS OF=$(cat $OUT/moesup${SUP}95_expert_of.txt) MOM=all plug_tail pall_25_50m_sup$SUP 25 0 50
    ev moesup$SUP $(ckpt $SUP_RUN $STEPS)
    ev moesup${SUP}seed95 $SEEDS
fi

# the second seed (part moe2 first): the best variant (branches 25, all 50 with the seed's
# moments) from the seed-2 MoE's own step 2850, its expert_of chosen the same way, against
# that run's own step 3000
if part seed2; then
    SEED2=$(ckpt $OUT/moe2_to2850 2850)
    [ -e $SEED2 ] || { echo "$NAME: seed2 needs $SEED2 (part moe2)" >&2; exit 1; }
    assign $SEED2 moeseed95_2 $OUT/moe95_2_expert_of.txt
    SEED=$SEED2 OF=$(cat $OUT/moe95_2_expert_of.txt) MOM=all plug_tail pall_25_50m_2 25 0 50
    ev moe2 $(ckpt $OUT/moe2_to2850 $STEPS)
    ev moeseed95_2 $SEED2
fi

if part eval; then
    ev moe_rerun $(ckpt $SEED_RUN $STEPS)
    ev moeseed95 $SEED
    ev pmoe95_plugged $OUT/pmoe95/plug.h5
    ev pmoe95 $PM
    ev pmoe95_add_plugged $OUT/pmoe95_add/plug.h5
    ev pmoe95_add $(ckpt $OUT/pmoe95_add/router $R)
fi
# the pilot: the same steps at the tiny preset and a third of the budget (minutes, not hours)
if part pilot; then
    OUT=$OUT/pilot_tiny
    mkdir -p $OUT
    train $OUT/moe 1000 --preset tiny --vocab-size 8192 --tokenizer $TOK --precision bf16 --batch 8 --seq 256 \
        --lr 2e-3 --warmup 100 --eval-every 0 --eval-batches 1 --threads $THREADS --log-every 100 --save-every 50 \
        --keep 3 $DATA
    SEED=$(ckpt $OUT/moe 950) B=11 R=6
    assign
    OF=$(cat $OUT/moe95_expert_of.txt)
    plug_run pmoe95 replace
    mkdir -p $OUT/pmoe95_add/modules
    for d in $DOMAINS; do ln -sf ../../pmoe95/modules/$d.h5 $OUT/pmoe95_add/modules/$d.h5; done
    plug_run pmoe95_add add
    ev moe_rerun $(ckpt $OUT/moe 1000)
    ev moeseed95 $SEED
    ev pmoe95_plugged $OUT/pmoe95/plug.h5
    ev pmoe95 $(ckpt $OUT/pmoe95/router $R)
    ev pmoe95_add_plugged $OUT/pmoe95_add/plug.h5
    ev pmoe95_add $(ckpt $OUT/pmoe95_add/router $R)
    /usr/bin/python3 "$(dirname "$0")/experiments_plug_moe_report.py" "$OUT" "tiny, 1,000 steps, 2,048,000 tokens" \
        > $OUT/report.md
fi
if part report; then
    /usr/bin/python3 "$(dirname "$0")/experiments_plug_moe_report.py" "$OUT"
fi
