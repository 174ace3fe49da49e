// threads.h: the one threading policy (see docs/threading.md).
//
// OpenBLAS is Debian's OpenMP build, so it shares our OpenMP thread pool: a BLAS call
// made outside a parallel region uses all `n` threads, and a BLAS call made inside one
// of our `#pragma omp parallel` loops runs single-threaded on its thread. The two never
// stack, so the cores are never oversubscribed.
#ifndef MONOLITH_THREADS_H
#define MONOLITH_THREADS_H

// Sets the thread count for OpenMP loops and OpenBLAS. n <= 0 means one per core.
void threads_init(int n);
// The count set by threads_init (or the OpenMP default before it).
int threads_count(void);

#endif
