// moe.c: route-sort-gather-GEMM-scatter for the experts, and the SwiGLU FFN over groups
// of rows (see moe.h).
#include "engine/moe.h"

#include "kernels/matmul.h"
#include "kernels/matmul_packed.h"
#include "kernels/matmul_small.h"
#include "kernels/swiglu.h"

#include <string.h>

// Row loops fork threads only when they move enough data to pay for it. Their inner
// loops over d_model are `omp simd` on rows that never overlap (restrict): with top_k 16
// to 32 they move N k d floats each, the largest data movement of a fine-grained layer.
#define MOE_PAR_MIN ((size_t)1 << 15)

void moe_dispatch_build(mo_dispatch *d, const int *experts, int N, int k, int E) {
    const int S = N * k;
    memset(d->offs, 0, (size_t)(E + 1) * sizeof *d->offs);
    for (int s = 0; s < S; s++)
        if (experts[s] >= 0) d->offs[experts[s] + 1]++;
    for (int e = 0; e < E; e++) d->offs[e + 1] += d->offs[e];
    // Positions in slot order, so token order within an expert: offs[e] serves as expert
    // e's cursor (ending at the start of e+1), then shifts back by one.
    for (int s = 0; s < S; s++) {
        int e = experts[s];
        if (e < 0) {
            d->pos[s] = -1;
            continue;
        }
        int p = d->offs[e]++;
        d->pos[s] = p;
        d->perm[p] = s;
    }
    for (int e = E; e > 0; e--) d->offs[e] = d->offs[e - 1];
    d->offs[0] = 0;
}

// Rows of `row` bytes: dst row p = src row perm[p] / k.
static void gather_rows(char *dst, const char *src, size_t row, const mo_dispatch *d, int E, int k) {
    const int R = d->offs[E];
#pragma omp parallel for schedule(static) if ((size_t)R * row >= MOE_PAR_MIN * sizeof(float))
    for (int p = 0; p < R; p++) memcpy(dst + (size_t)p * row, src + (size_t)(d->perm[p] / k) * row, row);
}

void moe_gather(float *xs, const float *x, const mo_dispatch *d, int E, int k, int dm) {
    gather_rows((char *)xs, (const char *)x, (size_t)dm * sizeof *xs, d, E, k);
}

void moe_gather_bf16(mo_bf16 *xs, const mo_bf16 *x, const mo_dispatch *d, int E, int k, int dm) {
    gather_rows((char *)xs, (const char *)x, (size_t)dm * sizeof *xs, d, E, k);
}

void moe_combine(float *y, const float *ys, const float *gates, const mo_dispatch *d, int N, int k, int dm) {
#pragma omp parallel for schedule(static) if ((size_t)N * k * dm >= MOE_PAR_MIN)
    for (int i = 0; i < N; i++) {
        float *restrict yi = y + (size_t)i * dm;
        for (int j = 0; j < k; j++) {
            int p = d->pos[(size_t)i * k + j];
            if (p < 0) continue;
            const float g = gates[(size_t)i * k + j], *restrict yr = ys + (size_t)p * dm;
#pragma omp simd
            for (int c = 0; c < dm; c++) yi[c] += g * yr[c];
        }
    }
}

