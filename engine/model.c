// model.c: activation arena, forward and backward of the MoE transformer (model.h).
#include "engine/model.h"

#include "engine/base/error.h"
#include "engine/base/huge.h"
#include "engine/comm.h"
#include "kernels/attention.h"
#include "kernels/cross_entropy.h"
#include "kernels/embedding.h"
#include "kernels/matmul.h"
#include "kernels/matmul_packed.h"
#include "kernels/residual.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope.h"

#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------- arena

// Carves 64-byte aligned buffers out of one block. With base NULL it only measures.
typedef struct {
    char *base;
    size_t off;
} carver;

static void *take(carver *c, size_t bytes) {
    size_t o = (c->off + 63) & ~(size_t)63;
    c->off = o + bytes;
    return c->base ? c->base + o : NULL;
}
// Models whose packed copy of the weights (4 bytes a parameter) would take more than this
// keep BLAS's products: e.g. the 2B-parameter fine-tune.
#define MODEL_PACKED_MAX_BYTES (2.0 * 1024 * 1024 * 1024)

#define TAKE_F(c, n) ((float *)take(c, (size_t)(n) * sizeof(float)))
#define TAKE_I(c, n) ((int *)take(c, (size_t)(n) * sizeof(int)))

static size_t max3(size_t a, size_t b, size_t c) { return a > b ? (a > c ? a : c) : (b > c ? b : c); }

// Assigns every pointer of `m` inside c->base (or just measures).
static void carve(mo_model *m, carver *c) {
    const mo_config *cf = &m->pt->cfg;
    const size_t N = (size_t)m->N, d = (size_t)cf->d_model, V = (size_t)cf->vocab_size;
    const size_t qd = (size_t)cf->n_heads * cf->head_dim, kvd = (size_t)cf->n_kv_heads * cf->head_dim;
    const size_t E = (size_t)cf->n_experts, k = (size_t)cf->top_k, f = (size_t)cf->d_ff;
    const size_t sh = (size_t)cf->n_shared_experts * cf->d_ff_shared, fd = (size_t)cf->d_ff_dense;
    const size_t lse = (size_t)m->B * cf->n_heads * m->T;
    const size_t G = m->ep.size > 1 ? (size_t)m->ep.size : 1;  // expert parallel: rows from G ranks
    size_t act_rows = 0;  // largest [rows x width] of any FFN's hidden layer
    int first_of_kind[2] = {-1, -1};  // recompute: the layer whose buffers dense [0] / MoE [1] layers share
    m->tokens = TAKE_I(c, N);
    m->targets = TAKE_I(c, N);
    m->pos = TAKE_I(c, N);
    m->rope_cos = TAKE_F(c, (size_t)m->T * cf->head_dim / 2);
    m->rope_sin = TAKE_F(c, (size_t)m->T * cf->head_dim / 2);
    for (int l = 0; l <= cf->n_layers; l++) {
        mo_layer_acts *L = &m->layer[l];
        memset(L, 0, sizeof *L);
        L->x_attn = TAKE_F(c, N * d);  // layer n_layers holds only this: the final stream
        if (l == cf->n_layers) break;
        int kind = cf->moe_layers[l] != 0;
        if (m->recompute && first_of_kind[kind] >= 0) {
            // One set of buffers per kind of layer, refilled by the forward backward redoes;
            // the layer's input and its routing (experts, gates, counts: read by callers
            // after forward) are its own.
            float *x = L->x_attn;
            *L = m->layer[first_of_kind[kind]];
            L->x_attn = x;
            if (kind) {
                L->r.experts = TAKE_I(c, N * k);
                L->r.gates = TAKE_F(c, N * k);
                L->stats.counts = (int64_t *)take(c, E * sizeof(int64_t));
            }
            continue;
        }
        first_of_kind[kind] = l;
        L->a = TAKE_F(c, N * d);
        L->a_rstd = TAKE_F(c, N);
        L->q = TAKE_F(c, N * qd);
        L->k = TAKE_F(c, N * kvd);
        L->v = TAKE_F(c, N * kvd);
        L->lse = TAKE_F(c, lse);
        L->o = TAKE_F(c, N * qd);
        L->x_ffn = TAKE_F(c, N * d);
        L->m = TAKE_F(c, N * d);
        L->m_rstd = TAKE_F(c, N);
        if (cf->moe_layers[l]) {
            L->h1 = TAKE_F(c, G * N * k * f);
            L->h3 = TAKE_F(c, G * N * k * f);
            L->ys = TAKE_F(c, N * k * d);
            if (G > 1) {
                L->xr = TAKE_F(c, G * N * k * d);
                L->ep_counts = TAKE_I(c, E);
            }
            if (sh) {
                L->sh1 = TAKE_F(c, N * sh);
                L->sh3 = TAKE_F(c, N * sh);
            }
            L->r.logits = TAKE_F(c, N * E);
            L->r.probs = TAKE_F(c, N * E);
            L->r.lse = TAKE_F(c, N);
            L->r.sel = TAKE_I(c, N * k);
            L->r.experts = TAKE_I(c, N * k);
            L->r.topv = TAKE_F(c, N * k);
            L->r.gates = TAKE_F(c, N * k);
            L->stats.counts = (int64_t *)take(c, E * sizeof(int64_t));
            L->stats.chosen = (int64_t *)take(c, E * sizeof(int64_t));
            L->disp.offs = TAKE_I(c, E + 1);
            L->disp.perm = TAKE_I(c, N * k);
            L->disp.pos = TAKE_I(c, N * k);
            act_rows = max3(act_rows, N * k * f, N * sh);
        } else {
            L->h1 = TAKE_F(c, N * fd);
            L->h3 = TAKE_F(c, N * fd);
            act_rows = max3(act_rows, N * fd, 0);
        }
    }
    m->x_final = m->layer[cf->n_layers].x_attn;
    m->hf = TAKE_F(c, N * d);
    m->hf_rstd = TAKE_F(c, N);
    m->logits = TAKE_F(c, N * V);
    m->losses = TAKE_F(c, N);
    m->ce_stats = TAKE_F(c, 2 * N);
    size_t kk = k > 0 ? k : 1;
    if (G > 1) m->ep_offs = TAKE_I(c, E + 1);
    m->xs = TAKE_F(c, G * N * kk * d);
    m->dxs = TAKE_F(c, G * N * kk * d);
    m->act = TAKE_F(c, act_rows);
    m->dact = TAKE_F(c, act_rows);
    m->dres = TAKE_F(c, N * d);
    m->dnorm = TAKE_F(c, N * d);
    m->dq = TAKE_F(c, N * qd);
    m->dout = TAKE_F(c, N * qd);
    m->dk = TAKE_F(c, N * kvd);
    m->dv = TAKE_F(c, N * kvd);
    m->drouter = TAKE_F(c, N * (E ? E : 1));
    m->rkey = TAKE_F(c, N * (E ? E : 1));
    for (int l = 0; l < cf->n_layers; l++) m->layer[l].r.key = m->rkey;
    m->dgates = TAKE_F(c, N * kk);
    m->dloss = TAKE_F(c, N);
}

