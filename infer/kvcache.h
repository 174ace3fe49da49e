// kvcache.h: the key/value cache of incremental decoding.
//
// Per layer and per sequence of the batch, K and V are [n_kv_heads, max_seq, head_dim]
// (K already rotated by RoPE): one head's keys for positions 0..len-1 are contiguous, so
// a decode step reads them as one matrix. The whole cache is two allocations,
// [n_layers, batch, n_kv_heads, max_seq, head_dim] each, made once.
//
// Elements are fp32, or bf16 (`bf16` set: half the bytes, so half the memory a decode
// step reads for attention, at a relative rounding error of at most 2^-9 per element;
// inference's --precision bf16). Writers and readers go through kvcache_put and
// kvcache_attend, which know the storage.
#ifndef MONOLITH_KVCACHE_H
#define MONOLITH_KVCACHE_H

#include "engine/config.h"

#include <stddef.h>

typedef struct {
    int n_layers, batch, n_kv_heads, max_seq, head_dim;
    int bf16;      // 1: elements are mo_bf16, else float
    void *k, *v;   // [n_layers, batch, n_kv_heads, max_seq, head_dim]
    int *len;      // [batch] positions filled in each sequence
} kv_cache;

// Allocates a cache for `batch` sequences of up to `max_seq` positions of the model `c`
// (all lengths 0), fp32 or (bf16 = 1) bf16 elements. Returns 0, or -1 with a message for
// a bad size or out of memory (the message gives the size in MB).
int kvcache_init(kv_cache *kv, const mo_config *c, int batch, int max_seq, int bf16);
void kvcache_free(kv_cache *kv);

// Forgets sequence b (its length becomes 0); b < 0 forgets every sequence.
void kvcache_reset(kv_cache *kv, int b);

// Bytes held by K and V together.
size_t kvcache_bytes(const kv_cache *kv);

enum { KV_K = 0, KV_V = 1 };

// Stores x[head_dim] as the key (side KV_K) or value (KV_V) of layer l, sequence b, kv
// head g at position pos, rounded to bf16 (to nearest even) in a bf16 cache.
void kvcache_put(kv_cache *kv, int side, int l, int b, int g, int pos, const float *x);

// Attention of query head q[head_dim] over positions 0..n-1 of kv head g of layer l,
// sequence b (kernels/attention_decode.h): out[head_dim], p[n] scratch.
void kvcache_attend(const kv_cache *kv, int l, int b, int g, int n, const float *q, float *out, float *p);

#endif