// dys written as float32 (dysb NULL) or, for bf16 compute, rounded to bf16 only.
static void combine_backward(float *dys, mo_bf16 *dysb, float *dgates, const float *dy, const float *ys,
                             const float *gates, const mo_dispatch *d, int N, int k, int dm) {
#pragma omp parallel for schedule(static) if ((size_t)N * k * dm >= MOE_PAR_MIN)
    for (int i = 0; i < N; i++) {
        const float *restrict dyi = dy + (size_t)i * dm;
        for (int j = 0; j < k; j++) {
            int p = d->pos[(size_t)i * k + j];
            if (p < 0) {
                dgates[(size_t)i * k + j] = 0;
                continue;
            }
            const float g = gates[(size_t)i * k + j], *restrict yr = ys + (size_t)p * dm;
            float dot = 0;
            if (dysb) {
#pragma omp simd reduction(+ : dot)
                for (int c = 0; c < dm; c++) dot += dyi[c] * yr[c];
                bf16_from_f32_scaled(dysb + (size_t)p * dm, dyi, g, (size_t)dm);  // the bits of g dy rounded
            } else {
                float *restrict dr = dys + (size_t)p * dm;
#pragma omp simd reduction(+ : dot)
                for (int c = 0; c < dm; c++) {
                    dot += dyi[c] * yr[c];
                    dr[c] = g * dyi[c];
                }
            }
            dgates[(size_t)i * k + j] = dot;
        }
    }
}

void moe_combine_backward(float *dys, float *dgates, const float *dy, const float *ys, const float *gates,
                          const mo_dispatch *d, int N, int k, int dm) {
    combine_backward(dys, NULL, dgates, dy, ys, gates, d, N, k, dm);
}

void moe_combine_backward_bf16(mo_bf16 *dys, float *dgates, const float *dy, const float *ys, const float *gates,
                               const mo_dispatch *d, int N, int k, int dm) {
    combine_backward(NULL, dys, dgates, dy, ys, gates, d, N, k, dm);
}

void moe_scatter(float *dx, const float *dxs, const mo_dispatch *d, int N, int k, int dm) {
#pragma omp parallel for schedule(static) if ((size_t)N * k * dm >= MOE_PAR_MIN)
    for (int i = 0; i < N; i++) {
        float *restrict dxi = dx + (size_t)i * dm;
        memset(dxi, 0, (size_t)dm * sizeof *dxi);
        for (int j = 0; j < k; j++) {
            int p = d->pos[(size_t)i * k + j];
            if (p < 0) continue;
            const float *restrict r = dxs + (size_t)p * dm;
#pragma omp simd
            for (int c = 0; c < dm; c++) dxi[c] += r[c];
        }
    }
}

// ---------------------------------------------------------------------------- SwiGLU FFN, fp32

// The elementwise passes of backward (SwiGLU recomputed for dw2, its backward) over the
// rows of only some groups, when only those need them: the groups whose weight
// gradients train, and with no dxs wanted, nothing else. The SwiGLU kernels run vectors
// of 16 from the start of a call and the tail as scalars, whose results can differ in
// the last bit; so a group is taken alone only if every marked group starts on a
// 16-element boundary and ends on one or at the end, and otherwise all rows in one call,
// so that every element gets the bits of one call over all rows.
typedef struct {
    const mo_ffn_rows *r;
    const unsigned char *on;  // NULL: all rows in one call
} group_spans;

static group_spans spans_of(const mo_ffn_rows *r, const unsigned char *on) {
    const size_t n = (size_t)r->offs[r->G] * (size_t)r->f;
    for (int g = 0; on && g < r->G; g++) {
        const size_t s = (size_t)r->offs[g] * (size_t)r->f, e = (size_t)r->offs[g + 1] * (size_t)r->f;
        if (on[g] && (s % 16 || (e % 16 && e != n))) on = NULL;
    }
    return (group_spans){r, on};
}

// Span q (q = 0 .. G-1) of sp: elements [*s, *e) of the [R, f] arrays; 0 when q covers
// nothing.
static int span_at(const group_spans *sp, int q, size_t *s, size_t *e) {
    const mo_ffn_rows *r = sp->r;
    if (!sp->on) {
        *s = 0, *e = (size_t)r->offs[r->G] * (size_t)r->f;
        return q == 0;
    }
    *s = (size_t)r->offs[q] * (size_t)r->f, *e = (size_t)r->offs[q + 1] * (size_t)r->f;
    return sp->on[q] && *e > *s;
}

