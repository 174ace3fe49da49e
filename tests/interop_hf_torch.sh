#!/usr/bin/env bash
# interop_hf_torch.sh: an exported Hugging Face folder, run by an independent PyTorch
# implementation of HF Mixtral's math (tests/hf_mixtral_reference.py: rotate-half RoPE,
# written from transformers' documented formulas, reading the safetensors itself), gives
# `monolith dump`'s logits within 1e-5, for the `tiny` and `top3_of8` fixtures (the two
# Mixtral-shaped ones: GQA, top-2 of 4 and top-3 of 8, renormalized gates), from one file
# and from shards. Skipped (exit 77) when PyTorch is not installed (scripts/setup.sh --torch).
set -euo pipefail
bin=${MONOLITH_BIN:?MONOLITH_BIN must point at the monolith binary}
src=${MONOLITH_SOURCE_DIR:?}
/usr/bin/python3 -c 'import torch, h5py' 2>/dev/null || { echo "interop_hf_torch: skipped (no python3-torch)"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fx=$src/tests/fixtures
for c in tiny top3_of8; do
    "$bin" dump --checkpoint "$fx/$c.ckpt.h5" --tokens "$fx/$c.tokens.h5" -o "$tmp/$c.dump.h5" >/dev/null
    "$bin" export hf "$fx/$c.ckpt.h5" "$tmp/$c" >/dev/null
    /usr/bin/python3 "$src/tests/hf_mixtral_reference.py" "$tmp/$c" "$fx/$c.tokens.h5" "$tmp/$c.dump.h5" --tol 1e-5
done
"$bin" export hf "$fx/top3_of8.ckpt.h5" "$tmp/sharded" --shard-size 20K >/dev/null
[ -f "$tmp/sharded/model.safetensors.index.json" ]
/usr/bin/python3 "$src/tests/hf_mixtral_reference.py" "$tmp/sharded" "$fx/top3_of8.tokens.h5" "$tmp/top3_of8.dump.h5" --tol 1e-5
echo "interop_hf_torch: ok"
