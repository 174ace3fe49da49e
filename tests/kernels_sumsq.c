// kernels_sumsq.c: the sum of squares against kernels/ref at every SIMD level, the
// same bits at every level (the lane order of sumsq.h, spelled out here once more),
// and NaN/Inf passed through. It has no backward, so no finite differences.
#include "kernels/ref/ref.h"
#include "kernels/simd.h"
#include "kernels/sumsq.h"
#include "tests/testutil.h"

#include <math.h>

static const size_t sizes[] = {0, 1, 7, 15, 16, 17, 31, 32, 33, 100, 1000, 4099, 100003};
#define N_SIZES (sizeof sizes / sizeof sizes[0])

// sumsq.h's definition written out: lane i % 16 in increasing i, then lanes 0..15.
static double lanes_by_definition(const float *x, size_t n) {
    double lane[SUMSQ_LANES] = {0}, s = 0;
    for (size_t i = 0; i < n; i++) lane[i % SUMSQ_LANES] += (double)x[i] * (double)x[i];
    for (int j = 0; j < SUMSQ_LANES; j++) s += lane[j];
    return s;
}

START_TEST(test_matches_ref_and_definition_every_level) {
    for (size_t s = 0; s < N_SIZES; s++) {
        const size_t n = sizes[s];
        float *x = malloc((n + 1) * sizeof *x);
        double *x64 = malloc((n + 1) * sizeof *x64);
        tu_fill(x, n, 7 + s, 3.0f);
        tu_to_f64(x64, x, n);
        const double want = ref_sumsq(x64, n), def = lanes_by_definition(x, n);
        for (int level = SIMD_SCALAR; level <= (int)simd_best(); level++) {
            ck_assert_int_eq(simd_set((simd_level)level), 0);
            const double got = sumsq_f64(x, n);
            ck_assert_msg(got == def, "%s n=%zu: %.17g, by definition %.17g", simd_name((simd_level)level), n, got,
                          def);
            ck_assert_msg(fabs(got - want) <= 1e-13 * want, "%s n=%zu: %.17g, ref %.17g",
                          simd_name((simd_level)level), n, got, want);
        }
        free(x), free(x64);
    }
    simd_set(simd_best());
}
END_TEST

START_TEST(test_non_finite_every_level) {
    float x[40];
    tu_fill(x, 40, 3, 1.0f);
    for (int level = SIMD_SCALAR; level <= (int)simd_best(); level++) {
        ck_assert_int_eq(simd_set((simd_level)level), 0);
        for (int at = 0; at < 40; at += 13) {  // in a whole vector and in the tail
            const float keep = x[at];
            x[at] = NAN;
            ck_assert(isnan(sumsq_f64(x, 40)));
            x[at] = -INFINITY;
            ck_assert(isinf(sumsq_f64(x, 40)));
            x[at] = keep;
        }
        // Squares past float's range stay finite in double.
        x[5] = 3e38f;
        ck_assert(isfinite(sumsq_f64(x, 40)) && sumsq_f64(x, 40) > 8.9e76);
        x[5] = 0.5f;
    }
    simd_set(simd_best());
}
END_TEST

int main(void) {
    Suite *s = suite_create("sumsq");
    TCase *tc = tcase_create("sumsq");
    tcase_add_test(tc, test_matches_ref_and_definition_every_level);
    tcase_add_test(tc, test_non_finite_every_level);
    suite_add_tcase(s, tc);
    return tu_run_suite(s, CK_FORK_GETENV);
}