// The products that read a weight: on its packed copy where the view says so (and oneDNN
// succeeds), else BLAS (matmul_weight_*). The grouped ones keep matmul_small's kernel
// where it is chosen (matmul_grouped_nt/nn: fine-grained widths).
static void weight_nt(const mo_ffn_weights *w, float *C, const float *A, const float *W, int M, int N, int K, int acc) {
    matmul_weight_nt(w->packed, C, A, W, M, N, K, acc);
}
static void weight_nn(const mo_ffn_weights *w, float *C, const float *A, const float *W, int M, int N, int K, int acc) {
    matmul_weight_nn(w->packed, C, A, W, M, N, K, acc);
}
static void packed_nt(float *C, const void *A, const void *B, int M, int N, int K, int acc) {
    matmul_weight_nt(1, C, A, B, M, N, K, acc);
}
static void packed_nn(float *C, const void *A, const void *B, int M, int N, int K, int acc) {
    matmul_weight_nn(1, C, A, B, M, N, K, acc);
}
static const matmul_dense_ops packed_ops = {packed_nt, packed_nn, NULL, sizeof(float)};
static void grouped_weight_nt(const mo_ffn_weights *w, float *C, const float *A, const float *B, const int *offs, int G,
                              int N, int K, int acc) {
    if (w->packed && !matmul_small_use(MATMUL_SMALL_NT, 0, N, K))
        matmul_grouped(&packed_ops, MATMUL_NT, C, A, B, offs, G, N, K, acc);
    else matmul_grouped_nt(C, A, B, offs, G, N, K, acc);
}
static void grouped_weight_nn(const mo_ffn_weights *w, float *C, const float *A, const float *B, const int *offs, int G,
                              int N, int K, int acc, const unsigned char *on) {
    if (w->packed && !matmul_small_use(MATMUL_SMALL_NN, 0, N, K))
        matmul_grouped_some(&packed_ops, MATMUL_NN, C, A, B, offs, G, N, K, acc, on);
    else matmul_grouped_nn_some(C, A, B, offs, G, N, K, acc, on);
}

static void ffn_forward_f32(float *ys, const float *xs, const mo_ffn_weights *w, const mo_ffn_rows *r, int acc) {
    const int *offs = r->offs, G = r->G, f = r->f, dm = r->dm;
    const size_t R = (size_t)offs[G];
    if (matmul_small_use(MATMUL_SMALL_NT, 0, f, dm)) {  // fine-grained: one pass over xs for both
        const matmul_rows map = {r->xrow, r->xdiv};
        matmul_small_grouped_nt2(r->h1, r->h3, xs, &map, w->w1, w->w3, offs, G, f, dm, 0);
    } else {
        grouped_weight_nt(w, r->h1, xs, w->w1, offs, G, f, dm, 0);  // [R, f] = xs w1_g^T
        grouped_weight_nt(w, r->h3, xs, w->w3, offs, G, f, dm, 0);  // [R, f] = xs w3_g^T
    }
    swiglu_forward(r->act, r->h1, r->h3, R * (size_t)f);      // silu(h1) * h3
    grouped_weight_nt(w, ys, r->act, w->w2, offs, G, dm, f, acc);  // [R, dm] = act w2_g^T
}

