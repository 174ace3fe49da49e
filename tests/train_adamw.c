// train_adamw.c: AdamW against a hand-computed step, a double-precision plain version
// over many steps at every SIMD level, bit-identity across levels, and adamw_apply's
// ranges (elements outside them untouched, decay only where flagged).
#include "kernels/simd.h"
#include "tests/testutil.h"
#include "train/adamw.h"

static const size_t sizes[] = {1, 7, 8, 9, 15, 16, 17, 33, 100, 4099};
#define N_SIZES (sizeof sizes / sizeof sizes[0])

// The plain update, in double, written from the PyTorch AdamW documentation.
static void adamw_ref(double *p, const double *g, double *m, double *v, size_t n, int decay, const adamw_step *s) {
    double bc1 = 1 - pow(s->beta1, (double)s->t), bc2 = 1 - pow(s->beta2, (double)s->t);
    for (size_t i = 0; i < n; i++) {
        if (decay) p[i] *= 1 - s->lr * s->weight_decay;
        m[i] = s->beta1 * m[i] + (1 - s->beta1) * g[i];
        v[i] = s->beta2 * v[i] + (1 - s->beta2) * g[i] * g[i];
        double mhat = m[i] / bc1, vhat = v[i] / bc2;
        p[i] -= s->lr * mhat / (sqrt(vhat) + s->eps);
    }
}

START_TEST(test_hand_computed_step) {
    // p = 1, g = 0.5, lr = 0.1, wd = 0.1, betas (0.9, 0.95), t = 1:
    // m = 0.05, v = 0.0125, mhat = 0.5, vhat = 0.25, p = 1 * 0.99 - 0.1 * 0.5 / 0.5 = 0.89.
    float p = 1, g = 0.5f, m = 0, v = 0;
    adamw_step s = adamw_defaults();
    s.lr = 0.1, s.t = 1;
    adamw_update(&p, &g, &m, &v, 1, 1, &s);
    ck_assert_float_eq_tol(m, 0.05f, 1e-7f);
    ck_assert_float_eq_tol(v, 0.0125f, 1e-8f);
    ck_assert_float_eq_tol(p, 0.89f, 1e-6f);
    // Same without decay: 1 - 0.1.
    p = 1, m = 0, v = 0;
    adamw_update(&p, &g, &m, &v, 1, 0, &s);
    ck_assert_float_eq_tol(p, 0.9f, 1e-6f);
    // Second step, same gradient: m = 0.095, v = 0.024375, mhat = 0.5, vhat = 0.25 again.
    s.t = 2;
    adamw_update(&p, &g, &m, &v, 1, 0, &s);
    ck_assert_float_eq_tol(p, 0.8f, 1e-6f);
}
END_TEST

START_TEST(test_matches_double_every_level) {
    for (int level = SIMD_SCALAR; level <= (int)simd_best(); level++) {
        ck_assert_int_eq(simd_set((simd_level)level), 0);
        for (size_t si = 0; si < N_SIZES; si++) {
            size_t n = sizes[si];
            float *p = calloc(n, 4), *g = calloc(n, 4), *m = calloc(n, 4), *v = calloc(n, 4);
            double *p64 = calloc(n, 8), *g64 = calloc(n, 8), *m64 = calloc(n, 8), *v64 = calloc(n, 8);
            tu_fill(p, n, 7 + si, 1.0f);
            tu_to_f64(p64, p, n);
            adamw_step s = adamw_defaults();
            for (int t = 1; t <= 20; t++) {
                tu_fill(g, n, 1000 * si + t, 0.1f * (float)t);  // gradients of growing size
                tu_to_f64(g64, g, n);
                s.t = t, s.lr = 1e-3 * (1 + t % 3);
                adamw_update(p, g, m, v, n, si % 2, &s);
                adamw_ref(p64, g64, m64, v64, n, si % 2, &s);
            }
            const char *lv = simd_name((simd_level)level);
            ck_assert_msg(tu_rel_err_f64(p, p64, n) < 1e-6, "params %s n=%zu: %g", lv, n, tu_rel_err_f64(p, p64, n));
            ck_assert_msg(tu_rel_err_f64(m, m64, n) < 1e-6, "m %s n=%zu", lv, n);
            ck_assert_msg(tu_rel_err_f64(v, v64, n) < 1e-6, "v %s n=%zu", lv, n);
            free(p), free(g), free(m), free(v), free(p64), free(g64), free(m64), free(v64);
        }
    }
}
END_TEST

