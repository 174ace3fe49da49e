// kvcache.h: the key/value cache of incremental decoding.
//
// Per layer and per sequence of the batch, K and V are [n_kv_heads, max_seq, head_dim]
// (K already rotated by RoPE): one head's keys for positions 0..len-1 are contiguous, so
// a decode step reads them as one matrix. The whole cache is two allocations,
// [n_layers, batch, n_kv_heads, max_seq, head_dim] each, made once.
#ifndef MONOLITH_KVCACHE_H
#define MONOLITH_KVCACHE_H

#include "engine/config.h"

#include <stddef.h>

typedef struct {
    int n_layers, batch, n_kv_heads, max_seq, head_dim;
    float *k, *v;  // [n_layers, batch, n_kv_heads, max_seq, head_dim]
    int *len;      // [batch] positions filled in each sequence
} kv_cache;

// Allocates a cache for `batch` sequences of up to `max_seq` positions of the model `c`
// (all lengths 0). Returns 0, or -1 with a message for a bad size or out of memory
// (the message gives the size in MB).
int kvcache_init(kv_cache *kv, const mo_config *c, int batch, int max_seq);
void kvcache_free(kv_cache *kv);

// Forgets sequence b (its length becomes 0); b < 0 forgets every sequence.
void kvcache_reset(kv_cache *kv, int b);

// Keys (values) of layer l, sequence b: [n_kv_heads, max_seq, head_dim].
static inline float *kvcache_k(const kv_cache *kv, int l, int b) {
    return kv->k + ((size_t)l * kv->batch + b) * kv->n_kv_heads * kv->max_seq * kv->head_dim;
}
static inline float *kvcache_v(const kv_cache *kv, int l, int b) {
    return kv->v + ((size_t)l * kv->batch + b) * kv->n_kv_heads * kv->max_seq * kv->head_dim;
}

// Bytes held by K and V together.
size_t kvcache_bytes(const kv_cache *kv);

#endif
