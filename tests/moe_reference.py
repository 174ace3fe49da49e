#!/usr/bin/python3
"""moe_reference.py: an independent PyTorch implementation of monolith's model (docs/design.md sections 3-6)
and of its checkpoint and dump files (docs/design.md section 11).

Written from docs/design.md alone, as plainly as possible: every expert runs on every token and a dense
gate matrix (zero outside the top-k) combines them, so there is no routing bookkeeping to get wrong.
Gradients come from autograd. It is the oracle for monolith's C engine:

    tests/make_fixtures.py   writes checkpoints, token batches and expected dumps into tests/fixtures/
    tests/compare_dump.py    checks any `monolith dump` output against this model

Usage as a library:

    cfg, params = load_checkpoint("model.ckpt.h5")           # Config, {name: float32 numpy array}
    res = run(cfg, params, tokens, dtype=torch.float64)      # tokens int64 [B, T+1]
    res.loss, res.logits, res.routing[L], res.grads[name]

Self-test (finite differences in float64, a hand-computed RoPE example, GQA and tie rules):

    /usr/bin/python3 tests/moe_reference.py --selftest

Needs Debian's python3-torch, python3-h5py and python3-numpy (`scripts/setup.sh --torch`).
"""
import dataclasses
import json
import math
import os
import sys

import h5py
import numpy as np
import torch
import torch.nn.functional as F

CKPT_FORMAT = "monolith-checkpoint"
CKPT_VERSION = 1
CREATED_BY = "tests/moe_reference.py"

# /config attributes and their types (docs/design.md section 11.1): integers int64, reals float64, flags int64.
INT_FIELDS = ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "head_dim", "n_experts", "top_k",
              "d_ff", "n_shared_experts", "d_ff_shared", "d_ff_dense", "max_seq_len", "norm_topk")
REAL_FIELDS = ("rope_theta", "norm_eps", "aux_coef", "z_coef")
# Routing variants (docs/design.md, "Routing"): optional in /config (a file from before them has none and
# routes as their defaults do); router_score and balance are string attributes.
STR_FIELDS = ("router_score", "balance")
OPT_REAL_FIELDS = ("routed_scale", "bias_rate", "capacity_factor", "router_noise", "router_top_p")


class ReferenceError(Exception):
    """A bad file or configuration: the message names the file, tensor or field and the fix."""


# ----------------------------------------------------------------------------------------------- config

@dataclasses.dataclass
class Config:
    vocab_size: int
    d_model: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    n_experts: int
    top_k: int
    d_ff: int
    moe_layers: tuple            # one 0/1 per layer, 1 = MoE
    n_shared_experts: int = 0
    d_ff_shared: int = 0
    d_ff_dense: int = 0
    max_seq_len: int = 128
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    norm_topk: int = 1
    aux_coef: float = 0.01
    z_coef: float = 0.001
    router_score: str = "softmax"    # or "sigmoid"
    routed_scale: float = 1.0
    balance: str = "aux"             # or "bias" (router_bias moved by bias_update after each step)
    bias_rate: float = 1e-3
    capacity_factor: float = 0.0     # 0: dropless
    router_noise: float = 0.0        # training forwards only
    router_top_p: float = 0.0        # 0: top-k

    def validate(self):
        """Raises ReferenceError naming the first inconsistent field."""
        def bad(field, why):
            raise ReferenceError(f"config: {field} = {getattr(self, field)!r}: {why}")
        for f in ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "head_dim", "max_seq_len"):
            if getattr(self, f) < 1:
                bad(f, "must be >= 1")
        if self.head_dim % 2:
            bad("head_dim", "must be even (RoPE rotates pairs)")
        if self.n_heads % self.n_kv_heads:
            bad("n_kv_heads", f"must divide n_heads = {self.n_heads}")
        if len(self.moe_layers) != self.n_layers or any(x not in (0, 1) for x in self.moe_layers):
            bad("moe_layers", f"must be {self.n_layers} values, each 0 or 1")
        if self.norm_topk not in (0, 1):
            bad("norm_topk", "must be 0 or 1")
        if self.router_score not in ("softmax", "sigmoid"):
            bad("router_score", "must be softmax or sigmoid")
        if self.balance not in ("aux", "bias"):
            bad("balance", "must be aux or bias")
        if not 0 <= self.router_top_p <= 1 or (self.router_top_p > 0 and self.router_score != "softmax"):
            bad("router_top_p", "must be in [0, 1], and > 0 only with softmax scores")
        if self.routed_scale <= 0 or self.capacity_factor < 0 or self.router_noise < 0 or self.bias_rate < 0:
            bad("routed_scale", "routed_scale must be > 0; capacity_factor, router_noise, bias_rate >= 0")
        if any(self.moe_layers):
            if self.n_experts < 1 or self.d_ff < 1:
                bad("n_experts", "MoE layers need n_experts >= 1 and d_ff >= 1")
            if not 1 <= self.top_k <= self.n_experts:
                bad("top_k", f"must be in 1..n_experts = {self.n_experts}")
        if (self.n_shared_experts > 0) != (self.d_ff_shared > 0):
            bad("d_ff_shared", "n_shared_experts and d_ff_shared must both be 0 or both be > 0")
        if not all(self.moe_layers) and self.d_ff_dense < 1:
            bad("d_ff_dense", "dense layers (moe_layers 0) need d_ff_dense >= 1")
        if all(self.moe_layers) and self.d_ff_dense != 0:
            bad("d_ff_dense", "must be 0 when no layer is dense (docs/design.md section 2)")
        if self.rope_theta <= 0 or self.norm_eps <= 0:
            bad("rope_theta", "rope_theta and norm_eps must be > 0")
        return self