size_t model_arena_bytes(const mo_param_table *pt, int B, int T) { return model_arena_bytes_opts(pt, B, T, NULL); }

size_t model_arena_bytes_opts(const mo_param_table *pt, int B, int T, const mo_model_opts *o) {
    const mo_config *c = &pt->cfg;
    if (B < 1 || T < 1 || T > c->max_seq_len || (double)B * T * c->vocab_size > 4e9 ||
        (double)B * T > 2e9 / (c->top_k > 0 ? c->top_k : 1))
        return 0;
    mo_model m;
    memset(&m, 0, sizeof m);
    m.pt = pt;
    m.B = B, m.T = T, m.N = B * T;
    m.n_moe = config_n_moe_layers(c);
    m.recompute = o && o->recompute;
    m.ep.size = o && o->expert_parallel > 1 ? o->expert_parallel : 1;
    carver cv = {NULL, 0};
    carve(&m, &cv);
    return (cv.off + 63) & ~(size_t)63;
}

int model_alloc(mo_model *m, const mo_param_table *pt, int B, int T) { return model_alloc_opts(m, pt, B, T, NULL); }

int model_alloc_opts(mo_model *m, const mo_param_table *pt, int B, int T, const mo_model_opts *o) {
    memset(m, 0, sizeof *m);
    const mo_config *c = &pt->cfg;
    if (B < 1 || T < 1) return mo_errorf("batch %d x %d: both must be positive", B, T);
    if (T > c->max_seq_len)
        return mo_errorf("sequence length %d is longer than the model's max_seq_len %d", T, c->max_seq_len);
    if ((double)B * T * c->vocab_size > 4e9 || (double)B * T > 2e9 / (c->top_k > 0 ? c->top_k : 1))
        return mo_errorf("batch %d x %d is too large for one activation arena", B, T);
    m->pt = pt;
    m->B = B, m->T = T, m->N = B * T;
    m->n_moe = config_n_moe_layers(c);
    m->recompute = o && o->recompute;
    m->ep = (mo_ep){.size = 1, .rank = 0, .local = c->n_experts};
    if (o && o->expert_parallel > 1) {
        if (comm_group_size() != o->expert_parallel)
            return mo_errorf("expert parallel %d: the communicator's expert group has %d ranks", o->expert_parallel,
                             comm_group_size());
        if (moe_ep_setup(&m->ep, c->n_experts)) return -1;
    }
    carver cv = {NULL, 0};
    carve(m, &cv);
    m->arena_bytes = (cv.off + 63) & ~(size_t)63;
    m->arena = mo_alloc_huge(m->arena_bytes);
    if (!m->arena) {
        size_t mb = m->arena_bytes >> 20;
        memset(m, 0, sizeof *m);
        return mo_errorf("out of memory: %zu MB of activations for batch %d x %d; use a smaller batch", mb, B, T);
    }
    memset(m->arena, 0, m->arena_bytes);  // touch every page now, not in the first step
    cv = (carver){m->arena, 0};
    carve(m, &cv);
    for (int i = 0; i < m->N; i++) m->pos[i] = i % T;
    rope_tables(m->rope_cos, m->rope_sin, T, c->head_dim, c->rope_theta);
    // A packed copy of the weights beside the parameters, where it fits (docs/design.md 10.2).
    m->packed = (double)pt->numel * sizeof(float) <= MODEL_PACKED_MAX_BYTES && matmul_packed_available();
    return 0;
}

void model_free(mo_model *m) {
    free(m->arena);
    free(m->bf16_arena);
    free(m->trains), free(m->expert_trains), free(m->need_attn), free(m->need_ffn);
    memset(m, 0, sizeof *m);
}

void model_set_forced_experts(mo_model *m, const int *forced) { m->forced = forced; }

void model_set_forced_targets_only(mo_model *m, int on) { m->forced_targets_only = on; }

int model_set_trainable(mo_model *m, int (*any)(void *ctx, size_t offset, size_t length), void *ctx) {
    const mo_param_table *pt = m->pt;
    const mo_config *c = &pt->cfg;
    const size_t E = c->n_experts > 0 ? (size_t)c->n_experts : 1;
    free(m->trains), free(m->expert_trains), free(m->need_attn), free(m->need_ffn);
    m->trains = m->expert_trains = m->need_attn = m->need_ffn = NULL;
    m->wb_frozen_ready = 0;
    if (!any) return 0;
    m->trains = calloc((size_t)pt->n, 1);
    m->expert_trains = calloc((size_t)pt->n * E, 1);
    m->need_attn = calloc((size_t)c->n_layers + 1, 1);
    m->need_ffn = calloc((size_t)c->n_layers + 1, 1);
    if (!m->trains || !m->expert_trains || !m->need_attn || !m->need_ffn) {
        model_set_trainable(m, NULL, NULL);
        return mo_errorf("out of memory for the trainable-parameter flags");
    }
    for (int i = 0; i < pt->n; i++) {
        const mo_tensor *t = &pt->t[i];
        m->trains[i] = any(ctx, t->offset, t->numel) != 0;
        for (int e = 0; e < t->n_experts; e++)
            m->expert_trains[(size_t)i * E + e] =
                m->trains[i] && any(ctx, t->offset + (size_t)e * t->expert_numel, t->expert_numel);
    }
    // A block's backward is needed when it trains or any block below it does.
    int below = m->trains[pt->tok_embeddings];
    for (int l = 0; l < c->n_layers; l++) {
        const mo_layer_ids *id = &pt->layer[l];
        const int attn[] = {id->attn_norm, id->wq, id->wk, id->wv, id->wo};
        const int ffn[] = {id->ffn_norm, id->router, id->w1, id->w3, id->w2, id->shared_w1, id->shared_w3,
                           id->shared_w2, id->ffn_w1, id->ffn_w3, id->ffn_w2};
        for (size_t j = 0; j < sizeof attn / sizeof *attn; j++) below |= attn[j] >= 0 && m->trains[attn[j]];
        m->need_attn[l] = (unsigned char)below;
        for (size_t j = 0; j < sizeof ffn / sizeof *ffn; j++) below |= ffn[j] >= 0 && m->trains[ffn[j]];
        m->need_ffn[l] = (unsigned char)below;
    }
    return 0;
}

