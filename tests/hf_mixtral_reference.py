#!/usr/bin/python3
"""hf_mixtral_reference.py: Hugging Face Mixtral's forward pass, written from its documented
formulas (transformers' modeling_mixtral: RMSNorm, rotate-half RoPE, GQA attention, softmax
router with renormalized top-k, SwiGLU experts w2(silu(w1 x) * w3 x)) in float64 PyTorch. It
reads an exported folder with its own safetensors reader (no monolith code, no transformers,
no safetensors package) and compares its logits with a `monolith dump` of the same tokens.

    hf_mixtral_reference.py DIR TOKENS.h5 DUMP.h5 [--tol 1e-5]

Prints the largest absolute logit difference; exit 1 if it is above --tol. The router's top-k
choices are computed here in float64; the test models keep every token clear of ties.
"""
import argparse
import json
import os
import struct
import sys

import h5py
import numpy as np
import torch

DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64}


def read_safetensors(path):
    """The tensors of one safetensors file as float64 torch tensors (F32, F16, BF16)."""
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        if e["dtype"] == "BF16":  # the top half of a float32
            a = np.frombuffer(data[b:end], dtype="<u2").astype(np.uint32) << 16
            a = a.view(np.float32)
        else:
            a = np.frombuffer(data[b:end], dtype=np.dtype(DTYPES[e["dtype"]]).newbyteorder("<"))
        out[name] = torch.from_numpy(a.astype(np.float64).reshape(e["shape"]))
    return out


def read_folder(d):
    cfg = json.load(open(os.path.join(d, "config.json")))
    idx = os.path.join(d, "model.safetensors.index.json")
    w = {}
    files = sorted(set(json.load(open(idx))["weight_map"].values())) if os.path.exists(idx) else ["model.safetensors"]
    for f in files:
        w.update(read_safetensors(os.path.join(d, f)))
    return cfg, w


def rms_norm(x, weight, eps):
    return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def forward(cfg, w, ids):
    """logits [B, T, V] of Mixtral on ids [B, T]."""
    B, T = ids.shape
    d, nh = cfg["hidden_size"], cfg["num_attention_heads"]
    nkv = cfg.get("num_key_value_heads", nh)
    hd = cfg.get("head_dim") or d // nh
    E, k, eps = cfg["num_local_experts"], cfg["num_experts_per_tok"], cfg["rms_norm_eps"]
    inv_freq = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    freqs = torch.outer(torch.arange(T, dtype=torch.float64), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos(), emb.sin()  # [T, hd]
    mask = torch.full((T, T), float("-inf"), dtype=torch.float64).triu(1)
    h = w["model.embed_tokens.weight"][ids]
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        x = rms_norm(h, w[p + "input_layernorm.weight"], eps)
        q = (x @ w[p + "self_attn.q_proj.weight"].T).view(B, T, nh, hd).transpose(1, 2)
        kk = (x @ w[p + "self_attn.k_proj.weight"].T).view(B, T, nkv, hd).transpose(1, 2)
        v = (x @ w[p + "self_attn.v_proj.weight"].T).view(B, T, nkv, hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        kk = kk * cos + rotate_half(kk) * sin
        kk = kk.repeat_interleave(nh // nkv, dim=1)  # query head j reads kv head j // (nh / nkv)
        v = v.repeat_interleave(nh // nkv, dim=1)
        att = torch.softmax(q @ kk.transpose(-1, -2) / hd ** 0.5 + mask, dim=-1)
        o = (att @ v).transpose(1, 2).reshape(B, T, nh * hd)
        h = h + o @ w[p + "self_attn.o_proj.weight"].T
        x = rms_norm(h, w[p + "post_attention_layernorm.weight"], eps).reshape(B * T, d)
        probs = torch.softmax(x @ w[p + "block_sparse_moe.gate.weight"].T, dim=-1)
        top_w, top_e = torch.topk(probs, k, dim=-1)
        top_w = top_w / top_w.sum(-1, keepdim=True)
        out = torch.zeros_like(x)
        for e in range(E):
            pe = p + f"block_sparse_moe.experts.{e}."
            rows, slot = (top_e == e).nonzero(as_tuple=True)
            if rows.numel() == 0:
                continue
            xe = x[rows]
            y = (torch.nn.functional.silu(xe @ w[pe + "w1.weight"].T) * (xe @ w[pe + "w3.weight"].T)) @ w[pe + "w2.weight"].T
            out.index_add_(0, rows, y * top_w[rows, slot, None])
        h = h + out.view(B, T, d)
    h = rms_norm(h, w["model.norm.weight"], eps)
    return h @ w["lm_head.weight"].T


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir")
    ap.add_argument("tokens")
    ap.add_argument("dump")
    ap.add_argument("--tol", type=float, default=1e-5)
    a = ap.parse_args()
    cfg, w = read_folder(a.dir)
    assert cfg["model_type"] == "mixtral", cfg["model_type"]
    ids = torch.from_numpy(h5py.File(a.tokens, "r")["tokens"][()][:, :-1].astype(np.int64))
    want = torch.from_numpy(h5py.File(a.dump, "r")["logits"][()].astype(np.float64))
    got = forward(cfg, w, ids)
    diff = (got - want).abs().max().item()
    scale = want.abs().max().item()
    print(f"{a.dir}: logits {tuple(got.shape)}, largest |logit| {scale:.3g}, largest difference {diff:.2e} "
          f"(tolerance {a.tol:g})")
    sys.exit(0 if diff <= a.tol else 1)


if __name__ == "__main__":
    main()
