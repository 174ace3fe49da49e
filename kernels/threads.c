// threads.c: one thread count for OpenMP and OpenBLAS, and the checks that keep a thread
// count from running into a memory limit inside OpenBLAS.
#include "kernels/threads.h"

#include "engine/base/error.h"
#include "kernels/simd.h"

#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <sys/resource.h>
#include <unistd.h>

void threads_init(int n) {
    if (n <= 0) n = omp_get_num_procs();
    omp_set_num_threads(n);
    omp_set_max_active_levels(1);  // nested regions (BLAS inside our loops) run serially
    openblas_set_num_threads(n);
}

int threads_count(void) { return omp_get_max_threads(); }

int threads_cores(void) { return omp_get_num_procs(); }

// The address space this process maps now (VmSize), or 0 when unknown.
static double mapped_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    unsigned long long pages = 0;
    int ok = fscanf(f, "%llu", &pages) == 1;
    fclose(f);
    return ok ? (double)pages * (double)sysconf(_SC_PAGESIZE) : 0;
}

int threads_check_memory_limit(int n, double need, const char *what) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) || rl.rlim_cur == RLIM_INFINITY) return 0;
    if (n < 0) n = 0;
    double limit = (double)rl.rlim_cur, left = limit - mapped_bytes();
    if (n * THREADS_BYTES_PER_THREAD + need <= left) return 0;
    int fit = (int)((left - need) / THREADS_BYTES_PER_THREAD);
    char fix[96], who[192] = "", beside[224] = "";
    if (n && fit >= 1) snprintf(fix, sizeof fix, "use --threads %d or fewer, or raise ulimit -v", fit);
    else snprintf(fix, sizeof fix, "raise ulimit -v%s", need > 0 ? ", or make the run smaller" : "");
    if (n) snprintf(who, sizeof who, "%d thread%s (%.0f MB of address space each: stack, OpenBLAS buffers)", n, n == 1 ? "" : "s",
                    THREADS_BYTES_PER_THREAD / (1 << 20));
    if (need > 0 && n) snprintf(beside, sizeof beside, " and %s (%.3g GB)", what, need / 1e9);
    else if (need > 0) snprintf(beside, sizeof beside, "%s", what);
    return mo_errorf("%s%s need %.3g GB, more than the %.3g GB the address-space limit (ulimit -v) leaves; %s", who,
                     beside, (n * THREADS_BYTES_PER_THREAD + need) / 1e9, left / 1e9, fix);
}

void threads_split16(size_t n, size_t min, void (*part)(const void *ctx, size_t lo, size_t len), const void *ctx) {
    if (n < min || omp_in_parallel()) {
        part(ctx, 0, n);
        return;
    }
    simd_active();  // decide the level before the threads read it
#pragma omp parallel
    {
        size_t lo, hi;
        threads_share16(n, &lo, &hi);
        if (hi > lo) part(ctx, lo, hi - lo);
    }
}
