#!/usr/bin/python3
"""make_fixtures.py: writes the model fixtures of tests/fixtures/ with the PyTorch reference.

    scripts/setup.sh --torch && /usr/bin/python3 tests/make_fixtures.py [--out tests/fixtures] [--check]

For each case: <case>.ckpt.h5 (a checkpoint, docs/design.md section 11.2), <case>.tokens.h5 (/tokens int64 [B, T+1])
and <case>.dump.h5 (what `monolith dump` must produce for them: losses, logits, routing, every gradient).
Parameters are drawn in float64 and rounded to float32 (what the checkpoint stores); the expected results
are computed from those float32 values in float64 and stored as float32, so a fixture is the exact math.
Seeds are searched from a fixed start until no token of any MoE layer is within 1e-3 (in probability) of a
top-k tie, and this is asserted on the written results. The same run writes the same bytes.

--check regenerates into a temporary folder and compares byte for byte with --out (exit 1 on a difference).
Each case also prints how far PyTorch's float32 results are from the float64 fixture: the headroom the C
engine has under the tests' 1e-4 tolerance.
"""
import argparse
import filecmp
import os
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare_dump  # noqa: E402
import moe_reference as R  # noqa: E402

MIN_MARGIN = 1e-3
CREATED_BY = "tests/make_fixtures.py"

# name: (config, batch B, sequence T, first seed, init std (router and weights), what it covers)
CASES = {
    "tiny": (dict(vocab_size=512, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=16, n_experts=4,
                  top_k=2, d_ff=128, moe_layers=(1, 1), n_shared_experts=0, d_ff_shared=0, d_ff_dense=0,
                  max_seq_len=128, rope_theta=10000.0, norm_eps=1e-5, norm_topk=1, aux_coef=0.01, z_coef=0.001),
             2, 16, 1000, 0.02,
             "the `tiny` preset's shapes with the design's init (std 0.02): GQA 4 heads / 2 kv heads, top-2 of 4, "
             "norm_topk 1, every layer MoE"),
    "gqa1_top1_norm0": (dict(vocab_size=48, d_model=24, n_layers=2, n_heads=4, n_kv_heads=1, head_dim=6,
                             n_experts=4, top_k=1, d_ff=16, moe_layers=(1, 1), norm_topk=0, max_seq_len=16,
                             rope_theta=10000.0, norm_eps=1e-5, aux_coef=0.05, z_coef=0.01),
                        2, 12, 2000, 0.1,
                        "one kv head for 4 query heads, top-1 with norm_topk 0 (gate = p)"),
    "dense_shared_top2_norm0": (dict(vocab_size=48, d_model=24, n_layers=2, n_heads=4, n_kv_heads=4, head_dim=6,
                                     n_experts=4, top_k=2, d_ff=16, moe_layers=(1, 0), n_shared_experts=1,
                                     d_ff_shared=12, d_ff_dense=32, norm_topk=0, max_seq_len=32,
                                     rope_theta=10000.0, norm_eps=1e-5, aux_coef=0.01, z_coef=0.001),
                                2, 10, 3000, 0.1,
                                "MoE then dense layer (ffn/ d_ff_dense 32), one shared expert, top-2 with "
                                "norm_topk 0, plain multi-head attention (n_kv_heads = n_heads)"),
    "top1_norm1_shared2": (dict(vocab_size=48, d_model=24, n_layers=3, n_heads=6, n_kv_heads=3, head_dim=4,
                                n_experts=6, top_k=1, d_ff=8, moe_layers=(0, 1, 1), n_shared_experts=2,
                                d_ff_shared=8, d_ff_dense=24, norm_topk=1, max_seq_len=9, rope_theta=500.0,
                                norm_eps=1e-3, aux_coef=0.1, z_coef=0.01),
                           3, 9, 4000, 0.1,
                           "dense first layer, top-1 with norm_topk 1 (gate 1: the router learns only from "
                           "aux and z), two shared experts, GQA 6/3, B=3, odd T = max_seq_len, rope_theta 500, "
                           "norm_eps 1e-3"),
    "top3_of8": (dict(vocab_size=48, d_model=24, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=6, n_experts=8,
                      top_k=3, d_ff=8, moe_layers=(1, 1), norm_topk=1, max_seq_len=64, rope_theta=10000.0,
                      norm_eps=1e-5, aux_coef=0.02, z_coef=0.005),
                 2, 16, 5000, 0.1,
                 "top-3 of 8 experts with norm_topk 1, GQA 4/2"),
    "all_dense": (dict(vocab_size=48, d_model=24, n_layers=2, n_heads=2, n_kv_heads=1, head_dim=12, n_experts=4,
                       top_k=2, d_ff=16, moe_layers=(0, 0), d_ff_dense=32, norm_topk=1, max_seq_len=8,
                       rope_theta=10000.0, norm_eps=1e-5, aux_coef=0.01, z_coef=0.001),
                  1, 8, 6000, 0.1,
                  "no MoE layer: aux = z = 0 and no /routing, B=1, head_dim 12"),
}

