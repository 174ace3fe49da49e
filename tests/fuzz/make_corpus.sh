#!/usr/bin/env bash
# make_corpus.sh: regenerates the HDF5 seeds of tests/fuzz/corpus/{checkpoint,tokens} and the
# safetensors seeds of tests/fuzz/corpus/safetensors
# (the text seeds are written by hand). Run from anywhere with a built monolith:
#
#   MONOLITH_BIN=build/monolith tests/fuzz/make_corpus.sh
#
# The files are kept small (a few tens of KB): libFuzzer mutates every byte of them.
set -euo pipefail
bin=${MONOLITH_BIN:?MONOLITH_BIN must point at the monolith binary}
src=$(cd "$(dirname "$0")/../.." && pwd)
out=$src/tests/fuzz/corpus
py=python3
/usr/bin/python3 -c 'import h5py' 2>/dev/null && py=/usr/bin/python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# A checkpoint as `monolith init` writes it: one MoE layer with a shared expert, one dense.
"$bin" init --preset tiny --vocab-size 512 --d-model 8 --n-layers 2 --moe-layers 1,0 --d-ff-dense 8 \
    --n-heads 2 --n-kv-heads 1 --head-dim 4 --n-experts 2 --top-k 1 --d-ff 8 --n-shared-experts 1 \
    --d-ff-shared 4 --max-seq-len 16 -o "$out/checkpoint/init.h5" >/dev/null
"$bin" init --preset tiny --vocab-size 300 --d-model 4 --n-layers 1 --n-heads 1 --n-kv-heads 1 --head-dim 4 \
    --n-experts 2 --top-k 2 --d-ff 4 --max-seq-len 8 -o "$out/checkpoint/init_min.h5" >/dev/null

# An expert module (monolith-expert) cut from it: fuzz_checkpoint feeds every input to
# expert_load too.
"$bin" expert extract "$out/checkpoint/init.h5" --expert 1 -o "$out/checkpoint/expert.h5" >/dev/null

# Hugging Face weights (tests/fuzz/fuzz_safetensors.c's config.json is this model's): the
# smallest Mixtral-shaped model, exported in each dtype, plus one file of other dtypes.
"$bin" init --preset tiny --vocab-size 300 --d-model 4 --n-layers 1 --n-heads 1 --n-kv-heads 1 --head-dim 4 \
    --n-experts 2 --top-k 2 --d-ff 4 --max-seq-len 8 -o "$tmp/st.h5" >/dev/null
mkdir -p "$out/safetensors"
for t in f32 f16 bf16; do
    "$bin" export hf "$tmp/st.h5" "$tmp/hf_$t" --dtype $t >/dev/null
    cp "$tmp/hf_$t/model.safetensors" "$out/safetensors/mixtral_$t.safetensors"
