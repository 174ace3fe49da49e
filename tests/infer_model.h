// infer_model.h: the random test model of the inference suites (header-only, like
// testutil.h): a preset with overrides, weights in float and the same in double for the
// oracles, its 8-bit round trip, and the double-precision forward pass they are checked against.
#ifndef MONOLITH_TESTS_INFER_MODEL_H
#define MONOLITH_TESTS_INFER_MODEL_H

#include "engine/base/error.h"
#include "engine/config.h"
#include "engine/params.h"
#include "kernels/bf16.h"
#include "kernels/gemv.h"
#include "kernels/ref/ref.h"
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
    for (int i = 0, n = 0; i < m->pt.n; i++) {
        const mo_tensor *t = &m->pt.t[i];
        float *x = m->w + t->offset;
        if (t->no_grad) {  // router_bias: small, of its own seeds (the other tensors keep theirs)
            tu_fill(x, t->numel, seed * 1000 + 900 + (uint64_t)t->layer, 0.02f);
            continue;
        }
        float scale = t->kind == PK_ROUTER ? 1.04f : 0.0346f;  // routers ~30x
        tu_fill(x, t->numel, seed * 1000 + (uint64_t)n++, t->is_norm ? 0.3f : scale);
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
        if (t->kind == PK_TOK_EMBEDDINGS || t->is_norm || t->kind == PK_ROUTER || t->no_grad) continue;
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

// x rounded to bf16 (through float, as the engine's activations are float).
static inline double tm_bf(double x) {
    float f = (float)x, r;
    mo_bf16 b;
    bf16_from_f32(&b, &f, 1);
    bf16_to_f32(&r, &b, 1);
    return r;
}

// y[M,N] (+)= x[M,K] w[N,K]^T in double; `round`: both inputs rounded to bf16 first.
static inline void tm_mm(double *y, const double *x, const double *w, int M, int N, int K, int acc, int round) {
    if (!round) {
        ref_matmul_nt(y, x, w, M, N, K, acc);
        return;
    }
    double *xr = calloc((size_t)M * K, sizeof(double)), *wr = calloc((size_t)N * K, sizeof(double));
    ck_assert(xr && wr);
    for (size_t i = 0; i < (size_t)M * K; i++) xr[i] = tm_bf(x[i]);
    for (size_t i = 0; i < (size_t)N * K; i++) wr[i] = tm_bf(w[i]);
    ref_matmul_nt(y, xr, wr, M, N, K, acc);
    free(xr), free(wr);
}

static inline const double *tm_W(const test_model *m, int id) { return m->wd + m->pt.t[id].offset; }

// y[d] += g * (silu(x w1^T) * (x w3^T)) w2^T, hidden width h.
static inline void tm_expert(double *y, const double *x, const double *w1, const double *w3, const double *w2, int h, int d,
                   double g, double *scratch, int round) {
    double *a = scratch, *b = scratch + h, *out = scratch + 2 * h;
    tm_mm(a, x, w1, 1, h, d, 0, round);
    tm_mm(b, x, w3, 1, h, d, 0, round);
    ref_swiglu_forward(a, a, b, (size_t)h);
    tm_mm(out, a, w2, 1, d, h, 0, round);
    for (int j = 0; j < d; j++) y[j] += g * out[j];
}

// What tm_oracle rounds to bf16, as inference's --precision bf16 does.
enum {
    TM_ROUND_PRODUCTS = 1,  // both inputs of every product but the router's (prefill's bf16 products)
    TM_ROUND_KV = 2,        // K (after RoPE) and V before attention (a bf16 KV cache)
};

// logits[T, V] of one sequence tokens[T], in double from docs/design.md section 3 with the
// kernels/ref oracles. allowed[E] (NULL: all) restricts routing, renormalizing the
// router's probabilities over the allowed experts; `rounding`: TM_ROUND_* flags (0: none).
static inline void tm_oracle(const test_model *m, const int *tokens, int T, const unsigned char *allowed,
                             int rounding, double *logits) {
    const int round = rounding & TM_ROUND_PRODUCTS;
    const mo_config *c = &m->c;
    const int d = c->d_model, nh = c->n_heads, nkv = c->n_kv_heads, hd = c->head_dim, E = c->n_experts;
    int hmax = c->d_ff;
    if (c->d_ff_dense > hmax) hmax = c->d_ff_dense;
    if (c->n_shared_experts * c->d_ff_shared > hmax) hmax = c->n_shared_experts * c->d_ff_shared;
    double *h = malloc(sizeof(double) * T * d), *a = malloc(sizeof(double) * T * d), *rstd = malloc(sizeof(double) * T);
    double *q = malloc(sizeof(double) * T * nh * hd), *o = malloc(sizeof(double) * T * nh * hd);
    double *k = malloc(sizeof(double) * T * nkv * hd), *v = malloc(sizeof(double) * T * nkv * hd);
    double *att = malloc(sizeof(double) * nh * T * T), *p = malloc(sizeof(double) * E);
    double *scratch = malloc(sizeof(double) * (2 * hmax + d));
    int *pos = malloc(sizeof(int) * T);
    for (int t = 0; t < T; t++) pos[t] = t;
    ref_embedding_forward(h, tokens, tm_W(m, m->pt.tok_embeddings), T, d);
    for (int l = 0; l < c->n_layers; l++) {
        const mo_layer_ids *L = &m->pt.layer[l];
        ref_rmsnorm_forward(a, rstd, h, tm_W(m, L->attn_norm), T, d, c->norm_eps);
        tm_mm(q, a, tm_W(m, L->wq), T, nh * hd, d, 0, round);
        tm_mm(k, a, tm_W(m, L->wk), T, nkv * hd, d, 0, round);
        tm_mm(v, a, tm_W(m, L->wv), T, nkv * hd, d, 0, round);
        ref_rope_forward(q, pos, T, nh, hd, c->rope_theta);
        ref_rope_forward(k, pos, T, nkv, hd, c->rope_theta);
        if (rounding & TM_ROUND_KV)
            for (size_t i = 0; i < (size_t)T * nkv * hd; i++) k[i] = tm_bf(k[i]), v[i] = tm_bf(v[i]);
        ref_attention_forward(&(ref_attention){1, T, nh, nkv, hd, q, k, v, o, att, NULL});
        tm_mm(h, o, tm_W(m, L->wo), T, d, nh * hd, 1, round);
        ref_rmsnorm_forward(a, rstd, h, tm_W(m, L->ffn_norm), T, d, c->norm_eps);
        for (int t = 0; t < T; t++) {
            const double *x = a + (size_t)t * d;
            double *y = h + (size_t)t * d;
            if (!L->is_moe) {
                tm_expert(y, x, tm_W(m, L->ffn_w1), tm_W(m, L->ffn_w3), tm_W(m, L->ffn_w2), c->d_ff_dense, d, 1.0, scratch, round);
                continue;
            }
            ref_matmul_nt(p, x, tm_W(m, L->router), 1, E, d, 0);  // the router stays fp32
            ref_softmax_forward(p, p, 1, E);
            if (allowed) {
                double s = 0;
                for (int e = 0; e < E; e++) s += allowed[e] ? p[e] : 0;
                for (int e = 0; e < E; e++) p[e] = allowed[e] ? p[e] / s : -1;
            }
            int n_allowed = 0;
            for (int e = 0; e < E; e++) n_allowed += !allowed || allowed[e];
            int kk = c->top_k < n_allowed ? c->top_k : n_allowed, chosen[64];
            double g[64], gs = 0, key[256];
            const float *bias = m->w + m->pt.t[L->router_bias].offset;  // selection only: top-k of p + b
            for (int e = 0; e < E; e++) key[e] = p[e] + bias[e];
            ref_topk_forward(chosen, g, key, 1, E, kk);
            for (int j = 0; j < kk; j++) g[j] = p[chosen[j]], gs += g[j];
            for (int j = 0; j < kk; j++) {
                size_t e = (size_t)chosen[j], h1 = (size_t)c->d_ff * d;
                tm_expert(y, x, tm_W(m, L->w1) + e * h1, tm_W(m, L->w3) + e * h1, tm_W(m, L->w2) + e * h1, c->d_ff, d,
                       c->norm_topk ? g[j] / gs : g[j], scratch, round);
            }
            if (c->n_shared_experts)
                tm_expert(y, x, tm_W(m, L->shared_w1), tm_W(m, L->shared_w3), tm_W(m, L->shared_w2),
                       c->n_shared_experts * c->d_ff_shared, d, 1.0, scratch, round);
        }
    }
    ref_rmsnorm_forward(a, rstd, h, tm_W(m, m->pt.norm), T, d, c->norm_eps);
    tm_mm(logits, a, tm_W(m, m->pt.output), T, c->vocab_size, d, 0, round);
    free(h), free(a), free(rstd), free(q), free(o), free(k), free(v), free(att), free(p), free(scratch), free(pos);
}

// t[n] uniform token ids below V.
static inline void random_tokens(int *t, int n, int V, uint64_t seed) {
    mo_rng r;
    mo_rng_seed(&r, seed);
    for (int i = 0; i < n; i++) t[i] = (int)mo_rng_below(&r, (uint64_t)V);
}

#endif
