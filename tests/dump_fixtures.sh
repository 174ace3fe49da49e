#!/usr/bin/env bash
# dump_fixtures.sh: `monolith dump` on every PyTorch fixture of tests/fixtures/ writes a
# file that h5py reads with the dump layout of docs/design.md section 11.4, and whose every tensor is
# within 1e-4 normalized error of the fixture's (experts equal). Also: bad token ids
# and a missing tokens file are refused with one line. Fails (never skips) without
# h5py or without the fixtures.
set -euo pipefail
bin=${MONOLITH_BIN:?MONOLITH_BIN must point at the monolith binary}
src=${MONOLITH_SOURCE_DIR:?}
py=python3
/usr/bin/python3 -c 'import h5py' 2>/dev/null && py=/usr/bin/python3
$py -c 'import h5py, numpy' || { echo "dump_fixtures: needs python3-h5py (scripts/setup.sh installs it)"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cases="tiny gqa1_top1_norm0 dense_shared_top2_norm0 top1_norm1_shared2 top3_of8 all_dense"
for c in $cases; do
    fx=$src/tests/fixtures/$c
    [ -f "$fx.ckpt.h5" ] || { echo "dump_fixtures: missing $fx.ckpt.h5 (tests/make_fixtures.py)"; exit 1; }
    "$bin" dump --checkpoint "$fx.ckpt.h5" --tokens "$fx.tokens.h5" -o "$tmp/$c.dump.h5" >/dev/null
done

$py - "$tmp" "$src/tests/fixtures" $cases <<'EOF'
import sys, h5py, numpy as np
tmp, fx, cases = sys.argv[1], sys.argv[2], sys.argv[3:]
for c in cases:
    got, want = h5py.File(f"{tmp}/{c}.dump.h5", "r"), h5py.File(f"{fx}/{c}.dump.h5", "r")
    for k in ("ce", "aux", "z", "loss"):
        a = got.attrs[k]
        assert a.dtype == np.float64 and np.asarray(a).shape == (), (c, k)
        w = float(want.attrs[k])
        e = abs(float(a) - w) / abs(w) if w else abs(float(a))
        assert e <= 1e-4, (c, k, float(a), w)
    names = set()
    got.visititems(lambda n, o: names.add(n) if isinstance(o, h5py.Dataset) else None)
    wnames = set()
    want.visititems(lambda n, o: wnames.add(n) if isinstance(o, h5py.Dataset) else None)
    assert names == wnames, (c, names ^ wnames)
    worst = 0.0
    for n in sorted(wnames):
        a, w = got[n], want[n]
        assert a.shape == w.shape and a.dtype == w.dtype, (c, n, a.shape, w.shape, a.dtype, w.dtype)
        if n.endswith("/experts"):
            assert a.dtype == np.int64 and (a[()] == w[()]).all(), (c, n)
            continue
        assert a.dtype == np.float32, (c, n, a.dtype)
        x, y = a[()].astype(np.float64), w[()].astype(np.float64)
        e = np.linalg.norm(x - y) / np.linalg.norm(y) if np.linalg.norm(y) else np.linalg.norm(x)
        assert e <= 1e-4, (c, n, e)
        worst = max(worst, e)
    print(f"{c:<26} {len(wnames)} datasets, worst normalized error {worst:.2e} (tolerance 1e-4)")
EOF

# Bad input: a token id outside the vocabulary, a missing file.
$py -c "import h5py, numpy as np; h5py.File('$tmp/bad.h5', 'w')['tokens'] = np.array([[1, 2, 999]], dtype=np.int64)"
if "$bin" dump --checkpoint "$src/tests/fixtures/tiny.ckpt.h5" --tokens "$tmp/bad.h5" -o "$tmp/x.h5" 2>"$tmp/err"; then
    echo "a token id of 999 with vocabulary 512 was accepted"; exit 1
fi
grep -q "bad.h5.*999.*512" "$tmp/err" || { echo "unexpected message: $(cat "$tmp/err")"; exit 1; }
[ "$(wc -l <"$tmp/err")" -eq 1 ] && [ ! -e "$tmp/x.h5" ]
if "$bin" dump --checkpoint "$tmp/none.h5" --tokens "$tmp/bad.h5" -o "$tmp/x.h5" 2>"$tmp/err"; then exit 1; fi
grep -q "none.h5" "$tmp/err"
echo "dump_fixtures: ok"
