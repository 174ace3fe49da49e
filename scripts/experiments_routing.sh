#!/bin/bash
# experiments_routing.sh: the numbers of docs/experiments.md, "Routing variants".
#
#   scripts/experiments_routing.sh            (from the repository root, after a build)
#
# Seven routers on the four real domains (data/corpora/{code,math,legal,speeches}.h5 and
# data/corpora/mono8k.tiktoken, made as docs/data.md says), each the `small` preset
# (4 layers, d_model 256) with the same active FFN width per token (1024 hidden units),
# the same data, batches, steps and seed:
#   softmax_aux   today's router: softmax top-2 of 8, Switch aux loss 0.01
#   sigmoid_bias  sigmoid scores, bias balancing (rate 1e-3), no aux loss
#   cap100        softmax top-2 + aux, capacity factor 1.0 (drops)
#   cap125        softmax top-2 + aux, capacity factor 1.25 (drops)
#   noisy         softmax top-2 + aux, router noise 1.0 in training
#   topp50        softmax top-p 0.5 with top_k 4 + aux (dynamic experts per token)
#   fine          32 experts of d_ff 128, top-7, plus 1 shared expert of 128 + aux
# Then `monolith eval` on each (per-domain loss, routing matrix, dropped fraction, experts
# per token) and scripts/experiments_routing.py for the table, the load-balance plot and
# the mutual information between domain and expert.
#
# Environment: MONOLITH (binary, default build/monolith), OUT (default runs/routing),
# STEPS (default 72), SEED (default 1), JOBS (runs at once, default 2), RUNS (default
# all seven names above). Each run is skipped when its final checkpoint exists.
set -euo pipefail

M=${MONOLITH:-build/monolith}
OUT=${OUT:-runs/routing}
STEPS=${STEPS:-72}
SEED=${SEED:-1}
JOBS=${JOBS:-2}
RUNS=${RUNS:-fine topp50 softmax_aux sigmoid_bias cap100 cap125 noisy}
NAME=experiments_routing
source "$(dirname "$0")/experiments_lib.sh"
COMMON="--preset small --tokenizer $TOK --precision bf16 --batch 8 --seq 256 --steps $STEPS
        --lr 2e-3 --warmup $((STEPS / 10)) --seed $SEED --eval-every 0 --eval-batches 4 --save-every 0
        --threads 1 --log-every 50"

flags() {
    case $1 in
    softmax_aux) echo "" ;;
    sigmoid_bias) echo "--router-score sigmoid --balance bias --aux-coef 0" ;;
    cap100) echo "--capacity-factor 1.0" ;;
    cap125) echo "--capacity-factor 1.25" ;;
    noisy) echo "--router-noise 1.0" ;;
    topp50) echo "--router-top-p 0.5 --top-k 4" ;;
    fine) echo "--n-experts 32 --d-ff 128 --top-k 7 --n-shared-experts 1 --d-ff-shared 128" ;;
    *) echo "experiments_routing: unknown run $1" >&2; exit 1 ;;
    esac
}

one() {
    local name=$1 dir=$OUT/$1-s$SEED
    if [ ! -e "$(ckpt "$dir" "$STEPS")" ]; then
        rm -rf "$dir"
        echo "train $dir"
        # shellcheck disable=SC2046
        nice -n 10 "$M" train $COMMON $DATA $(flags "$name") --out "$dir" > "$dir.log" 2>&1
    fi
    if [ ! -e "$dir/eval.json" ]; then
        nice -n 10 "$M" eval --checkpoint "$dir/latest.h5" $DATA --seq 256 --batches 4 --threads 1 --json \
            > "$dir/eval.json.tmp" && mv "$dir/eval.json.tmp" "$dir/eval.json"
    fi
    echo "done $dir"
}
export -f one flags ckpt
export M OUT STEPS SEED COMMON DATA

printf '%s\n' $RUNS | xargs -P "$JOBS" -I{} bash -c 'one {}'
/usr/bin/python3 scripts/experiments_routing.py --out "$OUT" --seed "$SEED" $RUNS
