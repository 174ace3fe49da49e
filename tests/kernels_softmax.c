// kernels_softmax.c: softmax, its backward and logsumexp_rows against kernels/ref at
// every SIMD level over odd shapes, the aliasing the header allows, numerical stability
// with large logits, and the reference backward against central finite differences in
// double on a random-weighted sum (a plain sum of a softmax has zero gradient).
#include "kernels/ref/ref.h"
#include "kernels/simd.h"
#include "kernels/softmax.h"
#include "tests/testutil.h"

// (rows, cols): cols around every vector width so the SIMD tails run; one large shape
// so the OpenMP row loop runs too.
static const int shapes[][2] = {{1, 1}, {3, 7},   {2, 8},   {5, 9},   {4, 15},  {4, 16},
                                {3, 17}, {7, 33}, {64, 8}, {9, 100}, {2, 1001}, {40, 4099}};
#define N_SHAPES (sizeof shapes / sizeof shapes[0])
#define TOL_F32 2e-6  // normalized error against the double oracle (exp is ~2 ulp)

START_TEST(test_matches_ref_every_level) {
    for (int level = SIMD_SCALAR; level <= (int)simd_best(); level++) {
        ck_assert_int_eq(simd_set((simd_level)level), 0);
        const char *lv = simd_name((simd_level)level);
        for (size_t s = 0; s < N_SHAPES; s++) {
            int rows = shapes[s][0], cols = shapes[s][1];
            size_t n = (size_t)rows * cols;
            float *x = malloc(n * 4), *y = malloc(n * 4), *g = malloc(n * 4), *dx = malloc(n * 4);
            float *lse = malloc(rows * 4);
            double *x64 = malloc(n * 8), *y64 = malloc(n * 8), *g64 = malloc(n * 8), *dx64 = malloc(n * 8);
            double *lse64 = malloc(rows * 8);
            // Every other shape spreads its logits over 1000: exp overflows unless the shift
            // is the true row max, so a wrong max fails here.
            tu_fill(x, n, 10 + s, s % 2 ? 8.0f : 500.0f), tu_fill(g, n, 20 + s, 1.0f);
            tu_to_f64(x64, x, n), tu_to_f64(g64, g, n);

            softmax_forward(y, x, rows, cols);
            ref_softmax_forward(y64, x64, rows, cols);
            ck_assert_msg(tu_rel_err_f64(y, y64, n) < TOL_F32, "fwd %s %dx%d: %g", lv, rows, cols,
                          tu_rel_err_f64(y, y64, n));
            // softmax_row is the same row computation, bit for bit, in place.
            memcpy(dx, x, n * 4);
            for (int r = 0; r < rows; r++) softmax_row(dx + (size_t)r * cols, cols);
            ck_assert_msg(!memcmp(dx, y, n * 4), "softmax_row %s %dx%d differs from softmax_forward", lv, rows, cols);
            // Backward on identical inputs: a float softmax of moderate logits (on peaked
            // rows g - <g, y> cancels and the true gradient is ~0, so any rounding is
            // a large relative error there).
            tu_fill(dx, n, 30 + s, 4.0f);
            softmax_forward(y, dx, rows, cols);
            tu_to_f64(y64, y, n);
            softmax_backward(dx, g, y, rows, cols);
            ref_softmax_backward(dx64, g64, y64, rows, cols);
            ck_assert_msg(tu_rel_err_f64(dx, dx64, n) < TOL_F32, "bwd %s %dx%d: %g", lv, rows, cols,
                          tu_rel_err_f64(dx, dx64, n));
            logsumexp_rows(lse, x, rows, cols);
            ref_logsumexp_rows(lse64, x64, rows, cols);
            ck_assert_msg(tu_rel_err_f64(lse, lse64, rows) < TOL_F32, "lse %s %dx%d", lv, rows, cols);
            free(x), free(y), free(g), free(dx), free(lse), free(x64), free(y64), free(g64), free(dx64), free(lse64);
        }
    }
    simd_set(simd_best());
}
END_TEST

