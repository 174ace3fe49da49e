#!/usr/bin/python3
"""peer_torch_moe.py: the bench-S model written the way a PyTorch user would, to measure monolith against.

    /usr/bin/python3 scripts/peer_torch_moe.py --mode train [--seq T] [--batch B] [--threads N]
    /usr/bin/python3 scripts/peer_torch_moe.py --mode infer [--prefill P] [--decode D] [--threads N]
    /usr/bin/python3 scripts/peer_torch_moe.py --selftest

The model is docs/design.md sections 3-5 at the `bench-S` preset (vocab 8192, d 512, 8 layers, 8 heads of 64,
8 kv heads, 8 SwiGLU experts of d_ff 1024, top-2 with the gates renormalized over the chosen two, RoPE on
adjacent pairs with theta 1e4, RMSNorm eps 1e-5, untied output) and its loss ce + 0.01 aux + 0.001 z. The MoE
is token-choice and dropless: the (row, slot) pairs are sorted by expert, each expert runs one matmul chain on
its contiguous rows, and index_add_ puts the gated outputs back. AdamW as section 7.1 (matrices decay, norms
do not). The same FLOPs as monolith's step, so tokens/s compare directly; it is not bit-compatible with
monolith (its weights are its own random ones).

Attention (--attention):
  full     : scores [B, nh, T, T], a causal mask, softmax, then probabilities x V; autograd keeps the
             probabilities of every layer (what PyTorch 1.13, which has no fused CPU attention, does
             by default). Refused when that would pass --max-gb (default 8) of kept probabilities.
  chunked  : the queries in blocks of --chunk rows, each block's attention under
             torch.utils.checkpoint, so only the block outputs are kept and backward recomputes a
             block's scores: O(T) memory per head, for sequences where `full` does not fit.

Each run prints one line "RESULT {json}" on stdout: wall-clock and per-CPU-second rates (the CPU time of
all the process's threads, steadier on a shared machine), the FLOPs per token counted as monolith's
`bench train` counts them (6 x active parameters + 12 x layers x T x d), and the peak RSS in MB.
Progress goes to stderr. Threads: torch's intra-op threads and, since Debian's torch calls the system
OpenBLAS for its matmuls, OpenBLAS's own thread count are both set to --threads.
"""
import argparse
import ctypes
import json
import math
import resource
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as ckpt


class BenchS:
    """The bench-S preset (engine/config.c) and the loss weights of docs/design.md section 5."""
    vocab, d_model, n_layers, n_heads, n_kv_heads, head_dim = 8192, 512, 8, 8, 8, 64
    n_experts, top_k, d_ff, rope_theta, norm_eps = 8, 2, 1024, 10000.0, 1e-5
    aux_coef, z_coef = 0.01, 0.001


def set_threads(n):
    torch.set_num_threads(n)
    for lib in ("libopenblas.so.0", "libopenblas.so"):
        try:
            ctypes.CDLL(lib).openblas_set_num_threads(n)
            return
        except (OSError, AttributeError):
            continue


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


# ------------------------------------------------------------------------------------------------- model

def rmsnorm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope_angles(c, n_pos):
    """cos, sin [n_pos, hd/2]: pair i of a head turns by pos * theta^(-2i/hd) (design 3.2)."""
    i = torch.arange(0, c.head_dim // 2, dtype=torch.float64)
    a = torch.outer(torch.arange(n_pos, dtype=torch.float64), c.rope_theta ** (-2.0 * i / c.head_dim))
    return a.cos().float(), a.sin().float()


def rope(x, cos, sin):
    """x [B, H, T, hd]: each adjacent pair (x[2i], x[2i+1]) rotated by its angle at its position."""
    x0, x1 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1).flatten(-2)


def attend(q, k, v):
    """Causal softmax(q k^T / sqrt(hd)) v for q [B, H, T, hd] against the first keys of k, v."""
    T, S = q.shape[2], k.shape[2]
    s = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))
    if T > 1:  # query i (absolute position S - T + i) sees keys 0 .. S - T + i
        s = s.masked_fill(torch.ones(T, S, dtype=torch.bool).triu(S - T + 1), float("-inf"))
    return torch.matmul(torch.softmax(s, dim=-1), v)


def attend_chunked(q, k, v, chunk):
    """attend() one block of queries at a time, each block recomputed in backward (checkpoint)."""
    T, outs = q.shape[2], []
    for r0 in range(0, T, chunk):
        r1 = min(T, r0 + chunk)
        outs.append(ckpt.checkpoint(attend, q[:, :, r0:r1], k[:, :, :r1], v[:, :, :r1]))
    return torch.cat(outs, dim=2)


