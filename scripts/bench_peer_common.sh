# bench_peer_common.sh: sourced by bench_compare.sh and bench_compare_infer.sh. Checks that
# monolith, the PyTorch peer (scripts/peer_torch_moe.py) and torch are there, exports the
# same OPENBLAS_CORETYPE and OMP_WAIT_POLICY for both programs and makes $tmp (removed on
# exit). The peer prints its own wall-clock and per-CPU-second rates and peak RSS.
#
#   bench_peer_setup SCRIPT_NAME CORETYPE   (sets bin, peer, tmp)
bench_peer_setup() {
  local name=$1 coretype=$2
  bin=${MONOLITH_BIN:-build/monolith}
  peer=scripts/peer_torch_moe.py
  [ -x "$bin" ] || { echo "$name: $bin not found; build first (scripts/test.sh)" >&2; exit 1; }
  /usr/bin/python3 -c 'import torch' 2>/dev/null || {
    echo "$name: the peer needs PyTorch: apt-get install python3-torch (scripts/setup.sh --torch)" >&2; exit 1; }
  export OPENBLAS_CORETYPE=$coretype OMP_WAIT_POLICY=PASSIVE
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
}

