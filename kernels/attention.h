// attention.h: causal self-attention with grouped-query heads (GQA), forward and backward.
//
// B sequences of length T. q[B, T, nh, hd], k and v[B, T, nkv, hd] (already rotated by
// RoPE), out[B, T, nh, hd]. Query head h reads kv head h / (nh / nkv). Scores are
// q.k / sqrt(hd), masked to keys at positions <= the query's, softmaxed per query.
//
// Forward caches the probabilities att[B, nh, T, T] (row t holds the weights of query t
// over keys 0..t; the rest are zero). Backward assigns dq, dk and dv, and needs a
// scratch buffer of attention_scratch_floats(...) floats (no allocation inside): one
// block of query rows x T per thread, so size it after threads_init() and again if the
// thread count changes. Both run the (batch, head) pairs in parallel with OpenMP; call
// them from serial code (inside a parallel region the threads would share one scratch).
#ifndef MONOLITH_ATTENTION_H
#define MONOLITH_ATTENTION_H

#include <stddef.h>

void attention_forward(float *out, float *att, const float *q, const float *k, const float *v, int B, int T, int nh,
                       int nkv, int hd);
size_t attention_scratch_floats(int B, int T, int nh, int nkv, int hd);
void attention_backward(float *dq, float *dk, float *dv, float *scratch, const float *dout, const float *att,
                        const float *q, const float *k, const float *v, int B, int T, int nh, int nkv, int hd);

#endif
