#!/usr/bin/env bash
# quickstart.sh: the README's first command. On a fresh Debian machine (root or sudo):
# sets up, builds, fetches the four real domains, trains a tokenizer, prepares the token
# sets, trains the `small` MoE for about --minutes (default 5), evaluates it per domain
# with its routing matrix, generates a sample from each domain's typical prompt, plots
# the run, and prints where everything went. About 10-15 minutes on 2 cores.
#
#   scripts/quickstart.sh [--minutes M] [--threads N]
#
# Everything it makes goes under runs/quickstart/ (git-ignored); the corpora under
# data/corpora/. Running it again reuses the corpora and retrains the model.
set -euo pipefail
cd "$(dirname "$0")/.."

minutes=5
threads=0
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) minutes=${2:?--minutes needs a number}; shift 2 ;;
    --threads) threads=${2:?--threads needs a number}; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "quickstart.sh: unknown argument '$1' (--minutes M, --threads N)" >&2; exit 2 ;;
  esac
done
[[ "$minutes" =~ ^[0-9]+$ && "$minutes" -ge 1 ]] || { echo "quickstart.sh: --minutes takes a whole number >= 1" >&2; exit 2; }
[[ "$threads" =~ ^[0-9]+$ ]] || { echo "quickstart.sh: --threads takes a whole number" >&2; exit 2; }

t0=$(date +%s)
stage() { printf '\n== %s  (%ds so far)\n' "$1" $(( $(date +%s) - t0 )); }

stage "setup (apt packages: build tools, libraries, Node.js, glibc-source, metamath-databases, matplotlib)"
scripts/setup.sh --corpora --plots

stage "build"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
bin=build/monolith
# Debian's python3 has h5py and matplotlib even when another python3 comes first in PATH.
py=python3
[ -x /usr/bin/python3 ] && py=/usr/bin/python3

stage "fetch the four domains into data/corpora/ (npm, Debian packages)"
scripts/fetch_corpora.sh

out=runs/quickstart
data=$out/data
mkdir -p "$data"
domains=(speeches code math legal)

stage "train a 4096-token BPE vocabulary on all four domains"
mapfile -t files < <(find data/corpora/speeches data/corpora/code data/corpora/math data/corpora/legal \
                       -type f ! -name '.*' | LC_ALL=C sort)
"$bin" tokenizer train --vocab-size 4096 --input "${files[@]}" -o "$data/tok4096.tiktoken" 2>&1 | tail -n 1

stage "prepare the token sets (train/val split: by document, or by bytes when there are too few documents)"
data_flags=()
for d in "${domains[@]}"; do
  "$bin" data prepare --tokenizer "$data/tok4096.tiktoken" --domain "$d" --input "data/corpora/$d" \
    -o "$data/$d.h5" 2>&1 | tail -n 1
  data_flags+=(--data "$d=$data/$d.h5")
done

stage "measure this machine's training speed for the small model"
tok_s=$("$bin" bench train --preset small --threads "$threads" --json |
        sed -n 's/.*"train_tok_s": \([0-9.]*\).*/\1/p')
[ -n "$tok_s" ] || { echo "quickstart.sh: could not read the training speed from 'monolith bench train'" >&2; exit 1; }
# Batches of 8 x 256 tokens; the evaluations and saves cost a little more on top.
steps=$(awk -v r="$tok_s" -v m="$minutes" 'BEGIN { s = int(r * m * 60 / 2048); if (s < 60) s = 60; if (s > 5000) s = 5000; print s }')
warmup=$(( steps / 10 ))
echo "about $tok_s tokens/s: $steps steps of 8 x 256 tokens in about $minutes minutes"

stage "train the small MoE (8 experts, top-2, 4 layers) on the mixture of the four domains"
rm -rf "$out/small"
"$bin" train --preset small --tokenizer "$data/tok4096.tiktoken" "${data_flags[@]}" \
  --steps "$steps" --batch 8 --seq 256 --lr 2e-3 --warmup "$warmup" \
  --eval-every $(( steps / 4 > 0 ? steps / 4 : 1 )) --eval-batches 8 --save-every 0 --log-every 25 \
  --threads "$threads" --out "$out/small"
ckpt=$out/small/latest.h5

stage "evaluate: per-domain loss and perplexity, domain x expert routing"
"$bin" eval --checkpoint "$ckpt" "${data_flags[@]}" --seq 256 --batches 16 --threads "$threads" | tee "$out/eval.txt"

stage "generate a sample from each domain's typical prompt"
prompts=(
  "Mr. Speaker, Mr. Vice President, Members of the Congress, my fellow Americans:"
  "#include <stdio.h>
#include <stdlib.h>

int
main (int argc, char **argv)
{"
  "  \$( Commutative law for class union. \$)
  uncom \$p |- ( A u. B ) = ( B u. A ) \$="
  "Permission is hereby granted, free of charge, to any person obtaining a copy"
)
: >"$out/samples.txt"
for i in 0 1 2 3; do
  {
    printf -- '---- %s (the prompt, then 80 generated tokens)\n%s' "${domains[$i]}" "${prompts[$i]}"
    "$bin" generate --checkpoint "$ckpt" --prompt "${prompts[$i]}" --max-tokens 80 --temperature 0.8 --seed 1 \
      --threads "$threads" 2>/dev/null
    printf '\n\n'
  } | tee -a "$out/samples.txt"
done

stage "plots"
plots="(no plots: python3-matplotlib missing)"
if $py -c 'import matplotlib' 2>/dev/null; then
  $py scripts/plot_run.py "$out/small"
  plots="$out/small/loss.png, routing.png, load.png, training.png"
fi

elapsed=$(( $(date +%s) - t0 ))
cat <<EOF

== done in $((elapsed / 60))m$((elapsed % 60))s. Where everything went:
  corpora (text, one document per file)   data/corpora/{speeches,code,math,legal}/
  tokenizer                               $data/tok4096.tiktoken
  token sets                              $data/{speeches,code,math,legal}.h5
  run folder (checkpoints, metrics)       $out/small/  (latest.h5, metrics.jsonl, run.ini)
  evaluation                              $out/eval.txt
  samples                                 $out/samples.txt
  plots                                   $plots

Next: build/monolith generate --checkpoint $ckpt --prompt "..."   (docs/inference.md)
      build/monolith train --help, docs/training.md                (longer runs, freezing, resume)
EOF
