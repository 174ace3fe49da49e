// decode_one.c: the decode step of ONE sequence, one token: the whole token in one
// parallel region, matrix-vector products (kernels/gemv.h) whose rows each thread takes
// one contiguous share of, meeting at a spin barrier between dependent steps
// (docs/threading.md). Only the k experts the token chose are read.
#include "infer/infer_ctx.h"

#include "kernels/rmsnorm.h"
#include "kernels/rope.h"
#include "kernels/swiglu.h"

#include <omp.h>
#include <string.h>

// Thread t's share [*lo, *hi) of a step's n rows: one contiguous range, cut at the
// multiples of `align` nearest to n t / nt and n (t + 1) / nt. Every row of a step reads
// the same bytes (q, k, v by heads of d columns; wo, down and the output by rows of their
// output; gate and up by hidden units), so equal rows are equal work and the threads
// finish a step together on a quiet machine. A contiguous range is one memory stream a
// matrix per thread: decode's products ran 1.09-1.17x (fp32) and 1.22-1.30x (8-bit)
// faster so than in the guided chunks taken as the threads went, which restarted the
// streams at every chunk (docs/benchmarks.md, the decode probe's `halves`). Which thread
// computes a row changes nothing in it (kernels/gemv.h).
static int share_cut(int n, int align, int t, int nt) {
    if (t >= nt) return n;
    const int c = (int)(((long)n * t + (long)nt * align / 2) / ((long)nt * align)) * align;
    return c < n ? c : n;
}

void decode_share(int n, int align, int t, int nt, int *lo, int *hi) {
    *lo = share_cut(n, align, t, nt);
    *hi = share_cut(n, align, t + 1, nt);
}

// Where rows r0.. of W (cols columns) start, and the bytes of rows [r0, r1): the rows a
// thread reads next, which it prefetches while it finishes a product (gemv_next) or
// waits at a meeting (spin_barrier_wait_prefetch). 8-bit rows: their int8 values (the
// scales are an eighth of the bytes).
static const void *rows_at(gemv_w w, int r0, int cols) {
    const gemv_w v = gemv_w_rows(w, (size_t)r0, cols);
    return v.f ? (const void *)v.f : (const void *)v.q;
}

static size_t rows_bytes(gemv_w w, int r0, int r1, int cols) {
    return r1 > r0 ? (size_t)(r1 - r0) * (size_t)cols * (w.f ? sizeof(float) : 1) : 0;
}

// How many FFNs a token passes through in layer l when its router chose idx[k] with
// gates[k]: its k routed experts, then the shared or dense FFN if the layer has one.
int token_ffn_count(const infer_ctx *s, int l, int k) {
    const mo_layer_ids *L = &s->pt->layer[l];
    return (L->is_moe ? k : 0) + ((L->is_moe ? L->shared_w1 : L->ffn_w1) >= 0);
}

// FFN f (< token_ffn_count) of that token in layer l.
token_ffn token_ffn_at(const infer_ctx *s, int l, const int *idx, const float *gates, int k, int f) {
    const mo_config *c = &s->c;
    const mo_layer_ids *L = &s->pt->layer[l];
    const int d = c->d_model, dff = c->d_ff;
    if (L->is_moe && f < k) {
        const size_t e = (size_t)idx[f];
        return (token_ffn){gemv_w_rows(Wt(s, L->w1), e * dff, d), gemv_w_rows(Wt(s, L->w3), e * dff, d),
                           gemv_w_rows(Wt(s, L->w2), e * d, dff), dff, gates[f]};
    }
    if (L->is_moe)
        return (token_ffn){Wt(s, L->shared_w1), Wt(s, L->shared_w3), Wt(s, L->shared_w2),
                           c->n_shared_experts * c->d_ff_shared, 1.0f};
    return (token_ffn){Wt(s, L->ffn_w1), Wt(s, L->ffn_w3), Wt(s, L->ffn_w2), c->d_ff_dense, 1.0f};
}

