#!/usr/bin/env bash
# interop_hf.sh: `monolith export hf` / `import hf` (engine/interop/hf_model.h, hf_tokenizer.h).
#  - export -> import gives back every /model tensor bit for bit (f32), the same config and
#    the same tokenizer (bytes of the ranks, special tokens), in one file and in shards;
#  - f16 and bf16 exports read back as numpy's round-to-nearest-even of the weights;
#  - configs Mixtral cannot hold, other model types and other tokenizers are refused by name;
#  - hostile safetensors (truncated, absurd header length, offsets past the end, overlapping,
#    wrong shape, unknown dtype, huge counts): one line, non-zero exit, no checkpoint written.
# Fails (never skips) without h5py.
set -euo pipefail
bin=${MONOLITH_BIN:?MONOLITH_BIN must point at the monolith binary}
src=${MONOLITH_SOURCE_DIR:?}
py=python3
/usr/bin/python3 -c 'import h5py' 2>/dev/null && py=/usr/bin/python3
$py -c 'import h5py, numpy' || { echo "interop_hf: needs python3-h5py (scripts/setup.sh installs it)"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fx=$src/tests/fixtures

# The `tiny` fixture (every layer MoE, top-2 of 4, norm_topk 1, V = 512) with the 511-rank
# test vocabulary and <|endoftext|> = 511 as its tokenizer.
cp "$fx/tiny.ckpt.h5" "$tmp/model.h5"
$py - "$tmp/model.h5" "$src/tests/fuzz/vocab.tiktoken" <<'PY'
import sys, h5py, numpy as np
vocab = open(sys.argv[2], "rb").read()
with h5py.File(sys.argv[1], "a", libver=("v108", "v108")) as f:
    g = f.create_group("tokenizer")
    g.create_dataset("tiktoken", data=np.frombuffer(vocab, dtype=np.uint8), chunks=True, fletcher32=True)
    g.create_dataset("special_names", data=np.array([b"<|endoftext|>"], dtype=h5py.string_dtype("utf-8", 14)),
                     chunks=(1,), fletcher32=True)
    g.create_dataset("special_ids", data=np.array([511], dtype=np.int64), chunks=(1,), fletcher32=True)
PY

# -- round trips
"$bin" export hf "$tmp/model.h5" "$tmp/hf" >/dev/null
"$bin" import hf "$tmp/hf" -o "$tmp/back.h5" >/dev/null
"$bin" export hf "$tmp/model.h5" "$tmp/hf_sharded" --shard-size 100K >/dev/null
[ -f "$tmp/hf_sharded/model.safetensors.index.json" ] && [ ! -e "$tmp/hf_sharded/model.safetensors" ]
[ -f "$tmp/hf_sharded/model-00002-of-00012.safetensors" ]
"$bin" import hf "$tmp/hf_sharded" -o "$tmp/back_sharded.h5" >/dev/null
for t in f16 bf16; do
    "$bin" export hf "$tmp/model.h5" "$tmp/hf_$t" --dtype $t >/dev/null
    "$bin" import hf "$tmp/hf_$t" -o "$tmp/back_$t.h5" >/dev/null
done
# Exporting again over a sharded folder as one file removes the index and shards' claim.
"$bin" export hf "$tmp/back_sharded.h5" "$tmp/hf_sharded" >/dev/null
[ -f "$tmp/hf_sharded/model.safetensors" ] && [ ! -e "$tmp/hf_sharded/model.safetensors.index.json" ]
cmp "$tmp/hf/model.safetensors" "$tmp/hf_sharded/model.safetensors"
cmp "$tmp/hf/tokenizer.json" "$tmp/hf_sharded/tokenizer.json"

$py - "$tmp" <<'PY'
import sys, json, h5py, numpy as np
tmp = sys.argv[1]
a = h5py.File(f"{tmp}/model.h5", "r")
names = []
a["model"].visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
assert len(names) == 2 * 10 + 3, names

def bf16(x):  # round to nearest even on the bits, as the format stores it
    u = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    return (((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16).astype(np.uint32).view(np.float32)

for name, conv in (("back", None), ("back_sharded", None), ("back_f16", lambda x: x.astype(np.float16).astype(np.float32)),
                   ("back_bf16", bf16)):
    b = h5py.File(f"{tmp}/{name}.h5", "r")
    for n in names:
        x, y = a["model"][n][()], b["model"][n][()]
        want = conv(x) if conv else x
        assert x.shape == y.shape and y.dtype == np.float32, (name, n)
        assert (want.view(np.uint32) == y.view(np.uint32)).all(), (name, n, np.abs(want - y).max())
    for k, v in a["config"].attrs.items():
        assert np.array_equal(b["config"].attrs[k], v), (name, k, b["config"].attrs[k], v)
    for k in ("tiktoken", "special_names", "special_ids"):
        assert np.array_equal(a["tokenizer"][k][()], b["tokenizer"][k][()]), (name, k)
    if conv is None:
        assert b["experts/provenance"][0].decode().startswith('{"imported_from"'), b["experts/provenance"][0]

# The folder is what transformers reads: config fields, the index, the tokenizer's ids.
c = json.load(open(f"{tmp}/hf/config.json"))
assert c["model_type"] == "mixtral" and c["architectures"] == ["MixtralForCausalLM"], c
assert (c["hidden_size"], c["num_local_experts"], c["num_experts_per_tok"], c["head_dim"]) == (64, 4, 2, 16), c
assert c["eos_token_id"] == 511 and json.load(open(f"{tmp}/hf/generation_config.json"))["eos_token_id"] == 511
assert json.load(open(f"{tmp}/hf_f16/config.json"))["torch_dtype"] == "float16"
t = json.load(open(f"{tmp}/hf/tokenizer.json"))
m = t["model"]
assert m["type"] == "BPE" and t["pre_tokenizer"]["type"] == "ByteLevel" and t["added_tokens"][0]["id"] == 511
assert len(m["vocab"]) == 512 and m["vocab"]["<|endoftext|>"] == 511 and m["vocab"]["Ġ"] == ord(" "), m["vocab"].get("Ġ")
assert len(m["merges"]) == 511 - 256 and all(len(x.split(" ")) == 2 for x in m["merges"])
print(f"round trips: {len(names)} tensors bit for bit (f32, one file and 12 shards), f16/bf16 rounded, tokenizer same")
PY

# -- refusals, each one line naming what is wrong, and no checkpoint left behind
refuse() {  # refuse PATTERN CMD...: the command fails with one line matching PATTERN
    local pat=$1
    shift
    if "$@" >/dev/null 2>"$tmp/err"; then echo "accepted: $*"; exit 1; fi
    grep -q -- "$pat" "$tmp/err" || { echo "for '$*' expected /$pat/, got: $(cat "$tmp/err")"; exit 1; }
    [ "$(wc -l <"$tmp/err")" -eq 1 ] || { echo "more than one line: $(cat "$tmp/err")"; exit 1; }
    [ ! -e "$tmp/x.h5" ] || { echo "a checkpoint was written by: $*"; exit 1; }
}
refuse "moe_layers: layer 1 is dense" "$bin" export hf "$fx/dense_shared_top2_norm0.ckpt.h5" "$tmp/no"
refuse "norm_topk 0" "$bin" export hf "$fx/gqa1_top1_norm0.ckpt.h5" "$tmp/no"
"$bin" init --preset tiny --n-shared-experts 2 -o "$tmp/shared.h5" >/dev/null
refuse "n_shared_experts 2: Mixtral has no shared experts" "$bin" export hf "$tmp/shared.h5" "$tmp/no"
# Routers Mixtral cannot run are refused by field, with nothing written; capacity and
# router noise act only in training and export as they are.
"$bin" init --preset tiny --router-score sigmoid -o "$tmp/sigmoid.h5" >/dev/null
refuse "router_score sigmoid: Mixtral has softmax router scores only" "$bin" export hf "$tmp/sigmoid.h5" "$tmp/no"
"$bin" init --preset tiny --top-k 4 --router-top-p 0.5 -o "$tmp/top_p.h5" >/dev/null
refuse "router_top_p 0.5: Mixtral runs top_k experts" "$bin" export hf "$tmp/top_p.h5" "$tmp/no"
"$bin" init --preset tiny --routed-scale 2 -o "$tmp/scaled_gates.h5" >/dev/null
refuse "routed_scale 2: Mixtral has no gate scale" "$bin" export hf "$tmp/scaled_gates.h5" "$tmp/no"
"$bin" init --preset tiny --balance bias -o "$tmp/biased.h5" >/dev/null
$py - "$tmp/biased.h5" <<'PY'
import sys, h5py
with h5py.File(sys.argv[1], "a") as f:
    f["model/layers/1/moe/router_bias"][2] = -0.25
PY
refuse "layers/1/moe/router_bias: expert 2's entry is -0.25" "$bin" export hf "$tmp/biased.h5" "$tmp/no"
[ ! -e "$tmp/no" ] || { echo "a refused export wrote $tmp/no"; exit 1; }
"$bin" init --preset tiny --capacity-factor 1.25 --router-noise 0.5 --balance bias -o "$tmp/train_only.h5" >/dev/null
"$bin" export hf "$tmp/train_only.h5" "$tmp/hf_train_only" >/dev/null
refuse "no_such_dir/config.json: cannot open" "$bin" import hf "$tmp/no_such_dir" -o "$tmp/x.h5"

edit() {  # edit NAME PYTHON: copy of $tmp/hf as $tmp/NAME, then PYTHON runs with d = that folder
    rm -rf "${tmp:?}/$1"
    cp -r "$tmp/hf" "$tmp/$1"
    $py -c "import json, struct, sys; d = sys.argv[1]
$2" "$tmp/$1"
}
cfgedit() {  # cfgedit NAME KEY JSON-VALUE
    edit "$1" "c = json.load(open(d + '/config.json')); c['$2'] = json.loads('$3'); json.dump(c, open(d + '/config.json', 'w'))"
}
edit noweights "import os; os.remove(d + '/model.safetensors')"
refuse "no model.safetensors or model.safetensors.index.json" "$bin" import hf "$tmp/noweights" -o "$tmp/x.h5"
cfgedit llama model_type '"llama"'
refuse "model_type 'llama' is not supported" "$bin" import hf "$tmp/llama" -o "$tmp/x.h5"
cfgedit gelu hidden_act '"gelu"'
refuse "hidden_act 'gelu'" "$bin" import hf "$tmp/gelu" -o "$tmp/x.h5"
cfgedit scaled rope_scaling '{"type": "linear", "factor": 2}'
refuse "rope_scaling" "$bin" import hf "$tmp/scaled" -o "$tmp/x.h5"
cfgedit wide hidden_size 96
refuse "embed_tokens.weight has shape \[512, 64\], but config.json makes it \[512, 96\]" "$bin" import hf "$tmp/wide" -o "$tmp/x.h5"
cfgedit badint num_local_experts 2.5
refuse '"num_local_experts" must be an integer' "$bin" import hf "$tmp/badint" -o "$tmp/x.h5"
# a sliding window shorter than max_position_embeddings becomes max_seq_len (exact up to it)
cfgedit window sliding_window 64
"$bin" import hf "$tmp/window" -o "$tmp/window.h5" | grep -q "max_seq_len 64"

tokedit() {  # tokedit NAME PYTHON-on-t
    edit "$1" "t = json.load(open(d + '/tokenizer.json'))
$2
json.dump(t, open(d + '/tokenizer.json', 'w'))"
}
tokedit wordpiece "t['model']['type'] = 'WordPiece'"
refuse "model type is WordPiece" "$bin" import hf "$tmp/wordpiece" -o "$tmp/x.h5"
"$bin" import hf "$tmp/wordpiece" -o "$tmp/notok.h5" --no-tokenizer | grep -q "no tokenizer"
tokedit swapped "m = t['model']['merges']; m[3], m[4] = m[4], m[3]"
refuse "merge 3 is .* but the token ids imply" "$bin" import hf "$tmp/swapped" -o "$tmp/x.h5"
tokedit arrays "t['model']['merges'] = [x.split(' ') for x in t['model']['merges']]"
"$bin" import hf "$tmp/arrays" -o "$tmp/arrays.h5" | grep -q "with its tokenizer"
tokedit llama3 "t['pre_tokenizer'] = {'type': 'Sequence', 'pretokenizers': [{'type': 'Split', 'pattern': {'Regex': \"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+\"}, 'behavior': 'Isolated', 'invert': False}, {'type': 'ByteLevel', 'add_prefix_space': False, 'use_regex': False}]}"
refuse "splits with the pattern .* not GPT-2's" "$bin" import hf "$tmp/llama3" -o "$tmp/x.h5"
tokedit sp "t['model']['byte_fallback'] = True"
refuse "byte_fallback" "$bin" import hf "$tmp/sp" -o "$tmp/x.h5"
tokedit gap "v = t['model']['vocab']; v['new'] = 600"
refuse "vocab entry \"new\" has id 600" "$bin" import hf "$tmp/gap" -o "$tmp/x.h5"

# -- hostile safetensors: the header rewritten, or the file cut
stedit() {  # stedit NAME PYTHON-on-h (the header dict) [RAW-PYTHON-on-raw]
    edit "$1" "p = d + '/model.safetensors'; raw = open(p, 'rb').read(); n = struct.unpack('<Q', raw[:8])[0]
h = json.loads(raw[8:8 + n]); data = raw[8 + n:]
$2
hb = json.dumps(h).encode(); raw = struct.pack('<Q', len(hb)) + hb + data
${3:-}
open(p, 'wb').write(raw)"
}
E='model.layers.0.self_attn.q_proj.weight'
stedit truncated "" "raw = raw[:len(raw) // 2]"
refuse "past its end.*truncated" "$bin" import hf "$tmp/truncated" -o "$tmp/x.h5"
stedit short "" "raw = raw[:5]"
refuse "shorter than the 8-byte header length" "$bin" import hf "$tmp/short" -o "$tmp/x.h5"
stedit hugeheader "" "raw = struct.pack('<Q', 1 << 40) + raw[8:]"
refuse "the header claims 1099511627776 bytes" "$bin" import hf "$tmp/hugeheader" -o "$tmp/x.h5"
stedit past "h['$E']['data_offsets'][1] += 1 << 30"
refuse "past its end" "$bin" import hf "$tmp/past" -o "$tmp/x.h5"
stedit overlap "o = h['$E']['data_offsets']; h['model.layers.0.self_attn.k_proj.weight']['data_offsets'] = [o[0] + 4, o[0] + 4 + 2048 * 4]"
refuse "overlap" "$bin" import hf "$tmp/overlap" -o "$tmp/x.h5"
stedit shape "h['$E']['shape'] = [16, 256]"
refuse "q_proj.weight has shape \[16, 256\]" "$bin" import hf "$tmp/shape" -o "$tmp/x.h5"
stedit dtype "h['$E']['dtype'] = 'Q4_K'"
refuse "unknown dtype 'Q4_K'" "$bin" import hf "$tmp/dtype" -o "$tmp/x.h5"
stedit int8 "h['$E']['dtype'] = 'I8'; h['$E']['shape'] = [64, 256]  # same bytes"
refuse "is I8; monolith reads F32, F16 and BF16" "$bin" import hf "$tmp/int8" -o "$tmp/x.h5"
stedit huge "h['$E']['shape'] = [1 << 40, 1 << 40, 1 << 40]"
refuse "more than 2^60" "$bin" import hf "$tmp/huge" -o "$tmp/x.h5"
stedit notjson "" "raw = raw[:8] + b'{\"a\": [' + raw[15:]"
refuse "not valid JSON" "$bin" import hf "$tmp/notjson" -o "$tmp/x.h5"
stedit extra "h['model.layers.0.self_attn.q_proj.bias'] = {'dtype': 'F32', 'shape': [0], 'data_offsets': [0, 0]}"
refuse "q_proj.bias is not part of a Mixtral model" "$bin" import hf "$tmp/extra" -o "$tmp/x.h5"
stedit nan "" "i = raw.index(b'lm_head'); raw = raw[:len(raw) - 4] + struct.pack('<f', float('nan'))"
refuse "lm_head.weight' holds NaN" "$bin" import hf "$tmp/nan" -o "$tmp/x.h5"
echo "interop_hf: ok"
