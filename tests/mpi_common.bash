# mpi_common.bash: the setup tests/mpi_train.sh and tests/mpi_expert.sh share (sourced,
# not a test: ctest runs tests/*.sh). The sourcing script defines fail() first. Sets bin,
# src, tmp (removed at exit), py (a Python with h5py), OpenMPI's environment, mpi N ARGS
# (mpirun on this machine), a tokenizer and the token sets code.h5, kern.h5 and other.h5
# (another text under the name code) in $tmp, the common training flags, and
# compare A B LOSS_TOL PARAM_TOL (two run folders' metrics and final checkpoints),
# only_expert_1_changed A.h5 B.h5 (of a --train experts=1 run from A) and stopped_at SRC
# STEP DST (a run folder as if stopped after STEP).
set -euo pipefail
bin=${MONOLITH_BIN:?}
src=${MONOLITH_SOURCE_DIR:?}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
py=python3
/usr/bin/python3 -c 'import h5py' 2>/dev/null && py=/usr/bin/python3
command -v mpirun >/dev/null || fail "mpirun not found: scripts/setup.sh installs openmpi-bin"
# As root (CI containers) OpenMPI wants an explicit yes; --oversubscribe: 2 ranks even on 1 core.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_WAIT_POLICY=PASSIVE
mpi() { mpirun -np "$1" --oversubscribe --bind-to none "${@:2}"; }

"$bin" tokenizer train --vocab-size 300 --input "$src"/engine/*.c -o "$tmp/tok.tiktoken" >/dev/null 2>&1
"$bin" data prepare --tokenizer "$tmp/tok.tiktoken" --domain code --input "$src/engine" -o "$tmp/code.h5" >/dev/null 2>&1
"$bin" data prepare --tokenizer "$tmp/tok.tiktoken" --domain kern --input "$src/kernels" -o "$tmp/kern.h5" >/dev/null 2>&1
"$bin" data prepare --tokenizer "$tmp/tok.tiktoken" --domain code --input "$src/train" -o "$tmp/other.h5" >/dev/null 2>&1
common=(--preset tiny --tokenizer "$tmp/tok.tiktoken" --data "code=$tmp/code.h5" --data "kern=$tmp/kern.h5"
        --batch 2 --seq 32 --warmup 2 --eval-every 0 --eval-batches 1 --threads 1 --log-every 1)

# compare A B LOSS_TOL PARAM_TOL: metrics and the final checkpoints of two run folders.
# A tolerance of 0 asks for bit-identical numbers (parameters, m and v).
compare() {
  $py - "$@" <<'PY'
import sys, json, h5py, numpy as np
a, b, ltol, ptol = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
rd = lambda d: [json.loads(l) for l in open(d + "/metrics.jsonl") if '"train"' in l]
la, lb = rd(a), rd(b)
assert len(la) == len(lb) and la, (len(la), len(lb))
for x, y in zip(la, lb):
    rel = abs(x["loss"] - y["loss"]) / abs(x["loss"])
    assert rel <= ltol, ("step", x["step"], x["loss"], y["loss"], rel)
    assert x["expert_tokens"] == y["expert_tokens"], ("routing counts differ at step", x["step"])
    assert x["tokens_seen"] == y["tokens_seen"]
fa, fb = h5py.File(a + "/latest.h5", "r"), h5py.File(b + "/latest.h5", "r")
for g in ["model", "optim/m", "optim/v"]:
    names = []
    fa[g].visit(lambda n: names.append(n) if isinstance(fa[g][n], h5py.Dataset) else None)
    assert names
    for n in names:
        x, y = fa[g][n][()], fb[g][n][()]
        if ptol == 0:
            assert np.array_equal(x, y), (g, n, "not bit-identical")
        elif g == "model":
            err = np.abs(x - y).max() / max(np.abs(x).max(), 1e-30)
            assert err <= ptol, (n, err)
PY
}


# only_expert_1_changed A.h5 B.h5: B's parameters equal A's bit for bit except expert 1's
# slices of moe/w1, w3, w2 and its router row, which changed.
only_expert_1_changed() {
  $py - "$@" <<'PY'
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1], "r")["model"], h5py.File(sys.argv[2], "r")["model"]
names = []
a.visit(lambda n: names.append(n) if isinstance(a[n], h5py.Dataset) else None)
changed = 0
for n in names:
    x, y = a[n][()], b[n][()]
    if n.endswith(("moe/w1", "moe/w2", "moe/w3", "moe/router")):
        keep = np.ones(x.shape[0], bool); keep[1] = False
        assert np.array_equal(x[keep], y[keep]), (n, "an expert other than 1 changed")
        changed += not np.array_equal(x[1], y[1])
    else:
        assert np.array_equal(x, y), (n, "changed")
assert changed, "expert 1 did not train"
PY
}

# stopped_at SRC STEP DST: the new run folder DST holds run SRC as a run stopped after step
# STEP leaves it: run.ini (its out = DST), the checkpoint of STEP as latest.h5, and the
# first STEP lines of metrics.jsonl (SRC ran with --eval-every 0: one line a step).
stopped_at() {
  local ck
  ck=ckpt-$(printf %08d "$2").h5
  mkdir "$3"
  cp "$1/run.ini" "$1/$ck" "$3/"
  head -"$2" "$1/metrics.jsonl" >"$3/metrics.jsonl"
  ln -s "$ck" "$3/latest.h5"
  sed -i "s|^out = .*|out = $3|" "$3/run.ini"
}
