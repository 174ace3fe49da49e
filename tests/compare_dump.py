#!/usr/bin/python3
"""compare_dump.py: checks a `monolith dump` against the PyTorch reference (tests/moe_reference.py).

    monolith init --preset tiny --seed 1 -o /tmp/m.ckpt.h5
    /usr/bin/python3 -c "import numpy as np, h5py; h5py.File('/tmp/t.h5', 'w')['tokens'] = \\
        np.random.default_rng(0).integers(0, 512, (2, 17))"
    monolith dump --checkpoint /tmp/m.ckpt.h5 --tokens /tmp/t.h5 -o /tmp/d.h5
    /usr/bin/python3 tests/compare_dump.py /tmp/m.ckpt.h5 /tmp/t.h5 /tmp/d.h5 [--tol 1e-4] [--dtype float64] [-v]

It reads the checkpoint and the token batch (`/tokens` [B, T+1]), recomputes logits, the four losses, the
routing of every MoE layer and the gradient of every parameter in float64 (or --dtype float32), and compares
each tensor of the dump with it. The error of a tensor is ||dump - ref|| / ||ref|| (Frobenius norms; a
scalar loss is one element; when ||ref|| is 0 the error is ||dump||). Every tensor must be within --tol
(default 1e-4); the selected experts must match exactly.

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
        names = [n for n, _ in R.param_shapes(cfg)]
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


def follow_ties(cfg, params, tokens, dump, dtype, tie_tol):
    """Runs the reference, making it follow the dump's expert choice at every token where the two differ
    only by a near-tie (the dump's choice is a valid top-k of the reference's probabilities up to tie_tol).
    Layers are settled in order, since forcing layer L changes what later layers see. Returns (Result,
    tokens followed, tokens that differ beyond a tie in the final run)."""
    force, followed = {}, 0
    while True:
        ref = R.run(cfg, params, tokens, dtype=dtype, force=force)
        changed = False
        for L in sorted(ref.routing):
            re_ = ref.routing[L][0]
            de = np.asarray(dump["routing"][L][0])
            if de.shape != re_.shape:
                continue
            mask = np.zeros(re_.shape[0], dtype=bool)
            for n in np.nonzero(np.any(de != re_, axis=1))[0]:
                mask[n] = _valid_choice(cfg, ref.probs[L][n], de[n], tie_tol)
            if mask.any():
                old = force[L][0].numpy() if L in force else np.zeros_like(mask)
                force[L] = (torch.from_numpy(old | mask), torch.from_numpy(de.astype(np.int64)))
                followed += int(mask.sum())
                changed = True
                break           # later layers' probabilities change: rerun before looking at them
        if not changed:
            break
    bad = sum(int(np.any(np.asarray(dump["routing"][L][0]) != e, axis=1).sum())
              if np.shape(dump["routing"][L][0]) == e.shape else e.shape[0] for L, (e, _) in ref.routing.items())
    return ref, followed, bad


def compare(cfg, params, tokens, dump, tol=1e-4, dtype=torch.float64, tie_tol=1e-5, verbose=False, out=sys.stdout):
    """Recomputes the batch with the reference and compares it with `dump` (read_dump's dict). Prints one
    line per tensor when verbose (otherwise only failures) and a summary. Returns (ok, worst error)."""
    ref, followed, bad = follow_ties(cfg, params, tokens, dump, dtype, tie_tol)
    rows = []   # (name, error, max abs difference, ok)
    for k in ("ce", "aux", "z", "loss"):
        e = nerr(dump[k], getattr(ref, k))
        rows.append((k, e, abs(dump[k] - getattr(ref, k)), e <= tol))
    e = nerr(dump["logits"], ref.logits)
    rows.append(("logits", e, maxabs(dump["logits"], ref.logits), e <= tol))
    for L in sorted(ref.routing):
        re_, rw = ref.routing[L]
        de, dw = (np.asarray(x) for x in dump["routing"][L])
        mism = int(np.any(de != re_, axis=1).sum()) if de.shape == re_.shape else re_.shape[0]
        rows.append((f"routing/{L}/experts", float(mism), float(mism), mism == 0))
        e = nerr(dw, rw)
        rows.append((f"routing/{L}/weights", e, maxabs(dw, rw), e <= tol))
    for n, _ in R.param_shapes(cfg):
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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("tokens")
    ap.add_argument("dump")
    ap.add_argument("--tol", type=float, default=1e-4, help="normalized error allowed per tensor (1e-4)")
    ap.add_argument("--tie-tol", type=float, default=1e-5, help="probability gap counted as a tie (1e-5)")
    ap.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every tensor, not just failures")
    a = ap.parse_args(argv)
    try:
        cfg, params = R.load_checkpoint(a.checkpoint)
        tokens = R.check_tokens(cfg, R.load_tokens(a.tokens), a.tokens)
        dump = read_dump(a.dump, cfg)
    except R.ReferenceError as e:
        print(f"compare_dump: {e}", file=sys.stderr)
        return 2
    ok, _ = compare(cfg, params, tokens, dump, a.tol, getattr(torch, a.dtype), a.tie_tol, a.verbose)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
