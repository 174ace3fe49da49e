// kernels_residual.c: residual add against kernels/ref at every SIMD level, the
// accumulate / NULL / aliasing rules of its header, and the reference backward against
// central finite differences in double.
#include "kernels/ref/ref.h"
#include "kernels/residual.h"
#include "kernels/simd.h"
#include "tests/testutil.h"

// The last size (> 2^17) takes the OpenMP path, with a range split that leaves a tail.
static const size_t sizes[] = {1, 7, 8, 9, 15, 16, 17, 31, 33, 100, 1000, 4099, 262147};
#define N_SIZES (sizeof sizes / sizeof sizes[0])
#define TOL_F32 1e-7  // one float rounding of a + b, normalized

START_TEST(test_matches_ref_every_level) {
    for (int level = SIMD_SCALAR; level <= (int)simd_best(); level++) {
        ck_assert_int_eq(simd_set((simd_level)level), 0);
        const char *lv = simd_name((simd_level)level);
        for (size_t s = 0; s < N_SIZES; s++) {
            size_t n = sizes[s];
            float *a = malloc(n * 4), *b = malloc(n * 4), *g = malloc(n * 4), *out = malloc(n * 4);
            float *da = malloc(n * 4), *db = malloc(n * 4);
            double *a64 = malloc(n * 8), *b64 = malloc(n * 8), *g64 = malloc(n * 8), *out64 = malloc(n * 8);
            double *da64 = malloc(n * 8), *db64 = malloc(n * 8);
            tu_fill(a, n, 10 + s, 1.0f), tu_fill(b, n, 20 + s, 1.0f), tu_fill(g, n, 30 + s, 1.0f);
            tu_fill(da, n, 40 + s, 1.0f), tu_fill(db, n, 50 + s, 1.0f);  // accumulated into
            tu_to_f64(a64, a, n), tu_to_f64(b64, b, n), tu_to_f64(g64, g, n);
            tu_to_f64(da64, da, n), tu_to_f64(db64, db, n);

            residual_forward(out, a, b, n);
            ref_residual_forward(out64, a64, b64, n);
            ck_assert_msg(tu_rel_err_f64(out, out64, n) < TOL_F32, "fwd %s n=%zu", lv, n);
            residual_backward(da, db, g, n);
            ref_residual_backward(da64, db64, g64, n);
            ck_assert_msg(tu_rel_err_f64(da, da64, n) < TOL_F32, "bwd da %s n=%zu", lv, n);
            ck_assert_msg(tu_rel_err_f64(db, db64, n) < TOL_F32, "bwd db %s n=%zu", lv, n);

            // NULL skips that gradient and leaves the other one right.
            residual_backward(NULL, db, g, n);
            residual_backward(da, NULL, g, n);
            ref_residual_backward(da64, db64, g64, n);
            ck_assert_msg(tu_rel_err_f64(da, da64, n) < TOL_F32, "bwd NULL db %s n=%zu", lv, n);
            ck_assert_msg(tu_rel_err_f64(db, db64, n) < TOL_F32, "bwd NULL da %s n=%zu", lv, n);

            free(a), free(b), free(g), free(out), free(da), free(db);
            free(a64), free(b64), free(g64), free(out64), free(da64), free(db64);
        }
    }
    simd_set(simd_best());
}
END_TEST

START_TEST(test_in_place) {
    // h = h + f(h): out aliases a (and, for symmetry, b).
    size_t n = 77;
    float a[77], b[77], want[77], c[77];
    tu_fill(a, n, 1, 1.0f), tu_fill(b, n, 2, 1.0f);
    residual_forward(want, a, b, n);
    memcpy(c, a, sizeof c);
    residual_forward(c, c, b, n);
    ck_assert(memcmp(c, want, sizeof c) == 0);
    memcpy(c, b, sizeof c);
    residual_forward(c, a, c, n);
    ck_assert(memcmp(c, want, sizeof c) == 0);
    for (size_t s = 0; s < N_SIZES; s++) {  // the carried copy, small and on the threads
        size_t m = sizes[s];
        float *x = malloc((m + 1) * 4), *y = malloc((m + 1) * 4);
        tu_fill(x, m, 60 + s, 1.0f);
        y[m] = 7.0f;
        residual_copy(y, x, m);
        ck_assert(memcmp(x, y, m * 4) == 0 && y[m] == 7.0f);
        free(x), free(y);
    }
}
END_TEST

typedef struct {
    double *a, *b, *w, *out;
    size_t n;
} fd_ctx;

static double residual_loss(void *p) {
    fd_ctx *c = p;
    ref_residual_forward(c->out, c->a, c->b, c->n);
    double L = 0;
    for (size_t i = 0; i < c->n; i++) L += c->w[i] * c->out[i];
    return L;
}

START_TEST(test_ref_backward_finite_differences) {
    size_t n = 65;
    double a[65], b[65], w[65], out[65], da[65] = {0}, db[65] = {0};
    tu_fill_f64(a, n, 1, 1.0), tu_fill_f64(b, n, 2, 1.0), tu_fill_f64(w, n, 3, 1.0);
    fd_ctx c = {a, b, w, out, n};
    ref_residual_backward(da, db, w, n);
    tu_fd_check("residual da", residual_loss, &c, a, da, n, n, 1e-5, 1e-8);
    tu_fd_check("residual db", residual_loss, &c, b, db, n, n, 1e-5, 1e-8);
}
END_TEST

int main(void) {
    Suite *s = suite_create("kernels_residual");
    TCase *tc = tcase_create("residual");
    tcase_add_test(tc, test_matches_ref_every_level);
    tcase_add_test(tc, test_in_place);
    tcase_add_test(tc, test_ref_backward_finite_differences);
    suite_add_tcase(s, tc);
    return tu_run_suite(s, CK_FORK_GETENV);
}
