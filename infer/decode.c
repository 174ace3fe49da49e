// decode.c: prefill and single-token decode over the KV cache.
//
// Both run the same layer loop over a block of `rows` token rows (run_layers); only
// attention differs: prefill runs the causal attention kernel over whole prompts and
// stores K and V in the cache, decode appends one K and V per sequence and attends over
// the cache (kernels/attention_decode.h). A decode step of ONE sequence takes its own
// path (decode_one, infer/decode_one.c). Weights are fp32 views of the model or 8-bit
// copies (infer_set_weights), on huge pages where the kernel allows. The context's
// fields are in infer/infer_ctx.h.
#include "infer/infer.h"
#include "infer/infer_ctx.h"

#include "engine/base/error.h"
#include "engine/base/huge.h"
#include "engine/router.h"
#include "kernels/attention.h"
#include "kernels/embedding.h"
#include "kernels/gemv.h"
#include "kernels/matmul.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope.h"
#include "kernels/softmax.h"
#include "kernels/swiglu.h"

#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------- huge pages

// Decode streams ~150 MB of weights per token, and on this VM (nested paging) the TLB
// misses of 4 KiB pages cost a large share of the memory rate (docs/benchmarks.md): the
// weights, the 8-bit copies and the cache go on huge pages (engine/base/huge.h).

// The cache's K and V: not written yet, so huge from their first write.
static void advise_huge_cache(const kv_cache *kv) {
    mo_advise_huge(kv->k, kvcache_bytes(kv) / 2, 0);
    mo_advise_huge(kv->v, kvcache_bytes(kv) / 2, 0);
}

// ---------------------------------------------------------------------------- products

// The fp32 matrix of W[rows, cols] for a GEMM: W itself, or an 8-bit one dequantized
// into s->deq.
static const float *as_f32(infer_ctx *s, gemv_w W, size_t rows, int cols) {
    if (W.f) return W.f;
    q8_dequantize(s->deq, W.q, W.scale, rows, cols);
    return s->deq;
}

// y[rows, out] (+)= x[rows, in] W[out, in]^T. A few rows are matrix-vector products that
// stream W once per row (no packing); more rows go through sgemm.
static void linear(infer_ctx *s, float *y, const float *x, gemv_w W, int rows, int out, int in, int acc) {
    // bf16 compute: every row count, so that all of a prefill is the same bf16 model.
    if (s->bf16 && pf_bf16_linear(s->bf16, y, x, W, rows, out, in, acc)) return;
    // An 8-bit matrix larger than the dequantization scratch (the output projection, which
    // it leaves out to save vocab x d_model floats) goes through the 8-bit products.
    if (rows <= (W.f ? 1 : 4) || (!W.f && (size_t)out * in > s->deq_numel)) {
        for (int r = 0; r < rows; r++) {
            gemv_task t = {.y = y + (size_t)r * out, .rows = out, .acc = acc, .n_terms = 1,
                           .t = {{W, x + (size_t)r * in, in, 1.0f}}};
            gemv_run(&t, 1);
        }
        return;
    }
    matmul_nt(y, x, as_f32(s, W, (size_t)out, in), rows, out, in, acc);
}

// Per-expert products over the slots grouped by expert (offs[E+1]); W is [E, out, in].
// Few slots (batched decode): one product per chosen expert; many (prefill): the
// grouped kernel of training, which spreads the experts over the threads.
static void expert_linear(infer_ctx *s, float *y, const float *x, gemv_w W, const int *offs, int E, int out,
                          int in) {
    if (offs[E] > 4 * E) {
        if (s->bf16 && pf_bf16_grouped(s->bf16, y, x, W, offs, E, out, in)) return;
        matmul_grouped_nt(y, x, as_f32(s, W, (size_t)E * out, in), offs, E, out, in, 0);
        return;
    }
    for (int e = 0; e < E; e++) {
        int n = offs[e + 1] - offs[e];
        if (n > 0)
            linear(s, y + (size_t)offs[e] * out, x + (size_t)offs[e] * in, gemv_w_rows(W, (size_t)e * out, in), n,
                   out, in, 0);
    }
}