void model_set_router_ce(mo_model *m, double coef) { m->router_ce_coef = coef; }

void model_set_noise(mo_model *m, mo_rng *rng) { m->noise = rng; }

// ---------------------------------------------------------------------------- precision

int model_precision_parse(const char *s, const char *flag, mo_precision *p) {
    if (!strcmp(s, "fp32")) *p = MO_PRECISION_FP32;
    else if (!strcmp(s, "bf16")) *p = MO_PRECISION_BF16;
    else return mo_errorf("%s '%s': use fp32 or bf16", flag, s);
    return 0;
}

// The tensors whose products run in bf16: every matrix that enters a GEMM, except the
// router (routing stays fp32; its E outputs cost nothing).
static int bf16_kind(mo_param_kind k) {
    return k == PK_WQ || k == PK_WK || k == PK_WV || k == PK_WO || k == PK_W1 || k == PK_W3 || k == PK_W2 ||
           k == PK_SHARED_W1 || k == PK_SHARED_W3 || k == PK_SHARED_W2 || k == PK_DENSE_W1 || k == PK_DENSE_W3 ||
           k == PK_DENSE_W2 || k == PK_OUTPUT;
}

// The per-layer bf16 GEMM inputs kept from forward for backward (mo_layer_acts.ab, ob,
// xb, actb) carved from `at` (NULL: only measured); returns their count of bf16 values.
// Under --recompute layers of a kind share them as they share their fp32 activations;
// under expert parallelism the experts' rows are not kept (their layout is per source).
static size_t keep_bf16(mo_model *m, mo_bf16 *at) {
    const mo_config *c = &m->pt->cfg;
    const size_t N = (size_t)m->N, d = (size_t)c->d_model, qd = (size_t)c->n_heads * c->head_dim;
    const size_t k = (size_t)c->top_k, f = (size_t)c->d_ff;
    size_t n = 0;
    int first_of_kind[2] = {-1, -1};
    for (int l = 0; l < c->n_layers; l++) {
        mo_layer_acts *L = &m->layer[l];
        const int kind = c->moe_layers[l] != 0;
        if (m->recompute && first_of_kind[kind] >= 0) {
            const mo_layer_acts *F = &m->layer[first_of_kind[kind]];
            L->ab = F->ab, L->ob = F->ob, L->xb = F->xb, L->actb = F->actb;
            continue;
        }
        first_of_kind[kind] = l;
        const size_t moe = kind && m->ep.size <= 1, sizes[4] = {N * d, N * qd, moe * N * k * d, moe * N * k * f};
        mo_bf16 **ptr[4] = {&L->ab, &L->ob, &L->xb, &L->actb};
        for (int i = 0; i < 4; i++) {
            *ptr[i] = at && sizes[i] ? at + n : NULL;
            n += (sizes[i] + 31) & ~(size_t)31;
        }
    }
    return n;
}

int model_set_precision(mo_model *m, mo_precision p) {
    free(m->bf16_arena);
    m->bf16_arena = NULL, m->bf16_bytes = 0, m->bf16 = 0, m->wb = m->bx = m->bg = m->bh = NULL;
    for (int l = 0; l < MO_MAX_LAYERS; l++) m->layer[l].ab = m->layer[l].ob = m->layer[l].xb = m->layer[l].actb = NULL;
    if (p == MO_PRECISION_FP32) return 0;
    if (!bf16_supported())
        return mo_errorf("--precision bf16: this CPU has no AVX512_BF16 (bf16 products would run slower than fp32); "
                         "use --precision fp32");
    const mo_config *c = &m->pt->cfg;
    const size_t N = (size_t)m->N, d = (size_t)c->d_model, V = (size_t)c->vocab_size;
    const size_t qd = (size_t)c->n_heads * c->head_dim, kk = c->top_k > 0 ? (size_t)c->top_k : 1;
    const size_t wide = (size_t)c->d_ff * kk > (size_t)c->d_ff_dense ? (size_t)c->d_ff * kk : (size_t)c->d_ff_dense;
    const size_t sh = (size_t)c->n_shared_experts * c->d_ff_shared;
    size_t nx = N * kk * (d > qd ? d : qd), ng = N * max3(V, d > qd ? d : qd, wide > sh ? wide : sh);
    size_t nh = N * (wide > sh ? wide : sh);
    size_t nw = (m->pt->numel + 31) & ~(size_t)31;
    nx = (nx + 31) & ~(size_t)31, ng = (ng + 31) & ~(size_t)31, nh = (nh + 31) & ~(size_t)31;
    const size_t nk = keep_bf16(m, NULL);
    m->bf16_bytes = (nw + nx + ng + nh + nk) * sizeof(mo_bf16);
    m->bf16_arena = mo_alloc_huge(m->bf16_bytes);
    if (!m->bf16_arena) {
        size_t mb = m->bf16_bytes >> 20;
        m->bf16_bytes = 0;
        return mo_errorf("out of memory: %zu MB for the bf16 weights and scratch; use --precision fp32", mb);
    }
    memset(m->bf16_arena, 0, m->bf16_bytes);  // touch the pages now, not in the first step
    m->wb = m->bf16_arena;
    m->bx = m->wb + nw;
    m->bg = m->bx + nx;
    m->bh = m->bg + ng;
    keep_bf16(m, m->bh + nh);
    m->bf16 = 1;
    m->wb_frozen_ready = 0, m->wb_current = 0;
    return 0;
}

