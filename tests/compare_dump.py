#!/usr/bin/python3
"""compare_dump.py: checks a `monolith dump` against the PyTorch reference (tests/moe_reference.py).

    monolith init --preset tiny --seed 1 -o /tmp/m.ckpt.h5
    monolith dump --checkpoint /tmp/m.ckpt.h5 --tokens tests/fixtures/tiny.tokens.h5 -o /tmp/d.h5
    /usr/bin/python3 tests/compare_dump.py /tmp/m.ckpt.h5 tests/fixtures/tiny.tokens.h5 /tmp/d.h5 [-v]
        [--tol 1e-4] [--tie-tol 1e-5] [--any-order] [--dtype float64|float32]
    /usr/bin/python3 tests/compare_dump.py --selftest

Any token batch will do (tiny.tokens.h5 is [2, 17] with ids < 512); to make one:
    /usr/bin/python3 -c "import sys; sys.path.insert(0, 'tests'); import moe_reference as R, numpy as np; \\
        R.write_tokens('/tmp/t.h5', np.random.default_rng(0).integers(0, VOCAB, (B, T + 1)))"

It reads the checkpoint and the token batch (`/tokens` [B, T+1]), recomputes logits, the four losses, the
routing of every MoE layer and the gradient of every parameter in float64 (or --dtype float32), and compares
each tensor of the dump with it. The error of a tensor is ||dump - ref|| / ||ref|| (Frobenius norms; a
scalar loss is one element; when ||ref|| is 0 the error is ||dump||). Every tensor must be within --tol
(default 1e-4); the selected experts must match exactly, listed by descending probability as the
reference lists them (the starting specification left the order of /routing/L/experts open: --any-order compares each
token's experts as a set, with their weights).

A token whose top-k choice is within --tie-tol (default 1e-5, in probability) of a tie may be broken either
way by an engine rounding in float32: where the dump's choice is a valid top-k of the reference's
probabilities up to --tie-tol, the reference follows it (and says how many tokens it did that for); any other
difference in the selected experts fails.

Output: one line per tensor (normalized error, max absolute difference, ok/FAIL), then a summary line.
Exit status: 0 when everything is within tolerance, 1 when something is not, 2 on a bad or missing file
(with a one-line message naming it).
"""
import argparse
import os
import sys

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import moe_reference as R  # noqa: E402


def read_dump(path, cfg):
    """Reads a dump: {"ce", "aux", "z", "loss": float, "logits": array, "routing": {L: (experts, weights)},
    "grads": {name: array}, "extra": [unexpected paths]}. Raises ReferenceError for a missing item."""
    out = {"routing": {}, "grads": {}, "extra": []}
    with R._open(path, "a monolith dump") as f:
        for k in ("ce", "aux", "z", "loss"):
            if k not in f.attrs:
                raise R.ReferenceError(f"{path}: missing root attribute {k}")
            out[k] = float(f.attrs[k])
        if "logits" not in f:
            raise R.ReferenceError(f"{path}: no /logits dataset")
        out["logits"] = f["logits"][()]
        for L in range(cfg.n_layers):
            g = f"routing/{L}"
            if cfg.moe_layers[L]:
                if g + "/experts" not in f or g + "/weights" not in f:
                    raise R.ReferenceError(f"{path}: MoE layer {L} needs /{g}/experts and /{g}/weights")
                out["routing"][L] = (f[g + "/experts"][()], f[g + "/weights"][()])
        if "routing" in f:
            out["extra"] += [f"/routing/{k}" for k in f["routing"] if not (k.isdigit() and int(k) in out["routing"])]
        names = [n for n, _ in R.param_shapes(cfg) if not n.endswith("router_bias")]   # no gradient
        for n in names:
            if "grads/" + n not in f:
                raise R.ReferenceError(f"{path}: missing gradient /grads/{n}")
            out["grads"][n] = f["grads/" + n][()]
        seen = []
        if "grads" in f:
            f["grads"].visititems(lambda p, o: seen.append(p) if isinstance(o, h5py.Dataset) else None)
        out["extra"] += ["/grads/" + p for p in seen if p not in set(names)]
    return out