static void ffn_backward_f32(float *dxs, const float *dys, const float *xs, const mo_ffn_weights *w,
                             const mo_ffn_rows *r, const mo_ffn_grads *g, int acc) {
    const int *offs = r->offs, G = r->G, f = r->f, dm = r->dm;
    float *h1 = r->h1, *h3 = r->h3;
    const unsigned char *need = dxs ? NULL : g->dw_groups;  // the groups whose dh1, dh3 are needed
    const group_spans trained = spans_of(r, g->dw_groups), needed = spans_of(r, need);
    size_t s, e;
    grouped_weight_nn(w, r->dact, dys, w->w2, offs, G, f, dm, 0, need);  // d act [R, f] = dys w2_g
    if (g->dw2) {
        for (int q = 0; q < G; q++)  // recomputed instead of kept per layer
            if (span_at(&trained, q, &s, &e)) swiglu_forward(r->act + s, h1 + s, h3 + s, e - s);
        matmul_grouped_tn_some(g->dw2, dys, r->act, offs, G, dm, f, !g->dw_set, g->dw_groups);  // dw2_g [dm, f] += dys_g^T act_g
    }
    for (int q = 0; q < G; q++)  // h1, h3 <- dh1, dh3
        if (span_at(&needed, q, &s, &e)) swiglu_backward(h1 + s, h3 + s, r->dact + s, h1 + s, h3 + s, e - s);
    if (matmul_small_use(MATMUL_SMALL_TN, f, dm, 0)) {  // fine-grained: one pass over xs, one over dxs
        const matmul_rows map = {r->xrow, r->xdiv};
        matmul_small_grouped_tn2_some(g->dw1, g->dw3, h1, h3, xs, &map, offs, G, f, dm, !g->dw_set, g->dw_groups);
        if (dxs) matmul_small_grouped_nn_sum(dxs, h1, w->w1, h3, w->w3, offs, G, dm, f, acc);
        return;
    }
    if (g->dw1) matmul_grouped_tn_some(g->dw1, h1, xs, offs, G, f, dm, !g->dw_set, g->dw_groups);  // dw1_g [f, dm] += dh1_g^T xs_g
    if (g->dw3) matmul_grouped_tn_some(g->dw3, h3, xs, offs, G, f, dm, !g->dw_set, g->dw_groups);
    if (!dxs) return;
    grouped_weight_nn(w, dxs, h1, w->w1, offs, G, dm, f, acc, NULL);  // dxs = dh1 w1_g + dh3 w3_g
    grouped_weight_nn(w, dxs, h3, w->w3, offs, G, dm, f, 1, NULL);
}

// ---------------------------------------------------------------------------- SwiGLU FFN, bf16

static void ffn_forward_bf16(float *ys, const float *xs, const mo_ffn_weights *w, const mo_ffn_rows *r, int acc) {
    const int *offs = r->offs, G = r->G, f = r->f, dm = r->dm;
    const size_t R = (size_t)offs[G];
    mo_bf16 *x = w->xk ? w->xk : w->s0, *act = w->ak ? w->ak : w->s1;
    if (xs) bf16_from_f32(x, xs, R * (size_t)dm);  // NULL: w->xk holds them rounded
    matmul_bf16_grouped_nt(r->h1, x, w->b1, offs, G, f, dm, 0);
    matmul_bf16_grouped_nt(r->h3, x, w->b3, offs, G, f, dm, 0);
    swiglu_forward_bf16(act, r->h1, r->h3, R * (size_t)f);  // act, only ever read rounded
    matmul_bf16_grouped_nt(ys, act, w->b2, offs, G, dm, f, acc);
}

