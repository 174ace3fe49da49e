// matmul_small.h: an AVX-512 sgemm for products with one small dimension (the per-expert
// products of fine-grained experts: d_ff 64-256 against d_model), where OpenBLAS's
// per-call packing of the large operand costs as much as the arithmetic.
//
// Row-major float32, `acc` = 1 adds into C. The three forms of matmul.h:
//   C[M,N]   (+)= A[M,K] B[N,K]^T                        matmul_small_nt
//   C[M,N]   (+)= A[M,K] B[K,N]                          matmul_small_nn
//   C[M,N]   (+)= A[K,M]^T B[K,N]                        matmul_small_tn
// Every output element is one sum over k = 0..K-1 in ascending order, in float, by
// fused multiply-adds; A is read in place (only the NT form packs B, the small operand,
// transposed). The result therefore does not depend on M, on the row blocking or on the
// thread count. Only the AVX-512 level has this kernel: matmul_small_use() says whether
// the caller should take it (otherwise matmul.h's BLAS products are the path).
#ifndef MONOLITH_MATMUL_SMALL_H
#define MONOLITH_MATMUL_SMALL_H

// 1 when the active SIMD level is AVX-512 and the product (the form's M, N, K) has a
// dimension small enough that this kernel is the faster path (docs/benchmarks.md,
// "Fine-grained experts": at most 256 for NT, 64 for NN and TN); 0 otherwise. It depends
// on the shape and level only, never on the rows a call gets.
typedef enum { MATMUL_SMALL_NT, MATMUL_SMALL_NN, MATMUL_SMALL_TN } matmul_small_form;
int matmul_small_use(matmul_small_form form, int M, int N, int K);

void matmul_small_nt(float *C, const float *A, const float *B, int M, int N, int K, int acc);
void matmul_small_nn(float *C, const float *A, const float *B, int M, int N, int K, int acc);
void matmul_small_tn(float *C, const float *A, const float *B, int M, int N, int K, int acc);

// An operand read through a row map: its row i is base + (rows[i] / div) * width (the
// experts' rows straight from the layer's input through the dispatch, slot id / top_k =
// token, instead of a gathered copy). NULL, or rows == NULL: row i is row i.
typedef struct {
    const int *rows;
    int div;
} matmul_rows;

// The fused forms of the SwiGLU expert FFN (engine/moe.c), each one pass over the large
// operand where the plain forms would make two:
//   C1 (+)= A B1^T, C2 (+)= A B2^T            matmul_small_nt2     h1, h3 from xs (A mapped)
//   C (+)= A1 B1 + A2 B2                       matmul_small_nn_sum  dxs = dh1 w1 + dh3 w3
//   C1 (+)= A1^T B, C2 (+)= A2^T B             matmul_small_tn2     dw1, dw3 from xs (B mapped)
// Each output element is the plain form's sum (terms in the order written). C2 (and for
// tn2 either output) may be NULL: that output is skipped.
void matmul_small_nt2(float *C1, float *C2, const float *A, const matmul_rows *amap, const float *B1, const float *B2,
                      int M, int N, int K, int acc);
void matmul_small_nn_sum(float *C, const float *A1, const float *B1, const float *A2, const float *B2, int M, int N,
                         int K, int acc);
void matmul_small_tn2(float *C1, float *C2, const float *A1, const float *A2, const float *B, const matmul_rows *bmap,
                      int M, int N, int K, int acc);

// The fused forms over G groups of rows, as matmul.h's grouped products (offs[G+1],
// stacked weights [G, ...], matmul_grouped_schedule's threading; tn2 only the groups
// on[g] marks, NULL: all). A row map covers all offs[G] rows (block g uses its entries
// offs[g] ..); the mapped operand's base is not offset.
void matmul_small_grouped_nt2(float *C1, float *C2, const float *A, const matmul_rows *amap, const float *B1,
                              const float *B2, const int *offs, int G, int N, int K, int acc);
void matmul_small_grouped_nn_sum(float *C, const float *A1, const float *B1, const float *A2, const float *B2,
                                 const int *offs, int G, int N, int K, int acc);
void matmul_small_grouped_tn2_some(float *C1, float *C2, const float *A1, const float *A2, const float *B,
                                   const matmul_rows *bmap, const int *offs, int G, int M, int N, int acc,
                                   const unsigned char *on);

#endif