// ---------------------------------------------------------------------------- layers

int infer_route(infer_ctx *s, int l, int rows, const float *a, float *scratch, int *idx, float *val, int record) {
    const mo_config *c = &s->c;
    const mo_layer_ids *L = &s->pt->layer[l];
    const int d = c->d_model, E = c->n_experts;
    const int k = c->top_k < s->n_allowed ? c->top_k : s->n_allowed;
    float *probs = scratch, *key = scratch + (size_t)rows * E, *topv = key + (size_t)rows * E;

    // The training router's scores, selection and gates (engine/router.h), without noise
    // and without capacity (a property of a training batch, not of a token).
    linear(s, probs, a, (gemv_w){.f = P(s, L->router)}, rows, E, d, 0);
    router_scores(c, probs, probs, rows);
    if (s->n_allowed < E && c->router_score == MO_SCORE_SOFTMAX) {
        // Renormalize over the allowed experts (router_choose never picks the others).
        for (int r = 0; r < rows; r++) {
            float *p = probs + (size_t)r * E, sum = 0;
            for (int e = 0; e < E; e++) sum += s->allowed[e] ? p[e] : 0.0f;
            for (int e = 0; e < E; e++) p[e] = !s->allowed[e] ? 0.0f : sum > 0 ? p[e] / sum : 1.0f / s->n_allowed;
        }
    }
    router_choose(c, P(s, L->router_bias), s->n_allowed < E ? s->allowed : NULL, probs, key, rows, k, idx, topv, val);
    int live = k;  // top-p leaves the last slots of a row unused (-1)
    if (rows == 1)
        while (live > 1 && idx[live - 1] < 0) live--;
    if (record)
        for (int r = 0; r < rows; r++) {
            size_t at = ((size_t)r * c->n_layers + l) * c->top_k;
            memcpy(s->route_idx + at, idx + (size_t)r * k, (size_t)k * sizeof(int));
            memcpy(s->route_gate + at, val + (size_t)r * k, (size_t)k * sizeof(float));
        }
    return live;
}

// Routed experts (and shared ones) of MoE layer l over rows: x += y, from s->a.
static void moe_rows(infer_ctx *s, int l, int rows, int record) {
    const mo_config *c = &s->c;
    const mo_layer_ids *L = &s->pt->layer[l];
    const int d = c->d_model, E = c->n_experts, dff = c->d_ff;
    const int k = infer_route(s, l, rows, s->a, s->probs, s->tk_idx, s->tk_val, record);

    // Counting sort of the rows*k slots by expert (stable: row order within an expert).
    memset(s->fill, 0, (size_t)E * sizeof *s->fill);
    for (int i = 0; i < rows * k; i++)
        if (s->tk_idx[i] >= 0) s->fill[s->tk_idx[i]]++;  // -1: a slot top-p left unused
    s->offs[0] = 0;
    for (int e = 0; e < E; e++) s->offs[e + 1] = s->offs[e] + s->fill[e], s->fill[e] = s->offs[e];
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < k; j++) {
            if (s->tk_idx[r * k + j] < 0) continue;
            int at = s->fill[s->tk_idx[r * k + j]]++;
            s->slot_row[at] = r;
            s->slot_gate[at] = s->tk_val[r * k + j];
        }
    const int n = s->offs[E];  // live slots
    for (int i = 0; i < n; i++)
        memcpy(s->xs + (size_t)i * d, s->a + (size_t)s->slot_row[i] * d, (size_t)d * sizeof(float));

    expert_linear(s, s->h1, s->xs, Wt(s, L->w1), s->offs, E, dff, d);  // [n, dff] gate
    expert_linear(s, s->h3, s->xs, Wt(s, L->w3), s->offs, E, dff, d);  // [n, dff] up
    swiglu_forward(s->h1, s->h1, s->h3, (size_t)n * dff);
    expert_linear(s, s->ys, s->h1, Wt(s, L->w2), s->offs, E, d, dff);  // [n, d]
    for (int i = 0; i < n; i++) {
        float *xr = s->x + (size_t)s->slot_row[i] * d;
        const float *yr = s->ys + (size_t)i * d, g = s->slot_gate[i];
        for (int j = 0; j < d; j++) xr[j] += g * yr[j];
    }

    if (c->n_shared_experts > 0) {
        int hs = c->n_shared_experts * c->d_ff_shared;
        linear(s, s->h1, s->a, Wt(s, L->shared_w1), rows, hs, d, 0);
        linear(s, s->h3, s->a, Wt(s, L->shared_w3), rows, hs, d, 0);
        swiglu_forward(s->h1, s->h1, s->h3, (size_t)rows * hs);
        linear(s, s->x, s->h1, Wt(s, L->shared_w2), rows, d, hs, 1);
    }
}