// The SwiGLU's outputs (act, dh1, dh3) are written in bf16 only (swiglu_*_bf16): the
// products are all that read them. h1 and h3 keep forward's values.
static void ffn_backward_bf16(float *dxs, const float *dys, const float *xs, const mo_ffn_weights *w,
                              const mo_ffn_rows *r, const mo_ffn_grads *g, int acc) {
    const int *offs = r->offs, G = r->G, f = r->f, dm = r->dm;
    const size_t R = (size_t)offs[G], rd = R * (size_t)dm;
    const float *h1 = r->h1, *h3 = r->h3;
    const unsigned char *need = dxs ? NULL : g->dw_groups;  // the groups whose dh1, dh3 are needed
    const group_spans trained = spans_of(r, g->dw_groups), needed = spans_of(r, need);
    size_t s, e;
    if (!w->yk) bf16_from_f32(w->s0, dys, rd);  // else moe_combine_backward_bf16 wrote them there
    matmul_bf16_grouped_nn_some(r->dact, w->s0, w->b2, offs, G, f, dm, 0, need);  // d act = dys w2_g
    if (g->dw2) {
        const mo_bf16 *act = w->ak;  // kept from forward, or recomputed instead of kept
        for (int q = 0; !act && q < G; q++)
            if (span_at(&trained, q, &s, &e)) swiglu_forward_bf16(w->s1 + s, h1 + s, h3 + s, e - s);
        matmul_bf16_grouped_tn_some(g->dw2, w->s0, act ? act : w->s1, offs, G, dm, f, !g->dw_set, g->dw_groups);  // dw2_g += dys_g^T act_g
    }
    for (int q = 0; q < G; q++)  // s1, s2 <- dh1, dh3
        if (span_at(&needed, q, &s, &e)) swiglu_backward_bf16(w->s1 + s, w->s2 + s, r->dact + s, h1 + s, h3 + s, e - s);
    const mo_bf16 *x = w->xk;  // kept from forward, or rounded again
    if (!x) bf16_from_f32(w->s0, xs, rd), x = w->s0;  // dys is used up (dxs may alias it)
    if (g->dw1) matmul_bf16_grouped_tn_some(g->dw1, w->s1, x, offs, G, f, dm, !g->dw_set, g->dw_groups);  // dw1_g += dh1_g^T xs_g
    if (dxs) matmul_bf16_grouped_nn(dxs, w->s1, w->b1, offs, G, dm, f, acc);  // dxs = dh1 w1_g + dh3 w3_g
    if (g->dw3) matmul_bf16_grouped_tn_some(g->dw3, w->s2, x, offs, G, f, dm, !g->dw_set, g->dw_groups);
    if (dxs) matmul_bf16_grouped_nn(dxs, w->s2, w->b3, offs, G, dm, f, 1);
}

// ---------------------------------------------------------------------------- one task per group

// Where the products are BLAS's or oneDNN's (not matmul_small's) and every group starts
// on a multiple of 16 elements of the [R, f] arrays (chains_fit), bf16 runs each group's
// whole FFN as one task of matmul_grouped_schedule (fp32 runs in phases, below): its
// products in the order the per-product calls above make them, on the same operands,
// with the SwiGLU and the bf16 rounding over its own rows. One wait for the threads a call instead of one a product, and a group's h1,
// h3 and act are still in cache when the next product reads them. The same bits as the
// per-product path: the same BLAS call per group and product (the block policy of
// matmul_grouped_schedule decides serial or all-thread BLAS per group, as it did per
// product), and elementwise passes whose vectors start where one call's would.
// A fine-tune's marked groups (dw_groups) and mapped rows (xrow) keep the path above.
typedef struct {
    const mo_ffn_weights *w;
    const mo_ffn_rows *r;
    const mo_ffn_grads *g;  // backward
    float *out;             // ys (forward) or dxs (backward; NULL: not wanted)
    const float *in;        // xs (forward) or dys (backward)
    const float *xs;        // backward
    int acc;
} chain_args;

static int chains_on = 1;

void ffn_set_chained(int on) { chains_on = on; }

static int chains_fit(const mo_ffn_weights *w, const mo_ffn_rows *r, const mo_ffn_grads *g) {
    const int f = r->f, dm = r->dm;
    if (!chains_on || r->xrow || f % 16 || (g && g->dw_groups)) return 0;
    if (w->b1) return 1;  // bf16 products are oneDNN's at every width
    return !matmul_small_use(MATMUL_SMALL_NT, 0, f, dm) && !matmul_small_use(MATMUL_SMALL_NT, 0, dm, f) &&
           !matmul_small_use(MATMUL_SMALL_NN, 0, f, dm) && !matmul_small_use(MATMUL_SMALL_NN, 0, dm, f) &&
           !matmul_small_use(MATMUL_SMALL_TN, f, dm, 0) && !matmul_small_use(MATMUL_SMALL_TN, dm, f, 0);
}

