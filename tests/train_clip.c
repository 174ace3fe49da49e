// train_clip.c: the global norm over ranges (in double, thread-count independent) and
// clipping (scales only when over the limit, only inside the ranges, leaves NaN alone).
#include "tests/testutil.h"
#include "train/clip.h"

#include <omp.h>

START_TEST(test_norm_and_clip) {
    // Hand values: ranges {3, 4} and {12}: norm sqrt(9 + 16 + 144) = 13; 99 is outside.
    float g[] = {3, 4, 99, 12};
    adamw_range r[] = {{0, 2, 1}, {3, 1, 0}};
    double part[2];
    ck_assert_double_eq_tol(grad_global_norm(g, r, 2, part), 13.0, 1e-12);
    // Under the limit: nothing changes.
    ck_assert_double_eq_tol(grad_clip(g, r, 2, 20.0, part), 13.0, 1e-12);
    ck_assert(g[0] == 3 && g[1] == 4 && g[3] == 12);
    // max_norm 0 disables clipping.
    grad_clip(g, r, 2, 0.0, part);
    ck_assert(g[0] == 3);
    // Over the limit: scaled to 6.5, the element outside untouched.
    ck_assert_double_eq_tol(grad_clip(g, r, 2, 6.5, part), 13.0, 1e-12);
    ck_assert_double_eq_tol(grad_global_norm(g, r, 2, part), 6.5, 1e-5);
    ck_assert_float_eq_tol(g[0], 1.5f, 1e-6f);
    ck_assert(g[2] == 99);
}
END_TEST

START_TEST(test_non_finite) {
    float g[] = {1, NAN, 2};
    adamw_range r[] = {{0, 3, 1}};
    double part[1];
    ck_assert(isnan(grad_clip(g, r, 1, 1.0, part)));
    ck_assert(g[0] == 1 && g[2] == 2);  // untouched
    g[1] = INFINITY;
    ck_assert(!isfinite(grad_global_norm(g, r, 1, part)));
}
END_TEST

START_TEST(test_large_and_thread_independent) {
    size_t n = 100000;
    float *g = malloc(n * sizeof(float));
    tu_fill(g, n, 5, 1.0f);
    adamw_range r[10];
    for (int i = 0; i < 10; i++) r[i] = (adamw_range){(size_t)i * 10000, 10000, 1};
    double exact = 0;
    for (size_t i = 0; i < n; i++) exact += (double)g[i] * g[i];
    exact = sqrt(exact);
    double part[10], norms[3];
    int threads[] = {1, 2, 3};
    for (int t = 0; t < 3; t++) {
        omp_set_num_threads(threads[t]);
        norms[t] = grad_global_norm(g, r, 10, part);
    }
    ck_assert_double_eq_tol(norms[0], exact, 1e-9 * exact);
    ck_assert(norms[0] == norms[1] && norms[1] == norms[2]);
    free(g);
}
END_TEST

int main(void) {
    Suite *s = suite_create("clip");
    TCase *tc = tcase_create("clip");
    tcase_add_test(tc, test_norm_and_clip);
    tcase_add_test(tc, test_non_finite);
    tcase_add_test(tc, test_large_and_thread_independent);
    suite_add_tcase(s, tc);
    return tu_run_suite(s, CK_FORK_GETENV);
}