// The FFN of dense layer l over rows: x += expert(a).
static void dense_rows(infer_ctx *s, int l, int rows) {
    const mo_layer_ids *L = &s->pt->layer[l];
    const int d = s->c.d_model, h = s->c.d_ff_dense;
    linear(s, s->h1, s->a, Wt(s, L->ffn_w1), rows, h, d, 0);
    linear(s, s->h3, s->a, Wt(s, L->ffn_w3), rows, h, d, 0);
    swiglu_forward(s->h1, s->h1, s->h3, (size_t)rows * h);
    linear(s, s->x, s->h1, Wt(s, L->ffn_w2), rows, d, h, 1);
}

// Attention of a decode block: row i is sequence seqs[i] at position pos[i]. Appends K
// and V to the cache, then per head: scores = K q / sqrt(hd), softmax, o = V^T p.
static void attend_cached(infer_ctx *s, int l, int rows, const int *seqs, const float *q_rows, const float *k_rows,
                          const float *v_rows) {
    const int nh = s->c.n_heads, nkv = s->c.n_kv_heads, hd = s->c.head_dim, S = s->max_seq;
    const int group = nh / nkv;
    for (int i = 0; i < rows; i++)
        for (int g = 0; g < nkv; g++) {
            kvcache_put(&s->kv, KV_K, l, seqs[i], g, s->pos[i], k_rows + ((size_t)i * nkv + g) * hd);
            kvcache_put(&s->kv, KV_V, l, seqs[i], g, s->pos[i], v_rows + ((size_t)i * nkv + g) * hd);
        }
    // Threads only pay off once the heads have some keys to read.
    size_t work = 0;
    for (int i = 0; i < rows; i++) work += (size_t)(s->pos[i] + 1) * nh * hd;
#pragma omp parallel for schedule(static) if (work >= ((size_t)1 << 15))
    for (int ih = 0; ih < rows * nh; ih++) {
        int i = ih / nh, h = ih % nh;
        kvcache_attend(&s->kv, l, seqs[i], h / group, s->pos[i] + 1, q_rows + ((size_t)i * nh + h) * hd,
                       s->o + ((size_t)i * nh + h) * hd, s->scores + (size_t)ih * S);
    }
}

// Attention of a prefill block: g sequences (first ..) of T rows each, at positions
// 0..T-1. Stores K and V in the cache, then the causal attention kernel.
static void attend_prefill(infer_ctx *s, int l, int first, int g, int T) {
    const int nh = s->c.n_heads, nkv = s->c.n_kv_heads, hd = s->c.head_dim;
    for (int b = 0; b < g; b++)
        for (int t = 0; t < T; t++)
            for (int h = 0; h < nkv; h++) {
                const size_t src = (((size_t)b * T + t) * nkv + h) * hd;
                kvcache_put(&s->kv, KV_K, l, first + b, h, t, s->k + src);
                kvcache_put(&s->kv, KV_V, l, first + b, h, t, s->v + src);
            }
    // The prompt's own attention uses K and V as computed (fp32); later steps read the cache.
    attention_forward(&(mo_attention){g, T, nh, nkv, hd, s->q, s->k, s->v, s->o, s->lse});
}