static void forward_chain(const void *ctx, int q) {
    const chain_args *a = ctx;
    const mo_ffn_rows *r = a->r;
    const mo_ffn_weights *w = a->w;
    const int n = r->offs[q + 1] - r->offs[q], f = r->f, dm = r->dm;
    const size_t r0 = (size_t)r->offs[q], fd = (size_t)f * dm, rf = (size_t)n * f;
    float *h1 = r->h1 + r0 * f, *h3 = r->h3 + r0 * f, *ys = a->out + r0 * dm;
    mo_bf16 *s0 = (w->xk ? w->xk : w->s0) + r0 * dm, *s1 = (w->ak ? w->ak : w->s1) + r0 * f;
    if (a->in) bf16_from_f32(s0, a->in + r0 * dm, (size_t)n * dm);  // NULL: w->xk holds them rounded
    matmul_bf16_nt(h1, s0, w->b1 + q * fd, n, f, dm, 0);
    matmul_bf16_nt(h3, s0, w->b3 + q * fd, n, f, dm, 0);
    swiglu_forward_bf16(s1, h1, h3, rf);
    matmul_bf16_nt(ys, s1, w->b2 + q * fd, n, dm, f, a->acc);
}

static void backward_chain_bf16(const chain_args *a, int q) {
    const mo_ffn_rows *r = a->r;
    const mo_ffn_weights *w = a->w;
    const mo_ffn_grads *g = a->g;
    const int n = r->offs[q + 1] - r->offs[q], f = r->f, dm = r->dm, acc = !g->dw_set;
    const size_t r0 = (size_t)r->offs[q], fd = (size_t)f * dm, rf = (size_t)n * f, rd = (size_t)n * dm;
    const float *h1 = r->h1 + r0 * f, *h3 = r->h3 + r0 * f;
    float *dact = r->dact + r0 * f;
    const float *dys = a->in + r0 * dm, *xs = a->xs ? a->xs + r0 * dm : NULL;  // NULL: w->xk kept
    mo_bf16 *s0 = w->s0 + r0 * dm, *s1 = w->s1 + r0 * f, *s2 = w->s2 + r0 * f;
    if (!w->yk) bf16_from_f32(s0, dys, rd);  // else moe_combine_backward_bf16 wrote them there
    matmul_bf16_nn(dact, s0, w->b2 + q * fd, n, f, dm, 0);
    if (g->dw2) {
        const mo_bf16 *act = w->ak ? w->ak + r0 * f : s1;  // kept from forward, or recomputed
        if (!w->ak) swiglu_forward_bf16(s1, h1, h3, rf);
        matmul_bf16_tn(g->dw2 + q * fd, s0, act, dm, f, n, acc);
    }
    swiglu_backward_bf16(s1, s2, dact, h1, h3, rf);
    const mo_bf16 *x = w->xk ? w->xk + r0 * dm : s0;  // kept from forward, or rounded again
    if (!w->xk) bf16_from_f32(s0, xs, rd);           // dys is used up (dxs may alias it)
    if (g->dw1) matmul_bf16_tn(g->dw1 + q * fd, s1, x, f, dm, n, acc);
    float *dxs = a->out ? a->out + r0 * dm : NULL;
    if (dxs) matmul_bf16_nn(dxs, s1, w->b1 + q * fd, n, dm, f, a->acc);
    if (g->dw3) matmul_bf16_tn(g->dw3 + q * fd, s2, x, f, dm, n, acc);
    if (dxs) matmul_bf16_nn(dxs, s2, w->b3 + q * fd, n, dm, f, 1);
}

static void backward_chain(const void *ctx, int q) { backward_chain_bf16(ctx, q); }

// ---------------------------------------------------------------------------- phases, fp32

