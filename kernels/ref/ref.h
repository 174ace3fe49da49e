// ref.h: the oracles. Plain, obviously-correct versions of every kernel, in double,
// written from the math and nothing else: no SIMD, no blocking, no BLAS, no tricks.
// Tests compare the optimized float kernels against these and check these against
// finite differences. Never deleted, never optimized. Same argument order, shapes and
// accumulate/assign rules as the optimized kernel of the same name (see its header).
#ifndef MONOLITH_REF_H
#define MONOLITH_REF_H

#include <stddef.h>

// matmul.h
void ref_matmul_nn(double *C, const double *A, const double *B, int M, int N, int K, int acc);
void ref_matmul_nt(double *C, const double *A, const double *B, int M, int N, int K, int acc);
void ref_matmul_tn(double *C, const double *A, const double *B, int M, int N, int K, int acc);
void ref_matmul_grouped_nt(double *C, const double *A, const double *B, const int *offs, int G, int N, int K, int acc);
void ref_matmul_grouped_nn(double *C, const double *A, const double *B, const int *offs, int G, int N, int K, int acc);
void ref_matmul_grouped_tn(double *C, const double *A, const double *B, const int *offs, int G, int M, int N, int acc);

// bf16.h: x rounded to the nearest bfloat16 (ties to even), as a double. The bf16
// products are checked as ref_matmul_* of the rounded inputs.
double ref_bf16_round(double x);

// embedding.h
void ref_embedding_forward(double *out, const int *tokens, const double *table, int n, int d);
void ref_embedding_backward(double *dtable, const double *dout, const int *tokens, int n, int d);

// rmsnorm.h
void ref_rmsnorm_forward(double *out, double *rstd, const double *x, const double *w, int n, int d, double eps);
void ref_rmsnorm_backward(double *dx, double *dw, const double *dout, const double *x, const double *w,
                          const double *rstd, int n, int d);

// rope.h (angles computed directly, no tables)
void ref_rope_forward(double *x, const int *pos, int n, int n_heads, int head_dim, double theta);
void ref_rope_backward(double *dx, const int *pos, int n, int n_heads, int head_dim, double theta);

// swiglu.h
void ref_silu_forward(double *out, const double *x, size_t n);
void ref_silu_backward(double *dx, const double *dout, const double *x, size_t n);
void ref_swiglu_forward(double *out, const double *a, const double *b, size_t n);
void ref_swiglu_backward(double *da, double *db, const double *dout, const double *a, const double *b, size_t n);
// The bf16 outputs (swiglu_forward_bf16, swiglu_backward_bf16): the above, each rounded
// to bf16 (ref_bf16_round).
void ref_swiglu_forward_bf16(double *out, const double *a, const double *b, size_t n);
void ref_swiglu_backward_bf16(double *da, double *db, const double *dout, const double *a, const double *b, size_t n);

// softmax.h
void ref_softmax_forward(double *out, const double *x, int rows, int cols);
void ref_softmax_backward(double *dx, const double *dout, const double *out, int rows, int cols);
void ref_logsumexp_rows(double *lse, const double *x, int rows, int cols);

// cross_entropy.h
void ref_cross_entropy_forward(double *losses, const double *logits, const int *targets, int n, int V);
void ref_cross_entropy_backward(double *dlogits, const double *logits, const int *targets, const double *dloss, int n,
                                int V);
// The bf16 form (cross_entropy_backward_bf16): the above rounded to bf16 (ref_bf16_round).
void ref_cross_entropy_backward_bf16(double *dlogits, const double *logits, const int *targets, const double *dloss,
                                     int n, int V);

// topk.h
void ref_topk_forward(int *idx, double *val, const double *x, int n, int E, int k);
void ref_topk_backward(double *dx, const double *dval, const int *idx, int n, int E, int k);

// sumsq.h: the plain sum of squares, one accumulator (the kernel's lanes only reorder it)
double ref_sumsq(const double *x, size_t n);

// residual.h
void ref_residual_forward(double *out, const double *a, const double *b, size_t n);
void ref_residual_backward(double *da, double *db, const double *dout, size_t n);

// attention.h: one call as mo_attention in double. The oracle materializes the
// probabilities att[B, nh, T, T] plainly (forward writes them, backward reads them); lse[B,
// nh, T], the log-sum-exp of each query's scaled scores, may be NULL.
typedef struct {
    int B, T, nh, nkv, hd;
    const double *q, *k, *v;
    double *out, *att, *lse;
} ref_attention;
void ref_attention_forward(const ref_attention *a);
// Assigns dq [B, T, nh, hd], dk and dv [B, T, nkv, hd] from dout [B, T, nh, hd].
void ref_attention_backward(const ref_attention *a, const double *dout, double *dq, double *dk, double *dv);

// gemv.h: y[r] = (acc ? y[r] : 0) + alpha * W[r, :] . x; the 8-bit form takes int8 q and
// per-block scales (blocks of Q8_BLOCK columns) and multiplies the weights they stand for
// by x rounded to 16 bits as the kernel rounds it (q8_quantize_x), exactly in double.
void ref_gemv(double *y, const double *W, const double *x, int rows, int cols, double alpha, int acc);
void ref_gemv_q8(double *y, const signed char *q, const float *scale, const double *x, int rows, int cols,
                 double alpha, int acc);

// attention_decode.h: one query head over n cached keys and values [n, hd].
void ref_attention_decode_head(double *out, const double *q, const double *K, const double *V, int n, int hd);

#endif