// Every layer over s->x[rows, d] (embedded, positions in s->pos). prefill_T > 0: the
// rows are prefill_g sequences of prefill_T tokens starting at sequence `first`;
// otherwise a decode block of sequences seqs[rows].
static void run_layers(infer_ctx *s, int rows, int first, int prefill_g, int prefill_T, const int *seqs) {
    const mo_config *c = &s->c;
    const int d = c->d_model, nh = c->n_heads, nkv = c->n_kv_heads, hd = c->head_dim;
    const float eps = (float)c->norm_eps;
    for (int l = 0; l < c->n_layers; l++) {
        const mo_layer_ids *L = &s->pt->layer[l];
        rmsnorm_forward(s->a, s->rstd, s->x, P(s, L->attn_norm), rows, d, eps);
        float *q = s->q, *k = s->k, *v = s->v;
        linear(s, q, s->a, Wt(s, L->wq), rows, nh * hd, d, 0);
        linear(s, k, s->a, Wt(s, L->wk), rows, nkv * hd, d, 0);
        linear(s, v, s->a, Wt(s, L->wv), rows, nkv * hd, d, 0);
        rope_forward(q, s->pos, s->rope_cos, s->rope_sin, rows, nh, hd);
        rope_forward(k, s->pos, s->rope_cos, s->rope_sin, rows, nkv, hd);
        if (prefill_T > 0)
            attend_prefill(s, l, first, prefill_g, prefill_T);
        else
            attend_cached(s, l, rows, seqs, q, k, v);
        linear(s, s->x, s->o, Wt(s, L->wo), rows, d, nh * hd, 1);
        rmsnorm_forward(s->a, s->rstd, s->x, P(s, L->ffn_norm), rows, d, eps);
        if (L->is_moe)
            moe_rows(s, l, rows, prefill_T == 0);
        else
            dense_rows(s, l, rows);
    }
}

// logits[n, V] from the residual rows src[n, d] (final norm, output projection).
static void head(infer_ctx *s, const float *src, int n, float *logits) {
    const mo_config *c = &s->c;
    rmsnorm_forward(s->lastn, s->rstd, src, P(s, s->pt->norm), n, c->d_model, (float)c->norm_eps);
    linear(s, logits, s->lastn, Wt(s, s->pt->output), n, c->vocab_size, c->d_model, 0);
}

static int check_tokens(const infer_ctx *s, const int *tokens, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= s->c.vocab_size)
            return mo_errorf("token id %d at index %zu is outside the model's vocabulary [0, %d)", tokens[i], i,
                             s->c.vocab_size);
    return 0;
}

// ---------------------------------------------------------------------------- API

int infer_prefill(infer_ctx *s, int first, int B, int T, const int *tokens, float *logits) {
    if (T < 1) return mo_errorf("prefill: a prompt needs at least one token");
    if (T > s->max_seq)
        return mo_errorf("prompt of %d tokens is longer than the context of %d positions (max_seq_len); shorten it",
                         T, s->max_seq);
    if (first < 0 || B < 1 || first + B > s->max_batch)
        return mo_errorf("prefill: sequences %d..%d are outside the batch of %d", first, first + B - 1, s->max_batch);
    if (check_tokens(s, tokens, (size_t)B * T)) return -1;
    const int d = s->c.d_model, V = s->c.vocab_size;
    s->route_rows = 0;
    // Groups of whole prompts that fit max_seq rows (the size of the attention buffer).
    int per = s->max_seq / T;
    for (int b0 = 0; b0 < B; b0 += per) {
        int g = B - b0 < per ? B - b0 : per, rows = g * T;
        for (int r = 0; r < rows; r++) s->pos[r] = r % T;
        embedding_forward(s->x, tokens + (size_t)b0 * T, P(s, s->pt->tok_embeddings), rows, d);
        run_layers(s, rows, first + b0, g, T, NULL);
        for (int b = 0; b < g; b++) {
            memcpy(s->last + (size_t)b * d, s->x + ((size_t)b * T + T - 1) * d, (size_t)d * sizeof(float));
            s->kv.len[first + b0 + b] = T;
        }
        head(s, s->last, g, logits + (size_t)b0 * V);
    }
    return 0;
}

