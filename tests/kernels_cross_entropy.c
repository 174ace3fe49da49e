// kernels_cross_entropy.c: fused cross-entropy against kernels/ref at every SIMD level
// over odd vocabulary sizes with ignored targets, the in-place backward over the
// logits, backward with forward's row stats bit for bit the one that recomputes them, and the reference backward against central finite differences in double on
// a random-weighted sum of the losses (the weights play dloss); the bf16 backward is
// the float one rounded, bit for bit.
#include "kernels/cross_entropy.h"
#include "kernels/ref/ref.h"
#include "kernels/simd.h"
#include "tests/testutil.h"

// (n, V): V around every vector width, one shape large enough for the OpenMP row loop.
static const int shapes[][2] = {{1, 1}, {3, 2},  {4, 7},   {5, 8},   {3, 9},    {4, 15},
                                {4, 16}, {3, 17}, {6, 33}, {9, 100}, {3, 1001}, {24, 4099}};
#define N_SHAPES (sizeof shapes / sizeof shapes[0])
#define TOL_F32 2e-6  // normalized error against the double oracle

// Targets in [0, V), every third one ignored (-1); row 0 always has a real target.
static void fill_targets(int *t, int n, int V, uint64_t seed) {
    mo_rng r;
    mo_rng_seed(&r, seed);
    for (int i = 0; i < n; i++) t[i] = (i % 3 == 2) ? -1 : (int)mo_rng_below(&r, (uint64_t)V);
}

START_TEST(test_matches_ref_every_level) {
    for (int level = SIMD_SCALAR; level <= (int)simd_best(); level++) {
        ck_assert_int_eq(simd_set((simd_level)level), 0);
        const char *lv = simd_name((simd_level)level);
        for (size_t s = 0; s < N_SHAPES; s++) {
            int n = shapes[s][0], V = shapes[s][1];
            size_t nv = (size_t)n * V;
            int *t = malloc(n * sizeof *t);
            float *x = malloc(nv * 4), *dx = malloc(nv * 4), *loss = malloc(n * 4), *dl = malloc(n * 4);
            float *dx2 = malloc(nv * 4), *loss2 = malloc(n * 4), *st = malloc(2 * n * 4);
            double *x64 = malloc(nv * 8), *dx64 = malloc(nv * 8), *loss64 = malloc(n * 8), *dl64 = malloc(n * 8);
            fill_targets(t, n, V, 7 + s);
            // Every other shape spreads its logits over 1000: exp overflows unless the shift
            // is the true row max, so a wrong max fails here.
            tu_fill(x, nv, 10 + s, s % 2 ? 10.0f : 500.0f), tu_fill(dl, n, 20 + s, 1.0f);
            tu_to_f64(x64, x, nv), tu_to_f64(dl64, dl, n);

            cross_entropy_forward(loss, NULL, x, t, n, V);
            ref_cross_entropy_forward(loss64, x64, t, n, V);
            cross_entropy_forward(loss2, st, x, t, n, V);  // keeping the stats changes no loss
            ck_assert_msg(memcmp(loss, loss2, n * 4) == 0, "fwd with stats %s %dx%d", lv, n, V);
            ck_assert_msg(tu_rel_err_f64(loss, loss64, n) < TOL_F32, "fwd %s %dx%d: %g", lv, n, V,
                          tu_rel_err_f64(loss, loss64, n));
            for (int i = 0; i < n; i++)
                if (t[i] < 0) ck_assert_msg(loss[i] == 0.0f, "ignored target has loss %g", loss[i]);
            cross_entropy_backward(dx, x, NULL, t, dl, n, V);
            ref_cross_entropy_backward(dx64, x64, t, dl64, n, V);
            cross_entropy_backward(dx2, x, st, t, dl, n, V);  // forward's stats: the bits of recomputing them
            ck_assert_msg(memcmp(dx, dx2, nv * 4) == 0, "bwd with stats %s %dx%d", lv, n, V);
            ck_assert_msg(tu_rel_err_f64(dx, dx64, nv) < TOL_F32, "bwd %s %dx%d: %g", lv, n, V,
                          tu_rel_err_f64(dx, dx64, nv));
            for (int i = 0; i < n; i++)
                for (int j = 0; t[i] < 0 && j < V; j++)
                    ck_assert_msg(dx[(size_t)i * V + j] == 0.0f, "ignored row has a gradient");
            // bf16 dlogits: the float ones rounded, bit for bit, with or without the stats,
            // and within a bf16 rounding of the rounded reference.
            mo_bf16 *db = malloc(nv * 2), *want = malloc(nv * 2);
            float *wide = malloc(nv * 4);
            bf16_from_f32(want, dx, nv);
            for (int k = 0; k < 2; k++) {
                memset(db, 0xff, nv * 2);
                cross_entropy_backward_bf16(db, x, k ? st : NULL, t, dl, n, V);
                ck_assert_msg(memcmp(db, want, nv * 2) == 0, "bf16 bwd %s %dx%d, stats %d", lv, n, V, k);
            }
            ref_cross_entropy_backward_bf16(dx64, x64, t, dl64, n, V);
            bf16_to_f32(wide, db, nv);
            ck_assert_msg(tu_rel_err_f64(wide, dx64, nv) < 4e-3, "bf16 bwd %s %dx%d: %g", lv, n, V,
                          tu_rel_err_f64(wide, dx64, nv));
            free(db), free(want), free(wide);
            // In place over the logits: same bits as the out-of-place call (with the stats, as the model runs it).
            cross_entropy_backward(x, x, st, t, dl, n, V);
            ck_assert_msg(memcmp(x, dx, nv * 4) == 0, "in-place bwd %s %dx%d", lv, n, V);
            free(t), free(x), free(dx), free(loss), free(dl), free(x64), free(dx64), free(loss64), free(dl64);
            free(dx2), free(loss2), free(st);
        }
    }
    simd_set(simd_best());
}
END_TEST

