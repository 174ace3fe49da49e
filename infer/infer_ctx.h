// infer_ctx.h: the inference context's insides, shared by infer/decode.c (prefill,
// decode of several sequences, setup) and infer/decode_one.c (the single-token step).
// Not part of the API: callers use infer/infer.h.
#ifndef MONOLITH_INFER_CTX_H
#define MONOLITH_INFER_CTX_H

#include "engine/params.h"
#include "infer/infer.h"
#include "infer/kvcache.h"
#include "infer/prefill_bf16.h"
#include "kernels/gemv.h"
#include "kernels/spin_barrier.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct infer_ctx {
    const mo_param_table *pt;
    const float *params;
    mo_config c;
    int max_batch, max_seq, max_rows;  // max_rows = max(max_seq, max_batch): rows of one block
    int hidden;                        // widest FFN hidden row: max(k*d_ff, shared, dense)
    kv_cache kv;

    float *rope_cos, *rope_sin;  // [max_seq, head_dim/2]
    int *pos;                    // [rows] position of each row
    int *seq_of_row;             // [rows] sequence of each decode row
    float *x;                    // [rows, d] residual stream
    float *a;                    // [rows, d] normed input of attention / FFN
    float *rstd;                 // [rows]
    float *q, *o;                // [rows, n_heads*head_dim]
    float *k, *v;                // [rows, n_kv_heads*head_dim]
    float *lse;                  // [max_rows * n_heads] prefill attention: log-sum-exp per query row
    float *scores;               // [max_batch, n_heads, max_seq] decode attention weights
    float *probs;                // [rows, 2E + k] router scratch (infer_route): scores, keys, chosen scores
    int *tk_idx;                 // [rows, k] chosen experts
    float *tk_val;               // [rows, k] their gates
    int *offs, *fill;            // [E+1], [E] counting sort of the routing slots by expert
    int *slot_row;               // [rows*k] row of each slot, grouped by expert
    float *slot_gate;            // [rows*k]
    float *xs, *ys;              // [rows*k, d] gathered inputs, expert outputs
    float *h1, *h3;              // [rows, hidden] FFN hidden (gate, up)
    float *last, *lastn;         // [max_batch, d] last rows, normed
    unsigned char *allowed;      // [E] 1 = the router may choose this expert
    int n_allowed;
    int *route_idx;              // [rows, n_layers, k] routing of the last decode call
    float *route_gate;
    int route_rows, route_k;

    // Weights of the products, by tensor id: fp32 views of `params`, or 8-bit copies
    // (infer_set_weights) in q8/q8_scale, laid out in table order so that wq, wk, wv
    // stay adjacent. deq: one tensor dequantized for the GEMMs of prefill.
    infer_weights weights;
    gemv_w *w;                   // [pt->n]
    int8_t *q8;
    size_t q8_bytes;
    float *q8_scale;
    float *deq;
    size_t deq_numel;  // deq's size: the largest 8-bit tensor but the output matrix
    // bf16 compute of the products that would go through sgemm (infer_set_precision), or NULL.
    pf_bf16 *bf16;

    // Single-token decode (decode_one): one parallel region of up to max_threads threads,
    // each with its own normed input and routing (thread t's at t * tstride floats of
    // tbuf and t * kstride ints of tidx, cache-line apart), meeting at `bar`.
    int max_threads, tstride, kstride;
    float *tbuf;                 // per thread: a [d], router scratch [2E + k], gates [k], each padded
    int *tidx;                   // per thread: chosen experts [k], padded
    spin_barrier bar;
};

// The fp32 values of tensor `id` (norms, router, embeddings: never quantized).
static inline const float *P(const infer_ctx *s, int id) { return params_at_c(s->pt, s->params, id); }
// The weights of tensor `id` for the products (fp32 or 8-bit).
static inline gemv_w Wt(const infer_ctx *s, int id) { return s->w[id]; }
// n rounded up to a whole number of 64-byte cache lines of floats (or ints).
static inline size_t pad16(size_t n) { return (n + 15) / 16 * 16; }

// Router of MoE layer l over rows a[rows, d] (engine/router.h's scores and selection: bias,
// top-p, routed_scale; no noise, no capacity): the experts and their gates in idx[rows, k],
// val[rows, k] (-1 / 0 for a slot top-p left unused: always a row's last slots); scratch
// holds rows * (2E + k) floats (the scores first). Recorded for infer_routing when
// `record`. Returns k (top_k, or fewer when routing is restricted), or for one row the
// slots it uses. infer/decode.c.
int infer_route(infer_ctx *s, int l, int rows, const float *a, float *scratch, int *idx, float *val, int record);

// One token of sequence seq (at its next position) through the whole model, its
// logits[V] out; the cache gets its K and V. infer/decode_one.c.
void decode_one(infer_ctx *s, int seq, int token, float *logits);

// The pieces of decode_one that infer/decode_probe.c shares (infer/decode_one.c):
// thread t's contiguous share [*lo, *hi) of a step's n rows on nt threads, cut at
// multiples of `align`, ...
void decode_share(int n, int align, int t, int nt, int *lo, int *hi);

// ... and the FFNs a token passes through in layer l: its weights (views of the rows of
// the chosen expert), hidden width and gate; how many when its router chose idx[k] with
// gates[k] (its k routed experts, then the shared or dense FFN if the layer has one),
// and FFN f of them.
typedef struct {
    gemv_w w1, w3, w2;
    int width;
    float gate;
} token_ffn;
int token_ffn_count(const infer_ctx *s, int l, int k);
token_ffn token_ffn_at(const infer_ctx *s, int l, const int *idx, const float *gates, int k, int f);

#endif
