#!/usr/bin/env bash
# train_kill.sh: kill -9 during a checkpoint save leaves the previous checkpoint loadable
# and nothing that --resume takes for a checkpoint; the resumed run ends bit-identical to
# an uninterrupted one. Then kill -9 at random moments of a run that saves every step:
# every ckpt-*.h5 left behind is complete, and --resume always continues.
set -euo pipefail
bin=${MONOLITH_BIN:?}
src=${MONOLITH_SOURCE_DIR:?}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "train_kill: FAIL: $*" >&2; exit 1; }
py=python3  # Debian's, which has h5py (scripts/setup.sh), even when another python3 comes first
/usr/bin/python3 -c 'import h5py' 2>/dev/null && py=/usr/bin/python3
$py -c 'import h5py, numpy' || fail "needs python3-h5py and python3-numpy (scripts/setup.sh installs them)"

# A small code domain from the engine's own sources.
"$bin" tokenizer train --vocab-size 300 --input "$src"/engine/*.c -o "$tmp/tok.tiktoken" >/dev/null 2>&1
"$bin" data prepare --tokenizer "$tmp/tok.tiktoken" --domain code --input "$src/engine" "$src/kernels" \
  -o "$tmp/code.h5" >/dev/null 2>&1
common=(--preset tiny --tokenizer "$tmp/tok.tiktoken" --data "code=$tmp/code.h5" --steps 12 --batch 4 --seq 32
        --warmup 2 --eval-every 0 --eval-batches 1 --threads 2)

# The reference: 12 steps uninterrupted.
"$bin" train "${common[@]}" --save-every 4 --out "$tmp/ref" >/dev/null 2>&1 || fail "reference run"

# Killed (SIGKILL) half way through writing the step-8 checkpoint.
set +e
MONOLITH_FAULT_KILL_IN_SAVE=8 "$bin" train "${common[@]}" --save-every 4 --out "$tmp/run" >/dev/null 2>&1
rc=$?
set -e
[ $rc -eq 137 ] || fail "expected death by SIGKILL (137), got $rc"
[ -f "$tmp/run/ckpt-00000008.h5.tmp" ] || fail "no half-written .tmp file (the kill came too late or too early)"
[ ! -e "$tmp/run/ckpt-00000008.h5" ] || fail "a half-written checkpoint under the real name"
[ "$(readlink "$tmp/run/latest.h5")" = ckpt-00000004.h5 ] || fail "latest.h5 does not point at step 4"
$py - "$tmp/run" <<'PY' || fail "the previous checkpoint does not load"
import sys, h5py
f = h5py.File(sys.argv[1] + "/ckpt-00000004.h5", "r")
assert f.attrs["format"].decode() == "monolith-checkpoint"
assert int(f["train"].attrs["step"]) == 4
assert f["optim/v/output"].shape == f["model/output"].shape
PY
"$bin" train --resume "$tmp/run" --threads 2 >/dev/null 2>&1 || fail "resume after the kill"
[ ! -e "$tmp/run/ckpt-00000008.h5.tmp" ] || fail "the .tmp file is still there after resume"
$py "$src/tests/same_checkpoint.py" "$tmp/ref/ckpt-00000012.h5" "$tmp/run/ckpt-00000012.h5" ||
  fail "resumed run differs from the reference"

# kill -9 at random moments of a run that saves every step.
"$bin" train "${common[@]}" --steps 40 --save-every 1 --keep 2 --out "$tmp/rnd" >/dev/null 2>&1 &
pid=$!
for i in 1 2 3; do
  sleep "0.$((RANDOM % 9 + 1))"
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  $py - "$tmp/rnd" <<'PY' || fail "a checkpoint left by kill -9 does not load"
import sys, glob, re, h5py
for p in glob.glob(sys.argv[1] + "/ckpt-*.h5"):
    if not re.search(r"ckpt-\d+\.h5$", p): continue
    with h5py.File(p, "r") as f:
        s = int(f["train"].attrs["step"])
        assert f["optim/v/output"].shape == f["model/output"].shape, p
        assert p.endswith("ckpt-%08d.h5" % s), p
PY
  if ls "$tmp/rnd"/ckpt-*.h5 >/dev/null 2>&1; then
    "$bin" train --resume "$tmp/rnd" --threads 2 >/dev/null 2>&1 &
  else  # killed before the first save: nothing to resume, start again
    rm -rf "$tmp/rnd"
    "$bin" train "${common[@]}" --steps 40 --save-every 1 --keep 2 --out "$tmp/rnd" >/dev/null 2>&1 &
  fi
  pid=$!
done
wait "$pid" || fail "the last resume did not finish"
[ -f "$tmp/rnd/ckpt-00000040.h5" ] || fail "the run did not reach step 40"
echo "train_kill: ok"