def param_shapes(cfg):
    """The checkpoint's tensors in file order: a list of (name under /model, shape)."""
    d, hd, E = cfg.d_model, cfg.head_dim, cfg.n_experts
    out = [("tok_embeddings", (cfg.vocab_size, d))]
    for L in range(cfg.n_layers):
        p = f"layers/{L}/"
        out += [(p + "attn_norm", (d,)),
                (p + "attn/wq", (cfg.n_heads * hd, d)),
                (p + "attn/wk", (cfg.n_kv_heads * hd, d)),
                (p + "attn/wv", (cfg.n_kv_heads * hd, d)),
                (p + "attn/wo", (d, cfg.n_heads * hd)),
                (p + "ffn_norm", (d,))]
        if cfg.moe_layers[L]:
            out += [(p + "moe/router", (E, d)),
                    (p + "moe/router_bias", (E,)),
                    (p + "moe/w1", (E, cfg.d_ff, d)),
                    (p + "moe/w3", (E, cfg.d_ff, d)),
                    (p + "moe/w2", (E, d, cfg.d_ff))]
            if cfg.n_shared_experts:
                fs = cfg.n_shared_experts * cfg.d_ff_shared
                out += [(p + "moe/shared_w1", (fs, d)), (p + "moe/shared_w3", (fs, d)), (p + "moe/shared_w2", (d, fs))]
        else:
            out += [(p + "ffn/w1", (cfg.d_ff_dense, d)),
                    (p + "ffn/w3", (cfg.d_ff_dense, d)),
                    (p + "ffn/w2", (d, cfg.d_ff_dense))]
    out += [("norm", (d,)), ("output", (cfg.vocab_size, d))]
    return out