// fp32 (where chains_fit) runs the FFN in phases instead of one task per group: the
// products that need nothing of each other (h1 and h3 of every group; then ys; in
// backward dact and dw2 of every group, then dw1, dw3 and dxs) are the tasks of one
// matmul_grouped_schedule call, P products x G groups, largest groups first, and each
// SwiGLU pass runs once over all rows on every thread between them. With one task per
// group the threads' last tasks were whole FFNs, so bench-S's uneven groups (160-1070
// rows of 4096) left one thread waiting 2% of the experts' time; with single products
// as tasks 0.7% (docs/benchmarks.md). The same BLAS call per group and product on the
// same operands, and SwiGLU vectors starting where a group's call would (f % 16 == 0):
// the same bits as the chains and as one grouped call per product.
enum { PHASE_MAX_PRODUCTS = 3, PHASE_MAX_TASKS = 1024 };
typedef enum { P_H1, P_H3, P_YS, P_DACT, P_DW2, P_DW1, P_DW3, P_DXS } phase_product;
typedef struct {
    const chain_args *a;
    int G, P;
    phase_product prod[PHASE_MAX_PRODUCTS];
} phase_args;

static void phase_task(const void *ctx, int t) {
    const phase_args *ph = ctx;
    const chain_args *a = ph->a;
    const mo_ffn_rows *r = a->r;
    const mo_ffn_weights *w = a->w;
    const mo_ffn_grads *g = a->g;
    const int q = t % ph->G, n = r->offs[q + 1] - r->offs[q], f = r->f, dm = r->dm;
    const size_t r0 = (size_t)r->offs[q], fd = (size_t)f * dm, at = q * fd;
    float *h1 = r->h1 + r0 * f, *h3 = r->h3 + r0 * f;
    switch (ph->prod[t / ph->G]) {
    case P_H1: weight_nt(w, h1, a->in + r0 * dm, w->w1 + at, n, f, dm, 0); break;  // h1 = xs w1_g^T
    case P_H3: weight_nt(w, h3, a->in + r0 * dm, w->w3 + at, n, f, dm, 0); break;
    case P_YS: weight_nt(w, a->out + r0 * dm, r->act + r0 * f, w->w2 + at, n, dm, f, a->acc); break;  // ys = act w2_g^T
    case P_DACT: weight_nn(w, r->dact + r0 * f, a->in + r0 * dm, w->w2 + at, n, f, dm, 0); break;  // d act = dys w2_g
    case P_DW2: matmul_tn(g->dw2 + at, a->in + r0 * dm, r->act + r0 * f, dm, f, n, !g->dw_set); break;  // dys^T act
    case P_DW1: matmul_tn(g->dw1 + at, h1, a->xs + r0 * dm, f, dm, n, !g->dw_set); break;  // dh1^T xs
    case P_DW3: matmul_tn(g->dw3 + at, h3, a->xs + r0 * dm, f, dm, n, !g->dw_set); break;
    case P_DXS:  // dxs = dh1 w1_g + dh3 w3_g (dxs may be dys: read up in the phase before)
        weight_nn(w, a->out + r0 * dm, h1, w->w1 + at, n, dm, f, a->acc);
        weight_nn(w, a->out + r0 * dm, h3, w->w3 + at, n, dm, f, 1);
        break;
    }
}

// Runs the P products of ph for every group as P x G tasks; task t is product t / G of
// group t % G, sized by the group's rows. Returns 0 when there are too many tasks.
static int phase_run(phase_args *ph) {
    const int *offs = ph->a->r->offs, G = ph->G, T = ph->P * G;
    if (ph->P == 0) return 1;
    if (T > PHASE_MAX_TASKS) return 0;
    int toffs[PHASE_MAX_TASKS + 1];
    unsigned char on[PHASE_MAX_TASKS];
    toffs[0] = 0;
    for (int t = 0; t < T; t++) toffs[t + 1] = toffs[t] + offs[t % G + 1] - offs[t % G], on[t] = 1;
    // A group the grouped products would run alone (every thread inside BLAS) runs so
    // here too, first, its products in turn: BLAS's bits can depend on its thread count.
    for (int q = 0; q < G; q++)
        if (matmul_grouped_alone(offs, G, q))
            for (int t = q; t < T; t += G) phase_task(ph, t), on[t] = 0;
    matmul_grouped_schedule(toffs, T, on, phase_task, ph);
    return 1;
}

