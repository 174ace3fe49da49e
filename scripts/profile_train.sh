#!/usr/bin/env bash
# profile_train.sh: where a training step's time goes, per op, forward and backward.
#
#   scripts/profile_train.sh [bench train flags...]     e.g. --precision bf16 --threads 1
#
# Runs `monolith bench train` (bench-S, 1 thread unless given) under `perf record`
# (cpu-clock samples with DWARF call stacks, so it works in VMs without hardware
# counters), then attributes every sample taken inside model_forward, model_backward or
# adamw_apply to the op it was in: the first three frames below that phase that are not
# BLAS/oneDNN internals, OpenMP outlined bodies or SIMD helpers. Prints each op's share of
# the step (samples outside the three phases, i.e. initialization and the rate
# measurements, are left out). Samples in oneDNN's JIT kernels cannot be traced to their
# caller (no unwind information) and are counted as one line. Needs perf (linux-perf).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${MONOLITH_BIN:-build/monolith}
command -v perf >/dev/null || { echo "profile_train.sh: needs perf (apt-get install linux-perf)" >&2; exit 1; }
args=("$@")
printf '%s\n' "${args[@]}" | grep -q -- '--threads' || args+=(--threads 1)
# Set, so that monolith does not run itself again to set it (tools/preinit.c): perf's
# DWARF unwinding lost the stacks of the re-executed program.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
perf record -q -e cpu-clock -F 250 --call-graph dwarf,16384 -o "$tmp/perf.data" \
  "$bin" bench train --steps 2 "${args[@]}" >"$tmp/bench.out" 2>&1
cat "$tmp/bench.out" | grep -E 'bench train|step \(|tokens/s'
perf script -i "$tmp/perf.data" -F ip,sym 2>/dev/null >"$tmp/stacks.txt"
python3 - "$tmp/stacks.txt" <<'PY'
import collections, re, sys
phases = {"model_forward": "fwd", "model_backward": "bwd", "adamw_apply": "adamw"}
skip = re.compile(r"^(gemm|gemm_bf16|grouped_run|grouped_block.*|bf_block|matmul_grouped_schedule|GOMP_.*|.*_omp_fn.*|"
                  r"cblas_sgemm|sgemm_.*|dnnl.*|.*dnnl::.*|params_at.*|backward_head|forward_head|softmax_row.*|"
                  r".*_avx512.*|.*_avx2.*|.*_scalar.*|_mm.*|sigmoid.*|exp.*|mo_exp.*|\[unknown\]|\?)$")
count, per_phase = collections.Counter(), collections.Counter()
def flush(stack):
    syms = [s.replace(" (inlined)", "") for s in stack]
    for i, s in enumerate(syms):
        if s in phases:
            path = [x for x in reversed(syms[:i]) if not skip.match(x)][:3]
            count[(phases[s], " > ".join(path) or "(in the phase itself)")] += 1
            per_phase[phases[s]] += 1
            return
    # oneDNN's GEMMs run JIT-generated code with no unwind information: the stack stops
    # there, so such a sample cannot be traced to its caller. Only the training steps
    # call oneDNN (the rate measurements use OpenBLAS), so these count as step time.
    if syms and syms[0] == "[unknown]" and not any(x.startswith(("roofline", "params_", "mo_rng", "model_alloc"))
                                                   for x in syms):
        count[("gemm", "oneDNN JIT kernels (sgemm nn/nt, bf16 GEMMs; caller not traceable)")] += 1
        per_phase["gemm"] += 1
stack = []
for line in open(sys.argv[1]):
    line = line.strip()
    if not line:
        if stack: flush(stack)
        stack = []
        continue
    parts = line.split(None, 1)
    stack.append(parts[1] if len(parts) > 1 else "?")
if stack: flush(stack)
n = sum(per_phase.values())
print(f"{n} samples in training steps: " + ", ".join(f"{k} {100 * v / n:.1f}%" for k, v in per_phase.items()))
for (ph, path), v in sorted(count.items(), key=lambda x: -x[1]):
    if 100 * v / n >= 0.2:
        print(f"{100 * v / n:5.1f}%  {ph:<5} {path}")
PY