def init_params(cfg, seed, std=0.02, norm_jitter=0.0, router_std=None):
    """Random parameters as `monolith init` (docs/design.md section 6): normal(0, std), the output projections
    (wo, w2, shared_w2, and the dense ffn's w2) with std/sqrt(2*n_layers), norms at 1. norm_jitter > 0
    sets the norms to 1 + norm_jitter*N(0,1) instead (fixtures: so norm gradients matter); router_std
    overrides the router's std. Returns {name: float32 numpy array}; the same seed gives the same values."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in param_shapes(cfg):
        leaf = name.rsplit("/", 1)[-1]
        if leaf == "router_bias":        # zeros, drawing nothing (as monolith init)
            out[name] = np.zeros(shape, dtype=np.float32)
            continue
        x = torch.randn(shape, generator=g, dtype=torch.float64)
        if leaf in ("attn_norm", "ffn_norm", "norm"):
            x = 1.0 + norm_jitter * x
        elif leaf in ("wo", "w2", "shared_w2"):
            x = x * (std / math.sqrt(2 * cfg.n_layers))
        elif leaf == "router" and router_std is not None:
            x = x * router_std
        else:
            x = x * std
        out[name] = x.numpy().astype(np.float32)
    return out


# ----------------------------------------------------------------------------------------------- model

def rmsnorm(x, w, eps):
    """x / sqrt(mean(x^2) + eps) * w over the last dimension."""
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * w


def rope(x, theta):
    """Rotates adjacent pairs (x[2i], x[2i+1]) of each head by pos * theta^(-2i/head_dim).
    x: [B, T, heads, head_dim]; positions are 0..T-1 in every sequence of the batch."""
    B, T, H, hd = x.shape
    i = torch.arange(hd // 2, dtype=torch.float64)
    pos = torch.arange(T, dtype=torch.float64)
    ang = pos[:, None] * theta ** (-2.0 * i / hd)[None, :]           # [T, hd/2], in float64 always
    cos = torch.cos(ang).to(x.dtype)[None, :, None, :]
    sin = torch.sin(ang).to(x.dtype)[None, :, None, :]
    x0, x1 = x[..., 0::2], x[..., 1::2]
    y0 = x0 * cos - x1 * sin
    y1 = x0 * sin + x1 * cos
    return torch.stack((y0, y1), dim=-1).reshape(B, T, H, hd)


def attention(cfg, a, P, p):
    """Causal GQA attention of the normed input a [B, T, d]; returns o wo^T [B, T, d]."""
    B, T, _ = a.shape
    H, KV, hd = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
    q = (a @ P[p + "attn/wq"].T).view(B, T, H, hd)       # head j = rows [j*hd, (j+1)*hd) of wq
    k = (a @ P[p + "attn/wk"].T).view(B, T, KV, hd)
    v = (a @ P[p + "attn/wv"].T).view(B, T, KV, hd)
    q, k = rope(q, cfg.rope_theta), rope(k, cfg.rope_theta)
    group = H // KV
    kv_of_head = torch.arange(H) // group                 # query head j reads kv head j // (H/KV)
    k, v = k[:, :, kv_of_head], v[:, :, kv_of_head]       # [B, T, H, hd]
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))      # [B, H, T, hd]
    s = (q @ k.transpose(-1, -2)) / math.sqrt(hd)         # [B, H, T, T]
    future = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    s = s.masked_fill(future, float("-inf"))
    o = torch.softmax(s, dim=-1) @ v                      # [B, H, T, hd]
    o = o.transpose(1, 2).reshape(B, T, H * hd)           # heads concatenated in head order
    return o @ P[p + "attn/wo"].T


def swiglu(x, w1, w3, w2):
    """(silu(x w1^T) * (x w3^T)) w2^T."""
    return (F.silu(x @ w1.T) * (x @ w3.T)) @ w2.T


def select_topk(p, k, force=None):
    """The top-k experts of each row of p [N, E], by descending probability, ties to the lower index.
    force = (mask [N] bool, experts [N, k]) replaces the choice of the masked rows (compare_dump uses it
    where the other engine broke a near-tie the other way). Returns int64 [N, k]."""
    order = torch.sort(p.detach(), dim=-1, descending=True, stable=True).indices   # stable: lower index first
    idx = order[:, :k].clone()
    if force is not None:
        mask, experts = force
        idx[mask] = experts[mask]
    return idx


def topk_margin(p, k):
    """Per row of p [N, E]: the smallest gap between consecutive sorted probabilities among the first
    k+1 (k if k == E), i.e. how far the selection and its order are from a tie."""
    s = torch.sort(p.detach(), dim=-1, descending=True).values
    m = min(k + 1, p.shape[1])
    if m < 2:
        return torch.full((p.shape[0],), float("inf"), dtype=p.dtype)
    return (s[:, :m - 1] - s[:, 1:m]).min(dim=-1).values


class Rng:
    """monolith's generator (engine/base/rng.c): xoshiro256** seeded by splitmix64, uniform doubles with 53
    bits, normals by Box-Muller (two uniforms each). Reproduces the router noise of a training forward."""
    M = (1 << 64) - 1

    def __init__(self, seed):
        self.s, x = [], seed & self.M
        for _ in range(4):
            x = (x + 0x9E3779B97F4A7C15) & self.M
            z = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & self.M
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & self.M
            self.s.append(z ^ (z >> 31))

    @staticmethod
    def _rotl(x, k):
        return ((x << k) | (x >> (64 - k))) & Rng.M

    def u64(self):
        s = self.s
        r = (self._rotl((s[1] * 5) & self.M, 7) * 9) & self.M
        t = (s[1] << 17) & self.M
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = self._rotl(s[3], 45)
        return r

    def normal(self):
        u1 = (self.u64() >> 11) * 2.0 ** -53
        u2 = (self.u64() >> 11) * 2.0 ** -53
        u1 = max(u1, 1e-300)
        return math.sqrt(-2.0 * math.log(u1)) * math.cos(6.283185307179586 * u2)


def router_noise(cfg, rng, N):
    """The noise one MoE layer of a training forward adds to its logits: fl32(router_noise * n) [N, E], n drawn
    row by row from rng (a Rng shared by the layers, in layer order)."""
    E = cfg.n_experts
    n = np.array([cfg.router_noise * rng.normal() for _ in range(N * E)], dtype=np.float64)
    return n.astype(np.float32).reshape(N, E)


def capacity_mask(cfg, idx, taken):
    """GShard's priority: every token's first choice in token order, then every second choice, ...; each
    expert grants at most C = ceil(capacity_factor * N * k / E) slots. Returns bool [N, k]: slot kept."""
    N, k = idx.shape
    keep = taken.clone()
    if cfg.capacity_factor <= 0:
        return keep
    C = math.ceil(cfg.capacity_factor * N * k / cfg.n_experts)
    used = [0] * cfg.n_experts
    for j in range(k):
        for i in range(N):
            if not taken[i, j]:
                continue
            e = int(idx[i, j])
            if used[e] < C:
                used[e] += 1
            else:
                keep[i, j] = False
    return keep


def bias_update(cfg, b, counts):
    """Bias balancing after an optimizer step: b_e + fl32(bias_rate) * sign(mean_j c_j - c_e), in float32, where
    counts [E] are the slots each expert ran in the step."""
    c = np.asarray(counts, dtype=np.float64)
    sign = np.sign(c.mean() - c).astype(np.float32)
    return (np.asarray(b, dtype=np.float32) + np.float32(cfg.bias_rate) * sign).astype(np.float32)


def moe(cfg, m, P, p, force=None, noise=None):
    """The MoE FFN of m [N, d]. Returns (y [N, d], stats) with stats holding the router scores, the selection
    keys (scores + bias), the chosen experts (-1: a slot top-p left unused or capacity dropped) and gates, the
    top-p distances, the slots each expert ran, and this layer's aux and z losses. noise [N, E]: added to the
    logits (a training forward), or None."""
    N = m.shape[0]
    E, k = cfg.n_experts, cfg.top_k
    logits = m @ P[p + "moe/router"].T                    # [N, E]
    ln = logits if noise is None else logits + torch.from_numpy(noise).to(logits.dtype)
    s = torch.softmax(ln, dim=-1) if cfg.router_score == "softmax" else torch.sigmoid(ln)
    key = s.detach() + P[p + "moe/router_bias"].detach()  # selection only: the bias gets no gradient
    idx = select_topk(key, k, force)                      # [N, k]
    sel = s.gather(1, idx)                                # [N, k]
    taken = torch.ones(N, k, dtype=torch.bool)
    if cfg.router_top_p > 0:                              # experts until their probabilities reach top_p
        cum = torch.cumsum(sel.detach(), dim=1)
        taken[:, 1:] = cum[:, :-1] < cfg.router_top_p
        taken = torch.cumprod(taken.to(torch.int64), dim=1).to(torch.bool)
    tp_margin = (cum[:, :-1] - cfg.router_top_p).abs().min(dim=1).values if cfg.router_top_p > 0 and k > 1 \
        else torch.full((N,), float("inf"), dtype=m.dtype)
    sel = torch.where(taken, sel, torch.zeros_like(sel))
    gates = sel / sel.sum(-1, keepdim=True) if cfg.norm_topk else sel
    gates = gates * cfg.routed_scale
    live = capacity_mask(cfg, idx, taken)                 # a dropped slot: gate 0, the others unchanged
    gates = torch.where(live, gates, torch.zeros_like(gates))
    G = torch.zeros(N, E, dtype=m.dtype).scatter_add(1, idx, gates)   # dense gates, zero outside the slots
    y = torch.zeros_like(m)
    for e in range(E):                                    # every expert on every token: plain and exact
        y = y + G[:, e:e + 1] * swiglu(m, P[p + "moe/w1"][e], P[p + "moe/w3"][e], P[p + "moe/w2"][e])
    if cfg.n_shared_experts:
        # n_shared experts stacked along d_ff: their summed outputs are one wider SwiGLU.
        y = y + swiglu(m, P[p + "moe/shared_w1"], P[p + "moe/shared_w3"], P[p + "moe/shared_w2"])
    chosen = torch.bincount(idx[taken].reshape(-1), minlength=E).to(m.dtype)   # a count: no gradient
    ran = torch.bincount(idx[live].reshape(-1), minlength=E)
    f = chosen / (N * k)
    q = s if cfg.router_score == "softmax" else s / s.sum(-1, keepdim=True)
    aux = E * (f * q.mean(0)).sum()
    z = (torch.logsumexp(logits, dim=-1) ** 2).mean()     # on the logits without noise
    experts = torch.where(live, idx, torch.full_like(idx, -1))
    return y, dict(prob=key, score=s, experts=experts, chosen=idx, gates=gates, aux=aux, z=z, counts=ran.numpy(),
                   tp_margin=tp_margin)


def forward(cfg, P, inputs, targets, force=None, noise_seed=None):
    """The model of docs/design.md section 3 (4.1: the routing variants) on inputs [B, T] (int64) with next-token targets [B, T].
    P: {name: tensor}, all of one float dtype. force: {layer: (mask, experts)} for select_topk.
    Returns a dict: logits [B, T, V], ce, aux, z, loss (0-d tensors) and layers {L: moe stats}."""
    B, T = inputs.shape
    dt = P["tok_embeddings"].dtype
    h = P["tok_embeddings"][inputs]                       # [B, T, d]
    layers = {}
    rng = Rng(noise_seed) if noise_seed is not None and cfg.router_noise > 0 else None
    for L in range(cfg.n_layers):
        p = f"layers/{L}/"
        a = rmsnorm(h, P[p + "attn_norm"], cfg.norm_eps)
        h = h + attention(cfg, a, P, p)
        m = rmsnorm(h, P[p + "ffn_norm"], cfg.norm_eps).reshape(B * T, -1)
        if cfg.moe_layers[L]:
            y, st = moe(cfg, m, P, p, (force or {}).get(L), router_noise(cfg, rng, B * T) if rng else None)
            layers[L] = st
        else:
            y = swiglu(m, P[p + "ffn/w1"], P[p + "ffn/w3"], P[p + "ffn/w2"])
        h = h + y.view(B, T, -1)
    logits = rmsnorm(h, P["norm"], cfg.norm_eps) @ P["output"].T
    ce = F.cross_entropy(logits.reshape(B * T, -1), targets.reshape(-1))
    zero = torch.zeros((), dtype=dt)
    aux = torch.stack([s["aux"] for s in layers.values()]).mean() if layers else zero
    z = torch.stack([s["z"] for s in layers.values()]).mean() if layers else zero
    loss = ce + cfg.aux_coef * aux + cfg.z_coef * z
    return dict(logits=logits, ce=ce, aux=aux, z=z, loss=loss, layers=layers)


@dataclasses.dataclass
class Result:
    ce: float
    aux: float
    z: float
    loss: float
    logits: np.ndarray           # [B, T, V], in the dtype computed
    routing: dict                # {layer: (experts int64 [B*T, k], gates [B*T, k])}
    margins: dict                # {layer: per-token distance to a top-k tie, [B*T]}
    probs: dict                  # {layer: router selection keys [B*T, E]: probabilities (+ router_bias)}
    grads: dict                  # {name: gradient of loss} (not router_bias: no gradient)
    counts: dict = None          # {layer: slots each expert ran [E]} (bias_update's counts)


def check_tokens(cfg, tokens, where="tokens"):
    """Raises ReferenceError unless tokens is an integer [B, T+1] array of ids < vocab_size."""
    tokens = np.asarray(tokens)
    if tokens.ndim != 2 or tokens.shape[1] < 2 or tokens.shape[0] < 1:
        raise ReferenceError(f"{where}: /tokens must be [B, T+1] with T >= 1, got shape {tokens.shape}")
    if not np.issubdtype(tokens.dtype, np.integer):
        raise ReferenceError(f"{where}: /tokens must hold integers, got {tokens.dtype}")
    if tokens.min() < 0 or tokens.max() >= cfg.vocab_size:
        raise ReferenceError(f"{where}: token ids must be in [0, {cfg.vocab_size}), got "
                             f"[{tokens.min()}, {tokens.max()}]")
    if tokens.shape[1] - 1 > cfg.max_seq_len:
        raise ReferenceError(f"{where}: T = {tokens.shape[1] - 1} exceeds max_seq_len = {cfg.max_seq_len}")
    return tokens.astype(np.int64)


def run(cfg, params, tokens, dtype=torch.float32, grads=True, force=None, noise_seed=None):
    """Forward (and backward if grads) of one batch. params: {name: array} (computed in `dtype` from
    their values; a missing router_bias is zeros, as in a file from before it); tokens: int [B, T+1];
    noise_seed: a training forward whose router noise comes from Rng(noise_seed), or None (no noise).
    Returns a Result with numpy arrays in `dtype`."""
    params = dict(params)
    for n, shape in param_shapes(cfg):
        if n.endswith("router_bias") and n not in params:
            params[n] = np.zeros(shape, dtype=np.float32)
    tokens = torch.from_numpy(check_tokens(cfg, tokens))
    P = {n: torch.tensor(np.asarray(params[n]), dtype=dtype).requires_grad_(grads and not n.endswith("router_bias"))
         for n, _ in param_shapes(cfg)}
    with torch.set_grad_enabled(grads):
        out = forward(cfg, P, tokens[:, :-1], tokens[:, 1:], force, noise_seed)
        if grads:
            out["loss"].backward()
    k = cfg.top_k
    return Result(
        ce=out["ce"].item(), aux=out["aux"].item(), z=out["z"].item(), loss=out["loss"].item(),
        logits=out["logits"].detach().numpy(),
        routing={L: (s["experts"].numpy(), s["gates"].detach().numpy()) for L, s in out["layers"].items()},
        margins={L: np.minimum(topk_margin(s["prob"], k).numpy(), s["tp_margin"].numpy())
                 for L, s in out["layers"].items()},
        probs={L: s["prob"].detach().numpy() for L, s in out["layers"].items()},
        grads={n: P[n].grad.numpy() for n in P if P[n].requires_grad} if grads else {},
        counts={L: s["counts"] for L, s in out["layers"].items()})


def min_margin(cfg, params, tokens, noise_seed=None):
    """The smallest routing margin (topk_margin of the selection keys, and top-p's distance to its threshold)
    over every token and MoE layer; inf without MoE layers."""
    res = run(cfg, params, tokens, dtype=torch.float64, grads=False, noise_seed=noise_seed)
    return min((float(m.min()) for m in res.margins.values()), default=float("inf"))


def clear_of_ties(cfg, seed, make_params, make_tokens, margin, tries=10000, noise_seed=None):
    """The first seed from `seed` on whose parameters and tokens keep every routing decision at least
    `margin` (in probability) away from a tie, so that float32 and float64 engines agree on it and finite
    differences do not cross a kink. Returns (seed, params, tokens, achieved margin); raises when none of
    `tries` seeds qualifies."""
    for s in range(seed, seed + tries):
        params, tokens = make_params(s), make_tokens(s)
        m = min_margin(cfg, params, tokens, noise_seed)
        if m >= margin:
            return s, params, tokens, m
    raise ReferenceError(f"no seed in [{seed}, {seed + tries}) keeps the routing {margin} clear of ties")


# ----------------------------------------------------------------------------------------------- files

def _no_times(plist):
    # HDF5 stamps object headers with their creation time unless told not to; without stamps the same
    # content gives the same bytes, so regenerated fixtures can be compared with the committed ones.
    plist.set_obj_track_times(False)
    return plist


def _atomic(path, write):
    """Writes PATH.tmp with write(h5py.File), fsyncs it and renames it to PATH (docs/design.md section 11.1)."""
    tmp = path + ".tmp"
    try:
        fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
        fapl.set_libver_bounds(h5py.h5f.LIBVER_V18, h5py.h5f.LIBVER_V18)   # compact groups, readable by 1.8+
        fid = h5py.h5f.create(tmp.encode(), h5py.h5f.ACC_TRUNC,
                              fcpl=_no_times(h5py.h5p.create(h5py.h5p.FILE_CREATE)), fapl=fapl)
        with h5py.File(fid) as f:
            write(f)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _group(f, path):
    """The group at `path`, creating missing groups (without time stamps) on the way."""
    g = f
    for part in filter(None, path.split("/")):
        if part not in g:
            h5py.h5g.create(g.id, part.encode(), gcpl=_no_times(h5py.h5p.create(h5py.h5p.GROUP_CREATE)))
        g = g[part]
    return g


def _parent(f, path):
    return _group(f, path.rsplit("/", 1)[0] if "/" in path else "")


def _dataset(f, path, data):
    _parent(f, path).create_dataset(path.rsplit("/", 1)[-1], data=data, track_times=False)


def _fixed(s):
    """A fixed-length UTF-8 string (length + 1 bytes, NUL-padded), as monolith writes every string: never
    variable-length, which monolith refuses (docs/formats.md). h5py reads it back as bytes."""
    b = s.encode()
    return np.array(b, dtype=h5py.string_dtype("utf-8", len(b) + 1))


def _strings(f, path, strs):
    bs = [s.encode() for s in strs]
    width = max([len(b) for b in bs] + [0]) + 1
    data = np.array(bs, dtype=h5py.string_dtype("utf-8", width))
    _parent(f, path).create_dataset(path.rsplit("/", 1)[-1], data=data, track_times=False)


def write_checkpoint(path, cfg, params, experts=None, tokenizer=None, created_by=CREATED_BY, legacy=False):
    """Writes a docs/design.md section 11.2 checkpoint (model and config). experts: optional list of E dicts with
    name/domain/provenance (defaults: expert<i>, "", a JSON object naming the writer); tokenizer: optional
    (tiktoken bytes, special names, special ids). legacy: a file as written before the routing variants (no
    router attributes in /config, no router_bias; its routing must be the defaults' and its bias zero).
    Raises ReferenceError on a missing or misshapen tensor."""
    cfg.validate()
    shapes = param_shapes(cfg)
    if legacy:
        if any(getattr(cfg, f) != getattr(Config, f) for f in STR_FIELDS + OPT_REAL_FIELDS) or any(
                np.any(params[n] != 0) for n, _ in shapes if n.endswith("router_bias")):
            raise ReferenceError(f"{path}: a legacy file cannot hold routing variants or a router_bias")
        shapes = [(n, sh) for n, sh in shapes if not n.endswith("router_bias")]
    for name, shape in shapes:
        if name not in params or tuple(np.shape(params[name])) != shape:
            raise ReferenceError(f"{path}: tensor {name} must have shape {shape}")
    E = cfg.n_experts
    if experts is None:
        experts = [dict(name=f"expert{e}", domain="", provenance=json.dumps({"created_by": created_by}))
                   for e in range(E)]

    def write(f):
        f.attrs["format"] = _fixed(CKPT_FORMAT)
        f.attrs["format_version"] = np.int64(CKPT_VERSION)
        f.attrs["created_by"] = _fixed(created_by)
        c = _group(f, "config")
        for k in INT_FIELDS:
            c.attrs[k] = np.int64(getattr(cfg, k))
        for k in REAL_FIELDS + (() if legacy else OPT_REAL_FIELDS):
            c.attrs[k] = np.float64(getattr(cfg, k))
        for k in () if legacy else STR_FIELDS:
            c.attrs[k] = _fixed(getattr(cfg, k))
        c.attrs["moe_layers"] = np.asarray(cfg.moe_layers, dtype=np.int64)
        for name, _ in shapes:
            _dataset(f, "model/" + name, np.ascontiguousarray(params[name], dtype=np.float32))
        for key in ("name", "domain", "provenance"):
            _strings(f, "experts/" + key, [x[key] for x in experts])
        if tokenizer is not None:
            tik, names, ids = tokenizer
            _dataset(f, "tokenizer/tiktoken", np.frombuffer(tik, dtype=np.uint8))
            _strings(f, "tokenizer/special_names", names)
            _dataset(f, "tokenizer/special_ids", np.asarray(ids, dtype=np.int64))
    _atomic(path, write)


def _open(path, what):
    if not os.path.exists(path):
        raise ReferenceError(f"{path}: no such file (expected {what})")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise ReferenceError(f"{path}: not a readable HDF5 file ({e}); expected {what}")


def _attr_str(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def load_checkpoint(path):
    """Reads a checkpoint: returns (Config, {name: float32 array}). Raises ReferenceError naming the file
    and the attribute or tensor when the format, version, a /config attribute or a tensor shape is wrong.
    Unknown /config attributes (router options this reference does not implement) are reported on stderr."""
    with _open(path, "a monolith checkpoint") as f:
        fmt = _attr_str(f.attrs.get("format", ""))
        if fmt != CKPT_FORMAT:
            raise ReferenceError(f"{path}: format is {fmt!r}, expected {CKPT_FORMAT!r}")
        ver = int(f.attrs.get("format_version", -1))
        if not 1 <= ver <= CKPT_VERSION:
            raise ReferenceError(f"{path}: format_version {ver} is not supported (this reference reads 1..{CKPT_VERSION})")
        if "config" not in f:
            raise ReferenceError(f"{path}: no /config group")
        a = f["config"].attrs
        kw = {}
        for k in INT_FIELDS + REAL_FIELDS + ("moe_layers",):
            if k not in a:
                raise ReferenceError(f"{path}: missing attribute /config/{k}")
        for k in INT_FIELDS:
            kw[k] = int(a[k])
        for k in REAL_FIELDS:
            kw[k] = float(a[k])
        for k in OPT_REAL_FIELDS:       # absent from a file from before them: the defaults
            if k in a:
                kw[k] = float(a[k])
        for k in STR_FIELDS:
            if k in a:
                kw[k] = _attr_str(a[k])
        kw["moe_layers"] = tuple(int(x) for x in np.atleast_1d(a["moe_layers"]))
        extra = sorted(set(a.keys()) - set(kw))
        if extra:
            print(f"moe_reference: {path}: /config attributes not implemented here, ignored: {', '.join(extra)}",
                  file=sys.stderr)
        try:
            cfg = Config(**kw).validate()
        except ReferenceError as e:
            raise ReferenceError(f"{path}: {e}")
        params = {}
        for name, shape in param_shapes(cfg):
            full = "model/" + name
            if full not in f and name.endswith("router_bias"):
                params[name] = np.zeros(shape, dtype=np.float32)   # a file from before it: bias 0
                continue
            if full not in f:
                raise ReferenceError(f"{path}: missing tensor /{full}")
            ds = f[full]
            if tuple(ds.shape) != shape:
                raise ReferenceError(f"{path}: /{full} has shape {tuple(ds.shape)}, config says {shape}")
            params[name] = ds[()].astype(np.float32)
    return cfg, params


def write_tokens(path, tokens, noise_seed=None):
    """Writes a token batch: /tokens int64 [B, T+1] (with attribute noise_seed when the batch is meant for a
    training forward with router noise: monolith dump --train SEED)."""
    def write(f):
        _dataset(f, "tokens", np.asarray(tokens, dtype=np.int64))
        if noise_seed is not None:
            f["tokens"].attrs["noise_seed"] = np.int64(noise_seed)
    _atomic(path, write)


def load_tokens(path):
    """Reads /tokens [B, T+1] as int64; raises ReferenceError when it is missing."""
    with _open(path, "a token batch with /tokens [B, T+1]") as f:
        if "tokens" not in f:
            raise ReferenceError(f"{path}: no /tokens dataset")
        return f["tokens"][()].astype(np.int64)


def write_dump(path, cfg, res, created_by=CREATED_BY, bias_after=None):
    """Writes a Result as the dump of docs/design.md section 11.4: root attrs ce, aux, z, loss (float64), /logits float32,
    /routing/L/{experts int64, weights float32} per MoE layer, /grads/<name> float32 for every parameter.
    Also sets format = "monolith-dump", format_version 1, created_by (attributes the starting specification did not list, so
    readers must not require them). bias_after {L: [E]}: router_bias after one bias_update from this batch's
    slot counts, as /bias_after/L (fixtures of bias balancing; not part of monolith's dump)."""
    def write(f):
        f.attrs["format"] = _fixed("monolith-dump")
        f.attrs["format_version"] = np.int64(1)
        f.attrs["created_by"] = _fixed(created_by)
        for k in ("ce", "aux", "z", "loss"):
            f.attrs[k] = np.float64(getattr(res, k))
        _dataset(f, "logits", res.logits.astype(np.float32))
        for L in sorted(res.routing):
            experts, gates = res.routing[L]
            _dataset(f, f"routing/{L}/experts", experts.astype(np.int64))
            _dataset(f, f"routing/{L}/weights", gates.astype(np.float32))
        for name, _ in param_shapes(cfg):
            if name in res.grads:         # not router_bias: it has no gradient
                _dataset(f, "grads/" + name, res.grads[name].astype(np.float32))
        for L, b in (bias_after or {}).items():
            _dataset(f, f"bias_after/{L}", np.asarray(b, dtype=np.float32))
    _atomic(path, write)


# ----------------------------------------------------------------------------------------------- self-test

def _check(cond, what):
    print(("ok    " if cond else "FAIL  ") + what)
    return bool(cond)


def _selftest_rope():
    # head_dim 4, theta 10000, position 1: pair 0 turns by 1 rad, pair 1 by 10000^(-2/4) = 0.01 rad.
    # cos 1 = 0.5403023058681398, sin 1 = 0.8414709848078965,
    # cos .01 = 0.9999500004166653, sin .01 = 0.009999833334166664, so for x = (1, 2, 3, 4):
    #   x0' = 1 cos1 - 2 sin1 = -1.1426396637476532,   x1' = 1 sin1 + 2 cos1 = 1.9220755965441761
    #   x2' = 3 cos.01 - 4 sin.01 = 2.9598506679133293, x3' = 3 sin.01 + 4 cos.01 = 4.029799501669161
    x = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64).repeat(2, 2, 1, 1)   # [B=2, T=2, 1, 4]
    y = rope(x, 10000.0)
    want = torch.tensor([-1.1426396637476532, 1.9220755965441761, 2.9598506679133293, 4.029799501669161],
                        dtype=torch.float64)
    ok = _check(torch.allclose(y[:, 1, 0], want.expand(2, 4), rtol=0, atol=1e-15),
                "rope: adjacent pairs, hand-computed rotation at position 1")
    ok &= _check(torch.equal(y[:, 0], x[:, 0]), "rope: position 0 unrotated in every sequence of the batch")
    return ok


def _small_cfg(**kw):
    base = dict(vocab_size=29, d_model=16, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=4, n_experts=4, top_k=2,
                d_ff=8, moe_layers=(1, 0), n_shared_experts=1, d_ff_shared=6, d_ff_dense=10, max_seq_len=16,
                rope_theta=100.0, norm_eps=1e-5, norm_topk=1, aux_coef=0.3, z_coef=0.2)
    base.update(kw)
    return Config(**base).validate()


def _selftest_fd(cfg, seed, bias_std=0.0, noise_seed=None):
    """Central differences of the float64 loss against autograd: one random direction per tensor (every
    element at once) plus three single elements per tensor, with the routing fixed by a clear margin. The
    router_bias (random with std bias_std) must have a zero difference: it only selects."""
    def make(s):
        p = init_params(cfg, s, std=0.3, norm_jitter=0.2, router_std=1.0)
        for n in p:
            if n.endswith("router_bias"):
                p[n] = (bias_std * np.random.default_rng(s + 7).standard_normal(p[n].shape)).astype(np.float32)
        return p
    seed, params, tokens, margin = clear_of_ties(
        cfg, seed, make, lambda s: np.random.default_rng(s).integers(0, cfg.vocab_size, size=(2, 7)), 1e-3,
        noise_seed=noise_seed)
    g = np.random.default_rng(seed)
    res = run(cfg, params, tokens, dtype=torch.float64, noise_seed=noise_seed)
    ok = _check(margin >= 1e-3, f"fd: seed {seed}, top-k margin {margin:.2e} clear of ties")
    P64 = {n: v.astype(np.float64) for n, v in params.items()}
    eps = 1e-6

    def loss_at(name, delta):
        Q = dict(P64)
        Q[name] = P64[name] + delta
        return run(cfg, Q, tokens, dtype=torch.float64, grads=False, noise_seed=noise_seed).loss

    worst = 0.0
    for name, shape in param_shapes(cfg):
        if name not in res.grads:         # router_bias: selection only, the loss does not move with it
            v = g.standard_normal(shape)
            fd = (loss_at(name, eps * v) - loss_at(name, -eps * v)) / (2 * eps)
            ok &= _check(abs(fd) < 1e-9, f"fd: {name} moves the loss by {fd:.1e} (must be 0: no gradient)")
            continue
        grad = res.grads[name]
        v = g.standard_normal(shape)
        fd = (loss_at(name, eps * v) - loss_at(name, -eps * v)) / (2 * eps)
        an = float((grad * v).sum())
        err = abs(fd - an) / max(abs(an), 1e-8)
        for _ in range(3):
            e = np.zeros(shape)
            e[tuple(g.integers(0, s) for s in shape)] = 1.0
            fd1 = (loss_at(name, eps * e) - loss_at(name, -eps * e)) / (2 * eps)
            an1 = float((grad * e).sum())
            # relative to the element, or to the tensor's largest gradient when the element is ~0
            err = max(err, abs(fd1 - an1) / max(abs(an1), 1e-3 * np.abs(grad).max(), 1e-12))
        worst = max(worst, err)
        if err > 1e-5:
            ok &= _check(False, f"fd: {name} relative error {err:.2e}")
    return _check(ok and worst <= 1e-5, f"fd: {len(param_shapes(cfg))} tensors, worst relative error {worst:.2e} "
                  f"(top_k {cfg.top_k}, norm_topk {cfg.norm_topk}, moe_layers {cfg.moe_layers})")


def _selftest_gqa():
    # n_kv_heads = 1 must equal n_kv_heads = n_heads with every kv head a copy of the one kv head, and
    # n_kv_heads = 2 of 4 heads must equal 4 kv heads (0, 0, 1, 1): query head j reads kv head j // 2.
    ok = True
    for kv in (1, 2):
        c1 = _small_cfg(n_kv_heads=kv)
        c4 = _small_cfg(n_kv_heads=4)
        p1 = init_params(c1, 3, std=0.3)
        p4 = dict(p1)
        for L in range(c1.n_layers):
            for w in ("wk", "wv"):
                name = f"layers/{L}/attn/{w}"
                heads = p1[name].reshape(kv, c1.head_dim, c1.d_model)
                p4[name] = np.repeat(heads, 4 // kv, axis=0).reshape(4 * c1.head_dim, c1.d_model)
        tok = np.random.default_rng(0).integers(0, c1.vocab_size, size=(2, 6))
        a = run(c1, p1, tok, torch.float64, grads=False).logits
        b = run(c4, p4, tok, torch.float64, grads=False).logits
        ok &= _check(np.abs(a - b).max() < 1e-12, f"gqa: {kv} kv heads == 4 kv heads with repeated weights")
    return ok


def _selftest_routing():
    ok = True
    p = torch.tensor([[0.1, 0.3, 0.3, 0.3], [0.4, 0.1, 0.4, 0.1]], dtype=torch.float64)
    ok &= _check(select_topk(p, 2).tolist() == [[1, 2], [0, 2]], "top-k: ties go to the lower expert index")
    # Losses by hand: one MoE layer, E = 2, k = 1.
    cfg = _small_cfg(n_layers=1, moe_layers=(1,), n_experts=2, top_k=1, n_shared_experts=0, d_ff_shared=0,
                     d_ff_dense=0)
    params = init_params(cfg, 5, std=0.3)
    tok = np.random.default_rng(1).integers(0, cfg.vocab_size, size=(1, 5))
    res = run(cfg, params, tok, torch.float64)
    prob = res.probs[0]
    idx = res.routing[0][0][:, 0]
    f = np.bincount(idx, minlength=2) / idx.size
    aux = 2 * (f * prob.mean(0)).sum()
    Pt = {n: torch.tensor(v, dtype=torch.float64) for n, v in params.items()}
    B, T = tok.shape[0], tok.shape[1] - 1
    h = Pt["tok_embeddings"][torch.from_numpy(tok[:, :-1])]
    h = h + attention(cfg, rmsnorm(h, Pt["layers/0/attn_norm"], cfg.norm_eps), Pt, "layers/0/")
    m = rmsnorm(h, Pt["layers/0/ffn_norm"], cfg.norm_eps).reshape(B * T, -1)
    z = (torch.logsumexp(m @ Pt["layers/0/moe/router"].T, -1) ** 2).mean().item()
    ok &= _check(abs(res.aux - aux) < 1e-12 and abs(res.z - z) < 1e-12, "losses: aux and z by hand")
    ok &= _check(abs(res.loss - (res.ce + 0.3 * res.aux + 0.2 * res.z)) < 1e-12, "losses: loss = ce + coefs")
    ok &= _check(np.all(res.routing[0][1] == 1.0), "top-1 with norm_topk 1: gate is 1")
    dense = _small_cfg(moe_layers=(0, 0))
    r = run(dense, init_params(dense, 2), tok, torch.float64, grads=False)
    ok &= _check(r.aux == 0.0 and r.z == 0.0 and r.loss == r.ce, "losses: aux = z = 0 without MoE layers")
    return ok


def _selftest_files(tmpdir):
    cfg = _small_cfg()
    params = init_params(cfg, 11, norm_jitter=0.1)
    path = os.path.join(tmpdir, "selftest.ckpt.h5")
    write_checkpoint(path, cfg, params)
    cfg2, params2 = load_checkpoint(path)
    ok = _check(cfg2 == cfg and all(np.array_equal(params[n], params2[n]) for n in params),
                "checkpoint: write then load gives the same config and tensors")
    with h5py.File(path, "r") as f:
        a = f["config"].attrs
        types_ok = all(a[k].dtype == np.int64 for k in INT_FIELDS) and all(a[k].dtype == np.float64 for k in REAL_FIELDS)
        types_ok &= a["moe_layers"].dtype == np.int64 and a["moe_layers"].shape == (cfg.n_layers,)
        types_ok &= f.attrs["format_version"].dtype == np.int64 and f["experts/name"].shape == (cfg.n_experts,)
        sd = h5py.check_string_dtype(f["experts/provenance"].dtype)
        types_ok &= sd.encoding == "utf-8" and sd.length is not None   # fixed-length (docs/formats.md)
    ok &= _check(types_ok, "checkpoint: attribute types int64/float64, moe_layers int64[n_layers], /experts strings")
    os.remove(path)
    return ok


def selftest():
    import tempfile
    torch.manual_seed(0)
    ok = _selftest_rope()
    ok &= _selftest_routing()
    ok &= _selftest_gqa()
    ok &= _selftest_fd(_small_cfg(), 21)
    ok &= _selftest_fd(_small_cfg(top_k=1, norm_topk=0, moe_layers=(0, 1), n_kv_heads=1), 22)
    ok &= _selftest_fd(_small_cfg(top_k=3, norm_topk=0, moe_layers=(1, 1), n_shared_experts=2, d_ff_dense=0), 23)
    # The routing variants (docs/design.md, "Routing"): the router's gradient through sigmoid scores, gates
    # with a scale, slots dropped by capacity (still in the renormalizing sum), top-p, training noise.
    ok &= _selftest_fd(_small_cfg(router_score="sigmoid", balance="bias", routed_scale=2.0), 24, bias_std=0.1)
    ok &= _selftest_fd(_small_cfg(router_score="sigmoid", norm_topk=0, top_k=3, moe_layers=(1, 1),
                                  d_ff_dense=0, capacity_factor=0.75), 25, bias_std=0.1)
    ok &= _selftest_fd(_small_cfg(capacity_factor=0.75, moe_layers=(1, 1), d_ff_dense=0), 26)
    ok &= _selftest_fd(_small_cfg(router_top_p=0.6, top_k=3, routed_scale=1.5), 27, bias_std=0.05)
    ok &= _selftest_fd(_small_cfg(router_noise=0.8, capacity_factor=1.0, moe_layers=(1, 1), d_ff_dense=0), 28,
                       noise_seed=5)
    with tempfile.TemporaryDirectory() as d:
        ok &= _selftest_files(d)
    print("selftest: " + ("all passed" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    if sys.argv[1:] == ["--selftest"]:
        sys.exit(selftest())
    print(__doc__.strip())
    sys.exit(2)
