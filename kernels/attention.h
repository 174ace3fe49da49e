// attention.h: causal self-attention with grouped-query heads (GQA), forward and backward.
//
// B sequences of length T. q[B, T, nh, hd], k and v[B, T, nkv, hd] (already rotated by
// RoPE), out[B, T, nh, hd]. Query head h reads kv head h / (nh / nkv). Scores are
// q.k / sqrt(hd), masked to keys at positions <= the query's, softmaxed per query.
//
// Fused and tiled (flash-style, docs/design.md "Attention"): no T x T matrix is ever
// stored. Forward keeps only lse[B, nh, T], the log-sum-exp of each query's scores;
// backward rebuilds the probabilities tile by tile from q, k and lse, and takes the
// softmax's row term from dout and out. Memory is O(T) per head; the per-thread tiles
// live on the stack (at most 64 KB, or with the AVX-512 heads of attention_avx512.c up to
// 144 KB forward and 256 KB backward at hd 128), so neither call needs scratch. Backward
// assigns dq, dk and dv. Both run the (batch, head) pairs in parallel with OpenMP; call them from
// serial code.
#ifndef MONOLITH_ATTENTION_H
#define MONOLITH_ATTENTION_H

// One attention call: its shape and tensors. out and lse [B, nh, T] are written by forward
// and read by backward.
typedef struct {
    int B, T, nh, nkv, hd;
    const float *q, *k, *v;
    float *out, *lse;
} mo_attention;

void attention_forward(const mo_attention *a);
// Assigns dq [B, T, nh, hd], dk and dv [B, T, nkv, hd] from dout [B, T, nh, hd].
void attention_backward(const mo_attention *a, const float *dout, float *dq, float *dk, float *dv);

// For --precision bf16: the same with the products (q k^T, p v, and in backward dout v^T,
// ds k, ds^T q, p^T dout) on bf16-rounded operands with fp32 accumulation, as PyTorch's
// bf16 autocast runs attention's matmuls; the softmax, lse and every output stay fp32
// (docs/design.md, "bf16 compute"). Where attention_bf16_takes says 0 (a head size the
// AVX-512 heads do not take, or no AVX512_BF16) they compute exactly as the fp32 calls.
void attention_forward_bf16(const mo_attention *a);
void attention_backward_bf16(const mo_attention *a, const float *dout, float *dq, float *dk, float *dv);
int attention_bf16_takes(int hd);

#endif
