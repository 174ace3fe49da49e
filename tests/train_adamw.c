// train_adamw.c: AdamW against a hand-computed step, a double-precision plain version
// over many steps at every SIMD level, bit-identity across levels, and adamw_apply's
// ranges (elements outside them untouched, decay only where flagged), the gradient scale
// (the clip factor) against scaling the gradients first, and adamw_apply_bf16's copy.
#include "kernels/simd.h"
#include "tests/testutil.h"
#include "train/adamw.h"

#include <omp.h>

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

// grad_scale multiplies the gradient in float first: the bits of scaling the arena
// beforehand (train/clip.h's grad_scale), at every SIMD level.
START_TEST(test_grad_scale_is_prescaling) {
    const float scales[] = {1.0f, 0.37f, 1e-3f};
    for (int level = SIMD_SCALAR; level <= (int)simd_best(); level++) {
        ck_assert_int_eq(simd_set((simd_level)level), 0);
        for (size_t si = 0; si < N_SIZES; si++)
            for (int k = 0; k < 3; k++) {
                size_t n = sizes[si];
                float *p = calloc(n, 4), *g = calloc(n, 4), *m = calloc(n, 4), *v = calloc(n, 4);
                float *p2 = calloc(n, 4), *g2 = calloc(n, 4), *m2 = calloc(n, 4), *v2 = calloc(n, 4);
                tu_fill(p, n, 3 + si, 1.0f), memcpy(p2, p, n * 4);
                adamw_step s = adamw_defaults(), s2 = adamw_defaults();
                s.lr = s2.lr = 1e-2, s.grad_scale = scales[k];
                for (int t = 1; t <= 3; t++) {
                    tu_fill(g, n, 50 * si + t, 2.0f);
                    for (size_t i = 0; i < n; i++) g2[i] = g[i] * scales[k];
                    s.t = s2.t = t;
                    adamw_update(p, g, m, v, n, 1, &s);
                    adamw_update(p2, g2, m2, v2, n, 1, &s2);
                }
                ck_assert_msg(!memcmp(p, p2, n * 4) && !memcmp(m, m2, n * 4) && !memcmp(v, v2, n * 4),
                              "level %d, n %zu, scale %g: not the bits of prescaled gradients", level, n,
                              (double)scales[k]);
                free(p), free(g), free(m), free(v), free(p2), free(g2), free(m2), free(v2);
            }
    }
    simd_set(simd_best());
}
END_TEST

// adamw_apply_bf16: the parameters, m and v of adamw_apply, and in the copy
// bf16_from_f32 of the new parameters over the ranges only (ranges across several of
// its chunks, odd offsets and lengths), on 1 and 2 threads.
START_TEST(test_apply_bf16_copy) {
    simd_set(simd_best());
    const size_t n = 20000;
    float *p = calloc(n, 4), *p0 = calloc(n, 4), *g = calloc(n, 4), *m = calloc(n, 4), *v = calloc(n, 4);
    float *q = calloc(n, 4), *mq = calloc(n, 4), *vq = calloc(n, 4);
    mo_bf16 *wb = malloc(n * sizeof *wb), *want = malloc(n * sizeof *want);
    adamw_range r[] = {{.offset = 3, .length = 1, .decay = 1},
                       {.offset = 17, .length = 5000, .decay = 1},
                       {.offset = 6001, .length = 2048, .decay = 0},
                       {.offset = 9000, .length = 10999, .decay = 1}};
    const int saved = omp_get_max_threads();
    for (int threads = 1; threads <= 2; threads++) {
        tu_fill(p, n, 21, 1.0f), memcpy(p0, p, n * 4), memcpy(q, p, n * 4);
        memset(m, 0, n * 4), memset(v, 0, n * 4), memset(mq, 0, n * 4), memset(vq, 0, n * 4);
        for (size_t i = 0; i < n; i++) wb[i] = 0x7fc1;  // a NaN pattern the copy must not leave in a range
        adamw_step s = adamw_defaults();
        s.lr = 0.01, s.grad_scale = 0.5f;
        omp_set_num_threads(threads);
        for (int t = 1; t <= 2; t++) {
            tu_fill(g, n, 30 + t, 1.0f);
            s.t = t;
            adamw_apply_bf16(p, g, m, v, wb, r, 4, &s);
            adamw_apply(q, g, mq, vq, r, 4, &s);
        }
        ck_assert(!memcmp(p, q, n * 4) && !memcmp(m, mq, n * 4) && !memcmp(v, vq, n * 4));
        bf16_from_f32(want, p, n);
        for (size_t i = 0; i < n; i++) {
            int in = 0;
            for (int k = 0; k < 4; k++) in |= i >= r[k].offset && i < r[k].offset + r[k].length;
            ck_assert_msg(in ? wb[i] == want[i] : wb[i] == 0x7fc1, "threads %d, element %zu: copy %04x, want %04x",
                          threads, i, wb[i], in ? want[i] : 0x7fc1);
            if (!in) ck_assert(p[i] == p0[i]);
        }
    }
    omp_set_num_threads(saved);
    free(p), free(p0), free(g), free(m), free(v), free(q), free(mq), free(vq), free(wb), free(want);
}
END_TEST

int main(void) {
    Suite *s = suite_create("adamw");
    TCase *tc = tcase_create("adamw");
    tcase_add_test(tc, test_hand_computed_step);
    tcase_add_test(tc, test_matches_double_every_level);
    tcase_add_test(tc, test_levels_bit_identical);
    tcase_add_test(tc, test_apply_ranges);
    tcase_add_test(tc, test_grad_scale_is_prescaling);
    tcase_add_test(tc, test_apply_bf16_copy);
    suite_add_tcase(s, tc);
    return tu_run_suite(s, CK_FORK_GETENV);
}
