#!/usr/bin/env bash
# profile_gemm.sh: every GEMM a training step makes, by shape, against the 1024^3 product
# of the same process: OpenBLAS's sgemm, or with --precision bf16 oneDNN's bf16 GEMM.
#
#   scripts/profile_gemm.sh [bench train flags...]     e.g. --threads 2 --steps 5
#                                                      or  --precision bf16 --steps 5
#
# Runs `monolith bench train` (bench-S, 2 threads and 5 steps unless given) with a small
# library preloaded in front of OpenBLAS's cblas_sgemm and oneDNN's dnnl_gemm_bf16bf16f32
# that times each call (wall clock and CPU time) and counts it by form, shape and whether
# it was made inside a parallel region (one thread, the grouped products' blocks) or
# outside (the library's own threads). Prints, per call site kind of the step's precision,
# the calls and milliseconds a step and the GFLOP/s reached, beside the 1024^3 rate of the
# same process: for fp32 the sgemm calls `bench train` makes after its steps (in the same
# table), for bf16 a bf16 1024^3 product timed right before them (1 s of calls on the
# library's threads). Wall clock: a call inside a parallel region is compared with that
# rate divided by the threads. CPU time (the calling thread's inside a region, the
# process's outside: GFLOP a CPU-second) is the figure to read on a busy machine, where
# the wall clock also counts the time other programs held the cores. The warm-up step is
# counted too. Needs a C compiler (the library is built on the fly).
# Where oneDNN runs the fp32 products that read a weight (kernels/matmul_packed.h: the
# projections, the output layer, the experts' h1, h3, ys, dact, dxs; the default on AMD),
# they are not sgemm calls and do not show; MONOLITH_PACKED=0 in the environment puts
# every product on sgemm (the default on Intel).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${MONOLITH_BIN:-build/monolith}
args=("$@")
printf '%s\n' "${args[@]}" | grep -q -- '--threads' || args+=(--threads 2)
printf '%s\n' "${args[@]}" | grep -q -- '--steps' || args+=(--steps 5)
threads=$(printf '%s\n' "${args[@]}" | grep -A1 -- '--threads' | tail -1)
steps=$(printf '%s\n' "${args[@]}" | grep -A1 -- '--steps' | tail -1)
prec=fp32
! printf '%s\n' "${args[@]}" | grep -A1 -- '--precision' | tail -1 | grep -q bf16 || prec=bf16
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/sites.c" <<'C'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <omp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
typedef void (*sgemm_fn)(int, int, int, int, int, int, float, const float *, int, const float *, int, float, float *,
                         int);
typedef int (*bgemm_fn)(char, char, int64_t, int64_t, int64_t, float, const uint16_t *, int64_t, const uint16_t *,
                        int64_t, float, float *, int64_t);