// Gate and up of hidden units [lo, hi) of the FFNs a token passes through, then SwiGLU
// on them. The units are counted with each FFN's width rounded up to 16 (`slots`), so
// that a chunk cut at a multiple of 16 starts at a multiple of 16 inside its FFN: SwiGLU
// then splits every FFN into the same 16-lane groups and short tail whatever the chunks,
// and a unit's value does not depend on the thread count. In h1, h3 the FFNs' units lie
// side by side at their real widths.
static int slots(int width) { return (width + 15) / 16 * 16; }

// `next`: the rows the thread reads after these (gemv_next).
static void ffn_gate_up(infer_ctx *s, int l, const int *idx, const float *gates, int k, int nf, const float *a,
                        int lo, int hi, const void *next) {
    const int d = s->c.d_model;
    for (int f = 0, base = 0, slot = 0; f < nf && slot < hi; f++) {
        const token_ffn F = token_ffn_at(s, l, idx, gates, k, f);
        const int r0 = lo > slot ? lo - slot : 0, r1 = hi - slot < F.width ? hi - slot : F.width;
        slot += slots(F.width);
        if (r1 > r0) {
            float *h1 = s->h1 + base + r0, *h3 = s->h3 + base + r0;
            const void *after = f + 1 < nf && slot < hi ? rows_at(token_ffn_at(s, l, idx, gates, k, f + 1).w1, 0, d) : next;
            gemv_next(h1, gemv_w_rows(F.w1, (size_t)r0, d), a, r1 - r0, d, 1.0f, 0, rows_at(F.w3, r0, d));
            gemv_next(h3, gemv_w_rows(F.w3, (size_t)r0, d), a, r1 - r0, d, 1.0f, 0, after);
            swiglu_forward(h1, h1, h3, (size_t)(r1 - r0));
        }
        base += F.width;
    }
}

// q, k and v of heads [lo, hi) of the nh + 2 nkv heads of layer l (q's, then k's, then
// v's) from the normed input a: rotated where computed; k and v into their cache slots.
// `next`: the rows the thread reads after these (gemv_next).
static void qkv_heads(infer_ctx *s, const mo_layer_ids *L, int l, int seq, int pos, const float *a, int lo, int hi,
                      const void *next) {
    const mo_config *c = &s->c;
    const int d = c->d_model, nh = c->n_heads, nkv = c->n_kv_heads, hd = c->head_dim;
    const int q0 = lo, q1 = hi < nh ? hi : nh;
    const int k0 = (lo > nh ? lo : nh) - nh, k1 = (hi < nh + nkv ? hi : nh + nkv) - nh;
    const int v0 = (lo > nh + nkv ? lo : nh + nkv) - nh - nkv, v1 = hi - nh - nkv;
    if (q1 > q0) {
        const void *after = k1 > k0 ? rows_at(Wt(s, L->wk), k0 * hd, d) : v1 > v0 ? rows_at(Wt(s, L->wv), v0 * hd, d) : next;
        gemv_next(s->q + (size_t)q0 * hd, gemv_w_rows(Wt(s, L->wq), (size_t)q0 * hd, d), a, (q1 - q0) * hd, d, 1.0f, 0,
                  after);
        rope_forward(s->q + (size_t)q0 * hd, &pos, s->rope_cos, s->rope_sin, 1, q1 - q0, hd);
    }
    if (k1 > k0) {
        gemv_next(s->k + (size_t)k0 * hd, gemv_w_rows(Wt(s, L->wk), (size_t)k0 * hd, d), a, (k1 - k0) * hd, d, 1.0f, 0,
                  v1 > v0 ? rows_at(Wt(s, L->wv), v0 * hd, d) : next);
        rope_forward(s->k + (size_t)k0 * hd, &pos, s->rope_cos, s->rope_sin, 1, k1 - k0, hd);
        for (int g = k0; g < k1; g++) kvcache_put(&s->kv, KV_K, l, seq, g, pos, s->k + (size_t)g * hd);
    }
    if (v1 > v0) {
        gemv_next(s->v + (size_t)v0 * hd, gemv_w_rows(Wt(s, L->wv), (size_t)v0 * hd, d), a, (v1 - v0) * hd, d, 1.0f, 0,
                  next);
        for (int g = v0; g < v1; g++) kvcache_put(&s->kv, KV_V, l, seq, g, pos, s->v + (size_t)g * hd);
    }
}