START_TEST(test_in_place_and_edges) {
    enum { R = 3, C = 37 };
    float x[R * C], y[R * C], g[R * C], dx[R * C];
    tu_fill(x, R * C, 1, 4.0f), tu_fill(g, R * C, 2, 1.0f);
    softmax_forward(y, x, R, C);
    softmax_backward(dx, g, y, R, C);
    float a[R * C];
    memcpy(a, x, sizeof a);
    softmax_forward(a, a, R, C);  // out may alias x
    ck_assert(memcmp(a, y, sizeof a) == 0);
    memcpy(a, g, sizeof a);
    softmax_backward(a, a, y, R, C);  // dx may alias dout
    ck_assert(memcmp(a, dx, sizeof a) == 0);

    // Rows sum to 1; one column gives exactly 1 and lse = x.
    for (int r = 0; r < R; r++) {
        double s = 0;
        for (int j = 0; j < C; j++) s += y[r * C + j];
        ck_assert_double_eq_tol(s, 1.0, 1e-6);
    }
    float one = 3.5f, p, l;
    softmax_forward(&p, &one, 1, 1);
    logsumexp_rows(&l, &one, 1, 1);
    ck_assert_float_eq(p, 1.0f);
    ck_assert_float_eq(l, 3.5f);

    // Large logits do not overflow (max subtraction): shift by 1000, same softmax.
    float big[C], ybig[C], lbig, l0;
    for (int j = 0; j < C; j++) big[j] = x[j] + 1000.0f;
    softmax_forward(ybig, big, 1, C);
    ck_assert(tu_rel_err(ybig, y, C) < 1e-4);  // x + 1000 loses ~3 digits of x in float
    logsumexp_rows(&lbig, big, 1, C);
    logsumexp_rows(&l0, x, 1, C);
    ck_assert_float_eq_tol(lbig, l0 + 1000.0f, 1e-3f);
}
END_TEST

// L = sum w * softmax(x), and L = sum w * lse(x), with random weights w.
typedef struct {
    double *x, *w, *y;
    int rows, cols;
} fd_ctx;

static double softmax_loss(void *p) {
    fd_ctx *c = p;
    ref_softmax_forward(c->y, c->x, c->rows, c->cols);
    double L = 0;
    for (int i = 0; i < c->rows * c->cols; i++) L += c->w[i] * c->y[i];
    return L;
}

static double lse_loss(void *p) {
    fd_ctx *c = p;
    ref_logsumexp_rows(c->y, c->x, c->rows, c->cols);
    double L = 0;
    for (int r = 0; r < c->rows; r++) L += c->w[r] * c->y[r];
    return L;
}

START_TEST(test_ref_backward_finite_differences) {
    enum { R = 4, C = 23 };
    double x[R * C], w[R * C], y[R * C], out[R * C], dx[R * C];
    tu_fill_f64(x, R * C, 1, 3.0), tu_fill_f64(w, R * C, 2, 1.0);
    fd_ctx c = {x, w, y, R, C};
    ref_softmax_forward(out, x, R, C);
    ref_softmax_backward(dx, w, out, R, C);
    tu_fd_check("softmax dx", softmax_loss, &c, x, dx, R * C, R * C, 1e-5, 1e-8);
    // d lse / dx = softmax(x): checks logsumexp_rows' oracle too.
    for (int r = 0; r < R; r++)
        for (int j = 0; j < C; j++) dx[r * C + j] = w[r] * out[r * C + j];
    tu_fd_check("logsumexp dx", lse_loss, &c, x, dx, R * C, R * C, 1e-5, 1e-8);
}
END_TEST

int main(void) {
    Suite *s = suite_create("kernels_softmax");
    TCase *tc = tcase_create("softmax");
    tcase_add_test(tc, test_matches_ref_every_level);
    tcase_add_test(tc, test_in_place_and_edges);
    tcase_add_test(tc, test_ref_backward_finite_differences);
    suite_add_tcase(s, tc);
    return tu_run_suite(s, CK_FORK_GETENV);
}
