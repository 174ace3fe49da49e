// attention_decode.h: attention of one new token over the KV cache (decode).
//
// One query head q[hd] against n cached keys K[n, hd] and values V[n, hd] (row-major,
// one head's positions 0..n-1, as infer/kvcache.h stores them; K already rotated):
// scores p_j = q . K_j / sqrt(hd), softmax over j, out = sum_j p_j V_j. It reads K and V
// once each, in order, with SIMD over hd; the caller spreads the heads over threads.
#ifndef MONOLITH_ATTENTION_DECODE_H
#define MONOLITH_ATTENTION_DECODE_H

#include "kernels/bf16.h"

// out[hd] for one head; p[n] is scratch (left holding the attention weights). n >= 1.
// out must not overlap q, K, V or p.
void attention_decode_head(float *out, float *p, const float *q, const float *K, const float *V, int n, int hd);
// The same over K and V stored as bf16 (a cache of half the bytes): each element widened
// to the float it stands for, then the fp32 arithmetic above.
void attention_decode_head_bf16(float *out, float *p, const float *q, const mo_bf16 *K, const mo_bf16 *V, int n,
                                int hd);

#endif
