#!/usr/bin/env bash
# reliability_threads.sh: thread counts never hang a run, and a resume keeps the run's.
#
# 1. --threads above the cores is lowered to them with a note (train, eval, generate).
# 2. Under ulimit -v (not under ASan, which needs terabytes of address space): the
#    issue's `train --threads 64` under 4 GB finishes; a sweep of limits from 200 MB to
#    1.2 GB for train, eval and generate with 2 threads ends every run within 30 s, each
#    either done or refused with one line (OpenBLAS would spin forever on a buffer the
#    limit refuses: tools/preinit.c, threads_check_memory_limit).
# 3. run.ini records the thread count: a --threads 1 run killed and resumed without
#    --threads resumes with 1 and ends bitwise equal to the uninterrupted run.
# 4. OpenMP's wait policy is PASSIVE when the user set none (libgomp reads it before
#    main: tools/preinit.c runs the binary again with it), and the user's own is kept.
# 5. OpenBLAS runs the kernels of this CPU's instructions when the user set no
#    OPENBLAS_CORETYPE (tools/preinit.c sets it; OpenBLAS 0.3.21 would run SSE3 kernels on
#    a Xeon model newer than its table), read here from /proc/cpuinfo on its own; on a CPU
#    without AVX2 nothing is set; the user's own setting is kept; one re-execution adds
#    both variables (strace, where it can trace).
set -euo pipefail
bin=${MONOLITH_BIN:?}
src=${MONOLITH_SOURCE_DIR:?}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "reliability_threads: FAIL: $*" >&2; exit 1; }
py=python3
/usr/bin/python3 -c 'import h5py' 2>/dev/null && py=/usr/bin/python3
asan=0
ldd "$bin" 2>/dev/null | grep libasan >/dev/null && asan=1
tok=$src/tests/fuzz/vocab.tiktoken
"$bin" data prepare --tokenizer "$tok" --domain code --val-fraction 0.2 --input "$src/engine" \
  -o "$tmp/code.h5" >/dev/null 2>&1 || fail "data prepare"
common=(--preset tiny --tokenizer "$tok" --data "code=$tmp/code.h5" --batch 2 --seq 16 --warmup 2
        --eval-every 0 --eval-batches 1)
cores=$(nproc)
many=$((cores * 32))

# ---------------------------------------------------------------- 1. above the cores
"$bin" train "${common[@]}" --steps 2 --threads $many --out "$tmp/many" >/dev/null 2>"$tmp/err" ||
  fail "train --threads $many: $(cat "$tmp/err")"
grep -q "note: --threads $many is more than the $cores cores this process may use; using $cores" "$tmp/err" ||
  fail "train: no note about the cap: $(cat "$tmp/err")"
grep -q "; $cores threads;" "$tmp/err" || fail "train: not capped: $(cat "$tmp/err")"
ck=$tmp/many/ckpt-00000002.h5
"$bin" eval --checkpoint "$ck" --data "code=$tmp/code.h5" --batches 1 --batch 2 --seq 16 --threads $many \
  >/dev/null 2>"$tmp/err" || fail "eval --threads $many: $(cat "$tmp/err")"
grep -q "more than the $cores cores" "$tmp/err" || fail "eval: no note: $(cat "$tmp/err")"
"$bin" generate --checkpoint "$ck" --prompt "int main" --max-tokens 4 --threads $many >/dev/null 2>"$tmp/err" ||
  fail "generate --threads $many: $(cat "$tmp/err")"
grep -q "more than the $cores cores" "$tmp/err" || fail "generate: no note: $(cat "$tmp/err")"
echo "above the cores: lowered with a note"

# ---------------------------------------------------------------- 2. under ulimit -v
if [ $asan -eq 0 ]; then
  rm -rf "$tmp/v"
  (ulimit -v 4000000; exec timeout 60 "$bin" train "${common[@]}" --steps 2 --threads 64 --out "$tmp/v") \
    >/dev/null 2>"$tmp/err" || fail "train --threads 64 under ulimit -v 4000000: exit $?: $(cat "$tmp/err")"
  # limited LIMIT_KB LABEL CMD...: ends within 30 s, done (0) or refused with one line (1).
  limited() {
    local v=$1 label=$2 rc
    shift 2
    set +e
    (ulimit -v "$v"; exec timeout 30 "$@") >/dev/null 2>"$tmp/err"
    rc=$?
    set -e
    [ $rc -ne 124 ] || fail "$label under ulimit -v $v: hung"
    [ $rc -eq 0 ] && return 0
    [ $rc -eq 1 ] || fail "$label under ulimit -v $v: exit $rc: $(head -c 600 "$tmp/err")"
    [ "$(grep -vc '^note: ' "$tmp/err")" -eq 1 ] && grep -q '^monolith: ' "$tmp/err" ||
      fail "$label under ulimit -v $v: not one line: $(head -c 600 "$tmp/err")"
    refused=$((refused + 1))
  }
  refused=0 runs=0
  for v in 200000 400000 600000 800000 1200000; do
    rm -rf "$tmp/v"
    limited $v train "$bin" train "${common[@]}" --steps 2 --threads 2 --out "$tmp/v"
    limited $v eval "$bin" eval --checkpoint "$ck" --data "code=$tmp/code.h5" --batches 1 --batch 2 --seq 16 --threads 2
    limited $v generate "$bin" generate --checkpoint "$ck" --prompt "int" --max-tokens 2 --threads 2
    limited $v version "$bin" --version
    runs=$((runs + 4))
  done
  [ $refused -gt 0 ] && [ $refused -lt $runs ] || fail "the sweep refused $refused of $runs runs (expected some of each)"
  echo "under ulimit -v: --threads 64 in 4 GB finished; $runs runs from 200 MB to 1.2 GB ended, $refused refused in one line"
