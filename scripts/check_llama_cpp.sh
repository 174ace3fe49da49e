#!/usr/bin/env bash
# check_llama_cpp.sh: runs monolith's GGUF exports in the real llama.cpp (npm node-llama-cpp,
# pinned 3.21.1, its prebuilt linux-x64 CPU binaries) and compares them with monolith.
#
#   scripts/check_llama_cpp.sh CKPT.h5 [CKPT2.h5 ...]      compare these checkpoints
#   scripts/check_llama_cpp.sh --train                     train the four models of
#                                                          docs/interop.md first, then compare
#
# For each checkpoint and each type (f32, bf16, q8_0; TYPES="f32 f16" to choose):
#   1. monolith export gguf --type T, then monolith import gguf of that file: the model the
#      file holds (for f32 the checkpoint itself, bit for bit; for bf16/q8_0 its rounded weights);
#   2. llama.cpp loads the file (KV cache in F32; LLAMA_KV=F16 for llama.cpp's default),
#      tokenizes each prompt (compared with monolith's ids) and
#      continues monolith's ids greedily for STEPS tokens, reporting at each step the
#      probability of every token (evaluateWithMetadata);
#   3. monolith dump runs the imported model on prompt + llama.cpp's continuation: at every
#      step monolith's most likely token must be llama.cpp's (the same greedy continuation,
#      token for token) and max |p_llama.cpp - p_monolith| over the vocabulary (llama.cpp's
#      vector renormalized to sum 1: its float softmax sums to 1 +- 1e-5) must stay
#      within TOL_F32 (default 1e-5) for f32 and TOL_Q (default 2e-2) for bf16/q8_0, where
#      llama.cpp also rounds the activations (to bf16, or to 8 bits in blocks of 32);
#   4. monolith generate --temperature 0 on the prompt text gives llama.cpp's continuation.
# Then files written by llama.cpp itself: its quantizer (llama_model_quantize, what its
# llama-quantize tool runs; scripts/llama_cpp_quantize.py) turns the f32 export into F16,
# BF16 and Q8_0 files, monolith imports each, and every weight must equal the import of
# monolith's own export of that type, bit for bit.
# Prints one line per (model, type) and exits non-zero if any check fails.
#
# node-llama-cpp (~700 MB) is installed on first use into the git-ignored data/npm-llama/
# (LLAMA_CPP_NPM=DIR to use another folder). Not part of ctest: run it by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bin=${MONOLITH_BIN:-build/monolith}
npm_dir=${LLAMA_CPP_NPM:-data/npm-llama}
version=3.21.1
steps=${STEPS:-8}
types=${TYPES:-f32 bf16 q8_0}
work=${WORK:-runs/check_llama_cpp}
py=python3
/usr/bin/python3 -c 'import h5py' 2>/dev/null && py=/usr/bin/python3
[ -x "$bin" ] || { echo "check_llama_cpp.sh: $bin missing: build first (cmake --build build)" >&2; exit 1; }

pkg=$npm_dir/node_modules/node-llama-cpp
if ! grep -q "\"version\": \"$version\"" "$pkg/package.json" 2>/dev/null; then
  command -v npm >/dev/null || { echo "check_llama_cpp.sh: npm is missing; run scripts/setup.sh" >&2; exit 1; }
  echo "check_llama_cpp.sh: npm i -E node-llama-cpp@$version into $npm_dir (about 700 MB)"
  mkdir -p "$npm_dir"
  (cd "$npm_dir" && npm i -E --no-audit --no-fund --loglevel=error "node-llama-cpp@$version" >/dev/null)
fi
export NODE_PATH=$(cd "$npm_dir" && pwd)/node_modules
mkdir -p "$work"

