// matmul_small.h: an AVX-512 sgemm for products with one small dimension (the per-expert
// products of fine-grained experts: d_ff 64-256 against d_model), where OpenBLAS's
// per-call packing of the large operand costs as much as the arithmetic.
//
// Row-major float32, `acc` = 1 adds into C. The three forms of matmul.h, and the two
// fused forms the SwiGLU expert FFN needs (engine/moe.c):
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
// "Fine-grained experts"); 0 otherwise.
typedef enum { MATMUL_SMALL_NT, MATMUL_SMALL_NN, MATMUL_SMALL_TN } matmul_small_form;
int matmul_small_use(matmul_small_form form, int M, int N, int K);

void matmul_small_nt(float *C, const float *A, const float *B, int M, int N, int K, int acc);
void matmul_small_nn(float *C, const float *A, const float *B, int M, int N, int K, int acc);
void matmul_small_tn(float *C, const float *A, const float *B, int M, int N, int K, int acc);

#endif
