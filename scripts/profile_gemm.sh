#!/usr/bin/env bash
# profile_gemm.sh: every sgemm a training step makes, by shape, against the 1024^3 sgemm
# of the same process.
#
#   scripts/profile_gemm.sh [bench train flags...]     e.g. --threads 2 --steps 5
#
# Runs `monolith bench train` (bench-S, 2 threads and 5 steps unless given) with a small
# library preloaded in front of OpenBLAS's cblas_sgemm that times each call (wall clock)
# and counts it by form, shape and whether it was made inside a parallel region (one
# thread, the grouped products' blocks) or outside (BLAS's own threads). Prints, per
# call site kind, the calls and milliseconds a step and the GFLOP/s reached, beside the
# 1024^3 rate `bench train` measures after its steps (its calls are in the same table);
# a call inside a parallel region is compared with that rate divided by the threads.
# The warm-up step is counted too. Needs a C compiler (the library is built on the fly).
# The fp32 products over packed weights (kernels/matmul_packed.h: the projections, the
# output layer, the experts' h1, h3, ys, dact, dxs) are oneDNN's, not sgemm calls, and do
# not show; MONOLITH_PACKED=0 in the environment puts every product back on sgemm.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${MONOLITH_BIN:-build/monolith}
args=("$@")
printf '%s\n' "${args[@]}" | grep -q -- '--threads' || args+=(--threads 2)
printf '%s\n' "${args[@]}" | grep -q -- '--steps' || args+=(--steps 5)
threads=$(printf '%s\n' "${args[@]}" | grep -A1 -- '--threads' | tail -1)
steps=$(printf '%s\n' "${args[@]}" | grep -A1 -- '--steps' | tail -1)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/sites.c" <<'C'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
typedef void (*sgemm_fn)(int, int, int, int, int, int, float, const float *, int, const float *, int, float, float *,
                         int);
typedef struct {
    int ta, tb, M, N, K, par;
    long n;
    double s;
} site;
enum { MAX_SITES = 8192, TRANS = 112 };  // CblasTrans (cblas.h is not included: its prototype's types differ)
static site sites[MAX_SITES];
static int n_sites;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}
void cblas_sgemm(int order, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                 int ldb, float beta, float *C, int ldc) {
    static sgemm_fn real;
    if (!real) real = (sgemm_fn)dlsym(RTLD_NEXT, "cblas_sgemm");
    const double t0 = now();
    real(order, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    const double dt = now() - t0;
    const int par = omp_in_parallel();
    pthread_mutex_lock(&mu);
    int i = 0;
    while (i < n_sites && !(sites[i].ta == ta && sites[i].tb == tb && sites[i].M == M && sites[i].N == N &&
                            sites[i].K == K && sites[i].par == par))
        i++;
    if (i == n_sites && n_sites < MAX_SITES) sites[n_sites++] = (site){ta, tb, M, N, K, par, 0, 0};
    if (i < n_sites) sites[i].n++, sites[i].s += dt;
    pthread_mutex_unlock(&mu);
}
__attribute__((destructor)) static void dump(void) {
    const char *path = getenv("GEMM_SITES_OUT");
    FILE *f = path ? fopen(path, "w") : NULL;
    if (!f) return;
    for (int i = 0; i < n_sites; i++)
        fprintf(f, "%s%s %d %d %d %d %ld %.6f\n", sites[i].ta == TRANS ? "t" : "n", sites[i].tb == TRANS ? "t" : "n",
                sites[i].M, sites[i].N, sites[i].K, sites[i].par, sites[i].n, sites[i].s);
    fclose(f);
}
C
${CC:-cc} -O2 -shared -fPIC -fopenmp -o "$tmp/sites.so" "$tmp/sites.c" -ldl
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE_PROFILE:-Cooperlake} OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
GEMM_SITES_OUT="$tmp/sites.txt" LD_PRELOAD="$tmp/sites.so" "$bin" bench train "${args[@]}" >"$tmp/bench.out" 2>&1 ||
  { cat "$tmp/bench.out" >&2; exit 1; }
grep -E 'bench train:|step \(|GFLOP/s|sgemm, same' "$tmp/bench.out"
python3 - "$tmp/sites.txt" "$threads" "$steps" <<'PY'
import collections, sys
rows = [l.split() for l in open(sys.argv[1])]
threads, steps = int(sys.argv[2]), int(sys.argv[3]) + 1  # the warm-up counts
# The rate bench train compares with: its 1024^3 calls (outside any parallel region); the
# mean over them here, a little below the best call that bench train reports.
ref = [r for r in rows if r[:5] == ["nn", "1024", "1024", "1024", "0"]]
ref_gf = sum(2 * 1024**3 * int(r[5]) for r in ref) / sum(float(r[6]) for r in ref) / 1e9 if ref else float("nan")
agg = collections.defaultdict(lambda: [0, 0.0, 0.0, set()])
for form, M, N, K, par, n, s in rows:
    M, N, K, par, n, s = int(M), int(N), int(K), int(par), int(n), float(s)
    if [form, M, N, K, par] == ["nn", 1024, 1024, 1024, 0]: continue
    # A grouped product's blocks differ in their rows (M of nt/nn, K of tn): one line per kind.
    key = (form, par, "n" if par else M, N, K) if form != "tn" else (form, par, M, N, "n" if par else K)
    a = agg[key]
    a[0] += n; a[1] += s; a[2] += 2.0 * M * N * K * n; a[3].add(M if form != "tn" else K)
total = sum(a[1] / (threads if k[1] else 1) for k, a in agg.items())
print(f"\nsgemm 1024^3 in the same process: {ref_gf:.1f} GFLOP/s (mean of its calls; {ref_gf / threads:.1f} a thread)")
print(f"{'form M x N x K':<30} {'where':<12} {'calls/step':>10} {'ms/step':>9} {'share':>6} {'GFLOP/s':>8} {'of ref':>7}")
for k, a in sorted(agg.items(), key=lambda x: -x[1][1] / (threads if x[0][1] else 1)):
    form, par = k[0], k[1]
    dims = " x ".join(str(d) for d in k[2:])
    if par:
        lo, hi = min(a[3]), max(a[3])
        dims += f" (n {lo}-{hi})"
    ms = 1e3 * a[1] / steps / (threads if par else 1)  # inside a region: thread-ms shared by the threads
    gf = a[2] / a[1] / 1e9
    print(f"{form + ' ' + dims:<30} {'1 thread' if par else 'BLAS threads':<12} {a[0] / steps:10.1f} {ms:9.1f} "
          f"{100 * a[1] / (threads if par else 1) / total:5.1f}% {gf:8.1f} {gf / (ref_gf / threads if par else ref_gf):7.2f}")
PY