int infer_decode(infer_ctx *s, int B, const int *seqs, const int *tokens, float *logits) {
    if (B < 1 || B > s->max_batch) return mo_errorf("decode: %d sequences, the batch holds 1..%d", B, s->max_batch);
    int *sq = s->seq_of_row;
    for (int i = 0; i < B; i++) {
        int b = seqs ? seqs[i] : i;
        if (b < 0 || b >= s->max_batch)
            return mo_errorf("decode: sequence %d is outside the batch of %d", b, s->max_batch);
        for (int j = 0; j < i; j++)
            if (sq[j] == b) return mo_errorf("decode: sequence %d given twice in one step", b);
        if (s->kv.len[b] >= s->max_seq)
            return mo_errorf("sequence %d is full: %d positions (max_seq_len); start a new one", b, s->max_seq);
        sq[i] = b;
        s->pos[i] = s->kv.len[b];
    }
    if (check_tokens(s, tokens, (size_t)B)) return -1;
    if (B == 1) {
        decode_one(s, sq[0], tokens[0], logits);
    } else {
        embedding_forward(s->x, tokens, P(s, s->pt->tok_embeddings), B, s->c.d_model);
        run_layers(s, B, 0, 0, 0, sq);
        head(s, s->x, B, logits);
    }
    for (int i = 0; i < B; i++) s->kv.len[sq[i]]++;
    s->route_rows = B;
    return 0;
}

int infer_routing(const infer_ctx *s, int row, int layer, const int **experts, const float **gates) {
    if (row < 0 || row >= s->route_rows || layer < 0 || layer >= s->c.n_layers || !s->c.moe_layers[layer]) return 0;
    size_t at = ((size_t)row * s->c.n_layers + layer) * s->c.top_k;
    if (experts) *experts = s->route_idx + at;
    if (gates) *gates = s->route_gate + at;
    return s->route_k;
}

int infer_restrict_experts(infer_ctx *s, const int *experts, int n) {
    const int E = s->c.n_experts;
    if (config_n_moe_layers(&s->c) == 0) return mo_errorf("--experts-only: this model has no MoE layer to restrict");
    for (int i = 0; i < n; i++)
        if (experts[i] < 0 || experts[i] >= E)
            return mo_errorf("--experts-only: expert %d does not exist; this model's experts are 0..%d", experts[i],
                             E - 1);
    memset(s->allowed, n > 0 ? 0 : 1, (size_t)E);
    for (int i = 0; i < n; i++) s->allowed[experts[i]] = 1;
    s->n_allowed = 0;
    for (int e = 0; e < E; e++) s->n_allowed += s->allowed[e];
    s->route_k = s->c.top_k < s->n_allowed ? s->c.top_k : s->n_allowed;
    return 0;
}

// Tensors that get 8-bit copies: every matrix of a product, not the embedding table
// (a lookup), the norms or the routers (few weights, and the routing decision is the
// most sensitive to rounding).
static int quantized_kind(mo_param_kind k) {
    return k != PK_TOK_EMBEDDINGS && k != PK_NORM && k != PK_ATTN_NORM && k != PK_FFN_NORM && k != PK_ROUTER &&
           k != PK_ROUTER_BIAS;
}

// Columns of tensor t as a stack of [rows, cols] matrices: its last dimension.
static int tensor_cols(const mo_tensor *t) { return (int)t->shape[t->rank - 1]; }