# The routing variants (docs/design.md, "Routing"), alone and combined. These files carry the router
# attributes and router_bias (the cases above are written as files from before them, so they also check
# that such a file loads with the defaults). `bias` is router_bias's std (0: zeros); `noise` the seed of a
# training forward's router noise (monolith dump --train SEED), stored as /tokens attribute noise_seed.
_V = dict(vocab_size=48, d_model=24, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=6, max_seq_len=32,
          rope_theta=10000.0, norm_eps=1e-5, z_coef=0.01)
VARIANTS = {
    "sigmoid_bias_scale": (dict(_V, n_experts=6, top_k=2, d_ff=8, moe_layers=(1, 1), norm_topk=1, aux_coef=0.05,
                                router_score="sigmoid", balance="bias", bias_rate=0.01, routed_scale=2.5),
                           2, 12, 7000, 0.3, 0.05, None,
                           "sigmoid scores, top-2 of 6 by s + b (random bias), gates renormalized x 2.5, aux on "
                           "s / sum s, bias update"),
    "sigmoid_norm0_shared": (dict(_V, n_experts=8, top_k=3, d_ff=8, moe_layers=(1, 0), d_ff_dense=16,
                                  n_shared_experts=1, d_ff_shared=8, norm_topk=0, aux_coef=0.02,
                                  router_score="sigmoid", balance="bias", bias_rate=0.001),
                             2, 10, 7100, 0.3, 0.05, None,
                             "sigmoid top-3 of 8 with norm_topk 0 (gate = s), a shared expert, then a dense layer"),
    "capacity100": (dict(_V, n_experts=4, top_k=2, d_ff=8, moe_layers=(1, 1), norm_topk=1, aux_coef=0.05,
                         capacity_factor=1.0),
                    2, 16, 7200, 0.3, 0.0, None,
                    "softmax top-2 of 4, capacity 1.0: C = 16 slots per expert for 32 tokens, dropped slots stay "
                    "in the renormalizing sum"),
    "capacity_sigmoid_bias": (dict(_V, n_experts=4, top_k=2, d_ff=8, moe_layers=(1, 1), norm_topk=0,
                                   aux_coef=0.0, router_score="sigmoid", balance="bias", capacity_factor=0.75),
                              2, 12, 7300, 0.3, 0.05, None,
                              "sigmoid + bias, no aux, norm_topk 0, capacity 0.75"),
    "top_p": (dict(_V, n_experts=8, top_k=4, d_ff=8, moe_layers=(1, 1), norm_topk=1, aux_coef=0.05,
                   router_top_p=0.5),
              2, 12, 7400, 0.3, 0.0, None,
              "top-p 0.5 with top_k 4 of 8: 1 to 4 experts per token, renormalized over the taken ones"),
    "top_p_capacity_scale": (dict(_V, n_experts=6, top_k=3, d_ff=8, moe_layers=(1, 1), norm_topk=1, aux_coef=0.05,
                                  router_top_p=0.6, capacity_factor=0.8, routed_scale=1.5),
                             2, 12, 7500, 0.3, 0.02, None,
                             "top-p 0.6 (top_k 3) with capacity 0.8, a bias and gates x 1.5"),
    "noise_capacity": (dict(_V, n_experts=4, top_k=2, d_ff=8, moe_layers=(1, 1), norm_topk=1, aux_coef=0.05,
                            router_noise=0.7, capacity_factor=1.25),
                       2, 12, 7600, 0.3, 0.0, 11,
                       "a training forward: router noise 0.7 from Rng(11), capacity 1.25; z-loss without noise"),
}