def nerr(a, b):
    """||a - b|| / ||b||, or ||a|| when b is all zeros; inf when the shapes differ."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return float("inf")
    nb = np.linalg.norm(b)
    d = np.linalg.norm(a - b)
    return float(d / nb) if nb > 0 else float(d)


def maxabs(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max()) if a.shape == b.shape and a.size else float("nan")


def _valid_choice(cfg, p, d, tie_tol):
    """Whether experts d (in order) are a top-k of probabilities p, by descending p, up to tie_tol."""
    if len(set(d.tolist())) != cfg.top_k or d.min() < 0 or d.max() >= cfg.n_experts:
        return False
    pd, rest = p[d], np.delete(p, d)
    return bool(np.all(pd[:-1] >= pd[1:] - tie_tol)) and (rest.size == 0 or pd[-1] >= rest.max() - tie_tol)


def by_expert_id(experts, weights):
    """Rows of (experts, weights) reordered by expert id: for comparing choices whatever their order."""
    experts, weights = np.asarray(experts), np.asarray(weights)
    if experts.ndim != 2 or experts.shape != weights.shape:
        return experts, weights
    o = np.argsort(experts, axis=1, kind="stable")
    return np.take_along_axis(experts, o, 1), np.take_along_axis(weights, o, 1)


def _differs(a, b, any_order):
    """Per row, whether expert lists a and b differ (as sets when any_order)."""
    if any_order:
        a, b = np.sort(a, axis=1), np.sort(b, axis=1)
    return np.any(a != b, axis=1)


def follow_ties(cfg, params, tokens, dump, dtype, tie_tol, any_order=False, noise_seed=None):
    """Runs the reference, making it follow the dump's expert choice at every token where the two differ
    only by a near-tie (the dump's choice is a valid top-k of the reference's probabilities up to tie_tol;
    with any_order only the set counts). Layers are settled in order, since forcing layer L changes what
    later layers see. Returns (Result, tokens followed, tokens that differ beyond a tie in the final run)."""
    force, followed = {}, 0
    while True:
        ref = R.run(cfg, params, tokens, dtype=dtype, force=force, noise_seed=noise_seed)
        changed = False
        for L in sorted(ref.routing):
            re_ = ref.routing[L][0]
            de = np.asarray(dump["routing"][L][0]).astype(np.int64)
            if de.shape != re_.shape:
                continue
            mask = np.zeros(re_.shape[0], dtype=bool)
            for n in np.nonzero(_differs(de, re_, any_order))[0]:
                p = ref.probs[L][n]
                if any_order and de[n].min() >= 0 and de[n].max() < cfg.n_experts:
                    de[n] = de[n][np.argsort(-p[de[n]], kind="stable")]
                mask[n] = _valid_choice(cfg, p, de[n], tie_tol)
            if mask.any():
                old = force[L][0].numpy() if L in force else np.zeros_like(mask)
                force[L] = (torch.from_numpy(old | mask), torch.from_numpy(de))
                followed += int(mask.sum())
                changed = True
                break           # later layers' probabilities change: rerun before looking at them
        if not changed:
            break
    bad = sum(int(_differs(np.asarray(dump["routing"][L][0]), e, any_order).sum())
              if np.shape(dump["routing"][L][0]) == e.shape else e.shape[0] for L, (e, _) in ref.routing.items())
    return ref, followed, bad


def compare(cfg, params, tokens, dump, tol=1e-4, dtype=torch.float64, tie_tol=1e-5, any_order=False, verbose=False,
            out=sys.stdout, noise_seed=None):
    """Recomputes the batch with the reference and compares it with `dump` (read_dump's dict). Prints one
    line per tensor when verbose (otherwise only failures) and a summary. Returns (ok, worst error)."""
    ref, followed, bad = follow_ties(cfg, params, tokens, dump, dtype, tie_tol, any_order, noise_seed)
    rows = []   # (name, error, max abs difference, ok)
    for k in ("ce", "aux", "z", "loss"):
        e = nerr(dump[k], getattr(ref, k))
        rows.append((k, e, abs(dump[k] - getattr(ref, k)), e <= tol))
    e = nerr(dump["logits"], ref.logits)
    rows.append(("logits", e, maxabs(dump["logits"], ref.logits), e <= tol))
    for L in sorted(ref.routing):
        re_, rw = ref.routing[L]
        de, dw = (np.asarray(x) for x in dump["routing"][L])
        if any_order:
            (re_, rw), (de, dw) = by_expert_id(re_, rw), by_expert_id(de, dw)
        mism = int(np.any(de != re_, axis=1).sum()) if de.shape == re_.shape else re_.shape[0]
        rows.append((f"routing/{L}/experts", float(mism), float(mism), mism == 0))
        e = nerr(dw, rw)
        rows.append((f"routing/{L}/weights", e, maxabs(dw, rw), e <= tol))
    for n in ref.grads:
        e = nerr(dump["grads"][n], ref.grads[n])
        rows.append(("grads/" + n, e, maxabs(dump["grads"][n], ref.grads[n]), e <= tol))
    for p in dump["extra"]:
        rows.append((p + " (not in the model)", float("inf"), float("nan"), False))
    w = max(len(r[0]) for r in rows)
    for name, e, m, ok in rows:
        if verbose or not ok:
            if name.endswith("/experts"):
                what, diff = f"{int(e)} tokens differ", ""
            else:
                what, diff = f"{e:.3e}", f"max|diff| {m:.3e}"
            print(f"{'ok  ' if ok else 'FAIL'}  {name:<{w}}  {what:>16}  {diff}", file=out)
    worst = max((r[1] for r in rows if not r[0].endswith("/experts")), default=0.0)
    nfail = sum(not r[3] for r in rows)
    note = f", followed the dump at {followed} near-tie token(s)" if followed else ""
    if bad:
        note += f", {bad} token(s) routed differently beyond a tie"
    print(f"{'ok' if nfail == 0 else 'FAIL'}: {len(rows)} tensors, {nfail} beyond tolerance {tol:g}, "
          f"worst normalized error {worst:.3e}{note}", file=out)
    return nfail == 0, worst


def selftest():
    """compare() must pass the reference's own dump, fail a 1% change in one gradient element or a wrong
    expert, follow an engine that breaks exact ties the other way, and treat the order as --any-order says."""
    import tempfile

    def _check(cond, what):
        print(("ok    " if cond else "FAIL  ") + what)
        return bool(cond)
    ok = True
    null = open(os.devnull, "w")
    cfg = R.Config(vocab_size=31, d_model=16, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=4, n_experts=4,
                   top_k=2, d_ff=8, moe_layers=(1, 1), max_seq_len=16).validate()
    for seed in range(7, 1000):   # experts 0 and 1 tie exactly at every token; some tokens pick both, some one
        params = R.init_params(cfg, seed, std=0.3, norm_jitter=0.1)
        for L in (0, 1):
            params[f"layers/{L}/moe/router"][1] = params[f"layers/{L}/moe/router"][0]
        tokens = np.random.default_rng(seed).integers(0, cfg.vocab_size, size=(2, 9))
        res = R.run(cfg, params, tokens, dtype=torch.float64)
        has = [np.isin(res.routing[0][0], x).any(1) for x in range(cfg.n_experts)]
        if (has[0] & has[1]).any() and (has[0] & ~has[1]).any() and (~(has[0] & has[1])).any():
            break
    with tempfile.TemporaryDirectory() as tmp:
        def roundtrip(r):
            R.write_dump(os.path.join(tmp, "d.h5"), cfg, r)
            return read_dump(os.path.join(tmp, "d.h5"), cfg)

        def check(dump, want, what, **kw):
            got = compare(cfg, params, tokens, dump, out=null, **kw)[0]
            print(("ok    " if got == want else "FAIL  ") + what)
            return got == want

        ok &= check(roundtrip(res), True, "the reference's own dump passes")
        d = roundtrip(res)
        g = d["grads"]["layers/1/attn/wk"]
        g[np.unravel_index(np.abs(g).argmax(), g.shape)] *= 1.01
        ok &= check(d, False, "a 1% change in one gradient element fails")
        d = roundtrip(res)
        n = np.nonzero(~(has[0] & has[1]))[0][0]       # not the tied pair: a real order
        d["routing"][0][0][n] = d["routing"][0][0][n][::-1].copy()
        d["routing"][0][1][n] = d["routing"][0][1][n][::-1].copy()
        ok &= check(d, False, "experts of a token in another order fail by default")
        ok &= check(d, True, "... and pass with any_order", any_order=True)
        both, one = np.nonzero(has[0] & has[1])[0], np.nonzero(has[0] & ~has[1])[0]
        ok &= _check(len(both) > 0 and len(one) > 0, "selftest data has tokens choosing 0 and 1, and 0 not 1")
        d = roundtrip(res)
        d["routing"][0][0][both[0]] = d["routing"][0][0][both[0]][::-1].copy()
        ok &= check(d, True, "an exact tie broken the other way is followed (order)")
        e = res.routing[0][0].copy()      # an engine that picks expert 1 instead of 0 at one token
        e[one[0]][e[one[0]] == 0] = 1
        force = {0: (torch.from_numpy(np.arange(len(e)) == one[0]), torch.from_numpy(e))}
        ok &= check(roundtrip(R.run(cfg, params, tokens, torch.float64, force=force)), True,
                    "an exact tie broken the other way is followed (selection, with its effect on layer 1)")
        d = roundtrip(res)
        row = d["routing"][1][0][0]
        d["routing"][1][0][0] = [x for x in range(cfg.n_experts) if x not in row][:2]
        ok &= check(d, False, "a different choice away from any tie fails")
    null.close()
    print("selftest: " + ("all passed" if ok else "FAILED"))
    return 0 if ok else 1


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0], epilog=__doc__.split("\n", 2)[2],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("tokens")
    ap.add_argument("dump")
    ap.add_argument("--tol", type=float, default=1e-4, help="normalized error allowed per tensor (1e-4)")
    ap.add_argument("--tie-tol", type=float, default=1e-5, help="probability gap counted as a tie (1e-5)")
    ap.add_argument("--any-order", action="store_true",
                    help="accept each token's experts in any order (default: by descending probability)")
    ap.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every tensor, not just failures")
    ap.add_argument("--train", type=int, default=None, metavar="SEED",
                    help="the dump was made with `monolith dump --train SEED`: the router noise of that seed")
    if (argv if argv is not None else sys.argv[1:]) == ["--selftest"]:
        return selftest()
    a = ap.parse_args(argv)
    try:
        cfg, params = R.load_checkpoint(a.checkpoint)
        tokens = R.check_tokens(cfg, R.load_tokens(a.tokens), a.tokens)
        dump = read_dump(a.dump, cfg)
    except R.ReferenceError as e:
        print(f"compare_dump: {e}", file=sys.stderr)
        return 2
    ok, _ = compare(cfg, params, tokens, dump, a.tol, getattr(torch, a.dtype), a.tie_tol, a.any_order, a.verbose,
                    noise_seed=a.train)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
