# experiments_lib.sh: what the experiment scripts share (sourced, not run). Expects M
# (the binary), OUT, and NAME (the script's name, for messages); sets C, TOK, DOMAINS,
# DATA (--data flags of the four domains), part(), ckpt(), train(), ini_train() and ev().
C=data/corpora
TOK=$C/mono8k.tiktoken
DOMAINS="code math legal speeches"
for d in $DOMAINS; do
    [ -e $C/$d.h5 ] || { echo "$NAME: $C/$d.h5 missing; see docs/data.md" >&2; exit 1; }
done
mkdir -p "$OUT"
DATA=""
for d in $DOMAINS; do DATA="$DATA --data $d=$C/$d.h5"; done
part() { [[ $PARTS == *" $1 "* ]]; }
ckpt() { printf '%s/ckpt-%08d.h5' "$1" "$2"; }
# train DIR STEPS ARGS...: a run folder, skipped when its final checkpoint exists.
train() {
    local dir=$1 steps=$2
    shift 2
    if [ -e "$(ckpt "$dir" "$steps")" ]; then echo "skip $dir"; return; fi
    rm -rf "$dir"
    echo "train $dir ($steps steps) $(date -u +%H:%M:%S)"
    "$M" train "$@" --steps "$steps" --out "$dir"
}
# ini_train OUTDIR [EXTRA DATA LINE]: the [pipeline] and [train] sections of a pipeline
# file (pipeline btx / plug) over the four domains (and NAME=FILE EXTRA), in the settings
# of the experiments' train runs; needs THREADS.
ini_train() {
    echo "[pipeline]"
    echo "out = $1"
    echo
    echo "[train]"
    echo "tokenizer = $TOK"
    for d in $DOMAINS; do echo "data = $d=$C/$d.h5"; done
    [ -n "${2:-}" ] && echo "data = $2"
    echo "precision = bf16"
    echo "batch = 8"
    echo "seq = 256"
    echo "lr = 2e-3"
    echo "eval-every = 0"
    echo "eval-batches = 1"
    echo "save-every = 0"
    echo "log-every = 50"
    echo "threads = $THREADS"
    echo
}
# ev NAME CKPT [FLAGS]: CKPT's validation loss and routing shares on the first EB batches
# of 8 x 256 tokens of each val split of DATA (EB=0: the whole splits) into
# OUT/eval_NAME.json; skipped when that exists or CKPT does not. Needs M, EB, THREADS.
ev() {
    local name=$1 ck=$2
    shift 2
    [ -e "$ck" ] || return 0
    [ -e $OUT/eval_$name.json ] && return 0
    echo "eval $name $(date -u +%H:%M:%S)"
    "$M" eval --checkpoint "$ck" $DATA --batch 8 --seq 256 --batches $EB --threads $THREADS --json "$@" \
        > $OUT/eval_$name.json.tmp && mv $OUT/eval_$name.json.tmp $OUT/eval_$name.json
}
