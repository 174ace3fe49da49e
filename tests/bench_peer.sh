#!/usr/bin/env bash
# bench_peer.sh: the PyTorch peer of the benchmarks (scripts/peer_torch_moe.py) computes
# docs/design.md's model (tests/peer_fixture.py: with the `tiny` fixture's weights its
# logits, ce, aux, z and loss match the fixture's dump in float64), checks itself
# (--selftest: chunked attention equal to full attention in outputs and gradients, cached
# decode equal to the full forward, RoPE pairs) and refuses a full-attention shape past
# its memory bound with one line. Skipped (exit 77) without PyTorch and h5py
# (scripts/setup.sh --torch).
set -euo pipefail
src=${MONOLITH_SOURCE_DIR:?}
/usr/bin/python3 -c 'import torch, h5py' 2>/dev/null || { echo "bench_peer: skipped (no python3-torch)"; exit 77; }
/usr/bin/python3 "$src/tests/peer_fixture.py"
/usr/bin/python3 "$src/scripts/peer_torch_moe.py" --selftest
if out=$(/usr/bin/python3 "$src/scripts/peer_torch_moe.py" --seq 8192 --batch 1 2>&1); then
    echo "bench_peer: --attention full at seq 8192 was not refused"; exit 1
fi
grep -q "use --attention chunked" <<<"$out" || { echo "bench_peer: unexpected refusal: $out"; exit 1; }
echo "bench_peer: ok"