class Layer(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, qd, kvd, E, f = c.d_model, c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim, c.n_experts, c.d_ff
        self.c = c
        self.attn_norm, self.ffn_norm = nn.Parameter(torch.ones(d)), nn.Parameter(torch.ones(d))
        self.wq, self.wk = nn.Parameter(torch.empty(qd, d)), nn.Parameter(torch.empty(kvd, d))
        self.wv, self.wo = nn.Parameter(torch.empty(kvd, d)), nn.Parameter(torch.empty(d, qd))
        self.router = nn.Parameter(torch.empty(E, d))
        self.w1, self.w3 = nn.Parameter(torch.empty(E, f, d)), nn.Parameter(torch.empty(E, f, d))
        self.w2 = nn.Parameter(torch.empty(E, d, f))

    def attention(self, a, cos, sin, cache, pos, mode, chunk):
        c, (B, T, _) = self.c, a.shape
        q = (a @ self.wq.t()).view(B, T, c.n_heads, c.head_dim).transpose(1, 2)
        k = (a @ self.wk.t()).view(B, T, c.n_kv_heads, c.head_dim).transpose(1, 2)
        v = (a @ self.wv.t()).view(B, T, c.n_kv_heads, c.head_dim).transpose(1, 2)
        q, k = rope(q, cos[pos:pos + T], sin[pos:pos + T]), rope(k, cos[pos:pos + T], sin[pos:pos + T])
        if cache is not None:  # [B, nkv, max_len, hd] each, filled up to pos + T
            cache[0][:, :, pos:pos + T], cache[1][:, :, pos:pos + T] = k, v
            k, v = cache[0][:, :, :pos + T], cache[1][:, :, :pos + T]
        if c.n_kv_heads != c.n_heads:  # GQA: query head j reads kv head j // (nh / nkv)
            k = k.repeat_interleave(c.n_heads // c.n_kv_heads, dim=1)
            v = v.repeat_interleave(c.n_heads // c.n_kv_heads, dim=1)
        o = attend_chunked(q, k, v, chunk) if mode == "chunked" and cache is None else attend(q, k, v)
        return o.transpose(1, 2).reshape(B, T, -1) @ self.wo.t()

    def moe(self, m):
        """Returns (output [N, d], aux, z) for the normalized rows m [N, d] (design 3.5, 4, 5)."""
        c, N = self.c, m.shape[0]
        logits = m @ self.router.t()
        p = torch.softmax(logits, dim=-1)
        top_p, top_e = torch.topk(p, c.top_k, dim=-1)  # descending; ties to the lower index
        gates = top_p / top_p.sum(-1, keepdim=True)
        slots = top_e.reshape(-1)
        order = torch.argsort(slots, stable=True)
        rows = order // c.top_k
        counts = torch.bincount(slots, minlength=c.n_experts)
        xs, ys, start = m.index_select(0, rows), [], 0
        for e, n in enumerate(counts.tolist()):
            if n:
                x = xs[start:start + n]
                ys.append((F.silu(x @ self.w1[e].t()) * (x @ self.w3[e].t())) @ self.w2[e].t())
                start += n
        y = torch.cat(ys) * gates.reshape(-1).index_select(0, order).unsqueeze(1)
        out = torch.zeros_like(m).index_add_(0, rows, y)
        f = counts.to(m.dtype) / (N * c.top_k)  # a count: no gradient
        aux = c.n_experts * (f * p.mean(0)).sum()
        z = torch.logsumexp(logits, dim=-1).pow(2).mean()
        return out, aux, z

    def forward(self, x, cos, sin, cache=None, pos=0, mode="full", chunk=512):
        c = self.c
        x = x + self.attention(rmsnorm(x, self.attn_norm, c.norm_eps), cos, sin, cache, pos, mode, chunk)
        y, aux, z = self.moe(rmsnorm(x, self.ffn_norm, c.norm_eps).reshape(-1, c.d_model))
        return x + y.view_as(x), aux, z


class Model(nn.Module):
    def __init__(self, c, max_len):
        super().__init__()
        self.c = c
        self.tok_embeddings = nn.Parameter(torch.empty(c.vocab, c.d_model))
        self.layers = nn.ModuleList(Layer(c) for _ in range(c.n_layers))
        self.norm = nn.Parameter(torch.ones(c.d_model))
        self.output = nn.Parameter(torch.empty(c.vocab, c.d_model))
        self.cos, self.sin = rope_angles(c, max_len)
        out_std = 0.02 / math.sqrt(2 * c.n_layers)  # design section 6: projections into the residual stream
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                nn.init.normal_(p, std=out_std if name.endswith(("wo", "w2")) else 0.02)

    def forward(self, tokens, caches=None, pos=0, mode="full", chunk=512):
        x, aux, z = self.tok_embeddings[tokens], 0.0, 0.0
        for i, layer in enumerate(self.layers):
            x, a, zz = layer(x, self.cos, self.sin, None if caches is None else caches[i], pos, mode, chunk)
            aux, z = aux + a, z + zz
        n = len(self.layers)
        return rmsnorm(x, self.norm, self.c.norm_eps) @ self.output.t(), aux / n, z / n

    def new_caches(self, B, max_len):
        c, shape = self.c, (B, self.c.n_kv_heads, max_len, self.c.head_dim)
        return [(self.output.new_zeros(shape), self.output.new_zeros(shape)) for _ in self.layers]


def active_params(c):
    """Parameters one token multiplies: attention, router, top_k experts per layer, and the output layer."""
    d, qd, kvd = c.d_model, c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim
    per_layer = d * qd * 2 + d * kvd * 2 + c.n_experts * d + c.top_k * 3 * d * c.d_ff + 2 * d
    return c.n_layers * per_layer + c.vocab * d  # the final norm's d weights aside, as monolith counts


# ------------------------------------------------------------------------------------------------- runs

def emit(**kw):
    print("RESULT " + json.dumps(kw, sort_keys=True), flush=True)


def run_train(c, a):
    B, T = a.batch, a.seq
    if a.attention == "full":
        kept = 3.0 * c.n_layers * B * c.n_heads * T * T * 4 / 2 ** 30  # scores, masked scores, probabilities
        if kept > a.max_gb:
            sys.exit(f"peer_torch_moe.py: --attention full at batch {B} x seq {T} keeps about {kept:.1f} GB of "
                     f"attention matrices (over --max-gb {a.max_gb:g}); use --attention chunked")
    torch.manual_seed(0)
    model = Model(c, T)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    keep = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([dict(params=decay, weight_decay=0.1), dict(params=keep, weight_decay=0.0)],
                            lr=3e-4, betas=(0.9, 0.95), eps=1e-8)
    data = torch.randint(0, c.vocab, (B, T + 1), generator=torch.Generator().manual_seed(1))
    inp, tgt = data[:, :-1], data[:, 1:].reshape(-1)
    wall, cpu = [], []
    for step in range(a.warmup + a.steps):
        t0, c0 = time.perf_counter(), time.process_time()
        opt.zero_grad(set_to_none=True)
        logits, aux, z = model(inp, mode=a.attention, chunk=a.chunk)
        loss = F.cross_entropy(logits.reshape(-1, c.vocab), tgt) + c.aux_coef * aux + c.z_coef * z
        loss.backward()
        opt.step()
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        print(f"# step {step}  {dt:.3f} s ({dc:.3f} CPU-s)  loss {loss.item():.4f}"
              f"{'  (warm-up)' if step < a.warmup else ''}", file=sys.stderr, flush=True)
        if step >= a.warmup:
            wall.append(dt), cpu.append(dc)
    flops = 6 * active_params(c) + 12 * c.n_layers * T * c.d_model
    ntok, med = B * T, statistics.median(wall)
    emit(system="pytorch-peer", mode="train", torch=torch.__version__, threads=a.threads, attention=a.attention,
         batch=B, seq=T, tokens_per_step=ntok, step_s_median=round(med, 4), step_s_all=[round(t, 4) for t in wall],
         train_tok_s=round(ntok / med, 1), train_tok_per_cpu_s=round(ntok / statistics.median(cpu), 1),
         flops_per_token=flops, gflops=round(flops * ntok / med / 1e9, 2), peak_rss_mb=round(peak_rss_mb()))


@torch.inference_mode()
def generate(model, prompt, n_new):
    """Prefill the prompt, then n_new - 1 single-token greedy steps; (wall, CPU) of each phase."""
    caches = model.new_caches(1, prompt.shape[1] + n_new)
    t0, c0 = time.perf_counter(), time.process_time()
    nxt = model(prompt, caches)[0][:, -1].argmax(-1, keepdim=True)
    t1, c1 = time.perf_counter(), time.process_time()
    pos = prompt.shape[1]
    for _ in range(n_new - 1):
        nxt = model(nxt, caches, pos)[0][:, -1].argmax(-1, keepdim=True)
        pos += 1
    t2, c2 = time.perf_counter(), time.process_time()
    return t1 - t0, c1 - c0, t2 - t1, c2 - c1


def run_infer(c, a):
    torch.manual_seed(0)
    model = Model(c, a.prefill + a.decode + 1).eval()
    prompt = torch.randint(0, c.vocab, (1, a.prefill), generator=torch.Generator().manual_seed(1))
    pre, pre_cpu, dec, dec_cpu = [], [], [], []
    for r in range(1 + a.repeats):  # the first run warms up
        tp, cp, td, cd = generate(model, prompt, a.decode + 1)
        print(f"# run {r}  prefill {a.prefill / tp:.1f} tok/s  decode {a.decode / td:.1f} tok/s"
              f"{'  (warm-up)' if r == 0 else ''}", file=sys.stderr, flush=True)
        if r:
            pre.append(a.prefill / tp), pre_cpu.append(a.prefill / cp)
            dec.append(a.decode / td), dec_cpu.append(a.decode / cd)
    med = lambda xs: round(statistics.median(xs), 2)  # noqa: E731
    emit(system="pytorch-peer", mode="infer", torch=torch.__version__, threads=a.threads, batch=1,
         prefill_tokens=a.prefill, decode_tokens=a.decode, prefill_tok_s=med(pre), prefill_tok_per_cpu_s=med(pre_cpu),
         decode_tok_s=med(dec), decode_tok_per_cpu_s=med(dec_cpu), peak_rss_mb=round(peak_rss_mb()))


def selftest():
    """Small shapes: chunked attention = full attention (outputs and gradients); the KV cache's decode =
    the full forward; the RoPE rotation keeps norms and matches its formula."""
    torch.manual_seed(0)
    small = type("Small", (BenchS,), dict(vocab=64, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8,
                                           n_experts=4, d_ff=16))
    m = Model(small, 40).double()
    m.cos, m.sin = m.cos.double(), m.sin.double()
    tok = torch.randint(0, small.vocab, (2, 37))
    outs = {}
    for mode in ("full", "chunked"):
        m.zero_grad(set_to_none=True)
        logits, aux, z = m(tok, mode=mode, chunk=8)
        (logits.square().mean() + aux + z).backward()
        outs[mode] = (logits.detach(), torch.cat([p.grad.flatten() for p in m.parameters()]))
    assert torch.allclose(outs["full"][0], outs["chunked"][0], atol=1e-12), "chunked attention: logits differ"
    assert torch.allclose(outs["full"][1], outs["chunked"][1], atol=1e-12), "chunked attention: gradients differ"
    with torch.no_grad():
        caches = m.new_caches(1, 40)
        m(tok[:1, :30], caches)
        step = m(tok[:1, 30:31], caches, 30)[0][:, -1]
        full = m(tok[:1, :31])[0][:, -1]
        assert torch.allclose(step, full, atol=1e-10), "KV-cache decode differs from the full forward"
        x = torch.randn(1, 1, 5, small.head_dim, dtype=torch.float64)
        y = rope(x, m.cos[:5], m.sin[:5])
        assert torch.allclose(x.norm(dim=-1), y.norm(dim=-1)), "RoPE changed a norm"
        ang = 3 * small.rope_theta ** (-2.0 / small.head_dim)  # position 3, pair 1
        want = x[0, 0, 3, 2] * math.cos(ang) - x[0, 0, 3, 3] * math.sin(ang)
        assert abs(float(y[0, 0, 3, 2]) - want) < 1e-6, "RoPE pair 1 at position 3"
    print("selftest OK: chunked = full attention (logits, gradients), cached decode = full forward, RoPE pairs")


def main():
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    ap.add_argument("--mode", choices=("train", "infer"), default="train")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seq", type=int, default=256, help="train: tokens per sequence (default 256)")
    ap.add_argument("--batch", type=int, default=8, help="train: sequences per step (default 8)")
    ap.add_argument("--steps", type=int, default=5, help="train: timed steps (default 5)")
    ap.add_argument("--warmup", type=int, default=2, help="train: untimed steps first (default 2)")
    ap.add_argument("--attention", choices=("full", "chunked"), default="full")
    ap.add_argument("--chunk", type=int, default=512, help="query rows per block of --attention chunked")
    ap.add_argument("--max-gb", type=float, default=8.0, help="refuse --attention full past this many GB")
    ap.add_argument("--prefill", type=int, default=256, help="infer: prompt tokens (default 256)")
    ap.add_argument("--decode", type=int, default=128, help="infer: timed single-token steps (default 128)")
    ap.add_argument("--repeats", type=int, default=3, help="infer: timed runs after one warm-up (default 3)")
    ap.add_argument("--selftest", action="store_true")
    a = ap.parse_args()
    for name in ("threads", "seq", "batch", "steps", "chunk", "prefill", "decode", "repeats"):
        if getattr(a, name) < 1:
            ap.error(f"--{name} {getattr(a, name)}: must be at least 1")
    set_threads(a.threads)
    if a.selftest:
        selftest()
    elif a.mode == "train":
        run_train(BenchS, a)
    else:
        run_infer(BenchS, a)


if __name__ == "__main__":
    main()