typedef struct {
    char lib, ta, tb;  // lib: s sgemm, b bf16, B the bf16 reference
    long M, N, K;
    int par;
    long n;
    double wall, cpu;
} site;
enum { MAX_SITES = 8192, TRANS = 112 };  // CblasTrans (cblas.h is not included: its prototype's types differ)
static site sites[MAX_SITES];
static int n_sites;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static bgemm_fn realb;
static double clock_s(clockid_t c) {
    struct timespec t;
    clock_gettime(c, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}
// Inside a parallel region the calling thread's CPU time; outside, the process's (the
// library's threads).
static double cpu_s(int par) { return clock_s(par ? CLOCK_THREAD_CPUTIME_ID : CLOCK_PROCESS_CPUTIME_ID); }
static void note(char lib, char ta, char tb, long M, long N, long K, int par, double wall, double cpu) {
    pthread_mutex_lock(&mu);
    int i = 0;
    while (i < n_sites && !(sites[i].lib == lib && sites[i].ta == ta && sites[i].tb == tb && sites[i].M == M &&
                            sites[i].N == N && sites[i].K == K && sites[i].par == par))
        i++;
    if (i == n_sites && n_sites < MAX_SITES) sites[n_sites++] = (site){lib, ta, tb, M, N, K, par, 0, 0, 0};
    if (i < n_sites) sites[i].n++, sites[i].wall += wall, sites[i].cpu += cpu;
    pthread_mutex_unlock(&mu);
}
int dnnl_gemm_bf16bf16f32(char ta, char tb, int64_t M, int64_t N, int64_t K, float alpha, const uint16_t *A,
                          int64_t lda, const uint16_t *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    if (!realb) realb = (bgemm_fn)dlsym(RTLD_NEXT, "dnnl_gemm_bf16bf16f32");
    const int par = omp_in_parallel();
    const double w0 = clock_s(CLOCK_MONOTONIC), c0 = cpu_s(par);
    int rc = realb(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    note('b', ta | 32, tb | 32, M, N, K, par, clock_s(CLOCK_MONOTONIC) - w0, cpu_s(par) - c0);
    return rc;
}
// The bf16 reference: 1 s of 1024^3 products (nn, outside any region, after a warm-up).
static void bf16_reference(void) {
    enum { R = 1024 };
    uint16_t *a = malloc(2 * R * R), *b = malloc(2 * R * R);
    float *c = malloc(4 * R * R);
    if (!a || !b || !c) return;
    for (int i = 0; i < R * R; i++) a[i] = (uint16_t)(0x3f80 + i % 7), b[i] = (uint16_t)(0x3f00 + i % 5);
    realb('N', 'N', R, R, R, 1, a, R, b, R, 0, c, R);
    const double start = clock_s(CLOCK_MONOTONIC);
    for (int rep = 0; rep < 5 || clock_s(CLOCK_MONOTONIC) - start < 1.0; rep++) {
        const double w0 = clock_s(CLOCK_MONOTONIC), c0 = cpu_s(0);
        realb('N', 'N', R, R, R, 1, a, R, b, R, 0, c, R);
        note('B', 'n', 'n', R, R, R, 0, clock_s(CLOCK_MONOTONIC) - w0, cpu_s(0) - c0);
    }
    free(a), free(b), free(c);
}
void cblas_sgemm(int order, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                 int ldb, float beta, float *C, int ldc) {
    static sgemm_fn real;
    static int bf16_ref_done;
    if (!real) real = (sgemm_fn)dlsym(RTLD_NEXT, "cblas_sgemm");
    // bench train's sgemm reference comes after its steps: the bf16 one goes first
    if (M == 1024 && N == 1024 && K == 1024 && realb && !bf16_ref_done) bf16_ref_done = 1, bf16_reference();
    const int par = omp_in_parallel();
    const double w0 = clock_s(CLOCK_MONOTONIC), c0 = cpu_s(par);
    real(order, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    note('s', ta == TRANS ? 't' : 'n', tb == TRANS ? 't' : 'n', M, N, K, par, clock_s(CLOCK_MONOTONIC) - w0,
         cpu_s(par) - c0);
}
__attribute__((destructor)) static void dump(void) {
    const char *path = getenv("GEMM_SITES_OUT");
    FILE *f = path ? fopen(path, "w") : NULL;
    if (!f) return;
    for (int i = 0; i < n_sites; i++)
        fprintf(f, "%c %c%c %ld %ld %ld %d %ld %.6f %.6f\n", sites[i].lib, sites[i].ta, sites[i].tb, sites[i].M,
                sites[i].N, sites[i].K, sites[i].par, sites[i].n, sites[i].wall, sites[i].cpu);
    fclose(f);
}
C
${CC:-cc} -O2 -shared -fPIC -fopenmp -o "$tmp/sites.so" "$tmp/sites.c" -ldl
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE_PROFILE:-Cooperlake} OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
GEMM_SITES_OUT="$tmp/sites.txt" LD_PRELOAD="$tmp/sites.so" "$bin" bench train "${args[@]}" >"$tmp/bench.out" 2>&1 ||
  { cat "$tmp/bench.out" >&2; exit 1; }
grep -E 'bench train:|step \(|GFLOP/s|sgemm, same' "$tmp/bench.out"
python3 - "$tmp/sites.txt" "$threads" "$steps" "$prec" <<'PY'
import collections, sys
rows = [l.split() for l in open(sys.argv[1])]
threads, steps, prec = int(sys.argv[2]), int(sys.argv[3]) + 1, sys.argv[4]  # the warm-up counts
lib, ref_lib, name = ("b", "B", "bf16 GEMM") if prec == "bf16" else ("s", "s", "sgemm")
# The reference: for sgemm bench train's 1024^3 calls (outside any parallel region; the
# mean over them here, a little below the best call that bench train reports); for bf16
# the preloaded library's own. GFLOP a wall-second and a CPU-second.
ref = [r for r in rows if r[0] == ref_lib and r[1:6] == ["nn", "1024", "1024", "1024", "0"]]
def rate(col): return sum(2 * 1024**3 * int(r[6]) for r in ref) / sum(float(r[col]) for r in ref) / 1e9 if ref else float("nan")
ref_wall, ref_cpu = rate(7), rate(8)
agg = collections.defaultdict(lambda: [0, 0.0, 0.0, 0.0, set()])
other = 0.0
for l, form, M, N, K, par, n, wall, cpu in rows:
    M, N, K, par, n, wall, cpu = int(M), int(N), int(K), int(par), int(n), float(wall), float(cpu)
    if l in ("s", ref_lib) and [form, M, N, K, par] == ["nn", 1024, 1024, 1024, 0]: continue  # the references
    if l != lib:
        other += wall / (threads if par else 1)
        continue
    # A grouped product's blocks differ in their rows (M of nt/nn, K of tn): one line per kind.
    key = (form, par, "n" if par else M, N, K) if form != "tn" else (form, par, M, N, "n" if par else K)
    a = agg[key]
    a[0] += n; a[1] += wall; a[2] += cpu; a[3] += 2.0 * M * N * K * n; a[4].add(M if form != "tn" else K)
total = sum(a[1] / (threads if k[1] else 1) for k, a in agg.items())
print(f"\n{name} 1024^3 in the same process: {ref_wall:.1f} GFLOP/s (mean of its calls; {ref_wall / threads:.1f} a thread), "
      f"{ref_cpu:.1f} GFLOP a CPU-second")
print(f"{'form M x N x K':<30} {'where':<12} {'calls/step':>10} {'ms/step':>9} {'share':>6} {'GFLOP/s':>8} {'of ref':>7}"
      f" {'GF/CPU-s':>9} {'of ref':>7}")
for k, a in sorted(agg.items(), key=lambda x: -x[1][1] / (threads if x[0][1] else 1)):
    form, par = k[0], k[1]
    dims = " x ".join(str(d) for d in k[2:])
    if par:
        lo, hi = min(a[4]), max(a[4])
        dims += f" (n {lo}-{hi})"
    ms = 1e3 * a[1] / steps / (threads if par else 1)  # inside a region: thread-ms shared by the threads
    gf, gc = a[3] / a[1] / 1e9, a[3] / a[2] / 1e9
    print(f"{form + ' ' + dims:<30} {'1 thread' if par else 'lib threads':<12} {a[0] / steps:10.1f} {ms:9.1f} "
          f"{100 * a[1] / (threads if par else 1) / total:5.1f}% {gf:8.1f} {gf / (ref_wall / threads if par else ref_wall):7.2f}"
          f" {gc:9.1f} {gc / ref_cpu:7.2f}")
if other: print(f"(and {1e3 * other / steps:.1f} ms a step in the other library's calls: "
                f"{'the router' if prec == 'bf16' else 'none expected'})")
PY