static int set_weights(infer_ctx *s, infer_weights w) {
    const mo_param_table *pt = s->pt;
    free(s->q8), free(s->q8_scale), free(s->deq);
    s->q8 = NULL, s->q8_scale = NULL, s->deq = NULL, s->deq_numel = 0;
    for (int i = 0; i < pt->n; i++) s->w[i] = (gemv_w){.f = s->params + pt->t[i].offset};
    s->weights = INFER_WEIGHTS_F32;
    if (w == INFER_WEIGHTS_F32) return 0;
    // Table order, so wq, wk, wv (same width) stay adjacent rows for the fused product.
    size_t nq = 0, ns = 0, most = 0;
    for (int i = 0; i < pt->n; i++)
        if (quantized_kind(pt->t[i].kind)) {
            nq += pt->t[i].numel;
            ns += pt->t[i].numel / tensor_cols(&pt->t[i]) * q8_blocks(tensor_cols(&pt->t[i]));
            if (pt->t[i].kind != PK_OUTPUT && pt->t[i].numel > most) most = pt->t[i].numel;
        }
    s->q8 = mo_alloc_huge(nq);
    s->q8_bytes = nq;
    s->q8_scale = malloc((ns ? ns : 1) * sizeof(float));
    s->deq = malloc((most ? most : 1) * sizeof(float));
    s->deq_numel = most;
    if (!s->q8 || !s->q8_scale || !s->deq) {
        free(s->q8), free(s->q8_scale), free(s->deq);
        s->q8 = NULL, s->q8_scale = NULL, s->deq = NULL;
        return mo_errorf("--weights int8: out of memory for %.0f MB of 8-bit weights", (nq + 4.0 * ns) / 1e6);
    }
    size_t at = 0, at_s = 0;
    for (int i = 0; i < pt->n; i++) {
        const mo_tensor *t = &pt->t[i];
        if (!quantized_kind(t->kind)) continue;
        const int cols = tensor_cols(t);
        const size_t rows = t->numel / cols;
        q8_quantize(s->q8 + at, s->q8_scale + at_s, s->params + t->offset, rows, cols);
        s->w[i] = (gemv_w){.q = s->q8 + at, .scale = s->q8_scale + at_s};
        at += t->numel, at_s += rows * q8_blocks(cols);
    }
    s->weights = INFER_WEIGHTS_INT8;
    return 0;
}

// The bf16 copies follow the weights: made again from the new ones (also when
// set_weights failed and fell back to the fp32 views).
int infer_set_weights(infer_ctx *s, infer_weights w) {
    int rc = set_weights(s, w);
    if (s->bf16 && infer_set_precision(s, MO_PRECISION_BF16)) rc = -1;
    return rc;
}

infer_weights infer_get_weights(const infer_ctx *s) { return s->weights; }

// The KV cache in fp32 or bf16 elements: a new, empty one when the storage changes.
static int set_cache_storage(infer_ctx *s, int bf16) {
    if (s->kv.bf16 == bf16) return 0;
    kv_cache kv;
    if (kvcache_init(&kv, &s->c, s->max_batch, s->max_seq, bf16)) return -1;
    kvcache_free(&s->kv);
    s->kv = kv;
    advise_huge_cache(&s->kv);
    return 0;
}

int infer_set_precision(infer_ctx *s, mo_precision p) {
    if (p == MO_PRECISION_FP32) {
        if (set_cache_storage(s, 0)) return -1;  // nothing changed
        pf_bf16_free(s->bf16);
        s->bf16 = NULL;
        return 0;
    }
    // The old copies go first: after infer_set_weights they stand for the old weights.
    pf_bf16_free(s->bf16);
    s->bf16 = NULL;
    pf_bf16 *b = pf_bf16_new(s->pt, s->w, s->max_rows);
    if (!b) return -1;  // fp32 products; the cache as it was
    if (set_cache_storage(s, 1)) {
        pf_bf16_free(b);
        return -1;
    }
    s->bf16 = b;
    return 0;
}

mo_precision infer_get_precision(const infer_ctx *s) { return s->bf16 ? MO_PRECISION_BF16 : MO_PRECISION_FP32; }

// Bytes of `rows` rows of tensor id at its current precision.
static double rows_bytes(const infer_ctx *s, int id, double rows) {
    const mo_tensor *t = &s->pt->t[id];
    const int cols = tensor_cols(t);
    return s->w[id].f ? 4.0 * rows * cols : rows * (cols + 4.0 * q8_blocks(cols));
}