def make_case(name, outdir):
    legacy = name in CASES
    kw, B, T, seed0, std, _ = CASES[name] if legacy else VARIANTS[name][:5] + (None,)
    bias_std, noise_seed = (0.0, None) if legacy else VARIANTS[name][5:7]
    cfg = R.Config(**kw).validate()

    def make_params(s):
        p = R.init_params(cfg, s, std=std, norm_jitter=0.1)
        g = np.random.default_rng(s + 99)
        for n in p:
            if n.endswith("router_bias") and bias_std > 0:
                p[n] = (bias_std * g.standard_normal(p[n].shape)).astype(np.float32)
        return p
    seed, params, tokens, _ = R.clear_of_ties(
        cfg, seed0, make_params,
        lambda s: np.random.default_rng(s).integers(0, cfg.vocab_size, size=(B, T + 1), dtype=np.int64),
        MIN_MARGIN, noise_seed=noise_seed)
    res = R.run(cfg, params, tokens, dtype=torch.float64, noise_seed=noise_seed)
    margin = min((float(m.min()) for m in res.margins.values()), default=float("inf"))
    assert margin >= MIN_MARGIN, f"{name}: a token is {margin:.2e} from a top-k tie"
    for L, (experts, gates) in res.routing.items():
        live = experts >= 0
        keys = np.take_along_axis(res.probs[L], np.where(live, experts, 0), 1)
        assert experts.shape == (B * T, cfg.top_k) and all(
            np.all(np.diff(keys[n][live[n]]) < 0) for n in range(B * T)), \
            f"{name}: layer {L} experts not in descending order"
    base = os.path.join(outdir, name)
    experts = [dict(name=f"expert{e}", domain="fixture",
                    provenance='{"created_by": "tests/make_fixtures.py", "case": "%s", "seed": %d}' % (name, seed))
               for e in range(cfg.n_experts)]
    R.write_checkpoint(base + ".ckpt.h5", cfg, params, experts=experts, created_by=CREATED_BY, legacy=legacy)
    R.write_tokens(base + ".tokens.h5", tokens, noise_seed=noise_seed)
    R.write_dump(base + ".dump.h5", cfg, res, created_by=CREATED_BY,
                 bias_after=None if legacy else {L: R.bias_update(cfg, params[f"layers/{L}/moe/router_bias"],
                                                                  res.counts[L]) for L in res.counts})

    # The fixture read back must pass compare_dump in float64 (files as written), and PyTorch in float32
    # shows the error a float32 engine can expect.
    cfg2, params2 = R.load_checkpoint(base + ".ckpt.h5")
    dump = compare_dump.read_dump(base + ".dump.h5", cfg2)
    with open(os.devnull, "w") as null:
        ok64, err64 = compare_dump.compare(cfg2, params2, R.load_tokens(base + ".tokens.h5"), dump, 1e-6, out=null,
                                           noise_seed=noise_seed)
        ok32, err32 = compare_dump.compare(cfg2, params2, tokens, dump, 1e-4, dtype=torch.float32, out=null,
                                           noise_seed=noise_seed)
    assert ok64, f"{name}: the written fixture does not reproduce (worst error {err64:.2e})"
    size = sum(os.path.getsize(base + s) for s in (".ckpt.h5", ".tokens.h5", ".dump.h5"))
    print(f"{name:<24} seed {seed:<5} B={B} T={T:<2} params {sum(p.size for p in params.values()):>6}  "
          f"ce {res.ce:.4f} aux {res.aux:.4f} z {res.z:.4f} loss {res.loss:.4f}  margin {margin:.1e}  "
          f"torch-fp32 err {err32:.1e}{'' if ok32 else ' (OVER 1e-4)'}  {size / 1024:.0f} KiB")
    return size


def main():
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "fixtures"))
    ap.add_argument("--check", action="store_true", help="regenerate in a temporary folder and compare bytes")
    ap.add_argument("cases", nargs="*", help=f"subset of: {' '.join(CASES)}")
    a = ap.parse_args()
    torch.set_num_threads(1)   # same reduction order on every run
    names = a.cases or list(CASES) + list(VARIANTS)
    unknown = [n for n in names if n not in CASES and n not in VARIANTS]
    if unknown:
        ap.error(f"unknown case(s) {' '.join(unknown)}; the cases are: {' '.join(list(CASES) + list(VARIANTS))}")
    if a.check:
        with tempfile.TemporaryDirectory() as tmp:
            for n in names:
                make_case(n, tmp)
            files = [f"{n}{s}" for n in names for s in (".ckpt.h5", ".tokens.h5", ".dump.h5")]
            _, diff, missing = filecmp.cmpfiles(a.out, tmp, files, shallow=False)
            for f in diff + missing:
                print(f"make_fixtures: {os.path.join(a.out, f)} differs from a fresh run", file=sys.stderr)
            return 1 if diff or missing else 0
    os.makedirs(a.out, exist_ok=True)
    total = sum(make_case(n, a.out) for n in names)
    print(f"{len(names)} cases, {total / 1024:.0f} KiB in {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
