# bench_peer_common.sh: sourced by bench_compare.sh and bench_compare_infer.sh. Checks that
# monolith, the PyTorch peer and torch are there, exports the same OPENBLAS_CORETYPE and
# OMP_WAIT_POLICY for both programs, makes $tmp (removed on exit), and writes the head of
# $tmp/peer.py: the peer run with time.perf_counter() also recording the process CPU time
# in `cpu`. The caller appends the lines that turn `cpu` into its figures.
#
#   bench_peer_setup SCRIPT_NAME CORETYPE   (sets bin, peer, tmp)
bench_peer_setup() {
  local name=$1 coretype=$2
  bin=${MONOLITH_BIN:-build/monolith}
  peer=${MONOLITH_PEER:-../shared/peers/torch_moe.py}
  [ -f "$peer" ] || peer=/work/shared/peers/torch_moe.py
  [ -x "$bin" ] || { echo "$name: $bin not found; build first (scripts/test.sh)" >&2; exit 1; }
  [ -f "$peer" ] || { echo "$name: the peer torch_moe.py not found (set MONOLITH_PEER)" >&2; exit 1; }
  /usr/bin/python3 -c 'import torch' 2>/dev/null || {
    echo "$name: the peer needs PyTorch: apt-get install python3-torch (scripts/setup.sh --torch)" >&2; exit 1; }
  export OPENBLAS_CORETYPE=$coretype OMP_WAIT_POLICY=PASSIVE
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  cat >"$tmp/peer.py" <<PY
import json, statistics, sys, time
sys.path.insert(0, "$(dirname "$peer")")
wall, cpu = time.perf_counter, []
def timer():
    cpu.append(time.process_time())
    return wall()
time.perf_counter = timer
import torch_moe
sys.argv = ["torch_moe.py"] + sys.argv[1:]
torch_moe.main()
PY
}