// 1 if the part of tensor i the model reads changes with training: the whole tensor
// (e < 0), or expert e's slice of a stacked one.
static int part_trains(const mo_model *m, int i, int e) {
    if (!m->trains) return 1;
    return e < 0 ? m->trains[i] : m->expert_trains[(size_t)i * (size_t)m->pt->cfg.n_experts + (size_t)e];
}

// Rounds the GEMM weights into m->wb (same offsets as the fp32 arena); frozen tensors
// and frozen expert slices (model_set_trainable) only the first time, or never when the
// caller put them there (model_bf16_hold_frozen).
static void refresh_bf16_weights(mo_model *m, const float *params) {
    const mo_param_table *pt = m->pt;
    for (int i = 0; i < pt->n; i++) {
        const mo_tensor *t = &pt->t[i];
        if (!bf16_kind(t->kind)) continue;
        if (t->n_experts && m->trains && m->trains[i]) {  // a stacked tensor: slice by slice
            for (int e = 0; e < t->n_experts; e++)
                if (part_trains(m, i, e) || !m->wb_frozen_ready) {
                    size_t o = t->offset + (size_t)e * t->expert_numel;
                    bf16_from_f32(m->wb + o, params + o, t->expert_numel);
                }
        } else if (part_trains(m, i, -1) || !m->wb_frozen_ready) {
            bf16_from_f32(m->wb + t->offset, params + t->offset, t->numel);
        }
    }
    m->wb_frozen_ready = 1;
}

mo_bf16 *model_bf16_weights(mo_model *m) { return m->bf16 ? m->wb : NULL; }

void model_bf16_weights_current(mo_model *m) { m->wb_current = m->bf16; }

int model_bf16_only(const mo_model *m, int i, int e) {
    return m->bf16 && m->trains && bf16_kind(m->pt->t[i].kind) && !part_trains(m, i, e);
}

size_t model_bf16_frozen_numel(const mo_param_table *pt, int (*any)(void *ctx, size_t offset, size_t length),
                               void *ctx) {
    size_t n = 0;
    for (int i = 0; i < pt->n; i++) {
        const mo_tensor *t = &pt->t[i];
        if (!bf16_kind(t->kind)) continue;
        if (!any(ctx, t->offset, t->numel)) n += t->numel;
        else
            for (int e = 0; e < t->n_experts; e++)
                n += any(ctx, t->offset + (size_t)e * t->expert_numel, t->expert_numel) ? 0 : t->expert_numel;
    }
    return n;
}

void model_bf16_hold_frozen(mo_model *m, float *params, int i) {
    const mo_tensor *t = &m->pt->t[i];
    // A stacked tensor that trains in part: slice by slice; else the whole tensor.
    const int n = t->n_experts && m->trains && m->trains[i] ? t->n_experts : 1;
    const size_t len = n > 1 ? t->expert_numel : t->numel;
    for (int e = 0; e < n; e++) {
        if (!model_bf16_only(m, i, n > 1 ? e : -1)) continue;
        const size_t o = t->offset + (size_t)e * len;
        bf16_from_f32(m->wb + o, params + o, len);
        params_arena_release(params, o, len);
    }
    m->wb_frozen_ready = 1;
}

#define WB(id) (m->wb + m->pt->t[(id)].offset)

// One operand of a dense product in the precision the model computes in: its fp32 values,
// and with bf16 compute their bf16 copy (NULL in fp32). The precision is decided where an
// operand is made (lin_x, lin_w); lin_forward/lin_backward follow it.
typedef struct {
    const float *f;
    const mo_bf16 *b;
    int packed;  // W of an fp32 product: oneDNN's packed copy (matmul_packed.h), else BLAS
} mo_lin;

// An activation x[n]: with bf16 compute rounded into scratch.
static mo_lin lin_x(const mo_model *m, mo_bf16 *scratch, const float *x, size_t n) {
    mo_lin o = {x, NULL, 0};
    if (m->bf16) bf16_from_f32(scratch, x, n), o.b = scratch;
    return o;
}

// The parameter of table index w, with its bf16 copy under bf16 compute.
static mo_lin lin_w(const mo_model *m, const float *params, int w) {
    return (mo_lin){params_at_c(m->pt, params, w), m->bf16 ? WB(w) : NULL, m->packed};
}

// y[M,N] (+)= x[M,K] W^T, W [N, K].
static void lin_forward(float *y, mo_lin x, mo_lin W, int M, int N, int K, int acc) {
    if (x.b) matmul_bf16_nt(y, x.b, W.b, M, N, K, acc);
    else matmul_weight_nt(W.packed, y, x.f, W.f, M, N, K, acc);
}

// dx[M,K] (+)= dy[M,N] W and dW[N,K] += dy^T x (dW NULL: frozen, skipped).
// The x operand of a backward, which only the weight gradient reads: not rounded to bf16
// when the weight is frozen (dW NULL).
// kept: x rounded by forward (mo_layer_acts.ab, ob), used as it is; NULL: rounded now.
static mo_lin lin_x_dw(const mo_model *m, const float *dW, mo_bf16 *scratch, const mo_bf16 *kept, const float *x,
                       size_t n) {
    if (!dW) return (mo_lin){x, NULL, 0};
    return kept ? (mo_lin){x, kept, 0} : lin_x(m, scratch, x, n);
}
// dW is written instead (beta 0) when the model's backward sets the gradients
// (model_backward_first).
static void lin_backward(const mo_model *m, float *dx, float *dW, mo_lin dy, mo_lin x, mo_lin W, int M, int N, int K,
                         int acc) {
    if (dy.b) {
        if (dW) matmul_bf16_tn(dW, dy.b, x.b, N, K, M, !m->dw_set);
        matmul_bf16_nn(dx, dy.b, W.b, M, K, N, acc);
    } else {
        if (dW) matmul_tn(dW, dy.f, x.f, N, K, M, !m->dw_set);
        matmul_weight_nn(W.packed, dx, dy.f, W.f, M, K, N, acc);
    }
}

