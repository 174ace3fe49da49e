#!/usr/bin/env bash
# init_layout.sh: `monolith init` with several presets and overrides writes checkpoints
# in which h5py (Debian's python3-h5py) sees every path, shape and dtype of docs/design.md section 11.2
# section 4, and `monolith inspect` reads them back. Fails (never skips) without h5py.
set -euo pipefail
bin=${MONOLITH_BIN:?MONOLITH_BIN must point at the monolith binary}
py=python3
/usr/bin/python3 -c 'import h5py' 2>/dev/null && py=/usr/bin/python3
$py -c 'import h5py, numpy' || { echo "init_layout: needs python3-h5py (scripts/setup.sh installs it)"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

run() {  # name, then init flags
    local name=$1; shift
    "$bin" init "$@" -o "$tmp/$name.h5" >/dev/null
    "$bin" inspect "$tmp/$name.h5" >"$tmp/$name.txt"
}
run tiny --preset tiny
run gqa1 --preset tiny --n-kv-heads 1 --top-k 1 --norm-topk 0 --seed 9
run mixed --preset tiny --moe-layers 1,0 --d-ff-dense 96 --n-shared-experts 1 --d-ff-shared 64
run wide --preset tiny --n-experts 16 --vocab-size 300 --rope-theta 500 --norm-eps 1e-3 --n-layers 3
run dense --preset tiny --moe-layers 0,0
run small --preset small
run routed --preset tiny --router-score sigmoid --balance bias --bias-rate 0.002 --capacity-factor 1.25 \
    --router-noise 0.5 --routed-scale 2.5
run topp --preset tiny --router-top-p 0.5 --top-k 3
# inspect names the routing kind.
grep -q "^routing     softmax top-2 of 4, aux loss 0.01, dropless$" "$tmp/tiny.txt" || { echo "inspect: $(grep routing "$tmp/tiny.txt")"; exit 1; }
grep -q "^routing     sigmoid top-2 of 4, bias balancing (rate 0.002), gates x 2.5, capacity 1.25 (drops), training noise 0.5$" \
    "$tmp/routed.txt" || { echo "inspect: $(grep routing "$tmp/routed.txt")"; exit 1; }
grep -q "^routing     softmax top-p 0.5 (at most 3 of 4)" "$tmp/topp.txt" || { echo "inspect: $(grep routing "$tmp/topp.txt")"; exit 1; }
# top-p needs softmax scores; a bad kind names the choices.
if "$bin" init --preset tiny --router-score sigmoid --router-top-p 0.5 -o "$tmp/bad.h5" 2>"$tmp/err"; then echo "sigmoid top-p accepted"; exit 1; fi
grep -q "router_top_p" "$tmp/err" || { echo "error does not name router_top_p: $(cat "$tmp/err")"; exit 1; }
if "$bin" init --preset tiny --balance loss -o "$tmp/bad.h5" 2>"$tmp/err"; then echo "balance loss accepted"; exit 1; fi
grep -q "aux or bias" "$tmp/err" || { echo "error does not name the choices: $(cat "$tmp/err")"; exit 1; }

# Bad overrides are refused with one line naming the field.
if "$bin" init --preset tiny --top-k 9 -o "$tmp/bad.h5" 2>"$tmp/err"; then echo "top-k 9 accepted"; exit 1; fi
grep -q "top_k" "$tmp/err" || { echo "error does not name top_k: $(cat "$tmp/err")"; exit 1; }
[ "$(wc -l <"$tmp/err")" -eq 1 ] || { echo "error is not one line"; exit 1; }
[ ! -e "$tmp/bad.h5" ] && [ ! -e "$tmp/bad.h5.tmp" ] || { echo "a refused init left a file"; exit 1; }

$py - "$tmp" <<'EOF'
import sys, h5py, numpy as np
tmp = sys.argv[1]

def check(name, want_cfg):
    f = h5py.File(f"{tmp}/{name}.h5", "r")
    # Strings are fixed-length UTF-8, NUL-padded (docs/formats.md): h5py gives bytes.
    for k in ["format", "created_by"]:
        t = f.attrs.get_id(k).get_type()
        assert isinstance(f.attrs[k], bytes) and not t.is_variable_str(), (name, k, f.attrs[k])
        assert t.get_cset() == h5py.h5t.CSET_UTF8 and t.get_strpad() == h5py.h5t.STR_NULLPAD, (name, k)
    assert f.attrs["format"].decode() == "monolith-checkpoint", f.attrs["format"]
    assert f.attrs["format_version"] == 1 and f.attrs["format_version"].dtype == np.int64
    c = f["config"].attrs
    ints = ["vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "head_dim", "n_experts", "top_k", "d_ff",
            "n_shared_experts", "d_ff_shared", "d_ff_dense", "max_seq_len", "norm_topk"]
    reals = ["rope_theta", "norm_eps", "aux_coef", "z_coef"]
    for k in ints:
        assert np.asarray(c[k]).shape == () and c[k].dtype == np.int64, (name, k, c[k])
    for k in reals + ["routed_scale", "bias_rate", "capacity_factor", "router_noise", "router_top_p"]:
        assert np.asarray(c[k]).shape == () and c[k].dtype == np.float64, (name, k, c[k])
    for k, default in [("router_score", "softmax"), ("balance", "aux")]:  # routing kind: fixed-length strings
        assert isinstance(c[k], bytes) and c[k].decode() in (default, "sigmoid", "bias"), (name, k, c[k])
        assert c.get_id(k).get_type().get_cset() == h5py.h5t.CSET_UTF8, (name, k)
    L = int(c["n_layers"])
    ml = c["moe_layers"]
    assert ml.dtype == np.int64 and ml.shape == (L,), (name, ml)
    for k, v in want_cfg.items():
        got = list(c[k]) if k == "moe_layers" else c[k]
        assert got == v, (name, k, got, v)
    V, d, nh, nkv, hd = (int(c[k]) for k in ["vocab_size", "d_model", "n_heads", "n_kv_heads", "head_dim"])
    E, ff, ns, ffs, ffd = (int(c[k]) for k in ["n_experts", "d_ff", "n_shared_experts", "d_ff_shared", "d_ff_dense"])
    if not any(ml): assert ffd > 0
    if all(ml): assert ffd == 0
    if ns == 0: assert ffs == 0
    want = {"tok_embeddings": (V, d), "norm": (d,), "output": (V, d)}
    for l in range(L):
        p = f"layers/{l}/"
        want.update({p + "attn_norm": (d,), p + "attn/wq": (nh * hd, d), p + "attn/wk": (nkv * hd, d),
                     p + "attn/wv": (nkv * hd, d), p + "attn/wo": (d, nh * hd), p + "ffn_norm": (d,)})
        if ml[l]:
            want.update({p + "moe/router": (E, d), p + "moe/router_bias": (E,), p + "moe/w1": (E, ff, d),
                         p + "moe/w3": (E, ff, d), p + "moe/w2": (E, d, ff)})
            if ns:
                want.update({p + "moe/shared_w1": (ns * ffs, d), p + "moe/shared_w3": (ns * ffs, d),
                             p + "moe/shared_w2": (d, ns * ffs)})
            assert "ffn" not in f["model/" + p], (name, l)
        else:
            want.update({p + "ffn/w1": (ffd, d), p + "ffn/w3": (ffd, d), p + "ffn/w2": (d, ffd)})
            assert "moe" not in f["model/" + p], (name, l)
    got = {}
    f["model"].visititems(lambda k, o: got.__setitem__(k, o) if isinstance(o, h5py.Dataset) else None)
    assert set(got) == set(want), (name, set(got) ^ set(want))
    for k, shape in want.items():
        ds = got[k]
        assert ds.shape == shape and ds.dtype == np.float32, (name, k, ds.shape, shape, ds.dtype)
        x = ds[()]
        assert np.isfinite(x).all()
        if k.endswith("norm"):
            assert (x == 1).all(), (name, k)
        elif k.endswith("router_bias"):
            assert (x == 0).all(), (name, k)  # a buffer: zeros at init
        else:
            out = k.endswith("wo") or k.endswith("w2")
            std = 0.02 / np.sqrt(2 * L) if out else 0.02
            assert abs(x.std() - std) < 0.25 * std, (name, k, x.std(), std)
    for k in ["name", "domain", "provenance"]:
        ds = f["experts/" + k]
        assert ds.shape == (E,), (name, k, ds.shape)
        sd = h5py.check_string_dtype(ds.dtype)
        assert sd is not None and sd.length is not None and sd.encoding == "utf-8", (name, k, ds.dtype)
        assert ds.fletcher32, (name, k)
    assert [s.decode() for s in f["experts/name"][()]] == [f"expert{e}" for e in range(E)]
    assert "tokenizer" not in f  # init writes none; the data layer adds it
    f.close()

check("tiny", {"vocab_size": 512, "d_model": 64, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "head_dim": 16,
               "n_experts": 4, "top_k": 2, "d_ff": 128, "n_shared_experts": 0, "moe_layers": [1, 1]})
check("gqa1", {"n_kv_heads": 1, "top_k": 1, "norm_topk": 0})
check("mixed", {"moe_layers": [1, 0], "d_ff_dense": 96, "n_shared_experts": 1, "d_ff_shared": 64})
check("wide", {"n_experts": 16, "vocab_size": 300, "rope_theta": 500.0, "norm_eps": 1e-3, "n_layers": 3,
               "moe_layers": [1, 1, 1]})
check("dense", {"moe_layers": [0, 0], "d_ff_dense": 128})
check("small", {"vocab_size": 4096, "n_experts": 8, "top_k": 2})
check("routed", {"router_score": b"sigmoid", "balance": b"bias", "bias_rate": 0.002, "capacity_factor": 1.25,
                 "router_noise": 0.5, "routed_scale": 2.5, "router_top_p": 0.0})
check("topp", {"router_score": b"softmax", "router_top_p": 0.5, "top_k": 3})
print("init_layout: ok")
EOF
grep -q "active per token" "$tmp/small.txt"
grep -q "layers/0/moe/w1 *\[8, 512, 256\]" "$tmp/small.txt"