ckpts=()
if [ "${1:-}" = "--train" ]; then
  shift
  bash scripts/check_llama_cpp_models.sh "$work"
  ckpts=("$work"/models/*.h5)
fi
ckpts+=("$@")
[ ${#ckpts[@]} -gt 0 ] || { echo "usage: scripts/check_llama_cpp.sh (--train | CKPT.h5 ...)" >&2; exit 2; }

# Prompts: one per domain of the corpora, plus plain English.
prompts=("The license is granted" "int main(int argc, char **argv)" "theorem: if a and b are" "Fellow citizens, the state of")
fail=0
for ck in "${ckpts[@]}"; do
  name=$(basename "$ck" .h5)
  for t in $types; do
    d=$work/$name.$t
    mkdir -p "$d"
    "$bin" export gguf "$ck" --type "$t" -o "$d/model.gguf" > "$d/export.txt"
    "$bin" import gguf "$d/model.gguf" -o "$d/held.h5" > /dev/null
    # monolith's ids of each prompt, and its own greedy continuation as text.
    : > "$d/generate.txt"
    echo "[" > "$d/prompts.json"
    for i in "${!prompts[@]}"; do
      ids=$(printf '%s' "${prompts[$i]}" | "$bin" tokenizer encode --tokenizer "$d/held.h5")
      [ "$i" -gt 0 ] && echo "," >> "$d/prompts.json"
      $py -c 'import json,sys; print(json.dumps({"text": sys.argv[1], "ids": [int(x) for x in sys.argv[2].split()]}))' \
        "${prompts[$i]}" "$ids" >> "$d/prompts.json"
      "$bin" generate --checkpoint "$d/held.h5" --prompt "${prompts[$i]}" --temperature 0 --max-tokens "$steps" \
        --threads 1 > "$d/generate.$i.txt" 2>/dev/null
    done
    echo "]" >> "$d/prompts.json"
    node scripts/llama_cpp_run.mjs "$d/model.gguf" "$steps" "$d/prompts.json" > "$d/llama_cpp.json"
    tol=${TOL_Q:-2e-2}
    [ "$t" = f32 ] && tol=${TOL_F32:-1e-5}
    if ! $py scripts/check_llama_cpp.py "$bin" "$d" "$tol" "$name" "$t ${LLAMA_KV:-F32}-kv"; then fail=1; fi
  done
  for t in f16 bf16 q8_0; do
    d=$work/$name.llama-quantize.$t
    mkdir -p "$d"
    mkdir -p "$work/$name.f32"
    [ -f "$work/$name.f32/model.gguf" ] || "$bin" export gguf "$ck" -o "$work/$name.f32/model.gguf" >/dev/null
    "$bin" export gguf "$ck" --type $t -o "$d/monolith.gguf" >/dev/null
    "$bin" import gguf "$d/monolith.gguf" -o "$d/monolith.h5" >/dev/null
    $py scripts/llama_cpp_quantize.py "$NODE_PATH" "$work/$name.f32/model.gguf" "$d/llama.cpp.gguf" $t >/dev/null
    if ! "$bin" import gguf "$d/llama.cpp.gguf" -o "$d/llama.cpp.h5" >/dev/null ||
       ! $py - "$d" "$name" "$t" <<'PY'
import sys, h5py, numpy as np
d, name, t = sys.argv[1:4]
a, b = h5py.File(f"{d}/llama.cpp.h5", "r"), h5py.File(f"{d}/monolith.h5", "r")
names = []
a["model"].visit(lambda n: names.append(n) if isinstance(a["model"][n], h5py.Dataset) else None)
diff = [n for n in names if not np.array_equal(a["model"][n][()], b["model"][n][()])]
same_tok = bytes(a["tokenizer/tiktoken"][()]) == bytes(b["tokenizer/tiktoken"][()])
ok = not diff and same_tok
print(f"{name} llama-quantize {t}: {'ok' if ok else 'FAIL'}  imported by monolith: {len(names) - len(diff)}/{len(names)} "
      f"tensors equal to monolith's own {t} export bit for bit, tokenizer {'same' if same_tok else 'DIFFERENT'}"
      + (f"; differ: {', '.join(diff[:5])}" if diff else ""))
sys.exit(0 if ok else 1)
PY
    then fail=1; fi
  done
done
exit $fail
