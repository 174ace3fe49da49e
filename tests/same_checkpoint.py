#!/usr/bin/env python3
"""same_checkpoint.py A.h5 B.h5 [--train]: exits 0 when two training checkpoints hold bit
for bit the same model and Adam state (every dataset under /model, /optim/m, /optim/v), and
with --train the same /train state (step, tokens_seen, rng_state, loader_state); otherwise
exits 1 naming the first that differs. The resume and restart tests (tests/reliability_*.sh,
tests/train_kill.sh) compare a resumed run with an uninterrupted one through it."""
import sys

import h5py
import numpy as np

args = [a for a in sys.argv[1:] if a != "--train"]
if len(args) != 2:
    sys.exit("usage: same_checkpoint.py A.h5 B.h5 [--train]")
a, b = h5py.File(args[0], "r"), h5py.File(args[1], "r")
names = []
a["model"].visit(lambda n: names.append(n) if isinstance(a["model"][n], h5py.Dataset) else None)
if len(names) <= 10:
    sys.exit(f"{args[0]}: only {len(names)} tensors under /model")
for n in names:
    for g in ("model", "optim/m", "optim/v"):
        x, y = a[g][n][()], b[g][n][()]
        if x.tobytes() != y.tobytes():
            sys.exit(f"{g}/{n} differs: max |diff| {np.max(np.abs(x - y))}")
if "--train" in sys.argv[1:]:
    for k in ("step", "tokens_seen", "rng_state", "loader_state"):
        if not np.array_equal(a["train"].attrs[k], b["train"].attrs[k]):
            sys.exit(f"/train {k} differs")
