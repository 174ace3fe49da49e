// threads.h: the one threading policy (see docs/threading.md).
//
// OpenBLAS is Debian's OpenMP build, so it shares our OpenMP thread pool: a BLAS call
// made outside a parallel region uses all `n` threads, and a BLAS call made inside one
// of our `#pragma omp parallel` loops runs single-threaded on its thread. The two never
// stack, so the cores are never oversubscribed.
#ifndef MONOLITH_THREADS_H
#define MONOLITH_THREADS_H

#include <omp.h>
#include <stddef.h>

// Sets the thread count for OpenMP loops and OpenBLAS. n <= 0 means one per core.
void threads_init(int n);
// The count set by threads_init (or the OpenMP default before it).
int threads_count(void);

// The cores this process may run on (its CPU affinity).
int threads_cores(void);

// Address space one thread takes (measured, docs/reliability.md): OpenBLAS's buffer for
// the thread (128 MB, mapped when threads_init sets the count), its buffer for BLAS
// calls made from inside our parallel regions (128 MB, mapped on first use), the
// thread's stack and its malloc arena.
#define THREADS_BYTES_PER_THREAD (256.0 * 1024 * 1024)
#define THREADS_LAZY_BYTES_PER_THREAD (128.0 * 1024 * 1024)  // the part mapped on first use

// Under an address-space limit (ulimit -v), checks that `n` threads not started yet
// (n <= 0: none) and `need` more bytes fit in what the limit leaves. OpenBLAS cannot fail
// an allocation (it retries forever), so this must come before threads_init(n) and
// before anything large is allocated. Returns 0 (fits, or no limit), or -1 with one line
// naming the thread count that would fit. `what` names the `need` ("this run's arenas").
int threads_check_memory_limit(int n, double need, const char *what);

// The row loop `...` (a for statement) on OpenMP threads, statically split, when `big`;
// else run as it is on the calling thread (one if-else statement). Not `#pragma omp parallel for if (big)`: a
// false `if` still enters the OpenMP runtime and makes a team of one, 1.4-2.8 us of CPU a
// call (measured here, more inside a parallel region), which single-token decode pays
// some 50 times a token on every thread for its norms, RoPE, router softmax and top-k.
#define MO_PAR_ROWS(big, ...)                                        \
    if (big) {                                                       \
        _Pragma("omp parallel for schedule(static)") __VA_ARGS__     \
    } else {                                                         \
        __VA_ARGS__                                                  \
    }

// This OpenMP thread's share [*lo, *hi) of n elements: contiguous ranges a multiple of 16
// wide (whole vectors), so that only the last has a SIMD tail and the bits of a pass do
// not depend on the thread count. Called inside a parallel region.
static inline void threads_share16(size_t n, size_t *lo, size_t *hi) {
    size_t nt = (size_t)omp_get_num_threads(), t = (size_t)omp_get_thread_num();
    size_t per = ((n + nt - 1) / nt + 15) / 16 * 16;
    *lo = t * per < n ? t * per : n, *hi = *lo + per < n ? *lo + per : n;
}

// Runs part(ctx, lo, len) over elements [0, n) of an elementwise pass: from `min`
// elements, outside a parallel region, on every OpenMP thread, one threads_share16 range
// each (the same bits as one call, for any thread count); else as one call on the
// calling thread. The SIMD level is decided before the threads start.
void threads_split16(size_t n, size_t min, void (*part)(const void *ctx, size_t lo, size_t len), const void *ctx);
#endif