// The FFN of table indices w1, w3, w2 from element `at` of each on (the first expert of a
// routed range; 0 for a whole tensor), in the precision the model computes in: the fp32
// parameters, and with bf16 compute their bf16 copies and the model's scratch. The
// precision is decided here only; ffn_forward/ffn_backward follow the view.
static mo_ffn_weights ffn_weights(const mo_model *m, const float *params, int w1, int w3, int w2, size_t at) {
    mo_ffn_weights w = {.w1 = params_at_c(m->pt, params, w1) + at, .w3 = params_at_c(m->pt, params, w3) + at,
                        .w2 = params_at_c(m->pt, params, w2) + at};
    if (m->bf16) w.b1 = WB(w1) + at, w.b3 = WB(w3) + at, w.b2 = WB(w2) + at, w.s0 = m->bx, w.s1 = m->bg, w.s2 = m->bh;
    else w.packed = m->packed;
    return w;
}

// G groups of rows (offs) of an FFN f wide, caching h1, h3, with the model's scratch.
static mo_ffn_rows ffn_rows(const mo_model *m, const int *offs, int G, int f, float *h1, float *h3) {
    return (mo_ffn_rows){offs, G, f, m->pt->cfg.d_model, h1, h3, m->act, m->dact, NULL, 1};
}

// ---------------------------------------------------------------------------- forward

#define P(id) params_at_c(m->pt, params, (id))

static void attention_block_forward(mo_model *m, const float *params, int l) {
    const mo_config *c = &m->pt->cfg;
    const mo_layer_ids *id = &m->pt->layer[l];
    mo_layer_acts *L = &m->layer[l];
    const int N = m->N, d = c->d_model, nh = c->n_heads, nkv = c->n_kv_heads, hd = c->head_dim;
    rmsnorm_forward(L->a, L->a_rstd, L->x_attn, P(id->attn_norm), N, d, (float)c->norm_eps);
    const mo_lin a = lin_x(m, L->ab ? L->ab : m->bx, L->a, (size_t)N * d);  // bf16: kept for backward
    lin_forward(L->q, a, lin_w(m, params, id->wq), N, nh * hd, d, 0);   // [N, nh*hd]
    lin_forward(L->k, a, lin_w(m, params, id->wk), N, nkv * hd, d, 0);  // [N, nkv*hd]
    lin_forward(L->v, a, lin_w(m, params, id->wv), N, nkv * hd, d, 0);
    rope_forward(L->q, m->pos, m->rope_cos, m->rope_sin, N, nh, hd);
    rope_forward(L->k, m->pos, m->rope_cos, m->rope_sin, N, nkv, hd);
    const mo_attention at = {m->B, m->T, nh, nkv, hd, L->q, L->k, L->v, L->o, L->lse};
    (m->bf16 ? attention_forward_bf16 : attention_forward)(&at);  // bf16: its products too (design.md 9)
    residual_copy(L->x_ffn, L->x_attn, (size_t)N * d);
    lin_forward(L->x_ffn, lin_x(m, L->ob ? L->ob : m->bx, L->o, (size_t)N * nh * hd), lin_w(m, params, id->wo), N, d,
                nh * hd, 1);  // x_ffn = x_attn + o wo^T
}

// The routed experts' weights from expert `first` on.
static mo_ffn_weights experts_from(const mo_model *m, const float *params, const mo_layer_ids *id, int first) {
    const size_t at = (size_t)first * m->pt->t[id->w1].expert_numel;  // w1, w3, w2 slices are the same size
    return ffn_weights(m, params, id->w1, id->w3, id->w2, at);
}

// xrow (NULL: xs holds the sorted rows) reads row p of the experts' input as
// xs[xrow[p] / top_k] (mo_ffn_rows.xrow).
static void experts_forward(const mo_model *m, const mo_ffn_weights *w, float *ys, float *h1, float *h3,
                            const float *xs, const int *offs, int n, const int *xrow) {
    mo_ffn_rows r = ffn_rows(m, offs, n, m->pt->cfg.d_ff, h1, h3);
    r.xrow = xrow, r.xdiv = m->pt->cfg.top_k;
    ffn_forward(ys, xs, w, &r, 0);
}

// The routed experts of MoE layer l: L->ys = FFN_e(the rows of L->m sorted by expert),
// read in place through the dispatch where the kernels can (ffn_reads_mapped), else
// gathered into m->xs. Under expert parallelism the gathered rows travel to their
// experts' owners and back (engine/moe_ep.h); the owner runs the FFN per source block.
// Returns 0 or -1 (communication).
static int routed_experts_forward(mo_model *m, const float *params, int l) {
    const mo_config *c = &m->pt->cfg;
    const mo_layer_ids *id = &m->pt->layer[l];
    mo_layer_acts *L = &m->layer[l];
    const int f = c->d_ff, d = c->d_model;
    if (m->ep.size <= 1) {
        mo_ffn_weights w = experts_from(m, params, id, 0);
        w.xk = L->xb, w.ak = L->actb;  // bf16: kept for backward
        if (ffn_reads_mapped(&w, f, d)) {
            experts_forward(m, &w, L->ys, L->h1, L->h3, L->m, L->disp.offs, c->n_experts, L->disp.perm);
            return 0;
        }
        if (w.xk) {  // bf16: the rows rounded once (N of them, not N k), gathered as bf16 into w.xk
            bf16_from_f32(m->bx, L->m, (size_t)m->N * d);
            moe_gather_bf16(w.xk, m->bx, &L->disp, c->n_experts, c->top_k, d);
            experts_forward(m, &w, L->ys, L->h1, L->h3, NULL, L->disp.offs, c->n_experts, NULL);
            return 0;
        }
        moe_gather(m->xs, L->m, &L->disp, c->n_experts, c->top_k, d);  // [R, d] rows sorted by expert
        experts_forward(m, &w, L->ys, L->h1, L->h3, m->xs, L->disp.offs, c->n_experts, NULL);
        return 0;
    }
    const mo_ep *ep = &m->ep;
    moe_gather(m->xs, L->m, &L->disp, c->n_experts, c->top_k, d);
    if (moe_ep_dispatch(ep, L->xr, L->ep_counts, m->xs, L->disp.offs, d)) return -1;
    mo_ffn_weights w = experts_from(m, params, id, ep->rank * ep->local);
    float *yr = m->dxs;  // scratch until backward
    for (int s = 0; s < ep->size; s++) {
        size_t r0 = (size_t)moe_ep_block(ep, L->ep_counts, s, m->ep_offs);
        experts_forward(m, &w, yr + r0 * d, L->h1 + r0 * f, L->h3 + r0 * f, L->xr + r0 * d, m->ep_offs, ep->local,
                        NULL);
    }
    return moe_ep_return(ep, L->ys, yr, L->ep_counts, L->disp.offs, d);
}

