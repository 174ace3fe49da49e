# experiments_lib.sh: what the experiment scripts share (sourced, not run). Expects M
# (the binary), OUT, and NAME (the script's name, for messages); sets C, TOK, DOMAINS,
# DATA (--data flags of the four domains), part(), ckpt() and train().
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