double infer_decode_kv_bytes(const infer_ctx *s, double positions) {
    const kv_cache *kv = &s->kv;
    return 2.0 * (kv->bf16 ? sizeof(mo_bf16) : sizeof(float)) * kv->n_layers * kv->n_kv_heads * kv->head_dim *
           positions;
}

const void *infer_weight_buffer(const infer_ctx *s, size_t *bytes) {
    if (s->weights == INFER_WEIGHTS_INT8) {
        *bytes = s->q8_bytes;
        return s->q8;
    }
    *bytes = s->pt->numel * sizeof(float);
    return s->params;
}

double infer_decode_weight_bytes(const infer_ctx *s) {
    const mo_config *c = &s->c;
    const mo_param_table *pt = s->pt;
    const int d = c->d_model, k = s->route_k;
    double b = 4.0 * d * (1 + 2 * c->n_layers + 1);  // embedding row, norms
    for (int l = 0; l < c->n_layers; l++) {
        const mo_layer_ids *L = &pt->layer[l];
        const int ids[] = {L->wq, L->wk, L->wv, L->wo, L->router, L->shared_w1, L->shared_w3, L->shared_w2,
                           L->ffn_w1, L->ffn_w3, L->ffn_w2};
        for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
            if (ids[i] >= 0) b += rows_bytes(s, ids[i], (double)pt->t[ids[i]].numel / tensor_cols(&pt->t[ids[i]]));
        if (L->is_moe) {  // k of the E experts
            b += k * rows_bytes(s, L->w1, c->d_ff) + k * rows_bytes(s, L->w3, c->d_ff);
            b += k * rows_bytes(s, L->w2, d);
        }
    }
    return b + rows_bytes(s, pt->output, c->vocab_size);
}

int infer_max_seq(const infer_ctx *s) { return s->max_seq; }
int infer_max_batch(const infer_ctx *s) { return s->max_batch; }
int infer_seq_len(const infer_ctx *s, int b) { return b >= 0 && b < s->max_batch ? s->kv.len[b] : 0; }
const kv_cache *infer_kv(const infer_ctx *s) { return &s->kv; }

// ---------------------------------------------------------------------------- lifetime

// n elements of `size` bytes; sets *fail when out of memory.
static void *alloc_n(size_t n, size_t size, int *fail) {
    void *p = malloc((n ? n : 1) * size);
    if (!p) *fail = 1;
    return p;
}
#define ALLOC(ptr, n) ((ptr) = alloc_n((n), sizeof *(ptr), &fail))

