// kernels_rmsnorm.c: RMSNorm against kernels/ref at every SIMD level over odd widths,
// the accumulate rules (dx and dw add to what is there; dw may be NULL), and the
// reference backward against central finite differences in double on a random-weighted
// sum of the outputs.
#include "kernels/ref/ref.h"
#include "kernels/rmsnorm.h"
#include "kernels/simd.h"
#include "tests/testutil.h"

#include <omp.h>

// (n, d): d around every vector width and not a multiple of 16; n = 1; one shape large
// enough for the OpenMP row loops (n * d >= 2^16).
static const int shapes[][2] = {{1, 1}, {3, 7},   {2, 8},   {5, 9},  {4, 15},   {4, 16},  {3, 17},
                                {7, 33}, {1, 64}, {9, 100}, {65, 67}, {2, 1001}, {33, 4099}};
#define N_SHAPES (sizeof shapes / sizeof shapes[0])
#define TOL_F32 2e-6  // normalized error against the double oracle
#define EPS 1e-5f

START_TEST(test_matches_ref_every_level) {
    for (int level = SIMD_SCALAR; level <= (int)simd_best(); level++) {
        ck_assert_int_eq(simd_set((simd_level)level), 0);
        const char *lv = simd_name((simd_level)level);
        for (size_t s = 0; s < N_SHAPES; s++) {
            int n = shapes[s][0], d = shapes[s][1];
            size_t nd = (size_t)n * d;
            float *x = malloc(nd * 4), *w = malloc(d * 4), *y = malloc(nd * 4), *g = malloc(nd * 4);
            float *dx = malloc(nd * 4), *dw = malloc(d * 4), *rstd = malloc(n * 4);
            double *x64 = malloc(nd * 8), *w64 = malloc(d * 8), *y64 = malloc(nd * 8), *g64 = malloc(nd * 8);
            double *dx64 = malloc(nd * 8), *dw64 = malloc(d * 8), *rstd64 = malloc(n * 8);
            tu_fill(x, nd, 10 + s, 2.0f), tu_fill(w, d, 20 + s, 1.5f), tu_fill(g, nd, 30 + s, 1.0f);
            tu_fill(dx, nd, 40 + s, 1.0f), tu_fill(dw, d, 50 + s, 1.0f);  // both accumulate
            tu_to_f64(x64, x, nd), tu_to_f64(w64, w, d), tu_to_f64(g64, g, nd);
            tu_to_f64(dx64, dx, nd), tu_to_f64(dw64, dw, d);

            rmsnorm_forward(y, rstd, x, w, n, d, EPS);
            ref_rmsnorm_forward(y64, rstd64, x64, w64, n, d, EPS);
            ck_assert_msg(tu_rel_err_f64(y, y64, nd) < TOL_F32, "fwd %s %dx%d: %g", lv, n, d,
                          tu_rel_err_f64(y, y64, nd));
            ck_assert_msg(tu_rel_err_f64(rstd, rstd64, n) < TOL_F32, "rstd %s %dx%d", lv, n, d);
            rmsnorm_backward(dx, dw, g, x, w, rstd, n, d);
            ref_rmsnorm_backward(dx64, dw64, g64, x64, w64, rstd64, n, d);
            ck_assert_msg(tu_rel_err_f64(dx, dx64, nd) < TOL_F32, "bwd dx %s %dx%d: %g", lv, n, d,
                          tu_rel_err_f64(dx, dx64, nd));
            ck_assert_msg(tu_rel_err_f64(dw, dw64, d) < TOL_F32, "bwd dw %s %dx%d: %g", lv, n, d,
                          tu_rel_err_f64(dw, dw64, d));
            // A frozen weight: dw NULL, dx still accumulates.
            rmsnorm_backward(dx, NULL, g, x, w, rstd, n, d);
            ref_rmsnorm_backward(dx64, NULL, g64, x64, w64, rstd64, n, d);
            ck_assert_msg(tu_rel_err_f64(dx, dx64, nd) < TOL_F32, "bwd dw=NULL %s %dx%d", lv, n, d);
            free(x), free(w), free(y), free(g), free(dx), free(dw), free(rstd);
            free(x64), free(w64), free(y64), free(g64), free(dx64), free(dw64), free(rstd64);
        }
    }
    simd_set(simd_best());
}
END_TEST

