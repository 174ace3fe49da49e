// kernels_threads.c: the threading policy of docs/threading.md holds in the built binary:
// with threads_init(n), the process never has more than n threads, whether BLAS runs
// outside our parallel regions (BLAS uses the OpenMP pool) or inside them (each call
// serial on its caller). A pthreads OpenBLAS, or BLAS nesting its own team inside ours,
// would show up here as extra threads. Linux only (/proc/self/status).
#include "kernels/matmul.h"
#include "kernels/threads.h"
#include "tests/testutil.h"

#include <omp.h>

static int process_threads(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    int n = -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "Threads:", 8)) n = atoi(line + 8);
    fclose(f);
    return n;
}

START_TEST(test_blas_shares_the_openmp_pool) {
    const int sz = 256;
    for (int n = 1; n <= 3; n++) {
        threads_init(n);
        ck_assert_int_eq(threads_count(), n);
        float *a = malloc(sizeof(float) * sz * sz), *c = malloc(sizeof(float) * sz * sz * n);
        tu_fill(a, (size_t)sz * sz, 1, 1.0f);
        matmul_nn(c, a, a, sz, sz, sz, 0);  // outside any region: BLAS forks the OpenMP team
        int outside = process_threads(), inside = 0;
#pragma omp parallel
        for (int r = 0; r < 10; r++) {
            // every thread of our region calls BLAS at once
            matmul_nn(c + (size_t)omp_get_thread_num() * sz * sz, a, a, sz, sz, sz, 0);
            int t = process_threads();
#pragma omp critical
            if (t > inside) inside = t;
        }
        ck_assert_msg(outside <= n, "threads %d: %d threads after a BLAS call", n, outside);
        ck_assert_msg(inside <= n, "threads %d: %d threads while BLAS runs inside our region", n, inside);
        free(a), free(c);
    }
}
END_TEST

int main(void) {
    Suite *s = suite_create("kernels_threads");
    TCase *tc = tcase_create("threads");
    tcase_add_test(tc, test_blas_shares_the_openmp_pool);
    suite_add_tcase(s, tc);
    return tu_run_suite(s, CK_FORK_GETENV);
}
