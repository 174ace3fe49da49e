#!/usr/bin/python3
"""peer_fixture.py: the benchmark peer (scripts/peer_torch_moe.py) computes docs/design.md's model: with a
fixture's weights (tests/fixtures/tiny.*, written by tests/make_fixtures.py) its logits, ce, aux, z and loss
match the fixture's dump, in float64.

    /usr/bin/python3 tests/peer_fixture.py [--tol 1e-6]
"""
import argparse
import importlib.util
import os
import sys

import torch

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
import compare_dump  # noqa: E402
import moe_reference as R  # noqa: E402

spec = importlib.util.spec_from_file_location("peer", os.path.join(here, "..", "scripts", "peer_torch_moe.py"))
peer = importlib.util.module_from_spec(spec)
spec.loader.exec_module(peer)


def main():
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    ap.add_argument("--tol", type=float, default=1e-6)
    a = ap.parse_args()
    fx = os.path.join(here, "fixtures", "tiny")
    cfg, params = R.load_checkpoint(fx + ".ckpt.h5")
    tokens = torch.from_numpy(R.load_tokens(fx + ".tokens.h5"))
    dump = compare_dump.read_dump(fx + ".dump.h5", cfg)
    assert all(cfg.moe_layers) and not cfg.n_shared_experts and cfg.norm_topk == 1, "the peer's model shape"
    c = type("Fixture", (peer.BenchS,), dict(
        vocab=cfg.vocab_size, d_model=cfg.d_model, n_layers=cfg.n_layers, n_heads=cfg.n_heads,
        n_kv_heads=cfg.n_kv_heads, head_dim=cfg.head_dim, n_experts=cfg.n_experts, top_k=cfg.top_k, d_ff=cfg.d_ff,
        rope_theta=cfg.rope_theta, norm_eps=cfg.norm_eps, aux_coef=cfg.aux_coef, z_coef=cfg.z_coef))
    model = peer.Model(c, tokens.shape[1]).double()
    model.cos, model.sin = peer.rope_angles(c, tokens.shape[1])
    model.cos, model.sin = model.cos.double(), model.sin.double()
    names = {}
    for name, _ in model.named_parameters():  # layers.L.wq -> layers/L/attn/wq, layers.L.w1 -> layers/L/moe/w1
        parts = name.split(".")
        if len(parts) == 3:
            sub = {"wq": "attn/", "wk": "attn/", "wv": "attn/", "wo": "attn/", "router": "moe/", "w1": "moe/",
                   "w3": "moe/", "w2": "moe/"}.get(parts[2], "")
            names[name] = f"layers/{parts[1]}/{sub}{parts[2]}"
        else:
            names[name] = name
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.from_numpy(params[names[name]]).double())
        inp, tgt = tokens[:, :-1], tokens[:, 1:].reshape(-1)
        logits, aux, z = model(inp)
        ce = torch.nn.functional.cross_entropy(logits.reshape(-1, c.vocab), tgt)
        loss = ce + c.aux_coef * aux + c.z_coef * z
    errs = {"logits": float((logits.reshape(-1, c.vocab) - torch.from_numpy(dump["logits"]).double()
                             .reshape(-1, c.vocab)).abs().max())}
    for k, v in (("ce", ce), ("aux", aux), ("z", z), ("loss", loss)):
        errs[k] = abs(float(v) - dump[k])
    worst = max(errs.values())
    print("peer_fixture: " + ", ".join(f"{k} {v:.1e}" for k, v in errs.items()))
    if worst > a.tol:
        print(f"peer_fixture: the peer differs from the fixture by {worst:.2e} (tolerance {a.tol:g})")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