// `noise`: the RNG the router draws its training noise from, or NULL (no noise).
static int ffn_block_forward(mo_model *m, const float *params, int l, mo_rng *noise) {
    const mo_config *c = &m->pt->cfg;
    const mo_layer_ids *id = &m->pt->layer[l];
    mo_layer_acts *L = &m->layer[l];
    const int N = m->N, d = c->d_model, E = c->n_experts, k = c->top_k;
    const int sh = c->n_shared_experts * c->d_ff_shared;
    const int all_rows[2] = {0, N};  // one group holding every row: a dense FFN
    float *out = m->layer[l + 1].x_attn;
    rmsnorm_forward(L->m, L->m_rstd, L->x_ffn, P(id->ffn_norm), N, d, (float)c->norm_eps);
    residual_copy(out, L->x_ffn, (size_t)N * d);
    if (!id->is_moe) {
        mo_ffn_weights w = ffn_weights(m, params, id->ffn_w1, id->ffn_w3, id->ffn_w2, 0);
        mo_ffn_rows r = ffn_rows(m, all_rows, 1, c->d_ff_dense, L->h1, L->h3);
        ffn_forward(out, L->m, &w, &r, 1);
        return 0;
    }
    router_forward(c, &L->r, &L->stats, L->m, P(id->router), P(id->router_bias), N, m->forced, m->forced_targets_only,
                  noise);
    moe_dispatch_build(&L->disp, L->r.experts, N, k, E);
    if (routed_experts_forward(m, params, l)) return -1;
    moe_combine(out, L->ys, L->r.gates, &L->disp, N, k, d);  // out += sum_j g_j ys
    if (sh) {
        mo_ffn_weights ws = ffn_weights(m, params, id->shared_w1, id->shared_w3, id->shared_w2, 0);
        mo_ffn_rows rs = ffn_rows(m, all_rows, 1, sh, L->sh1, L->sh3);
        ffn_forward(out, L->m, &ws, &rs, 1);
    }
    return 0;
}

int model_forward(mo_model *m, const float *params, const int *tokens, const int *targets) {
    const mo_config *c = &m->pt->cfg;
    const int N = m->N, d = c->d_model, V = c->vocab_size;
    for (int i = 0; i < N; i++) {
        if (tokens[i] < 0 || tokens[i] >= V)
            return mo_errorf("token id %d at row %d, position %d is outside the vocabulary [0, %d)", tokens[i],
                             i / m->T, i % m->T, V);
        if (targets && targets[i] >= V)
            return mo_errorf("target id %d at row %d, position %d is outside the vocabulary [0, %d)", targets[i],
                             i / m->T, i % m->T, V);
        if (m->forced && m->n_moe && m->forced[i] >= c->n_experts)
            return mo_errorf("forced expert %d at row %d, position %d: the model has %d experts", m->forced[i],
                             i / m->T, i % m->T, c->n_experts);
    }
    memcpy(m->tokens, tokens, (size_t)N * sizeof(int));
    if (targets) memcpy(m->targets, targets, (size_t)N * sizeof(int));
    else
        for (int i = 0; i < N; i++) m->targets[i] = -1;

    // Rounded here unless the optimizer's pass has just written them (only for this forward).
    if (m->bf16 && !(m->wb_current && m->wb_frozen_ready)) refresh_bf16_weights(m, params);
    m->wb_current = 0;
    if (m->packed) matmul_packed_stale();  // the weights may have changed since the last forward
    embedding_forward(m->layer[0].x_attn, m->tokens, P(m->pt->tok_embeddings), N, d);
    for (int l = 0; l < c->n_layers; l++) {
        attention_block_forward(m, params, l);
        if (m->noise) m->noise_at[l] = *m->noise;
        if (ffn_block_forward(m, params, l, m->noise)) return -1;
    }
    rmsnorm_forward(m->hf, m->hf_rstd, m->x_final, P(m->pt->norm), N, d, (float)c->norm_eps);
    lin_forward(m->logits, lin_x(m, m->bx, m->hf, (size_t)N * d), lin_w(m, params, m->pt->output), N, V, d,
                0);  // [N, V]

    m->ce = m->aux = m->z = m->router_ce = 0;
    m->n_targets = 0;
    for (int l = 0; l < c->n_layers; l++)
        if (c->moe_layers[l]) {
            const mo_router_stats *st = &m->layer[l].stats;
            m->aux += st->aux, m->z += st->z, m->router_ce += st->router_ce;
        }
    if (m->n_moe) m->aux /= m->n_moe, m->z /= m->n_moe, m->router_ce /= m->n_moe;
    if (targets) {
        cross_entropy_forward(m->losses, m->ce_stats, m->logits, m->targets, N, V);
        double s = 0;
        for (int i = 0; i < N; i++)
            if (m->targets[i] >= 0) s += m->losses[i], m->n_targets++;
        m->ce = m->n_targets ? s / m->n_targets : 0.0;
    }
    m->loss = m->ce + c->aux_coef * m->aux + c->z_coef * m->z;
    if (m->forced) m->loss += m->router_ce_coef * m->router_ce;  // 0 when no row is forced
    return 0;
}

// ---------------------------------------------------------------------------- backward

// Tensor id's gradient in `grads`, or NULL when it is frozen (model_set_trainable).
static float *grad_of(const mo_model *m, float *grads, int id) {
    return id < 0 || (m->trains && !m->trains[id]) ? NULL : params_at(m->pt, grads, id);
}
#define G(id) grad_of(m, grads, (id))
// The expert slices of stacked tensor id whose weight gradients are wanted (NULL: all).
#define GE(id) (m->expert_trains ? m->expert_trains + (size_t)(id) * (size_t)m->pt->cfg.n_experts : NULL)

