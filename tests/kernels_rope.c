// kernels_rope.c: RoPE tables and the in-place forward/backward against kernels/ref
// (angles computed directly in double) at every SIMD level over head sizes that leave
// SIMD tails, backward as the exact inverse of forward, the adjacent-pairs convention
// on a hand example, and the reference backward against central finite differences in
// double on a random-weighted sum.
#include "kernels/ref/ref.h"
#include "kernels/rope.h"
#include "kernels/simd.h"
#include "tests/testutil.h"

// (n, n_heads, head_dim): head_dim/2 pairs around 4 (AVX2) and 8 (AVX-512) per vector.
static const int shapes[][3] = {{1, 1, 2}, {3, 2, 6},  {2, 3, 8},   {4, 1, 14},  {3, 2, 16}, {2, 2, 18},
                                {5, 3, 30}, {3, 4, 32}, {2, 3, 34}, {6, 4, 64}, {2, 1, 98}, {70, 8, 128}};
#define N_SHAPES (sizeof shapes / sizeof shapes[0])
#define MAX_SEQ 4096
#define THETA 10000.0
// Normalized error: float tables and float math against exact angles in double; at
// positions up to 4095 the float-rounded angle table entries dominate (~1e-7 relative).
#define TOL_F32 1e-6

static void fill_pos(int *pos, int n, uint64_t seed) {
    mo_rng r;
    mo_rng_seed(&r, seed);
    for (int i = 0; i < n; i++) pos[i] = i == 0 ? 0 : (int)mo_rng_below(&r, MAX_SEQ);  // position 0 included
}

START_TEST(test_matches_ref_every_level) {
    int hd_max = 128;
    float *cos_tab = malloc((size_t)MAX_SEQ * hd_max / 2 * 4), *sin_tab = malloc((size_t)MAX_SEQ * hd_max / 2 * 4);
    for (int level = SIMD_SCALAR; level <= (int)simd_best(); level++) {
        ck_assert_int_eq(simd_set((simd_level)level), 0);
        const char *lv = simd_name((simd_level)level);
        for (size_t s = 0; s < N_SHAPES; s++) {
            int n = shapes[s][0], nh = shapes[s][1], hd = shapes[s][2];
            size_t m = (size_t)n * nh * hd;
            int *pos = malloc(n * sizeof *pos);
            float *x = malloc(m * 4), *x0 = malloc(m * 4);
            double *x64 = malloc(m * 8);
            rope_tables(cos_tab, sin_tab, MAX_SEQ, hd, THETA);
            fill_pos(pos, n, 3 + s);
            tu_fill(x0, m, 10 + s, 1.0f);

            memcpy(x, x0, m * 4);
            tu_to_f64(x64, x, m);
            rope_forward(x, pos, cos_tab, sin_tab, n, nh, hd);
            ref_rope_forward(x64, pos, n, nh, hd, THETA);
            ck_assert_msg(tu_rel_err_f64(x, x64, m) < TOL_F32, "fwd %s %dx%dx%d: %g", lv, n, nh, hd,
                          tu_rel_err_f64(x, x64, m));
            memcpy(x, x0, m * 4);
            tu_to_f64(x64, x, m);
            rope_backward(x, pos, cos_tab, sin_tab, n, nh, hd);
            ref_rope_backward(x64, pos, n, nh, hd, THETA);
            ck_assert_msg(tu_rel_err_f64(x, x64, m) < TOL_F32, "bwd %s %dx%dx%d: %g", lv, n, nh, hd,
                          tu_rel_err_f64(x, x64, m));
            // Backward undoes forward (rotations are orthogonal): back to x0 up to rounding.
            memcpy(x, x0, m * 4);
            rope_forward(x, pos, cos_tab, sin_tab, n, nh, hd);
            rope_backward(x, pos, cos_tab, sin_tab, n, nh, hd);
            ck_assert_msg(tu_rel_err(x, x0, m) < TOL_F32, "bwd(fwd(x)) != x %s %dx%dx%d", lv, n, nh, hd);
            free(pos), free(x), free(x0), free(x64);
        }
    }
    simd_set(simd_best());
    free(cos_tab), free(sin_tab);
}
END_TEST

START_TEST(test_convention) {
    // Adjacent pairs: head_dim 4 at position 1, theta 100: pair 0 turns by 1 rad, pair 1
    // by 100^(-1/2) = 0.1 rad. (1, 0) -> (cos a, sin a); (0, 1) -> (-sin a, cos a).
    float c[2 * 2], sn[2 * 2];
    rope_tables(c, sn, 2, 4, 100.0);
    ck_assert_float_eq(c[0], 1.0f);  // position 0: identity
    ck_assert_float_eq(sn[1], 0.0f);
    float x[4] = {1, 0, 0, 1};
    int pos = 1;
    rope_forward(x, &pos, c, sn, 1, 1, 4);
    ck_assert_float_eq_tol(x[0], cosf(1.0f), 1e-6f);
    ck_assert_float_eq_tol(x[1], sinf(1.0f), 1e-6f);
    ck_assert_float_eq_tol(x[2], -sinf(0.1f), 1e-6f);
    ck_assert_float_eq_tol(x[3], cosf(0.1f), 1e-6f);
}
END_TEST

// L = sum w * rope(x): the oracle works in place, so rotate a copy.
typedef struct {
    double *x, *w, *y;
    const int *pos;
    int n, nh, hd;
} fd_ctx;

static double rope_loss(void *p) {
    fd_ctx *c = p;
    size_t m = (size_t)c->n * c->nh * c->hd;
    memcpy(c->y, c->x, m * sizeof *c->y);
    ref_rope_forward(c->y, c->pos, c->n, c->nh, c->hd, THETA);
    double L = 0;
    for (size_t i = 0; i < m; i++) L += c->w[i] * c->y[i];
    return L;
}

START_TEST(test_ref_backward_finite_differences) {
    enum { N = 3, NH = 2, HD = 10, M = N * NH * HD };
    int pos[N] = {0, 5, 1234};
    double x[M], w[M], y[M], dx[M];
    tu_fill_f64(x, M, 1, 1.0), tu_fill_f64(w, M, 2, 1.0);
    memcpy(dx, w, sizeof dx);
    ref_rope_backward(dx, pos, N, NH, HD, THETA);
    fd_ctx c = {x, w, y, pos, N, NH, HD};
    tu_fd_check("rope dx", rope_loss, &c, x, dx, M, M, 1e-5, 1e-8);
}
END_TEST

int main(void) {
    Suite *s = suite_create("kernels_rope");
    TCase *tc = tcase_create("rope");
    tcase_add_test(tc, test_matches_ref_every_level);
    tcase_add_test(tc, test_convention);
    tcase_add_test(tc, test_ref_backward_finite_differences);
    suite_add_tcase(s, tc);
    return tu_run_suite(s, CK_FORK_GETENV);
}
