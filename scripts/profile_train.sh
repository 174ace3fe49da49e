#!/usr/bin/env bash
# profile_train.sh: where a training step's time goes, per op, forward and backward.
#
#   scripts/profile_train.sh [bench train flags...]     e.g. --precision bf16 --threads 1
#   PROFILE_DEPTH=4 scripts/profile_train.sh            one more caller level per line
#
# Runs `monolith bench train` (bench-S, 1 thread unless given) under `perf record`
# (cpu-clock samples with DWARF call stacks, so it works in VMs without hardware
# counters), then attributes every sample taken inside model_forward, model_backward or
# adamw_apply(_bf16) to the op it was in: the first PROFILE_DEPTH (3) frames below that phase
# that are not BLAS/oneDNN internals, OpenMP outlined bodies or SIMD helpers. Prints each
# op's share of the step (samples outside the three phases, i.e. initialization and the
# rate measurements, are left out). oneDNN's JIT kernels have no unwind information, so
# perf alone stops at them: scripts/perf_jit_callers.py first rewrites each such sample
# as its caller's (the return address above the kernel's stack pointer), and the rest is
# perf's own unwinding. With --threads above 1 the other threads' samples are charged to
# the main thread's op of the moment (marked). Needs perf (linux-perf) and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${MONOLITH_BIN:-build/monolith}
command -v perf >/dev/null || { echo "profile_train.sh: needs perf (apt-get install linux-perf)" >&2; exit 1; }
args=("$@")
printf '%s\n' "${args[@]}" | grep -q -- '--threads' || args+=(--threads 1)
# Set, so that monolith does not run itself again to set it (tools/preinit.c): perf's
# DWARF unwinding lost the stacks of the re-executed program.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
# As the benchmarks: OpenBLAS 0.3.21 does not know newer CPUs and falls back to its
# Prescott (SSE3) kernels, which would make the fp32 weight gradients look 3x too slow.
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Cooperlake}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
perf record -q -e cpu-clock -F 250 --call-graph dwarf,16384 -o "$tmp/perf.data" \
  "$bin" bench train --steps 2 "${args[@]}" >"$tmp/bench.out" 2>&1
cat "$tmp/bench.out" | grep -E 'bench train|step \(|tokens/s'
echo "OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE OMP_WAIT_POLICY=$OMP_WAIT_POLICY"
/usr/bin/python3 scripts/perf_jit_callers.py "$tmp/perf.data"
perf script -i "$tmp/perf.data" -F pid,tid,ip,sym 2>/dev/null >"$tmp/stacks.txt"
python3 - "$tmp/stacks.txt" "${PROFILE_DEPTH:-3}" <<'PY'
import collections, re, sys
depth = int(sys.argv[2])
phases = {"model_forward": "fwd", "model_backward": "bwd", "adamw_apply": "adamw", "adamw_apply_bf16": "adamw"}
skip = re.compile(r"^(gemm|gemm_bf16|grouped_run|grouped_block.*|bf_block|matmul_grouped_schedule|GOMP_.*|.*_omp_fn.*|"
                  r"run|product|ready|entry_get|shape_get|make_pd|make_bucket|threads_split16|"
                  r"cblas_sgemm|sgemm_.*|dnnl.*|.*dnnl::.*|params_at.*|backward_head|forward_head|softmax_row.*|"
                  r".*_avx512.*|.*_avx2.*|.*_scalar.*|_mm.*|sigmoid.*|exp.*|mo_exp.*|\[unknown\]|\?)$")
count, per_phase = collections.Counter(), collections.Counter()
def classify(stack, main):
    """(phase, op) of one sample's stack (leaf first) on the main thread or another, or
    None outside the phases."""
    syms = [s.replace(" (inlined)", "") for s in stack]
    for i, s in enumerate(syms):
        if s in phases:
            path = [x for x in reversed(syms[:i]) if not skip.match(x)][:depth]
            return phases[s], " > ".join(path) or "(in the phase itself)"
    # A stack perf could not unwind to its phase: OpenBLAS's kernels (tn products) keep
    # more than the 16 KB of stack perf records between them and the model's ops. Charged
    # to the outermost op it reached, forward or backward by its name, marked "cut".
    for i in range(len(syms) - 1, -1, -1):
        m = re.match(r"\w+_(forward|backward)$", syms[i])
        if m:
            path = [x for x in reversed(syms[:i + 1]) if not skip.match(x)][:depth]
            return ("fwd" if m.group(1) == "forward" else "bwd"), "(cut) " + " > ".join(path)
    # oneDNN making a primitive at a shape's first use: its deep stack is cut inside the
    # library, short of the phase.
    if any(x in ("make_pd", "make_bucket", "shape_get") for x in syms):
        return "gemm", "oneDNN making primitives (first use of a shape; stack cut)"
    # A sample in oneDNN's JIT code that perf_jit_callers.py found no caller for: only
    # the training steps call oneDNN (the rate measurements use OpenBLAS), so step time.
    if main and syms and syms[0] == "[unknown]" and not any(x.startswith(("roofline", "params_", "mo_rng", "model_alloc"))
                                                   for x in syms):
        return "gemm", "oneDNN, caller not found"
    return None
# The warm-up step (first use of every buffer and primitive: page faults, oneDNN's code
# generation) is left out: it ends where the first forward after an AdamW begins.
# With --threads above 1 the other threads' stacks start in OpenMP's pool, not in a phase:
# their samples go to the op of the main thread's latest sample, marked "(other threads)".
warm, after_adamw, main_op = True, False, None
def flush(pid, tid, stack):
    global warm, after_adamw, main_op
    r = classify(stack, tid == pid)
    if tid == pid:
        main_op = r
    elif r is None and main_op is not None:
        r = (main_op[0], main_op[1] + " (other threads)")
    if r is None:
        return
    if warm and tid == pid:
        after_adamw = after_adamw or r[0] == "adamw"
        warm = not (after_adamw and r[0] == "fwd")
    if not warm:
        count[r] += 1
        per_phase[r[0]] += 1
stack, who = [], None
for line in open(sys.argv[1]):
    line = line.strip()
    head = re.match(r"^(\d+)/(\d+)", line)
    if head or not line:
        if stack and who: flush(*who, stack)
        stack = []
        if head: who = (int(head.group(1)), int(head.group(2)))
        continue
    parts = line.split(None, 1)
    stack.append(parts[1] if len(parts) > 1 else "?")
if stack and who: flush(*who, stack)
n = sum(per_phase.values())
if not n:
    sys.exit("profile_train.sh: no samples in the steps after the warm-up (more --steps?)")
print(f"{n} samples in training steps after the warm-up: " +
      ", ".join(f"{k} {100 * v / n:.1f}%" for k, v in per_phase.items()))
for (ph, path), v in sorted(count.items(), key=lambda x: -x[1]):
    if 100 * v / n >= 0.2:
        print(f"{100 * v / n:5.1f}%  {ph:<5} {path}")
PY