START_TEST(test_edges) {
    // V = 1: loss 0 and gradient 0 whatever the logit.
    float x1 = 42.0f, l1, d1, one = 1.0f;
    int t0 = 0;
    cross_entropy_forward(&l1, NULL, &x1, &t0, 1, 1);
    cross_entropy_backward(&d1, &x1, NULL, &t0, &one, 1, 1);
    ck_assert_float_eq_tol(l1, 0.0f, 1e-6f);
    ck_assert_float_eq_tol(d1, 0.0f, 1e-6f);
    // Uniform logits: loss = log V, rows of the gradient sum to 0.
    enum { V = 50 };
    float x[V], d[V], l;
    for (int j = 0; j < V; j++) x[j] = 3.0f;
    int t = 17;
    float st[2];
    cross_entropy_forward(&l, st, x, &t, 1, V);
    ck_assert_float_eq_tol(l, logf((float)V), 1e-5f);
    ck_assert(st[0] == 3.0f);                          // the row's max
    ck_assert_float_eq_tol(st[1], (float)V, 1e-4f);  // and exp(0) V times
    cross_entropy_backward(d, x, st, &t, &one, 1, V);
    double s = 0;
    for (int j = 0; j < V; j++) s += d[j];
    ck_assert_double_eq_tol(s, 0.0, 1e-6);
    ck_assert_float_eq_tol(d[17], 1.0f / V - 1.0f, 1e-6f);
    // Huge logits stay finite (max subtraction).
    for (int j = 0; j < V; j++) x[j] = 1e4f * (float)j;
    t = 0;
    cross_entropy_forward(&l, st, x, &t, 1, V);
    ck_assert_float_eq_tol(l, 1e4f * (V - 1), 1.0f);
    cross_entropy_backward(d, x, st, &t, &one, 1, V);
    ck_assert_float_eq_tol(d[0], -1.0f, 1e-6f);
    ck_assert_float_eq_tol(d[V - 1], 1.0f, 1e-6f);

    // Logits near 1000 with an O(1) spread: the loss is O(1) and must keep float
    // precision (max + log sum rounded at 1000 first would lose ~3e-5 of it).
    enum { N = 8, W = 37 };
    float xs[N * W], ls[N];
    double xs64[N * W], ls64[N];
    int ts[N];
    tu_fill(xs, N * W, 9, 2.0f);
    for (int i = 0; i < N * W; i++) xs[i] += 1000.0f;
    for (int i = 0; i < N; i++) ts[i] = (5 * i) % W;
    tu_to_f64(xs64, xs, N * W);
    ref_cross_entropy_forward(ls64, xs64, ts, N, W);
    for (int level = SIMD_SCALAR; level <= (int)simd_best(); level++) {
        ck_assert_int_eq(simd_set((simd_level)level), 0);
        cross_entropy_forward(ls, NULL, xs, ts, N, W);
        ck_assert_msg(tu_rel_err_f64(ls, ls64, N) < TOL_F32, "offset logits %s: %g", simd_name((simd_level)level),
                      tu_rel_err_f64(ls, ls64, N));
    }
    simd_set(simd_best());
}
END_TEST

// L = sum_i w_i * loss_i
typedef struct {
    double *x, *w, *loss;
    const int *t;
    int n, V;
} fd_ctx;

static double ce_loss(void *p) {
    fd_ctx *c = p;
    ref_cross_entropy_forward(c->loss, c->x, c->t, c->n, c->V);
    double L = 0;
    for (int i = 0; i < c->n; i++) L += c->w[i] * c->loss[i];
    return L;
}

START_TEST(test_ref_backward_finite_differences) {
    enum { N = 5, V = 19 };
    int t[N];
    double x[N * V], w[N], loss[N], dx[N * V];
    fill_targets(t, N, V, 3);
    tu_fill_f64(x, N * V, 1, 4.0), tu_fill_f64(w, N, 2, 1.0);
    fd_ctx c = {x, w, loss, t, N, V};
    ref_cross_entropy_backward(dx, x, t, w, N, V);
    tu_fd_check("cross-entropy dlogits", ce_loss, &c, x, dx, N * V, N * V, 1e-5, 1e-8);
}
END_TEST

int main(void) {
    Suite *s = suite_create("kernels_cross_entropy");
    TCase *tc = tcase_create("cross_entropy");
    tcase_add_test(tc, test_matches_ref_every_level);
    tcase_add_test(tc, test_edges);
    tcase_add_test(tc, test_ref_backward_finite_differences);
    suite_add_tcase(s, tc);
    return tu_run_suite(s, CK_FORK_GETENV);
}