fi

# ---------------------------------------------------------------- 3. resume keeps the count
short=("${common[@]}" --steps 8 --save-every 4 --threads 1)
"$bin" train "${short[@]}" --out "$tmp/ref" >/dev/null 2>&1 || fail "reference run"
grep -q "^threads = 1$" "$tmp/ref/run.ini" || fail "run.ini does not record threads = 1"
set +e
(MONOLITH_FAULT_KILL_IN_SAVE=8 exec "$bin" train "${short[@]}" --out "$tmp/r") >/dev/null 2>&1
set -e
"$bin" train --resume "$tmp/r" >/dev/null 2>"$tmp/err" || fail "resume: $(cat "$tmp/err")"
grep -q "resuming after step 4 of 8; 1 threads;" "$tmp/err" || fail "resume did not take run.ini's 1 thread: $(cat "$tmp/err")"
$py "$src/tests/same_checkpoint.py" "$tmp/ref/ckpt-00000008.h5" "$tmp/r/ckpt-00000008.h5" ||
  fail "the resumed run differs from the uninterrupted one"
echo "resume: run.ini's thread count, bitwise equal"

# ---------------------------------------------------------------- 4. the wait policy
policy() { env "$@" OMP_DISPLAY_ENV=verbose "$bin" --version 2>&1 | grep -E "OMP_WAIT_POLICY|GOMP_SPINCOUNT" | tr -d " '\n"; }
got=$(policy -u OMP_WAIT_POLICY)
[ "$got" = "OMP_WAIT_POLICY=PASSIVEGOMP_SPINCOUNT=0" ] || fail "no policy set: libgomp started with '$got', not PASSIVE"
got=$(policy OMP_WAIT_POLICY=ACTIVE)
[ "$got" = "OMP_WAIT_POLICY=ACTIVEGOMP_SPINCOUNT=30000000000" ] || fail "the user's ACTIVE was not kept: '$got'"
echo "wait policy: PASSIVE by default, the user's kept"

# ---------------------------------------------------------------- 5. OpenBLAS's kernels
flags=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
vendor=$(grep -m1 '^vendor_id' /proc/cpuinfo | tr -d ' \t' | cut -d: -f2)
has() { for f; do [[ $flags == *" $f "* ]] || return 1; done; }
want=unset
if [ "$vendor" = GenuineIntel ] || [ "$vendor" = AuthenticAMD ]; then
    if has avx512f avx512bw avx512dq avx512vl avx512_bf16; then want=Cooperlake
    elif has avx512f avx512bw avx512dq avx512vl; then want=SkylakeX
    elif has avx2 fma; then want=Haswell; [ "$vendor" = AuthenticAMD ] && want=Zen
    fi
fi
kernels() { env "$@" "$bin" --version | sed -n 's/^OpenBLAS kernels \([^ ]*\) (OPENBLAS_CORETYPE=\([^;]*\);.*/\1 \2/p'; }
for env_in in "-u OMP_WAIT_POLICY" "OMP_WAIT_POLICY=PASSIVE"; do  # with the policy to add, and alone
    got=$(kernels -u OPENBLAS_CORETYPE $env_in)
    if [ $want = unset ]; then
        [ "${got#* }" = unset ] || fail "this CPU ($vendor) has no AVX2, yet OPENBLAS_CORETYPE was set: '$got'"
    else
        [ "$got" = "$want $want" ] || fail "OPENBLAS_CORETYPE unset ($env_in): OpenBLAS ran '$got', not $want's kernels"
    fi
done
# both added in one re-execution, not one each (where strace may trace)
if command -v strace >/dev/null &&
    env -u OPENBLAS_CORETYPE -u OMP_WAIT_POLICY strace -f -qq -e trace=execve -o "$tmp/exec" "$bin" --version >/dev/null 2>&1; then
    n=$(grep -c 'execve(.*= 0$' "$tmp/exec" || true)
    [ "$n" = 2 ] || fail "with neither variable set the binary started $n programs, not 2 (itself, then once again): $(cat "$tmp/exec")"
fi
got=$(kernels OPENBLAS_CORETYPE=Prescott)
[ "$got" = "Prescott Prescott" ] || fail "the user's OPENBLAS_CORETYPE=Prescott was not kept: '$got'"
echo "OpenBLAS kernels: $want when unset (this CPU), the user's kept"
echo "reliability_threads: ok"