// The SIMD paths do the scalar operations in the same order: results are bit-identical.
START_TEST(test_levels_bit_identical) {
    size_t n = 1037;
    float *ref = NULL;
    for (int level = SIMD_SCALAR; level <= (int)simd_best(); level++) {
        ck_assert_int_eq(simd_set((simd_level)level), 0);
        float *p = calloc(n, 4), *g = calloc(n, 4), *m = calloc(n, 4), *v = calloc(n, 4);
        tu_fill(p, n, 3, 1.0f);
        adamw_step s = adamw_defaults();
        for (int t = 1; t <= 5; t++) {
            tu_fill(g, n, 50 + t, 1.0f);
            s.t = t, s.lr = 3e-3;
            adamw_update(p, g, m, v, n, 1, &s);
        }
        if (!ref) ref = p;
        else {
            ck_assert_msg(!memcmp(ref, p, n * 4), "%s differs from scalar", simd_name((simd_level)level));
            free(p);
        }
        free(g), free(m), free(v);
    }
    free(ref);
}
END_TEST

START_TEST(test_apply_ranges) {
    simd_set(simd_best());
    size_t n = 300;
    float *p = calloc(n, 4), *p0 = calloc(n, 4), *g = calloc(n, 4), *m = calloc(n, 4), *v = calloc(n, 4);
    tu_fill(p, n, 11, 1.0f);
    memcpy(p0, p, n * 4);
    tu_fill(g, n, 12, 1.0f);
    adamw_range r[] = {{.offset = 10, .length = 40, .decay = 1}, {.offset = 200, .length = 33, .decay = 0}};
    adamw_step s = adamw_defaults();
    s.lr = 0.01, s.t = 1;
    adamw_apply(p, g, m, v, r, 2, &s);
    for (size_t i = 0; i < n; i++) {
        int in0 = i >= 10 && i < 50, in1 = i >= 200 && i < 233;
        if (!in0 && !in1) {
            ck_assert_msg(p[i] == p0[i] && m[i] == 0 && v[i] == 0, "element %zu outside the ranges changed", i);
            continue;
        }
        float pe = p0[i], ge = g[i], me = 0, ve = 0;
        adamw_update(&pe, &ge, &me, &ve, 1, in0, &s);
        ck_assert_msg(p[i] == pe && m[i] == me && v[i] == ve, "element %zu: range update differs", i);
    }
    // Decay made a difference: with g = 0 a decayed element shrinks, an undecayed one does not.
    float pd = 2, pn = 2, z = 0, m1 = 0, v1 = 0, m2 = 0, v2 = 0;
    adamw_update(&pd, &z, &m1, &v1, 1, 1, &s);
    adamw_update(&pn, &z, &m2, &v2, 1, 0, &s);
    ck_assert_float_eq_tol(pd, 2 * (1 - 0.01f * 0.1f), 1e-7f);
    ck_assert(pn == 2);
    free(p), free(p0), free(g), free(m), free(v);
}
END_TEST

int main(void) {
    Suite *s = suite_create("adamw");
    TCase *tc = tcase_create("adamw");
    tcase_add_test(tc, test_hand_computed_step);
    tcase_add_test(tc, test_matches_double_every_level);
    tcase_add_test(tc, test_levels_bit_identical);
    tcase_add_test(tc, test_apply_ranges);
    suite_add_tcase(s, tc);
    return tu_run_suite(s, CK_FORK_GETENV);
}
