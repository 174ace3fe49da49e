// threads.c: one thread count for OpenMP and OpenBLAS.
#include "kernels/threads.h"

#include <cblas.h>
#include <omp.h>

void threads_init(int n) {
    if (n <= 0) n = omp_get_num_procs();
    omp_set_num_threads(n);
    omp_set_max_active_levels(1);  // nested regions (BLAS inside our loops) run serially
    openblas_set_num_threads(n);
}

int threads_count(void) { return omp_get_max_threads(); }
