// kvcache.c: allocation, stores and reads of the key/value cache.
#include "infer/kvcache.h"

#include "engine/base/error.h"
#include "kernels/attention_decode.h"
#include "kernels/bf16.h"

#include <stdlib.h>
#include <string.h>

static size_t per_side(const kv_cache *kv) {
    return (size_t)kv->n_layers * kv->batch * kv->n_kv_heads * kv->max_seq * kv->head_dim;
}

static size_t elem_bytes(const kv_cache *kv) { return kv->bf16 ? sizeof(mo_bf16) : sizeof(float); }

size_t kvcache_bytes(const kv_cache *kv) { return 2 * per_side(kv) * elem_bytes(kv); }

int kvcache_init(kv_cache *kv, const mo_config *c, int batch, int max_seq, int bf16) {
    memset(kv, 0, sizeof *kv);
    if (batch <= 0 || max_seq <= 0)
        return mo_errorf("kv cache: batch %d and max_seq %d must both be positive", batch, max_seq);
    *kv = (kv_cache){.n_layers = c->n_layers, .batch = batch, .n_kv_heads = c->n_kv_heads, .max_seq = max_seq,
                     .head_dim = c->head_dim, .bf16 = bf16 != 0};
    size_t n = per_side(kv) * elem_bytes(kv);
    // Pages are touched on first write, so a large max_seq costs address space only.
    kv->k = malloc(n);
    kv->v = malloc(n);
    kv->len = calloc((size_t)batch, sizeof *kv->len);
    if (!kv->k || !kv->v || !kv->len) {
        double mb = (double)kvcache_bytes(kv) / 1e6;
        kvcache_free(kv);
        return mo_errorf("kv cache: out of memory for %.0f MB (batch %d x max_seq %d); use a shorter max_seq", mb,
                         batch, max_seq);
    }
    return 0;
}

void kvcache_free(kv_cache *kv) {
    free(kv->k);
    free(kv->v);
    free(kv->len);
    memset(kv, 0, sizeof *kv);
}

void kvcache_reset(kv_cache *kv, int b) {
    if (b < 0)
        memset(kv->len, 0, (size_t)kv->batch * sizeof *kv->len);
    else if (b < kv->batch)
        kv->len[b] = 0;
}

// Element index of position pos of kv head g, layer l, sequence b.
static size_t at(const kv_cache *kv, int l, int b, int g, int pos) {
    return ((((size_t)l * kv->batch + b) * kv->n_kv_heads + g) * kv->max_seq + pos) * kv->head_dim;
}

void kvcache_put(kv_cache *kv, int side, int l, int b, int g, int pos, const float *x) {
    void *base = side == KV_K ? kv->k : kv->v;
    const size_t i = at(kv, l, b, g, pos);
    if (kv->bf16) bf16_from_f32((mo_bf16 *)base + i, x, (size_t)kv->head_dim);
    else memcpy((float *)base + i, x, (size_t)kv->head_dim * sizeof(float));
}

void kvcache_attend(const kv_cache *kv, int l, int b, int g, int n, const float *q, float *out, float *p) {
    const size_t i = at(kv, l, b, g, 0);
    const int hd = kv->head_dim;
    if (kv->bf16)
        attention_decode_head_bf16(out, p, q, (const mo_bf16 *)kv->k + i, (const mo_bf16 *)kv->v + i, n, hd);
    else
        attention_decode_head(out, p, q, (const float *)kv->k + i, (const float *)kv->v + i, n, hd);
}
