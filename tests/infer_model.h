// infer_model.h: the random test model of the inference suites (header-only, like
// testutil.h): a preset with overrides, weights in float and the same in double for the
// oracles, and its 8-bit round trip.
#ifndef MONOLITH_TESTS_INFER_MODEL_H
#define MONOLITH_TESTS_INFER_MODEL_H

#include "engine/base/error.h"
#include "engine/config.h"
#include "engine/params.h"
#include "kernels/gemv.h"
#include "tests/testutil.h"

typedef struct {
    mo_config c;
    mo_param_table pt;
    float *w;    // parameters
    double *wd;  // the same in double, for the oracle
} test_model;

// A model of preset `preset` with overrides ("name=value" pairs, NULL-terminated).
// Uniform weights of std 0.02 (cheaper than params_init's normals on bench-S's 35M), norm
// gains around 1 but not 1 so that a misplaced gain shows, routers 30x larger so that
// routing margins are clear (float and double then choose the same experts).
static inline void tm_make(test_model *m, const char *preset, const char *const *overrides, uint64_t seed) {
    ck_assert_int_eq(config_preset(&m->c, preset), 0);
    for (int i = 0; overrides && overrides[i]; i++) {
        char name[64];
        const char *eq = strchr(overrides[i], '=');
        snprintf(name, sizeof name, "%.*s", (int)(eq - overrides[i]), overrides[i]);
        ck_assert_msg(config_set(&m->c, name, eq + 1) == 0, "%s", mo_error());
    }
    ck_assert_msg(config_finalize(&m->c) == 0, "%s", mo_error());
    ck_assert_int_eq(params_table_build(&m->pt, &m->c), 0);
    m->w = params_arena_alloc(&m->pt);
    ck_assert_ptr_nonnull(m->w);
    for (int i = 0; i < m->pt.n; i++) {
        const mo_tensor *t = &m->pt.t[i];
        float *x = m->w + t->offset;
        float scale = t->kind == PK_ROUTER ? 1.04f : 0.0346f;  // routers ~30x
        tu_fill(x, t->numel, seed * 1000 + (uint64_t)i, t->is_norm ? 0.3f : scale);
        if (t->is_norm)
            for (size_t j = 0; j < t->numel; j++) x[j] += 1.0f;
    }
    m->wd = malloc(m->pt.numel * sizeof *m->wd);
    ck_assert_ptr_nonnull(m->wd);
    tu_to_f64(m->wd, m->w, m->pt.numel);
}

// Every weight infer_set_weights(INT8) quantizes (all but the embedding table, norms and
// routers) replaced in place by the value its 8-bit form stands for: the model that 8-bit
// inference computes exactly (up to float rounding), so a double oracle over it checks
// 8-bit inference as tightly as float32 inference.
static inline void tm_q8_round_trip(test_model *m) {
    for (int i = 0; i < m->pt.n; i++) {
        const mo_tensor *t = &m->pt.t[i];
        if (t->kind == PK_TOK_EMBEDDINGS || t->is_norm || t->kind == PK_ROUTER) continue;
        int cols = (int)t->shape[t->rank - 1];
        size_t rows = t->numel / cols;
        int8_t *q = malloc(t->numel);
        float *sc = malloc(sizeof(float) * rows * q8_blocks(cols));
        ck_assert(q && sc);
        q8_quantize(q, sc, m->w + t->offset, rows, cols);
        q8_dequantize(m->w + t->offset, q, sc, rows, cols);
        free(q), free(sc);
    }
    tu_to_f64(m->wd, m->w, m->pt.numel);
}

// dst = a copy of src (its own arrays).
static inline void tm_copy(test_model *dst, const test_model *src) {
    dst->c = src->c;
    ck_assert_int_eq(params_table_build(&dst->pt, &dst->c), 0);
    dst->w = params_arena_alloc(&dst->pt);
    dst->wd = malloc(dst->pt.numel * sizeof *dst->wd);
    ck_assert(dst->w && dst->wd);
    memcpy(dst->w, src->w, sizeof(float) * src->pt.numel);
    memcpy(dst->wd, src->wd, sizeof(double) * src->pt.numel);
}

static inline void tm_free(test_model *m) {
    free(m->w), free(m->wd);
    params_table_free(&m->pt);
}

#endif
