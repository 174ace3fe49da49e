// prefill_bf16.c: bf16 weight copies and the bf16 products of inference (see
// prefill_bf16.h).
//
// The products receive their weights as gemv_w views (fp32 or 8-bit, possibly a row
// range of a stacked expert tensor), so the copy a view stands for is found by address:
// each product tensor records where its current weights start and how many bytes a
// weight takes there (4 fp32, 1 8-bit); the view's offset into it, in weights, is its
// offset into the bf16 copy.
#include "infer/prefill_bf16.h"

#include "engine/base/error.h"
#include "engine/base/huge.h"
#include "kernels/bf16.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *start;  // first byte of the tensor's current weights (w[i].f or w[i].q)
    size_t elem;        // bytes per weight there
    size_t numel;
    const mo_bf16 *wb;  // its bf16 copy
} pf_tensor;

struct pf_bf16 {
    int n;
    pf_tensor *t;
    mo_bf16 *arena;  // every copy, in table order
    size_t arena_numel;
    mo_bf16 *xb;  // activation scratch
    size_t xb_numel;
};

// Tensors with bf16 copies: every matrix of a product, as for the 8-bit weights; not the
// embedding table (a lookup), the norms or the routers (routing stays fp32, as in
// training's bf16 compute).
static int product_kind(mo_param_kind k) {
    return k != PK_TOK_EMBEDDINGS && k != PK_NORM && k != PK_ATTN_NORM && k != PK_FFN_NORM && k != PK_ROUTER &&
           k != PK_ROUTER_BIAS;
}

static size_t max2(size_t a, size_t b) { return a > b ? a : b; }

pf_bf16 *pf_bf16_new(const mo_param_table *pt, const gemv_w *w, int max_rows) {
    if (!bf16_supported()) {
        mo_errorf("--precision bf16: this CPU has no AVX512_BF16 (bf16 products would run slower than fp32); "
                  "use --precision fp32");
        return NULL;
    }
    const mo_config *c = &pt->cfg;
    pf_bf16 *b = calloc(1, sizeof *b);
    float *deq = NULL;
    if (!b) goto oom;
    // The widest activation of a product: the gathered expert inputs [rows*k, d], the
    // hidden rows [rows, k*d_ff + shared] or [rows, d_ff_dense], attention's o [rows, qd].
    const size_t k = c->top_k > 0 ? (size_t)c->top_k : 1;
    size_t width = max2(k * (size_t)c->d_model, k * (size_t)c->d_ff + (size_t)c->n_shared_experts * c->d_ff_shared);
    width = max2(width, max2((size_t)c->d_ff_dense, (size_t)c->n_heads * c->head_dim));
    b->xb_numel = (size_t)max_rows * width;
    size_t most = 0;
    for (int i = 0; i < pt->n; i++)
        if (product_kind(pt->t[i].kind)) {
            b->arena_numel += (pt->t[i].numel + 31) & ~(size_t)31;  // 64-byte aligned copies
            if (!w[i].f) most = max2(most, pt->t[i].numel);
        }
    // On 2 MiB pages where the kernel allows: the GEMMs stream these copies.
    b->arena = mo_alloc_huge(b->arena_numel * sizeof(mo_bf16));
    b->xb = aligned_alloc(64, ((b->xb_numel * sizeof(mo_bf16)) + 63) & ~(size_t)63);
    b->t = calloc((size_t)pt->n, sizeof *b->t);
    if (most) deq = malloc(most * sizeof(float));
    if (!b->arena || !b->xb || !b->t || (most && !deq)) goto oom;
    memset(b->xb, 0, b->xb_numel * sizeof(mo_bf16));  // touch the pages now, not in the first prefill
    size_t at = 0;
    for (int i = 0; i < pt->n; i++) {
        const mo_tensor *t = &pt->t[i];
        if (!product_kind(t->kind)) continue;
        const int cols = (int)t->shape[t->rank - 1];
        const float *src = w[i].f;
        if (!src) {
            q8_dequantize(deq, w[i].q, w[i].scale, t->numel / cols, cols);
            src = deq;
        }
        bf16_from_f32(b->arena + at, src, t->numel);
        b->t[b->n++] = (pf_tensor){w[i].f ? (const char *)w[i].f : (const char *)w[i].q, w[i].f ? 4 : 1, t->numel,
                                   b->arena + at};
        at += (t->numel + 31) & ~(size_t)31;
    }
    free(deq);
    return b;
oom:
    free(deq);
    if (b) mo_errorf("--precision bf16: out of memory for %.0f MB of bf16 weights and scratch; use --precision fp32",
                     (b->arena_numel + b->xb_numel) * 2.0 / 1e6);
    else mo_errorf("--precision bf16: out of memory");
    pf_bf16_free(b);
    return NULL;
}

void pf_bf16_free(pf_bf16 *b) {
    if (!b) return;
    free(b->t), free(b->arena), free(b->xb);
    free(b);
}

size_t pf_bf16_weight_bytes(const pf_bf16 *b) { return b->arena_numel * sizeof(mo_bf16); }

// The bf16 copy of the view W of `n` weights, or NULL when W lies in no copied tensor.
static const mo_bf16 *find(const pf_bf16 *b, gemv_w W, size_t n) {
    const char *p = W.f ? (const char *)W.f : (const char *)W.q;
    const size_t elem = W.f ? 4 : 1;
    for (int i = 0; i < b->n; i++) {
        const pf_tensor *t = &b->t[i];
        if (t->elem == elem && p >= t->start && p < t->start + t->numel * elem) {
            const size_t off = (size_t)(p - t->start) / elem;
            return off + n <= t->numel ? t->wb + off : NULL;
        }
    }
    return NULL;
}

int pf_bf16_linear(pf_bf16 *b, float *y, const float *x, gemv_w W, int rows, int out, int in, int acc) {
    const size_t nx = (size_t)rows * in;
    const mo_bf16 *wb = find(b, W, (size_t)out * in);
    if (!wb || nx > b->xb_numel) return 0;
    bf16_from_f32(b->xb, x, nx);
    matmul_bf16_nt(y, b->xb, wb, rows, out, in, acc);
    return 1;
}

int pf_bf16_grouped(pf_bf16 *b, float *y, const float *x, gemv_w W, const int *offs, int E, int out, int in) {
    const size_t nx = (size_t)offs[E] * in;
    const mo_bf16 *wb = find(b, W, (size_t)E * out * in);
    if (!wb || nx > b->xb_numel) return 0;
    bf16_from_f32(b->xb, x, nx);
    matmul_bf16_grouped_nt(y, b->xb, wb, offs, E, out, in, 0);
    return 1;
}