// Backward of routed_experts_forward: m->dxs holds d loss / d ys (sorted rows); on return
// d loss / d xs (unless !need_dx: then only the weight gradients), and the experts'
// weight gradients (this rank's experts under expert parallelism) are accumulated.
// Returns 0 or -1 (communication).
static int routed_experts_backward(mo_model *m, const float *params, float *grads, int l, int need_dx, int dys_bf16) {
    const mo_config *c = &m->pt->cfg;
    const mo_layer_ids *id = &m->pt->layer[l];
    mo_layer_acts *L = &m->layer[l];
    const int f = c->d_ff, d = c->d_model;
    const mo_ep *ep = &m->ep;
    const int first = ep->size > 1 ? ep->rank * ep->local : 0, n = ep->size > 1 ? ep->local : c->n_experts;
    const size_t at = (size_t)first * m->pt->t[id->w1].expert_numel;
    float *dw1 = G(id->w1), *dw3 = G(id->w3), *dw2 = G(id->w2);
    dw1 = dw1 ? dw1 + at : NULL, dw3 = dw3 ? dw3 + at : NULL, dw2 = dw2 ? dw2 + at : NULL;
    const unsigned char *some = m->expert_trains ? GE(id->w1) + first : NULL;
    const mo_ffn_grads g = {dw1, dw3, dw2, some, m->dw_set};
    mo_ffn_weights w = experts_from(m, params, id, first);
    w.yk = dys_bf16;
    float *dys = m->dxs, *xs = m->xs, *h1 = L->h1, *h3 = L->h3;
    const int *xrow = NULL;
    int blocks = 1;
    if (ep->size > 1) {  // the row gradients go to the owners: dys in the receive layout, in m->xs
        if (moe_ep_send(ep, m->xs, L->ep_counts, m->dxs, L->disp.offs, d)) return -1;
        dys = m->xs, xs = L->xr, blocks = ep->size;
    } else if (ffn_backward_mapped(&w, f, d)) {  // read in place, as forward did
        xs = L->m, xrow = L->disp.perm;
    } else if (L->xb) {  // bf16: forward's rounded rows and SwiGLU output, kept
        w.xk = L->xb, w.ak = L->actb;
    } else {
        moe_gather(m->xs, L->m, &L->disp, c->n_experts, c->top_k, d);  // regathered instead of kept per layer
    }
    for (int s = 0; s < blocks; s++) {
        size_t r0 = 0;
        const int *offs = L->disp.offs;
        if (ep->size > 1) {
            r0 = (size_t)moe_ep_block(ep, L->ep_counts, s, m->ep_offs);
            offs = m->ep_offs;
        }
        float *dy = dys + r0 * d;  // dxs overwrites dys in place
        mo_ffn_rows r = ffn_rows(m, offs, n, f, h1 + r0 * f, h3 + r0 * f);
        r.xrow = xrow, r.xdiv = c->top_k;
        ffn_backward(need_dx ? dy : NULL, dy, xrow ? xs : xs + r0 * d, &w, &r, &g, 0);
    }
    return ep->size > 1 ? moe_ep_return(ep, m->dxs, m->xs, L->ep_counts, L->disp.offs, d) : 0;
}

// dres holds d loss / d (the layer's output); on return, d loss / d x_ffn, unless nothing
// below the block trains and neither does its norm: then only its weight gradients
// (the lowest trainable block of a fine-tune: no data gradient, and a frozen expert's
// backward skipped whole).
static int ffn_block_backward(mo_model *m, const float *params, float *grads, int l, float loss_scale) {
    const mo_config *c = &m->pt->cfg;
    const mo_layer_ids *id = &m->pt->layer[l];
    mo_layer_acts *L = &m->layer[l];
    const int N = m->N, d = c->d_model, k = c->top_k;
    const int sh = c->n_shared_experts * c->d_ff_shared;
    const int all_rows[2] = {0, N};
    float *dy = m->dres, *dm = m->dnorm;
    // d loss / d (the norm's output) is wanted by the norm's weight gradient and by the
    // blocks below; expert parallelism always sends the rows' gradients back.
    const int need_dm = !m->need_attn || m->need_attn[l] || G(id->ffn_norm) || m->ep.size > 1;
    float *dmo = need_dm ? dm : NULL;
    if (!id->is_moe) {
        mo_ffn_weights w = ffn_weights(m, params, id->ffn_w1, id->ffn_w3, id->ffn_w2, 0);
        mo_ffn_rows r = ffn_rows(m, all_rows, 1, c->d_ff_dense, L->h1, L->h3);
        mo_ffn_grads g = {G(id->ffn_w1), G(id->ffn_w3), G(id->ffn_w2), NULL, m->dw_set};
        ffn_backward(dmo, dy, L->m, &w, &r, &g, 0);
    } else {
        // Routed experts: dys = g dy in sorted order, the gate gradients, then the experts.
        // With bf16 compute and no expert parallelism only the products read dys: written
        // rounded, straight into the experts' bf16 scratch (mo_ffn_weights.s0, yk).
        const int dys_bf16 = m->bf16 && m->ep.size <= 1;
        if (dys_bf16) moe_combine_backward_bf16(m->bx, m->dgates, dy, L->ys, L->r.gates, &L->disp, N, k, d);
        else moe_combine_backward(m->dxs, m->dgates, dy, L->ys, L->r.gates, &L->disp, N, k, d);
        if (routed_experts_backward(m, params, grads, l, need_dm, dys_bf16)) return -1;
        if (need_dm) moe_scatter(dm, m->dxs, &L->disp, N, k, d);  // dm = sum over a token's slots
        if (sh) {
            mo_ffn_weights ws = ffn_weights(m, params, id->shared_w1, id->shared_w3, id->shared_w2, 0);
            mo_ffn_rows rs = ffn_rows(m, all_rows, 1, sh, L->sh1, L->sh3);
            mo_ffn_grads gs = {G(id->shared_w1), G(id->shared_w3), G(id->shared_w2), NULL, m->dw_set};
            ffn_backward(dmo, dy, L->m, &ws, &rs, &gs, 1);
        }
        double daux = (double)loss_scale * c->aux_coef / m->n_moe, dz = (double)loss_scale * c->z_coef / m->n_moe;
        double dce = m->forced ? (double)loss_scale * m->router_ce_coef / m->n_moe : 0.0;
        if (need_dm || G(id->router))
            router_backward(c, &L->r, &L->stats, m->dgates, daux, dz, dce, m->drouter, L->m, P(id->router),
                            G(id->router), dmo, N);
    }
    if (need_dm) rmsnorm_backward(m->dres, G(id->ffn_norm), dm, L->x_ffn, P(id->ffn_norm), L->m_rstd, N, d);
    return 0;
}