// Attention of query heads [lo, hi) of layer l over the cache's pos + 1 positions.
static void attend_heads(infer_ctx *s, int l, int seq, int pos, int lo, int hi) {
    const int hd = s->c.head_dim, group = s->c.n_heads / s->c.n_kv_heads;
    for (int h = lo; h < hi; h++)
        kvcache_attend(&s->kv, l, seq, h / group, pos + 1, s->q + (size_t)h * hd, s->o + (size_t)h * hd,
                       s->scores + (size_t)h * s->max_seq);
}

// Thread t computes its part of one token's step: sequence `seq` at position `pos`,
// s->x holding the embedded token; leaves logits[V]. Every step gives each thread one
// contiguous share of its rows (or heads) (decode_share), and each output row is computed
// by one thread in the same way whichever it is, so the logits do not depend on the
// thread count. Between dependent steps the threads meet at s->bar; the small serial
// steps (norms, router, top-k) run on every thread into its own buffers, which saves a
// meeting. When the kv heads split evenly over the threads, a thread computes the q, k
// and v of its own kv heads and then their attention, which needs nothing from the other
// threads: one meeting fewer a layer (4, else 5).
static void decode_one_thread(infer_ctx *s, int seq, int pos, float *logits, int t, int nt) {
    const mo_config *c = &s->c;
    const int d = c->d_model, nh = c->n_heads, nkv = c->n_kv_heads, hd = c->head_dim;
    const int group = nh / nkv, E = c->n_experts, qd = nh * hd;
    const float eps = (float)c->norm_eps;
    const int k_max = c->top_k;
    float *a = s->tbuf + (size_t)t * s->tstride, *probs = a + pad16(d), *gates = probs + pad16(2 * E + k_max);
    int *idx = s->tidx + (size_t)t * s->kstride, phase = 0, lo, hi;
    float rstd;
    for (int l = 0; l < c->n_layers; l++) {
        const mo_layer_ids *L = &s->pt->layer[l];
        rmsnorm_forward(a, &rstd, s->x, P(s, L->attn_norm), 1, d, eps);
        if (nkv % nt == 0) {  // kv heads [lo, hi): their q heads, k, v, then attention
            decode_share(nkv, 1, t, nt, &lo, &hi);
            qkv_heads(s, L, l, seq, pos, a, lo * group, hi * group, rows_at(Wt(s, L->wk), lo * hd, d));
            qkv_heads(s, L, l, seq, pos, a, nh + lo, nh + hi, rows_at(Wt(s, L->wv), lo * hd, d));
            qkv_heads(s, L, l, seq, pos, a, nh + nkv + lo, nh + nkv + hi, NULL);
            attend_heads(s, l, seq, pos, lo * group, hi * group);
        } else {  // q, k, v by heads, then attention by query heads
            decode_share(nh + 2 * nkv, 1, t, nt, &lo, &hi);
            qkv_heads(s, L, l, seq, pos, a, lo, hi, NULL);
            spin_barrier_wait(&s->bar, nt, &phase);
            decode_share(nh, 1, t, nt, &lo, &hi);
            attend_heads(s, l, seq, pos, lo, hi);
        }
        // x += wo o, by rows of x
        decode_share(d, 16, t, nt, &lo, &hi);
        spin_barrier_wait_prefetch(&s->bar, nt, &phase, rows_at(Wt(s, L->wo), lo, qd), rows_bytes(Wt(s, L->wo), lo, hi, qd));
        if (hi > lo) gemv(s->x + lo, gemv_w_rows(Wt(s, L->wo), (size_t)lo, qd), s->o, hi - lo, qd, 1.0f, 1);
        spin_barrier_wait(&s->bar, nt, &phase);
        rmsnorm_forward(a, &rstd, s->x, P(s, L->ffn_norm), 1, d, eps);
        int k = 0;
        if (L->is_moe) k = infer_route(s, l, 1, a, probs, idx, gates, t == 0);
        const int nf = token_ffn_count(s, l, k);
        // gate and up: the hidden units of all the FFNs (h1, h3), by units; then down: x +=
        // sum over the FFNs of gate * w2 h, by rows of x [dlo, dhi)
        int units = 0, unit_slots = 0, dlo, dhi;
        for (int f = 0; f < nf; f++) {
            const int w = token_ffn_at(s, l, idx, gates, k, f).width;
            units += w, unit_slots += slots(w);
        }
        decode_share(d, 16, t, nt, &dlo, &dhi);
        const void *down = NULL;
        size_t down_bytes = 0;
        if (nf > 0) {
            const token_ffn F0 = token_ffn_at(s, l, idx, gates, k, 0);
            down = rows_at(F0.w2, dlo, F0.width), down_bytes = rows_bytes(F0.w2, dlo, dhi, F0.width);
        }
        decode_share(unit_slots, 16, t, nt, &lo, &hi);
        if (hi > lo) ffn_gate_up(s, l, idx, gates, k, nf, a, lo, hi, down);
        spin_barrier_wait_prefetch(&s->bar, nt, &phase, down, down_bytes);
        // after the down products: this thread's q rows of the next layer (when it takes
        // whole kv heads), or its output rows
        const void *after = NULL;
        size_t after_bytes = 0;
        int alo, ahi;
        if (l + 1 == c->n_layers) {
            decode_share(c->vocab_size, 16, t, nt, &alo, &ahi);
            after = rows_at(Wt(s, s->pt->output), alo, d), after_bytes = rows_bytes(Wt(s, s->pt->output), alo, ahi, d);
        } else if (nkv % nt == 0) {
            const gemv_w wq = Wt(s, s->pt->layer[l + 1].wq);
            decode_share(nkv, 1, t, nt, &alo, &ahi);
            after = rows_at(wq, alo * group * hd, d), after_bytes = rows_bytes(wq, alo * group * hd, ahi * group * hd, d);
        }
        for (int f = 0, base = 0; f < nf && dhi > dlo; f++) {
            const token_ffn F = token_ffn_at(s, l, idx, gates, k, f);
            const token_ffn G = f + 1 < nf ? token_ffn_at(s, l, idx, gates, k, f + 1) : F;
            const void *nx = f + 1 < nf ? rows_at(G.w2, dlo, G.width) : after;
            gemv_next(s->x + dlo, gemv_w_rows(F.w2, (size_t)dlo, F.width), s->h1 + base, dhi - dlo, F.width, F.gate, 1, nx);
            base += F.width;
        }
        spin_barrier_wait_prefetch(&s->bar, nt, &phase, after, after_bytes);
    }
    rmsnorm_forward(a, &rstd, s->x, P(s, s->pt->norm), 1, d, eps);
    decode_share(c->vocab_size, 16, t, nt, &lo, &hi);
    if (hi > lo) gemv(logits + lo, gemv_w_rows(Wt(s, s->pt->output), (size_t)lo, d), a, hi - lo, d, 1.0f, 0);
}

// The whole step in one parallel region (see decode_one_thread), instead of a fork and
// join per product.
void decode_one(infer_ctx *s, int seq, int token, float *logits) {
    const int d = s->c.d_model, pos = s->kv.len[seq];
    memcpy(s->x, P(s, s->pt->tok_embeddings) + (size_t)token * d, (size_t)d * sizeof(float));
    int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
    if (nt > s->max_threads) nt = s->max_threads;
    spin_barrier_reset(&s->bar);
#pragma omp parallel num_threads(nt)
    decode_one_thread(s, seq, pos, logits, omp_get_thread_num(), omp_get_num_threads());
}