done
$py - "$out/safetensors/dtypes.safetensors" <<'PY'
import sys, json, struct, numpy as np
parts, h, off = [], {"__metadata__": {"format": "pt"}}, 0
for name, dt, a in (("f64", "F64", np.arange(3, dtype="<f8")), ("i8", "I8", np.arange(-2, 3, dtype="i1")),
                    ("bool", "BOOL", np.array([1, 0], dtype="u1")), ("empty", "F32", np.zeros((0, 3), dtype="<f4")),
                    ("x", "F32", np.ones((2, 2), dtype="<f4"))):
    b = a.tobytes()
    h[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
    parts.append(b)
    off += len(b)
hb = json.dumps(h).encode()
hb += b" " * (-len(hb) % 8)
open(sys.argv[1], "wb").write(struct.pack("<Q", len(hb)) + hb + b"".join(parts))
PY

$py - "$src" "$out" <<'PY'
import sys, h5py, numpy as np
src, out = sys.argv[1], sys.argv[2]
def fixed(s):
    """A fixed-length UTF-8 string (length + 1 bytes, NUL-padded), as monolith writes every
    string (docs/formats.md)."""
    return np.array(s.encode(), dtype=h5py.string_dtype("utf-8", len(s.encode()) + 1))
vocab = open(f"{src}/tests/fuzz/vocab.tiktoken", "rb").read()
# The same model with a /tokenizer group (what `monolith train` stores).
import shutil
shutil.copy(f"{out}/checkpoint/init.h5", f"{out}/checkpoint/with_tokenizer.h5")
with h5py.File(f"{out}/checkpoint/with_tokenizer.h5", "a", libver=("v108", "v108")) as f:
    g = f.create_group("tokenizer")
    g["tiktoken"] = np.frombuffer(vocab, dtype=np.uint8)
    g.create_dataset("special_names", data=np.array([b"<|endoftext|>"], dtype=h5py.string_dtype("utf-8", 14)),
                     chunks=(1,), fletcher32=True)
    g["special_ids"] = np.array([511], dtype=np.int64)

# A token set as data/tokens.c lays it out, with small chunks so the file stays small
# (monolith's writer uses 2^18-token chunks).
rng = np.random.default_rng(1)
def tokset(name, vocab_size, dtype, n_train, n_val):
    # libver v108: the file format monolith writes (engine/base/h5io.c), with checksums.
    with h5py.File(f"{out}/tokens/{name}.h5", "w", libver=("v108", "v108")) as f:
        f.attrs["format"] = fixed("monolith-tokens")
        f.attrs["format_version"] = np.int64(1)
        f.attrs["created_by"] = fixed("monolith 0.1.0")
        f.attrs["domain"] = fixed("fuzz")
        f.attrs["tokenizer_hash"] = fixed("868d8a9f286a6d62")
        f.attrs["vocab_size"] = np.int64(vocab_size)
        f.attrs["sources"] = fixed("tests/fuzz/make_corpus.sh")
        f.attrs["eot_id"] = np.int64(vocab_size - 1)
        f.attrs["n_documents_train"] = np.int64(2)
        f.attrs["n_documents_val"] = np.int64(1)
        for split, n in (("train", n_train), ("val", n_val)):
            t = rng.integers(0, vocab_size - 1, n).astype(dtype)
            t[0] = vocab_size - 1
            f.create_dataset(f"{split}/tokens", data=t, chunks=(64,), maxshape=(None,), fletcher32=True)
tokset("u16", 512, np.uint16, 300, 70)
tokset("u32", 70000, np.uint32, 200, 40)
PY
ls -la "$out/checkpoint" "$out/tokens" "$out/safetensors"

# GGUF seeds (fuzz_gguf): small models with the fuzz vocabulary, one per mapping and a Q8_0 one,
# exported by monolith export gguf from checkpoints given the /tokenizer group above.
mkdir -p "$out/gguf"
"$bin" init --preset tiny --vocab-size 512 --d-model 8 --n-layers 1 --n-heads 2 --n-kv-heads 1 --head-dim 4 \
    --n-experts 2 --top-k 1 --d-ff 8 --max-seq-len 16 -o "$tmp/llama.h5" >/dev/null
"$bin" init --preset tiny --vocab-size 512 --d-model 8 --n-layers 2 --moe-layers 0,1 --d-ff-dense 8 --n-heads 2 \
    --n-kv-heads 1 --head-dim 4 --n-experts 2 --top-k 2 --norm-topk 0 --d-ff 8 --n-shared-experts 1 \
    --d-ff-shared 4 --max-seq-len 16 -o "$tmp/deepseek.h5" >/dev/null
"$bin" init --preset tiny --vocab-size 512 --d-model 32 --n-layers 1 --n-heads 2 --n-kv-heads 1 \
    --n-experts 2 --top-k 2 --d-ff 32 --max-seq-len 16 -o "$tmp/q8.h5" >/dev/null
$py - "$out" "$tmp" <<'PY'
import sys, h5py
out, tmp = sys.argv[1], sys.argv[2]
with h5py.File(f"{out}/checkpoint/with_tokenizer.h5", "r") as src:
    for name in ("llama", "deepseek", "q8"):
        with h5py.File(f"{tmp}/{name}.h5", "a", libver=("v108", "v108")) as f:
            src.copy(src["tokenizer"], f, "tokenizer")
PY
"$bin" export gguf "$tmp/llama.h5" -o "$out/gguf/llama.gguf" >/dev/null
"$bin" export gguf "$tmp/deepseek.h5" --type bf16 -o "$out/gguf/deepseek_bf16.gguf" >/dev/null
"$bin" export gguf "$tmp/q8.h5" --type q8_0 -o "$out/gguf/q8_0.gguf" >/dev/null
ls -la "$out/gguf"