static int phases_fit(const mo_ffn_rows *r) { return r->G * PHASE_MAX_PRODUCTS <= PHASE_MAX_TASKS; }

static void ffn_forward_phased(float *ys, const float *xs, const mo_ffn_weights *w, const mo_ffn_rows *r, int acc) {
    const chain_args a = {w, r, NULL, ys, xs, NULL, acc};
    phase_args ph = {&a, r->G, 2, {P_H1, P_H3}};
    phase_run(&ph);
    swiglu_forward(r->act, r->h1, r->h3, (size_t)r->offs[r->G] * (size_t)r->f);
    ph.P = 1, ph.prod[0] = P_YS;  // the same calls as matmul_grouped_nt's
    phase_run(&ph);
}

static void ffn_backward_phased(float *dxs, const float *dys, const float *xs, const mo_ffn_weights *w,
                                const mo_ffn_rows *r, const mo_ffn_grads *g, int acc) {
    const size_t rf = (size_t)r->offs[r->G] * (size_t)r->f;
    const chain_args a = {w, r, g, dxs, dys, xs, acc};
    if (g->dw2) swiglu_forward(r->act, r->h1, r->h3, rf);  // recomputed instead of kept per layer
    phase_args ph = {&a, r->G, 1, {P_DACT}};
    if (g->dw2) ph.prod[ph.P++] = P_DW2;
    phase_run(&ph);
    swiglu_backward(r->h1, r->h3, r->dact, r->h1, r->h3, rf);  // h1, h3 <- dh1, dh3
    ph.P = 0;
    if (g->dw1) ph.prod[ph.P++] = P_DW1;
    if (g->dw3) ph.prod[ph.P++] = P_DW3;
    if (dxs) ph.prod[ph.P++] = P_DXS;
    phase_run(&ph);
}

// ---------------------------------------------------------------------------- the view's precision

int ffn_reads_mapped(const mo_ffn_weights *w, int f, int dm) {
    return !w->b1 && matmul_small_use(MATMUL_SMALL_NT, 0, f, dm);
}

int ffn_backward_mapped(const mo_ffn_weights *w, int f, int dm) {
    return !w->b1 && matmul_small_use(MATMUL_SMALL_TN, f, dm, 0);
}

void ffn_forward(float *ys, const float *xs, const mo_ffn_weights *w, const mo_ffn_rows *r, int acc) {
    if (!w->b1 && chains_fit(w, r, NULL) && phases_fit(r)) ffn_forward_phased(ys, xs, w, r, acc);
    else if (w->b1 && chains_fit(w, r, NULL)) {
        const chain_args a = {w, r, NULL, ys, xs, NULL, acc};
        matmul_grouped_schedule(r->offs, r->G, NULL, forward_chain, &a);
    } else if (w->b1) ffn_forward_bf16(ys, xs, w, r, acc);
    else ffn_forward_f32(ys, xs, w, r, acc);
}

void ffn_backward(float *dxs, const float *dys, const float *xs, const mo_ffn_weights *w, const mo_ffn_rows *r,
                  const mo_ffn_grads *g, int acc) {
    if (!w->b1 && chains_fit(w, r, g) && phases_fit(r)) ffn_backward_phased(dxs, dys, xs, w, r, g, acc);
    else if (w->b1 && chains_fit(w, r, g)) {
        const chain_args a = {w, r, g, dxs, dys, xs, acc};
        matmul_grouped_schedule(r->offs, r->G, NULL, backward_chain, &a);
    } else if (w->b1) ffn_backward_bf16(dxs, dys, xs, w, r, g, acc);
    else ffn_backward_f32(dxs, dys, xs, w, r, g, acc);
}