infer_ctx *infer_new(const mo_param_table *pt, const float *params, int max_batch, int max_seq) {
    const mo_config *c = &pt->cfg;
    if (max_seq == 0) max_seq = c->max_seq_len;
    if (max_batch < 1 || max_seq < 1 || max_seq > c->max_seq_len) {
        mo_errorf("inference: batch %d must be >= 1 and max_seq %d in 1..%d (the model's max_seq_len)", max_batch,
                  max_seq, c->max_seq_len);
        return NULL;
    }
    infer_ctx *s = calloc(1, sizeof *s);
    if (!s) {
        mo_errorf("inference: out of memory");
        return NULL;
    }
    s->pt = pt, s->params = params, s->c = *c;
    s->max_batch = max_batch, s->max_seq = max_seq;
    s->max_rows = max_seq > max_batch ? max_seq : max_batch;
    if (kvcache_init(&s->kv, c, max_batch, max_seq, 0)) {
        free(s);
        return NULL;
    }
    const size_t R = (size_t)s->max_rows, d = c->d_model, E = c->n_experts, k = c->top_k;
    const size_t qd = (size_t)c->n_heads * c->head_dim, kd = (size_t)c->n_kv_heads * c->head_dim;
    // A decode row keeps the hidden rows of its k experts and the shared ones side by side.
    size_t hidden = k * c->d_ff + (size_t)c->n_shared_experts * c->d_ff_shared;
    if ((size_t)c->d_ff_dense > hidden) hidden = c->d_ff_dense;
    s->hidden = (int)hidden;
    int fail = 0;
    ALLOC(s->rope_cos, (size_t)max_seq * c->head_dim / 2);
    ALLOC(s->rope_sin, (size_t)max_seq * c->head_dim / 2);
    ALLOC(s->pos, R);
    ALLOC(s->seq_of_row, R);
    ALLOC(s->x, R * d);
    ALLOC(s->a, R * d);
    ALLOC(s->rstd, R);
    ALLOC(s->q, R * qd);
    ALLOC(s->o, R * qd);
    ALLOC(s->k, R * kd);
    ALLOC(s->v, R * kd);
    ALLOC(s->lse, R * c->n_heads);
    ALLOC(s->scores, (size_t)max_batch * c->n_heads * max_seq);
    ALLOC(s->probs, R * (2 * E + k));  // scores, selection keys, chosen scores (infer_route)
    ALLOC(s->tk_idx, R * k);
    ALLOC(s->tk_val, R * k);
    ALLOC(s->offs, E + 1);
    ALLOC(s->fill, E);
    ALLOC(s->slot_row, R * k);
    ALLOC(s->slot_gate, R * k);
    ALLOC(s->xs, R * k * d);
    ALLOC(s->ys, R * k * d);
    ALLOC(s->h1, R * hidden);
    ALLOC(s->h3, R * hidden);
    ALLOC(s->last, (size_t)max_batch * d);
    ALLOC(s->lastn, (size_t)max_batch * d);
    s->allowed = malloc(E ? E : 1);
    ALLOC(s->route_idx, R * c->n_layers * k);
    ALLOC(s->route_gate, R * c->n_layers * k);
    ALLOC(s->w, (size_t)pt->n);
    // Per-thread buffers for every thread the machine or the OpenMP setting may give.
    s->max_threads = omp_get_max_threads() > omp_get_num_procs() ? omp_get_max_threads() : omp_get_num_procs();
    s->tstride = (int)(pad16(d) + pad16(2 * E + k) + pad16(k)), s->kstride = (int)pad16(k);
    s->tbuf = aligned_alloc(64, sizeof(float) * (size_t)s->max_threads * s->tstride);  // a cache line per thread
    s->tidx = aligned_alloc(64, sizeof(int) * (size_t)s->max_threads * s->kstride);
    fail |= !s->tbuf || !s->tidx;
    if (fail || !s->allowed) {
        infer_free(s);
        mo_errorf("inference: out of memory for the scratch buffers (batch %d, max_seq %d); use a shorter max_seq",
                  max_batch, max_seq);
        return NULL;
    }
    rope_tables(s->rope_cos, s->rope_sin, max_seq, c->head_dim, c->rope_theta);
    for (int i = 0; i < pt->n; i++) s->w[i] = (gemv_w){.f = params + pt->t[i].offset};
    mo_advise_huge(params, pt->numel * sizeof(float), 1);
    advise_huge_cache(&s->kv);
    memset(s->allowed, 1, E);
    s->n_allowed = (int)E;
    s->route_k = (int)k;
    return s;
}

void infer_free(infer_ctx *s) {
    if (!s) return;
    kvcache_free(&s->kv);
    void *bufs[] = {s->rope_cos, s->rope_sin, s->pos,      s->seq_of_row,      s->x,        s->a,        s->rstd,
                    s->q,        s->o,        s->k,        s->v,        s->lse,      s->scores,   s->probs,
                    s->tk_idx,   s->tk_val,   s->offs,     s->fill,     s->slot_row, s->slot_gate, s->xs,
                    s->ys,       s->h1,       s->h3,       s->last,     s->lastn,    s->allowed,  s->route_idx,
                    s->route_gate, s->w, s->tbuf, s->tidx, s->q8, s->q8_scale, s->deq};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    pf_bf16_free(s->bf16);
    free(s);
}
