// kernels_topk.c: top-k against kernels/ref at every SIMD level (topk is comparisons
// only, so results must be identical), with clear margins between values and with
// exact ties (the lower index wins), k from 1 to E, the accumulating backward, and the
// reference backward against central finite differences in double on a random-weighted
// sum of the selected values (margins keep the selection fixed under the step).
#include "kernels/ref/ref.h"
#include "kernels/simd.h"
#include "kernels/topk.h"
#include "tests/testutil.h"

// Values j * 0.01 for a random permutation of j: every gap is >= 0.01, far above h.
static void fill_margins(float *x, int n, int E, uint64_t seed) {
    mo_rng r;
    mo_rng_seed(&r, seed);
    for (int i = 0; i < n; i++) {
        float *xr = x + (size_t)i * E;
        for (int j = 0; j < E; j++) xr[j] = 0.01f * (float)j - 0.3f;
        for (int j = E - 1; j > 0; j--) {  // Fisher-Yates
            int t = (int)mo_rng_below(&r, (uint64_t)j + 1);
            float v = xr[j];
            xr[j] = xr[t], xr[t] = v;
        }
    }
}

// Values from a set of 3 levels: many exact ties in every row.
static void fill_ties(float *x, int n, int E, uint64_t seed) {
    mo_rng r;
    mo_rng_seed(&r, seed);
    for (size_t i = 0; i < (size_t)n * E; i++) x[i] = 0.25f * (float)mo_rng_below(&r, 3);
}

static void check_against_ref(const float *x, int n, int E, int k, const char *what) {
    size_t nk = (size_t)n * k, ne = (size_t)n * E;
    int *idx = malloc(nk * sizeof *idx), *idx64 = malloc(nk * sizeof *idx64);
    float *val = malloc(nk * 4), *dval = malloc(nk * 4), *dx = malloc(ne * 4);
    double *x64 = malloc(ne * 8), *val64 = malloc(nk * 8), *dval64 = malloc(nk * 8), *dx64 = malloc(ne * 8);
    tu_to_f64(x64, x, ne);
    topk_forward(idx, val, x, n, E, k);
    ref_topk_forward(idx64, val64, x64, n, E, k);
    for (size_t i = 0; i < nk; i++) {
        ck_assert_msg(idx[i] == idx64[i], "%s n=%d E=%d k=%d: idx[%zu] = %d, ref %d", what, n, E, k, i, idx[i],
                      idx64[i]);
        ck_assert_msg(val[i] == (float)val64[i], "%s: val[%zu]", what, i);
    }
    // Descending within each row; equal values in increasing index order.
    for (int r = 0; r < n; r++)
        for (int j = 1; j < k; j++) {
            size_t a = (size_t)r * k + j - 1, b = a + 1;
            ck_assert(val[a] > val[b] || (val[a] == val[b] && idx[a] < idx[b]));
        }
    tu_fill(dval, nk, 5, 1.0f), tu_fill(dx, ne, 6, 1.0f);  // backward accumulates
    tu_to_f64(dval64, dval, nk), tu_to_f64(dx64, dx, ne);
    topk_backward(dx, dval, idx, n, E, k);
    ref_topk_backward(dx64, dval64, idx64, n, E, k);
    ck_assert_msg(tu_rel_err_f64(dx, dx64, ne) < 1e-7, "%s bwd n=%d E=%d k=%d", what, n, E, k);
    free(idx), free(idx64), free(val), free(dval), free(dx), free(x64), free(val64), free(dval64), free(dx64);
}

START_TEST(test_matches_ref_every_level) {
    static const int Es[] = {1, 2, 7, 8, 9, 16, 17, 64, 100};
    const int n = 13;
    for (int level = SIMD_SCALAR; level <= (int)simd_best(); level++) {
        ck_assert_int_eq(simd_set((simd_level)level), 0);
        for (size_t s = 0; s < sizeof Es / sizeof Es[0]; s++) {
            int E = Es[s];
            float *x = malloc((size_t)n * E * 4);
            int ks[] = {1, 2, E / 2, E - 1, E};  // k in [1, E]; those outside are skipped
            for (size_t q = 0; q < 5; q++) {
                if (ks[q] < 1 || ks[q] > E) continue;
                fill_margins(x, n, E, 10 + s + q);
                check_against_ref(x, n, E, ks[q], "margins");
                fill_ties(x, n, E, 20 + s + q);
                check_against_ref(x, n, E, ks[q], "ties");
            }
            free(x);
        }
    }
    simd_set(simd_best());
}
END_TEST

START_TEST(test_ties_go_to_lower_index) {
    // Hand examples, independent of the oracle.
    float all_eq[6] = {1, 1, 1, 1, 1, 1};
    int idx[6];
    float val[6];
    topk_forward(idx, val, all_eq, 1, 6, 2);
    ck_assert_int_eq(idx[0], 0);
    ck_assert_int_eq(idx[1], 1);
    float x[6] = {0.5f, 2.0f, 0.5f, 2.0f, 1.0f, 2.0f};
    topk_forward(idx, val, x, 1, 6, 4);
    int want[4] = {1, 3, 5, 4};
    for (int j = 0; j < 4; j++) ck_assert_int_eq(idx[j], want[j]);
    topk_forward(idx, val, x, 1, 6, 6);
    int want6[6] = {1, 3, 5, 4, 0, 2};
    for (int j = 0; j < 6; j++) ck_assert_int_eq(idx[j], want6[j]);
    // A tie for the last slot: index 0 beats index 2.
    topk_forward(idx, val, x, 1, 6, 5);
    ck_assert_int_eq(idx[4], 0);
    ck_assert_float_eq(val[4], 0.5f);
}
END_TEST

// L = sum w * topk_values(x)
typedef struct {
    double *x, *w, *val;
    int *idx;
    int n, E, k;
} fd_ctx;

static double topk_loss(void *p) {
    fd_ctx *c = p;
    ref_topk_forward(c->idx, c->val, c->x, c->n, c->E, c->k);
    double L = 0;
    for (int i = 0; i < c->n * c->k; i++) L += c->w[i] * c->val[i];
    return L;
}

START_TEST(test_ref_backward_finite_differences) {
    enum { N = 4, E = 9, K = 3 };
    float xf[N * E];
    double x[N * E], w[N * K], val[N * K], dx[N * E] = {0};
    int idx[N * K];
    fill_margins(xf, N, E, 7);
    tu_to_f64(x, xf, N * E);
    tu_fill_f64(w, N * K, 2, 1.0);
    ref_topk_forward(idx, val, x, N, E, K);
    ref_topk_backward(dx, w, idx, N, E, K);
    fd_ctx c = {x, w, val, idx, N, E, K};
    tu_fd_check("topk dx", topk_loss, &c, x, dx, N * E, N * E, 1e-5, 1e-8);
}
END_TEST

int main(void) {
    Suite *s = suite_create("kernels_topk");
    TCase *tc = tcase_create("topk");
    tcase_add_test(tc, test_matches_ref_every_level);
    tcase_add_test(tc, test_ties_go_to_lower_index);
    tcase_add_test(tc, test_ref_backward_finite_differences);
    suite_add_tcase(s, tc);
    return tu_run_suite(s, CK_FORK_GETENV);
}
