// kernels_spin_barrier.c: the decode barrier keeps the threads of one region in step:
// after every wait, each thread sees what every thread wrote before it, for 1 to 4
// threads (more threads than cores included, where waiting ends asleep on the futex),
// and a barrier can be reused after a reset; the same when the waits prefetch.
#include "kernels/spin_barrier.h"
#include "tests/testutil.h"

#include <omp.h>
#include <stdlib.h>

#define PHASES 300

// Runs PHASES phases on n threads: in phase p thread t writes p into its slot, waits,
// then checks that every slot holds p, and waits again before the next write. Returns
// the number of mismatches seen.
static int run_phases(spin_barrier *b, int n, const char *pf, size_t pf_bytes) {
    int slots[4][16] = {{0}};  // a cache line each
    int bad = 0;
    spin_barrier_reset(b);
#pragma omp parallel num_threads(n) reduction(+ : bad)
    {
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
        int phase = 0;
        for (int p = 1; p <= PHASES; p++) {
            __atomic_store_n(&slots[t][0], p, __ATOMIC_RELAXED);
            spin_barrier_wait_prefetch(b, nt, &phase, pf, pf_bytes);
            for (int u = 0; u < nt; u++) bad += __atomic_load_n(&slots[u][0], __ATOMIC_RELAXED) != p;
            spin_barrier_wait(b, nt, &phase);
        }
        bad += phase != 2 * PHASES;
    }
    return bad;
}

START_TEST(test_threads_stay_in_step) {
    spin_barrier b;
    for (int n = 1; n <= 4; n++) {
        omp_set_num_threads(n);
        ck_assert_msg(run_phases(&b, n, NULL, 0) == 0, "%d threads: a thread passed the barrier early", n);
        ck_assert_msg(run_phases(&b, n, NULL, 0) == 0, "%d threads, reused: a thread passed the barrier early", n);
    }
}
END_TEST

// Waits that prefetch (a buffer shorter and one longer than SPIN_BARRIER_PREFETCH) are
// barriers all the same.
START_TEST(test_prefetching_waits_stay_in_step) {
    spin_barrier b;
    const size_t big = 2 * SPIN_BARRIER_PREFETCH;
    char *buf = calloc(big, 1);
    ck_assert_ptr_nonnull(buf);
    for (int n = 1; n <= 4; n++) {
        omp_set_num_threads(n);
        ck_assert_msg(run_phases(&b, n, buf, 4096) == 0, "%d threads, 4 KB prefetched: a thread passed early", n);
        ck_assert_msg(run_phases(&b, n, buf, big) == 0, "%d threads, 64 KB prefetched: a thread passed early", n);
    }
    free(buf);
}
END_TEST

int main(void) {
    Suite *s = suite_create("kernels_spin_barrier");
    TCase *tc = tcase_create("barrier");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_threads_stay_in_step);
    tcase_add_test(tc, test_prefetching_waits_stay_in_step);
    suite_add_tcase(s, tc);
    return tu_run_suite(s, CK_FORK_GETENV);
}