START_TEST(test_edges) {
    // A zero row gives zeros (eps keeps rstd finite), and a constant row c gives
    // w * c / sqrt(c^2 + eps).
    enum { D = 21 };
    float x[2 * D], w[D], y[2 * D], rstd[2];
    tu_fill(w, D, 1, 1.0f);
    for (int j = 0; j < D; j++) x[j] = 0.0f, x[D + j] = -3.0f;
    rmsnorm_forward(y, rstd, x, w, 2, D, EPS);
    ck_assert_float_eq_tol(rstd[0], 1.0f / sqrtf(EPS), 1.0f);
    for (int j = 0; j < D; j++) {
        ck_assert_float_eq(y[j], 0.0f);
        ck_assert_float_eq_tol(y[D + j], -3.0f * w[j] / sqrtf(9.0f + EPS), 1e-6f);
    }
}
END_TEST

START_TEST(test_thread_count_independent) {
    // dw sums each column over rows in row order on one thread: same bits on 1 or 2 threads.
    enum { N = 40, D = 2051 };  // N * D >= 2^16: the parallel loops run
    float *x = malloc(N * D * 4), *w = malloc(D * 4), *g = malloc(N * D * 4), *y = malloc(N * D * 4), rstd[N];
    float *dx[2], *dw[2];
    tu_fill(x, N * D, 1, 2.0f), tu_fill(w, D, 2, 1.0f), tu_fill(g, N * D, 3, 1.0f);
    int saved = omp_get_max_threads();
    for (int t = 0; t < 2; t++) {
        omp_set_num_threads(t + 1);
        dx[t] = calloc(N * D, 4), dw[t] = calloc(D, 4);
        rmsnorm_forward(y, rstd, x, w, N, D, EPS);
        rmsnorm_backward(dx[t], dw[t], g, x, w, rstd, N, D);
    }
    omp_set_num_threads(saved);
    ck_assert(memcmp(dx[0], dx[1], N * D * 4) == 0);
    ck_assert(memcmp(dw[0], dw[1], D * 4) == 0);
    free(x), free(w), free(g), free(y), free(dx[0]), free(dx[1]), free(dw[0]), free(dw[1]);
}
END_TEST

// L = sum v * rmsnorm(x, w) with random weights v.
typedef struct {
    double *x, *w, *v, *y, *rstd;
    int n, d;
} fd_ctx;

static double rms_loss(void *p) {
    fd_ctx *c = p;
    ref_rmsnorm_forward(c->y, c->rstd, c->x, c->w, c->n, c->d, EPS);
    double L = 0;
    for (int i = 0; i < c->n * c->d; i++) L += c->v[i] * c->y[i];
    return L;
}

START_TEST(test_ref_backward_finite_differences) {
    enum { N = 4, D = 19 };
    double x[N * D], w[D], v[N * D], y[N * D], rstd[N], dx[N * D] = {0}, dw[D] = {0};
    tu_fill_f64(x, N * D, 1, 2.0), tu_fill_f64(w, D, 2, 1.5), tu_fill_f64(v, N * D, 3, 1.0);
    fd_ctx c = {x, w, v, y, rstd, N, D};
    ref_rmsnorm_forward(y, rstd, x, w, N, D, EPS);
    ref_rmsnorm_backward(dx, dw, v, x, w, rstd, N, D);
    tu_fd_check("rmsnorm dx", rms_loss, &c, x, dx, N * D, N * D, 1e-5, 1e-8);
    tu_fd_check("rmsnorm dw", rms_loss, &c, w, dw, D, D, 1e-5, 1e-8);
}
END_TEST

int main(void) {
    Suite *s = suite_create("kernels_rmsnorm");
    TCase *tc = tcase_create("rmsnorm");
    tcase_add_test(tc, test_matches_ref_every_level);
    tcase_add_test(tc, test_edges);
    tcase_add_test(tc, test_thread_count_independent);
    tcase_add_test(tc, test_ref_backward_finite_differences);
    suite_add_tcase(s, tc);
    return tu_run_suite(s, CK_FORK_GETENV);
}
