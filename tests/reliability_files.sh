#!/usr/bin/env bash
# reliability_files.sh: every command that reads a file refuses a corrupt or hostile one
# with ONE line on stderr ("monolith: ..."), a non-zero exit status, no crash (no death by
# a signal), no hang (60 s bound), and no allocation of what a header claims: the runs are
# limited to 4 GB of address space (ulimit -v; skipped under AddressSanitizer, whose
# shadow memory needs more) and a file that claims terabytes must be refused for what it
# is, not with "out of memory".
#
# Files: checkpoints (inspect, dump, generate, eval, expert list, train --init, train
# --resume), token sets (train --data, eval --data), dump batches (dump --tokens),
# vocabularies (tokenizer encode/decode, data prepare, train --tokenizer) and id lists
# (tokenizer decode). Kinds: missing, empty, text, truncated, bit-flipped, wrong format,
# wrong version, absurd shape (2^40 elements), NaN weights, out-of-vocab tokens,
# variable-length strings (older monolith files) over a damaged global heap, and the
# pre-1.8 (unchecksummed) HDF5 file format for monolith's own formats.
set -uo pipefail
bin=${MONOLITH_BIN:?MONOLITH_BIN must point at the monolith binary}
src=${MONOLITH_SOURCE_DIR:?}
py=python3
/usr/bin/python3 -c 'import h5py' 2>/dev/null && py=/usr/bin/python3
$py -c 'import h5py, numpy' || { echo "reliability_files: needs python3-h5py (scripts/setup.sh)"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0 runs=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

sanitized=0
ldd "$bin" 2>/dev/null | grep libasan >/dev/null && sanitized=1  # not -q: SIGPIPE under pipefail
if [ $sanitized = 1 ]; then
  # Memory errors and UB are what ASan checks here. Leaks on corrupt input are libhdf5's
  # (tests/sanitizers/lsan.supp) and telling them apart needs slow full malloc stacks:
  # fuzz_replay_* does that on every committed corrupt input instead.
  export ASAN_OPTIONS=detect_leaks=0
fi

# refuse WHAT CMD...: CMD must fail cleanly. WHAT names the case in failure messages; a
# WHAT starting with "absurd" also must not blame memory.
refuse() {
  local what=$1; shift
  runs=$((runs + 1))
  local rc
  if [ $sanitized = 1 ]; then
    timeout 60 "$@" >"$tmp/out" 2>"$tmp/err" </dev/null
  else
    (ulimit -v 4000000; exec timeout 60 "$@" >"$tmp/out" 2>"$tmp/err" </dev/null)
  fi
  rc=$?
  local n; n=$(wc -l <"$tmp/err")
  if [ $rc -eq 0 ]; then fail "$what: accepted (exit 0): $*"; return; fi
  if [ $rc -eq 124 ]; then fail "$what: hung (killed after 60 s): $*"; return; fi
  if [ $rc -ge 126 ]; then fail "$what: died with status $rc: $* :: $(head -c 600 "$tmp/err")"; return; fi
  if [ "$n" -ne 1 ] || ! grep -q '^monolith: ' "$tmp/err"; then
    fail "$what: not one 'monolith: ' line ($n lines): $* :: $(head -c 600 "$tmp/err")"; return
  fi
  [ -n "${VERBOSE:-}" ] && echo "$what: $(cat "$tmp/err")"
  if [[ $what == absurd* ]] && grep -qi 'out of memory' "$tmp/err"; then
    fail "$what: tried to allocate what the header claims: $(cat "$tmp/err")"
  fi
  if [[ $what == *old.* ]] && ! grep -q 'before 1.8' "$tmp/err"; then
    fail "$what: not refused for its pre-1.8 file format: $(cat "$tmp/err")"
  fi
  # A variable-length string must be refused for what it is, by name.
  if [[ $what == *vlen* ]] && ! grep -q 'variable-length' "$tmp/err"; then
    fail "$what: not refused as a variable-length string: $(cat "$tmp/err")"
  fi
}

# ---------------------------------------------------------------- good inputs
tok=$src/tests/fuzz/vocab.tiktoken  # 511 ranks + <|endoftext|>
cat "$src"/engine/*.c >"$tmp/corpus.txt"
"$bin" data prepare --tokenizer "$tok" --domain code --val-fraction 0.2 --input "$src/engine" \
  -o "$tmp/good.tokens.h5" >/dev/null 2>&1 || { echo "setup: data prepare failed"; exit 1; }
"$bin" train --preset tiny --tokenizer "$tok" --data "code=$tmp/good.tokens.h5" --steps 2 --warmup 0 --batch 2 \
  --seq 16 --eval-every 0 --eval-batches 1 --threads 1 --out "$tmp/run" >/dev/null 2>&1 ||
  { echo "setup: train failed"; exit 1; }
good=$tmp/good.ckpt.h5
cp "$tmp/run/ckpt-00000002.h5" "$good"
"$bin" init --preset tiny --vocab-size 512 -o "$tmp/notok.ckpt.h5" >/dev/null 2>&1
"$bin" init --preset tiny --vocab-size 300 -o "$tmp/v300.ckpt.h5" >/dev/null 2>&1  # smaller than the vocabulary
"$bin" inspect "$good" >/dev/null 2>&1 || { echo "setup: the good checkpoint does not load"; exit 1; }
"$bin" expert extract "$good" --expert 1 -o "$tmp/good.mod.h5" >/dev/null 2>&1 ||
  { echo "setup: expert extract failed"; exit 1; }

# ---------------------------------------------------------------- hostile variants
: >"$tmp/empty"
echo "just some text, not HDF5" >"$tmp/text"
head -c "$(($(stat -c %s "$good") / 2))" "$good" >"$tmp/trunc.ckpt.h5"
head -c 3000 "$good" >"$tmp/trunc_head.ckpt.h5"
head -c "$(($(stat -c %s "$tmp/good.tokens.h5") / 2))" "$tmp/good.tokens.h5" >"$tmp/trunc.tokens.h5"
$py - "$tmp" "$tok" <<'PY' || { echo "setup: crafting files failed"; exit 1; }
import sys, shutil, random, h5py, numpy as np
tmp, tok = sys.argv[1], sys.argv[2]
good, goodt = f"{tmp}/good.ckpt.h5", f"{tmp}/good.tokens.h5"
def copy(src, name):
    shutil.copy(src, f"{tmp}/{name}")
    return h5py.File(f"{tmp}/{name}", "a")
def fixed(s):  # a string as monolith writes it: fixed-length UTF-8 (docs/formats.md)
    return np.array(s.encode(), dtype=h5py.string_dtype("utf-8", len(s.encode()) + 1))
def vlen_copy(src, name, edit):
    """A copy whose edit(f) stores a variable-length string (what h5py writes for a str, and
    older monolith versions wrote), with every global heap collection then damaged: libhdf5
    segfaults, hangs or mallocs garbage reading it, so only a reader that refuses the type
    without reading the value passes."""
    with copy(src, name) as f: edit(f)
    d = bytearray(open(f"{tmp}/{name}", "rb").read())
    i = d.find(b"GCOL")
    assert i >= 0, name
    while i >= 0:
        d[i + 24:i + 32] = b"\xff" * 8  # the first heap object's size
        i = d.find(b"GCOL", i + 4)
    open(f"{tmp}/{name}", "wb").write(d)
def old_copy(src, name):
    """The same objects in HDF5's default (pre-1.8, unchecksummed) file format, which
    monolith refuses for its own formats before libhdf5 parses a header."""
    with h5py.File(src, "r") as a, h5py.File(f"{tmp}/{name}", "w") as b:
        for k, v in a.attrs.items(): b.attrs.create(k, v, dtype=a.attrs.get_id(k).dtype)
        for k in a: a.copy(k, b)
def vlen_dataset(path):
    def edit(f):
        x = [s.decode() for s in f[path][()]]; del f[path]
        f.create_dataset(path, data=x, dtype=h5py.string_dtype())
    return edit

# Bit flips: a byte in the superblock, in the root group's header (the first object
# header, right after the superblock: two bytes inside its attributes), and spread over
# the first 64 KB (metadata lives there), each its own file.
data = bytearray(open(good, "rb").read())
root = data.find(b"OHDR")
for name, offsets in (("flip_super", [20]), ("flip_header", [root + 100, root + 101]),
                      ("flip_spread", random.Random(7).sample(range(min(len(data), 65536)), 40))):
    d = bytearray(data)
    for o in offsets: d[o] ^= 0xA5
    open(f"{tmp}/{name}.ckpt.h5", "wb").write(d)
tdata = bytearray(open(goodt, "rb").read())
for o in random.Random(3).sample(range(min(len(tdata), 8192)), 40): tdata[o] ^= 0x5A
open(f"{tmp}/flip.tokens.h5", "wb").write(tdata)

with copy(good, "version.ckpt.h5") as f: f.attrs["format_version"] = np.int64(2)
with copy(good, "format.ckpt.h5") as f: f.attrs["format"] = fixed("monolith-expert")
# Variable-length strings (older monolith files, or h5py's default for str): refused by
# name before any value is read.
vlen_copy(good, "vlen_format.ckpt.h5", lambda f: f.attrs.__setitem__("format", "monolith-checkpoint"))
vlen_copy(good, "vlen_experts.ckpt.h5", vlen_dataset("experts/provenance"))
vlen_copy(good, "vlen_tokenizer.ckpt.h5", vlen_dataset("tokenizer/special_names"))
old_copy(good, "old.ckpt.h5")
vlen_copy(good, "vlen_train.ckpt.h5", lambda f: f["train"].attrs.__setitem__("schedule", "cosine"))
with copy(good, "noformat.ckpt.h5") as f: del f.attrs["format"]
with copy(good, "nan.ckpt.h5") as f:
    x = f["model/layers/1/attn/wo"][()]; x[3, 5] = np.nan; f["model/layers/1/attn/wo"][...] = x
with copy(good, "inf.ckpt.h5") as f:
    x = f["model/norm"][()]; x[0] = np.inf; f["model/norm"][...] = x
with copy(good, "missing_tensor.ckpt.h5") as f: del f["model/layers/0/attn/wq"]
with copy(good, "shape.ckpt.h5") as f:
    del f["model/norm"]; f["model/norm"] = np.ones(65, np.float32)
with copy(good, "badconfig.ckpt.h5") as f: f["config"].attrs["n_kv_heads"] = np.int64(3)
# Absurd: /config asks for a 2^24-token vocabulary (4 GB of embeddings) and the two
# embedding tensors claim that shape without storing it.
with copy(good, "absurd_config.ckpt.h5") as f:
    V, d = 1 << 24, int(f["config"].attrs["d_model"])
    f["config"].attrs["vocab_size"] = np.int64(V)
    for n in ("model/tok_embeddings", "model/output"):
        del f[n]; f.create_dataset(n, shape=(V, d), dtype=np.float32, chunks=(1024, d))
# Absurd: a 2^40-element tensor where the config expects a small one.
with copy(good, "absurd_tensor.ckpt.h5") as f:
    del f["model/norm"]; f.create_dataset("model/norm", shape=(1 << 40,), dtype=np.float32, chunks=(4096,))
# Absurd: /tokenizer/tiktoken claims 2^40 bytes.
with copy(good, "absurd_tokenizer.ckpt.h5") as f:
    del f["tokenizer/tiktoken"]
    f.create_dataset("tokenizer/tiktoken", shape=(1 << 40,), dtype=np.uint8, chunks=(65536,))
with copy(good, "absurd_optim.ckpt.h5") as f:
    del f["optim/m/norm"]; f.create_dataset("optim/m/norm", shape=(1 << 40,), dtype=np.float32, chunks=(4096,))
with copy(good, "nan_optim.ckpt.h5") as f:
    x = f["optim/v/norm"][()]; x[1] = np.nan; f["optim/v/norm"][...] = x

# Expert modules.
goodm = f"{tmp}/good.mod.h5"
m = bytearray(open(goodm, "rb").read())
open(f"{tmp}/trunc.mod.h5", "wb").write(m[: len(m) // 2])
for o in random.Random(11).sample(range(len(m)), 40): m[o] ^= 0x3C
open(f"{tmp}/flip.mod.h5", "wb").write(m)
with copy(goodm, "version.mod.h5") as f: f.attrs["format_version"] = np.int64(9)
with copy(goodm, "nan.mod.h5") as f:
    x = f["layers/0/w2"][()]; x[0, 0] = np.nan; f["layers/0/w2"][...] = x
with copy(goodm, "absurd_attrs.mod.h5") as f: f.attrs["d_ff"] = np.int64(1 << 24)   # 12 GB per layer
with copy(goodm, "absurd_slice.mod.h5") as f:
    del f["layers/0/w1"]; f.create_dataset("layers/0/w1", shape=(1 << 20, 1 << 20), dtype=np.float32, chunks=(64, 1024))
with copy(goodm, "key.mod.h5") as f: f.attrs["d_model"] = np.int64(48)
old_copy(goodm, "old.mod.h5")
vlen_copy(goodm, "vlen.mod.h5", lambda f: f.attrs.__setitem__("domain", "code"))

# A model whose vocab_size (300) is smaller than the tokenizer it carries (512 ids).
shutil.copy(f"{tmp}/v300.ckpt.h5", f"{tmp}/v300tok.ckpt.h5")
with h5py.File(f"{tmp}/v300tok.ckpt.h5", "a") as f, h5py.File(good, "r") as g:
    g.copy("tokenizer", f)

# Token sets.
with copy(goodt, "version.tokens.h5") as f: f.attrs["format_version"] = np.int64(7)
with copy(goodt, "oov.tokens.h5") as f:
    x = f["train/tokens"][()]; x[len(x) // 2] = 600; f["train/tokens"][...] = x  # vocab is 512
with copy(goodt, "vocab_attr.tokens.h5") as f: f.attrs["vocab_size"] = np.int64(1 << 40)
old_copy(goodt, "old.tokens.h5")
vlen_copy(goodt, "vlen.tokens.h5", lambda f: f.attrs.__setitem__("tokenizer_hash", f.attrs["tokenizer_hash"].decode()))
with copy(goodt, "absurd.tokens.h5") as f:
    del f["train/tokens"]
    f.create_dataset("train/tokens", shape=(1 << 40,), dtype=np.uint16, chunks=(1 << 18,), maxshape=(None,))
with copy(goodt, "rank2.tokens.h5") as f:
    x = f["val/tokens"][()]; del f["val/tokens"]; f["val/tokens"] = np.stack([x, x])
with copy(goodt, "float.tokens.h5") as f:
    x = f["val/tokens"][()]; del f["val/tokens"]; f["val/tokens"] = x.astype(np.float32)

# dump batches: /tokens int64 [B, T+1].
with h5py.File(f"{tmp}/oov.batch.h5", "w") as f: f["tokens"] = np.array([[1, 2, 3, 9999, 5]], np.int64)
with h5py.File(f"{tmp}/neg.batch.h5", "w") as f: f["tokens"] = np.array([[1, 2, -3, 4, 5]], np.int64)
with h5py.File(f"{tmp}/absurd.batch.h5", "w") as f:
    f.create_dataset("tokens", shape=(1 << 20, 1 << 20), dtype=np.int64, chunks=(1, 1024))
with h5py.File(f"{tmp}/long.batch.h5", "w") as f: f["tokens"] = np.ones((1, 4096), np.int64)  # > max_seq_len
with h5py.File(f"{tmp}/good.batch.h5", "w") as f: f["tokens"] = np.ones((2, 9), np.int64)
with h5py.File(f"{tmp}/vocab400.batch.h5", "w") as f: f["tokens"] = np.array([[1, 2, 400, 3]], np.int64)

# Vocabularies.
lines = open(tok, "rb").read().split(b"\n")
open(f"{tmp}/trunc.tiktoken", "wb").write(b"\n".join(lines[:200]))           # bytes missing
open(f"{tmp}/cut.tiktoken", "wb").write(open(tok, "rb").read()[:3001])      # cut mid-line
open(f"{tmp}/dup.tiktoken", "wb").write(b"\n".join(lines + [lines[300]]))  # duplicate rank
bad = list(lines); bad[100] = b"!!notbase64!! 100"
open(f"{tmp}/b64.tiktoken", "wb").write(b"\n".join(bad))
gap = list(lines); gap[400] = gap[400].split(b" ")[0] + b" 99999"
open(f"{tmp}/gap.tiktoken", "wb").write(b"\n".join(gap))
open(f"{tmp}/garbage.tiktoken", "wb").write(random.Random(5).randbytes(8192))
PY

# ---------------------------------------------------------------- checkpoint readers
ckpts=(missing.h5 empty text trunc.ckpt.h5 trunc_head.ckpt.h5 flip_super.ckpt.h5 flip_header.ckpt.h5
       flip_spread.ckpt.h5 version.ckpt.h5 format.ckpt.h5 noformat.ckpt.h5 nan.ckpt.h5 inf.ckpt.h5
       missing_tensor.ckpt.h5 shape.ckpt.h5 badconfig.ckpt.h5 absurd_config.ckpt.h5 absurd_tensor.ckpt.h5
       absurd_tokenizer.ckpt.h5 vlen_format.ckpt.h5 vlen_experts.ckpt.h5 old.ckpt.h5 good.tokens.h5)
for c in "${ckpts[@]}"; do
  p=$tmp/$c
  what=$c; [[ $c == absurd* ]] || what="ckpt-$c"
  refuse "$what inspect" "$bin" inspect "$p"
  refuse "$what dump" "$bin" dump --checkpoint "$p" --tokens "$tmp/good.batch.h5" -o "$tmp/dump.h5" --threads 1
  refuse "$what generate" "$bin" generate --checkpoint "$p" --prompt "int main" --max-tokens 4 --threads 1
  refuse "$what eval" "$bin" eval --checkpoint "$p" --data "code=$tmp/good.tokens.h5" --batch 2 --seq 16 \
    --batches 1 --threads 1
  refuse "$what expert list" "$bin" expert list "$p"
  refuse "$what compose --base" "$bin" compose --base "$p" --expert "$tmp/good.mod.h5" -o "$tmp/comp.h5"
  refuse "$what upcycle" "$bin" upcycle "$p" --n-experts 2 --top-k 1 -o "$tmp/up.h5"
  refuse "$what train --init" "$bin" train --init "$p" --data "code=$tmp/good.tokens.h5" --steps 1 --warmup 0 \
    --batch 2 --seq 16 --threads 1 --out "$tmp/init-$c"
  # As a tokenizer only /tokenizer matters: damage elsewhere (NaN weights, a bad config,
  # flipped tensor data) leaves a usable vocabulary.
  case $c in missing.h5 | empty | text | trunc* | flip_super* | flip_header* | absurd_tokenizer* | old.ckpt.h5 | \
             good.tokens.h5)
    refuse "$what tokenizer encode" "$bin" tokenizer encode --tokenizer "$p" --input "$tmp/text" ;;
  esac
done
refuse "vlen_tokenizer tokenizer encode" "$bin" tokenizer encode --tokenizer "$tmp/vlen_tokenizer.ckpt.h5" \
  --input "$tmp/text"
refuse "vlen_tokenizer generate" "$bin" generate --checkpoint "$tmp/vlen_tokenizer.ckpt.h5" --prompt hi --threads 1
refuse "generate without /tokenizer" "$bin" generate --checkpoint "$tmp/notok.ckpt.h5" --prompt hi --threads 1
# Ids the model has no row for: a tokenizer, token set or batch with a larger vocabulary.
refuse "generate, tokenizer larger than the model" "$bin" generate --checkpoint "$tmp/v300tok.ckpt.h5" \
  --prompt "int main(void) { return 0; }" --max-tokens 4 --threads 1
refuse "train --init, tokenizer larger than the model" "$bin" train --init "$tmp/v300tok.ckpt.h5" \
  --data "code=$tmp/good.tokens.h5" --steps 1 --warmup 0 --batch 2 --seq 16 --threads 1 --out "$tmp/v300run"
refuse "eval, token set vocabulary larger than the model" "$bin" eval --checkpoint "$tmp/v300.ckpt.h5" \
  --data "code=$tmp/good.tokens.h5" --batch 2 --seq 16 --batches 1 --threads 1
refuse "dump, batch ids beyond the model" "$bin" dump --checkpoint "$tmp/v300.ckpt.h5" --tokens "$tmp/vocab400.batch.h5" \
  -o "$tmp/dump.h5" --threads 1

# train --resume: a run folder whose newest checkpoint is hostile.
for c in absurd_optim.ckpt.h5 nan_optim.ckpt.h5 trunc.ckpt.h5 flip_spread.ckpt.h5 notok.ckpt.h5 vlen_train.ckpt.h5; do
  rm -rf "$tmp/res"; cp -r "$tmp/run" "$tmp/res"
  rm -f "$tmp/res"/ckpt-*.h5; cp "$tmp/$c" "$tmp/res/ckpt-00000002.h5"
  ln -sfn ckpt-00000002.h5 "$tmp/res/latest.h5"
  what="resume-$c"; [[ $c == absurd* ]] && what=$c
  refuse "$what train --resume" "$bin" train --resume "$tmp/res" --threads 1
done
rm -rf "$tmp/res"; cp -r "$tmp/run" "$tmp/res"; printf '[train]\nsteps = banana\n' >"$tmp/res/run.ini"
refuse "resume with a corrupt run.ini" "$bin" train --resume "$tmp/res" --threads 1
rm -rf "$tmp/res"; mkdir "$tmp/res"
refuse "resume of an empty folder" "$bin" train --resume "$tmp/res" --threads 1

# ---------------------------------------------------------------- expert modules
for mod in missing.h5 empty trunc.mod.h5 flip.mod.h5 version.mod.h5 nan.mod.h5 absurd_attrs.mod.h5 \
           absurd_slice.mod.h5 key.mod.h5 vlen.mod.h5 old.mod.h5 good.ckpt.h5; do
  what="module-$mod"; [[ $mod == absurd* ]] && what=$mod
  refuse "$what expert insert" "$bin" expert insert "$good" "$tmp/$mod" --slot 0 -o "$tmp/ins.h5"
  refuse "$what expert add" "$bin" expert add "$good" "$tmp/$mod" -o "$tmp/add.h5"
  refuse "$what compose --expert" "$bin" compose --base "$good" --expert "$tmp/good.mod.h5" --expert "$tmp/$mod" \
    -o "$tmp/comp.h5"
done

# ---------------------------------------------------------------- token set readers
toks=(missing.h5 empty text trunc.tokens.h5 flip.tokens.h5 version.tokens.h5 oov.tokens.h5 vocab_attr.tokens.h5
      absurd.tokens.h5 rank2.tokens.h5 float.tokens.h5 vlen.tokens.h5 old.tokens.h5 good.ckpt.h5)
for t in "${toks[@]}"; do
  p=$tmp/$t
  what=$t; [[ $t == absurd* ]] || what="tokens-$t"
  refuse "$what train --data" "$bin" train --preset tiny --tokenizer "$tok" --data "code=$p" --steps 1 --warmup 0 \
    --batch 2 --seq 16 --threads 1 --out "$tmp/tr-$t"
  refuse "$what eval --data" "$bin" eval --checkpoint "$good" --data "code=$p" --batch 2 --seq 16 --batches 1 \
    --threads 1
done

# ---------------------------------------------------------------- dump batches
for b in oov.batch.h5 neg.batch.h5 absurd.batch.h5 long.batch.h5 good.tokens.h5 empty missing.h5; do
  what="batch-$b"; [[ $b == absurd* ]] && what=$b
  refuse "$what dump --tokens" "$bin" dump --checkpoint "$good" --tokens "$tmp/$b" -o "$tmp/dump.h5" --threads 1
done

# ---------------------------------------------------------------- vocabularies and ids
# A vocabulary cut after a complete line is a smaller valid vocabulary (the format has
# no length or checksum): what catches it is its tokenizer hash, which differs from the
# one the token sets were made with (train --tokenizer).
refuse "vocab-cut train --tokenizer" "$bin" train --preset tiny --tokenizer "$tmp/cut.tiktoken" \
  --data "code=$tmp/good.tokens.h5" --steps 1 --warmup 0 --batch 2 --seq 16 --threads 1 --out "$tmp/tv-cut"
grep -q "hash" "$tmp/err" || fail "a cut vocabulary is not refused by its tokenizer hash: $(cat "$tmp/err")"
for v in missing.tiktoken empty trunc.tiktoken dup.tiktoken b64.tiktoken gap.tiktoken \
         garbage.tiktoken notok.ckpt.h5 good.tokens.h5; do
  p=$tmp/$v
  refuse "vocab-$v encode" "$bin" tokenizer encode --tokenizer "$p" --input "$tmp/text"
  refuse "vocab-$v decode" "$bin" tokenizer decode --tokenizer "$p" --input "$tmp/text"
  refuse "vocab-$v data prepare" "$bin" data prepare --tokenizer "$p" --domain x --input "$tmp/corpus.txt" \
    -o "$tmp/x.h5"
  refuse "vocab-$v train --tokenizer" "$bin" train --preset tiny --tokenizer "$p" \
    --data "code=$tmp/good.tokens.h5" --steps 1 --warmup 0 --batch 2 --seq 16 --threads 1 --out "$tmp/tv-$v"
done
for ids in "1 2 600" "1 99999999999999999999" "1 -1" "1 abc" "4294967296"; do
  echo "$ids" >"$tmp/ids"
  refuse "decode ids '$ids'" "$bin" tokenizer decode --tokenizer "$tok" --input "$tmp/ids"
done

# Nothing half-written or left behind by the refusals.
left=$(find "$tmp" -name '*.tmp' | head -3)
[ -z "$left" ] || fail "refused commands left temporary files: $left"

echo "reliability_files: $runs refusals checked, $fails failed"
[ $fails -eq 0 ]