// dres holds d loss / d x_ffn; on return, d loss / d x_attn.
static void attention_block_backward(mo_model *m, const float *params, float *grads, int l) {
    const mo_config *c = &m->pt->cfg;
    const mo_layer_ids *id = &m->pt->layer[l];
    mo_layer_acts *L = &m->layer[l];
    const int N = m->N, d = c->d_model, nh = c->n_heads, nkv = c->n_kv_heads, hd = c->head_dim;
    const int qd = nh * hd, kvd = nkv * hd;
    float *dy = m->dres;
    // dwo [d, qd] += dy^T o; do [N, qd] = dy wo
    lin_backward(m, m->dout, G(id->wo), lin_x(m, m->bg, dy, (size_t)N * d),
                 lin_x_dw(m, G(id->wo), m->bx, L->ob, L->o, (size_t)N * qd), lin_w(m, params, id->wo), N, d, qd, 0);
    const mo_attention at = {m->B, m->T, nh, nkv, hd, L->q, L->k, L->v, L->o, L->lse};
    (m->bf16 ? attention_backward_bf16 : attention_backward)(&at, m->dout, m->dq, m->dk, m->dv);
    rope_backward(m->dq, m->pos, m->rope_cos, m->rope_sin, N, nh, hd);
    rope_backward(m->dk, m->pos, m->rope_cos, m->rope_sin, N, nkv, hd);
    // dwq [qd, d] += dq^T a (and wk, wv alike); da = dq wq + dk wk + dv wv
    float *da = m->dnorm;
    const float *any_dw = G(id->wq) ? G(id->wq) : G(id->wk) ? G(id->wk) : G(id->wv);
    const mo_lin a = lin_x_dw(m, any_dw, m->bx, L->ab, L->a, (size_t)N * d);
    lin_backward(m, da, G(id->wq), lin_x(m, m->bg, m->dq, (size_t)N * qd), a, lin_w(m, params, id->wq), N, qd, d, 0);
    lin_backward(m, da, G(id->wk), lin_x(m, m->bg, m->dk, (size_t)N * kvd), a, lin_w(m, params, id->wk), N, kvd, d, 1);
    lin_backward(m, da, G(id->wv), lin_x(m, m->bg, m->dv, (size_t)N * kvd), a, lin_w(m, params, id->wv), N, kvd, d, 1);
    rmsnorm_backward(m->dres, G(id->attn_norm), da, L->x_attn, P(id->attn_norm), L->a_rstd, N, d);
}

int model_backward(mo_model *m, const float *params, float *grads, float loss_scale) {
    const mo_config *c = &m->pt->cfg;
    const int N = m->N, d = c->d_model, V = c->vocab_size;
    for (int i = 0; i < N; i++)
        m->dloss[i] = m->targets[i] >= 0 && m->n_targets ? loss_scale / (float)m->n_targets : 0.0f;
    // dlogits, with the rows' max and sum forward kept (rows without a target read none):
    // over the logits in place, or with bf16 compute straight into their bf16 scratch (only
    // the products read them)
    mo_lin dl = {m->logits, NULL, 0};
    if (m->bf16) cross_entropy_backward_bf16(m->bg, m->logits, m->ce_stats, m->targets, m->dloss, N, V), dl.b = m->bg;
    else cross_entropy_backward(m->logits, m->logits, m->ce_stats, m->targets, m->dloss, N, V);
    // doutput [V, d] += dl^T hf; dhf = dl output
    lin_backward(m, m->dnorm, G(m->pt->output), dl, lin_x_dw(m, G(m->pt->output), m->bx, NULL, m->hf, (size_t)N * d),
                 lin_w(m, params, m->pt->output), N, V, d, 0);
    memset(m->dres, 0, (size_t)N * d * sizeof(float));
    rmsnorm_backward(m->dres, G(m->pt->norm), m->dnorm, m->x_final, P(m->pt->norm), m->hf_rstd, N, d);
    for (int l = c->n_layers - 1; l >= 0; l--) {
        if (m->need_ffn && !m->need_ffn[l]) return 0;  // nothing at or below this block trains
        if (m->recompute && l < c->n_layers - 1) {
            // Redo the layer's forward from its kept input (the last layer's buffers still
            // hold its own forward). It rewrites layer l+1's input with the same values: the
            // router replays the noise it drew then from a copy of the RNG state of that time.
            attention_block_forward(m, params, l);
            mo_rng replay = m->noise_at[l];
            if (ffn_block_forward(m, params, l, m->noise ? &replay : NULL)) return -1;
        }
        if (ffn_block_backward(m, params, grads, l, loss_scale)) return -1;
        if (m->need_attn && !m->need_attn[l]) return 0;
        attention_block_backward(m, params, grads, l);
    }
    float *demb = G(m->pt->tok_embeddings);
    if (demb) embedding_backward(demb, m->dres, m->tokens, N, d);
    return 0;
}

int model_backward_first(mo_model *m, const float *params, float *grads, float loss_scale) {
    const mo_param_table *pt = m->pt;
    if (m->trains || m->ep.size > 1) {
        memset(grads, 0, pt->numel * sizeof *grads);
        return model_backward(m, params, grads, loss_scale);
    }
    // Every tensor of a bf16 kind is a GEMM operand whose gradient one product makes
    // whole (an expert with no rows: the grouped product zeroes its slice).
    for (int i = 0; i < pt->n; i++)
        if (!bf16_kind(pt->t[i].kind)) memset(grads + pt->t[i].offset, 0, pt->t[i].numel * sizeof *grads);
    m->dw_set = 1;
    int rc = model_backward(m, params, grads, loss_scale);
    m->dw_set = 0;
    return rc;
}
