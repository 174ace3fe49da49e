# experiments_lib.sh: what the experiment scripts share (sourced, not run). Expects M
# (the binary), OUT, and NAME (the script's name, for messages); sets C, TOK, DOMAINS,
# DATA (--data flags of the four domains), part(), ckpt(), train(), ini_train(), ev(),
# python_set(), pipeline() and fifth_domain().
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
# OUT/eval_NAME.json; skipped when that exists, when another instance is making it, or
# when CKPT does not exist. Needs M, EB, THREADS.
ev() {
    local name=$1 ck=$2
    shift 2
    [ -e "$ck" ] || return 0
    [ -e $OUT/eval_$name.json ] && return 0
    # another instance (PARTS=eval twice, two cores) is evaluating it
    compgen -G "$OUT/eval_$name.json.tmp.*" > /dev/null && return 0
    echo "eval $name $(date -u +%H:%M:%S)"
    "$M" eval --checkpoint "$ck" $DATA --batch 8 --seq 256 --batches $EB --threads $THREADS --json "$@" \
        > $OUT/eval_$name.json.tmp.$$ && mv $OUT/eval_$name.json.tmp.$$ $OUT/eval_$name.json
}
# python_set: OUT/python.h5, the fifth domain (the .py files of Python's standard library,
# 5% held out for validation), made once.
python_set() {
    [ -e $OUT/python.h5 ] && return 0
    local py
    py=$(ls -d /usr/lib/python3.*/ | head -1)
    mkdir -p $OUT/python_src
    cp "$py"*.py $OUT/python_src/
    "$M" data prepare --tokenizer $TOK --domain python --val-fraction 0.05 --input $OUT/python_src -o $OUT/python.h5
}
# pipeline METHOD NAME SEED_CKPT BRANCH_STEPS ROUTER_STEPS ALL_STEPS: `monolith pipeline
# METHOD` (btx or plug) on the file the script's own ini() writes (OUT/NAME.ini), its
# summary in OUT/NAME_summary.txt; skipped when that summary is complete.
pipeline() {
    local method=$1 name=$2
    ini $method $OUT/$name $3 $4 $5 $6 > $OUT/$name.ini
    if grep -qs '^final model' $OUT/${name}_summary.txt; then echo "skip $name"; return; fi
    echo "pipeline $method $name $(date -u +%H:%M:%S)"
    "$M" pipeline $method --config $OUT/$name.ini > $OUT/${name}_summary.txt
}
# fifth_domain NAME SEED_CKPT BRANCH_STEPS ROUTER_STEPS PLUGGED TAG FIT TRAIN_FLAGS...: the
# fifth domain (python_set) as one more plug branch of SEED_CKPT, run alone (`pipeline
# plug --branch python` on OUT/NAME.ini: it reads the seed and python's token set only),
# added to PLUGGED with its router row below the trained rows or at python's mean router
# input (OUT/TAG_py_below.h5, OUT/TAG_py_mean.h5), and that row fitted FIT steps with the
# router term on the five-domain mixture (--route-by-domain --router-ce 0.1 --train
# router=4: row 4 alone moves; OUT/fit_below, OUT/fit_mean).
fifth_domain() {
    local name=$1 seed=$2 bs=$3 rs=$4 plugged=$5 tag=$6 fit=$7 how
    shift 7
    python_set
    ini plug $OUT/$name $seed $bs $rs 0 python=$OUT/python.h5 > $OUT/$name.ini
    [ -e $OUT/$name/modules/python.h5 ] || "$M" pipeline plug --config $OUT/$name.ini --branch python \
        > $OUT/${name}_summary.txt
    for how in below mean; do
        [ -e $OUT/${tag}_py_$how.h5 ] || "$M" expert add $plugged $OUT/$name/modules/python.h5 --router-init $how \
            $DATA --data python=$OUT/python.h5 -o $OUT/${tag}_py_$how.h5 | tee $OUT/${tag}_py_$how.txt
        train $OUT/fit_$how $fit --init $OUT/${tag}_py_$how.h5 $DATA --data python=$OUT/python.h5 --route-by-domain \
            --router-ce 0.1 --train router=4 "$@"
    done
}
