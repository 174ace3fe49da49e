// kvcache.c: allocation of the key/value cache.
#include "infer/kvcache.h"

#include "engine/base/error.h"

#include <stdlib.h>
#include <string.h>

static size_t per_side(const kv_cache *kv) {
    return (size_t)kv->n_layers * kv->batch * kv->n_kv_heads * kv->max_seq * kv->head_dim;
}

size_t kvcache_bytes(const kv_cache *kv) { return 2 * per_side(kv) * sizeof(float); }

int kvcache_init(kv_cache *kv, const mo_config *c, int batch, int max_seq) {
    memset(kv, 0, sizeof *kv);
    if (batch <= 0 || max_seq <= 0)
        return mo_errorf("kv cache: batch %d and max_seq %d must both be positive", batch, max_seq);
    *kv = (kv_cache){.n_layers = c->n_layers, .batch = batch, .n_kv_heads = c->n_kv_heads, .max_seq = max_seq,
                     .head_dim = c->head_dim};
    size_t n = per_side(kv);
    // Pages are touched on first write, so a large max_seq costs address space only.
    kv->k = malloc(n * sizeof(float));
    kv->v = malloc(n * sizeof(float));
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
