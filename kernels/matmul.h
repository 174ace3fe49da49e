// matmul.h: dense and grouped (per-expert) matrix products over cblas_sgemm.
//
// All matrices are row-major float32. `acc` = 1 adds the product into C, 0 overwrites C.
// The three forms are the three products of a linear layer y = x W^T with W stored
// [out, in] like PyTorch's nn.Linear.weight:
//   forward          y[T,out]  = x[T,in]   W[out,in]^T     matmul_nt
//   input gradient   dx[T,in]  = dy[T,out] W[out,in]       matmul_nn
//   weight gradient  dW[out,in] += dy[T,out]^T x[T,in]     matmul_tn (acc = 1)
#ifndef MONOLITH_MATMUL_H
#define MONOLITH_MATMUL_H

#include <stddef.h>

// C[M,N] (+)= A[M,K] B[K,N]
void matmul_nn(float *C, const float *A, const float *B, int M, int N, int K, int acc);
// C[M,N] (+)= A[M,K] B[N,K]^T
void matmul_nt(float *C, const float *A, const float *B, int M, int N, int K, int acc);
// C[M,N] (+)= A[K,M]^T B[K,N]
void matmul_tn(float *C, const float *A, const float *B, int M, int N, int K, int acc);
// The same three products on matmul_small.h's kernel when the shape has a dimension small
// enough for it to be the faster path (matmul_small_use: fine-grained experts' d_ff, where
// BLAS's packing costs more than the arithmetic), else the BLAS ones above. The choice depends on the shape only.
void matmul_auto_nt(float *C, const float *A, const float *B, int M, int N, int K, int acc);
void matmul_auto_nn(float *C, const float *A, const float *B, int M, int N, int K, int acc);
void matmul_auto_tn(float *C, const float *A, const float *B, int M, int N, int K, int acc);

// Grouped products for the experts (docs/design.md section 10.2). The rows of A and C are split
// into G contiguous blocks: block g is rows offs[g] .. offs[g+1]-1 (offs has G+1
// entries, offs[0] = 0; a block may be empty). Block g is multiplied by its own matrix
// B_g, the g-th slice of a stacked [G, ...] tensor: one GEMM per non-empty block.
//
// C_g[n_g,N] (+)= A_g[n_g,K] B_g[N,K]^T, B is [G,N,K]    (expert forward: x w1^T)
void matmul_grouped_nt(float *C, const float *A, const float *B, const int *offs, int G, int N, int K, int acc);
// C_g[n_g,N] (+)= A_g[n_g,K] B_g[K,N], B is [G,K,N]      (expert input gradient)
void matmul_grouped_nn(float *C, const float *A, const float *B, const int *offs, int G, int N, int K, int acc);
// C_g[M,N] (+)= A_g[n_g,M]^T B_g[n_g,N], C is [G,M,N]    (expert weight gradient)
// A block with no rows leaves C_g as it was (acc = 1) or zero (acc = 0).
void matmul_grouped_tn(float *C, const float *A, const float *B, const int *offs, int G, int M, int N, int acc);
// matmul_grouped_nn and _tn for the blocks on[g] marks only (matmul_grouped_some); the
// other blocks of C are not touched. Each marked block gets the bits the whole call gives it.
void matmul_grouped_nn_some(float *C, const float *A, const float *B, const int *offs, int G, int N, int K, int acc,
                            const unsigned char *on);
void matmul_grouped_tn_some(float *C, const float *A, const float *B, const int *offs, int G, int M, int N, int acc,
                            const unsigned char *on);

// How the grouped products use the threads (docs/threading.md). AUTO (the default) picks
// per call from the block sizes; the other two force one way, for benchmarks and tests.
// Called outside a parallel region, both ways use every thread; inside one, the blocks
// run one after the other with single-threaded BLAS. Results are the same either way.
typedef enum {
    MATMUL_GROUPED_AUTO = 0,
    MATMUL_GROUPED_BLAS_PARALLEL,   // one BLAS call per block in turn, each using all threads
    MATMUL_GROUPED_BLOCK_PARALLEL,  // blocks spread over the threads, serial BLAS per block
} matmul_grouped_strategy;
void matmul_grouped_set_strategy(matmul_grouped_strategy s);
// Runs block(ctx, g) for every g < G that on[g] marks (on = NULL: all) under the policy
// above, offs[] giving the blocks' rows: the scaffold of every grouped product (the fused
// ones of matmul_small.h too).
void matmul_grouped_schedule(const int *offs, int G, const unsigned char *on, void (*block)(const void *ctx, int g),
                             const void *ctx);
// 1 when block g of offs[] runs by itself with every thread inside BLAS under the policy
// above (AUTO's big block, or BLAS_PARALLEL, or one thread / inside a parallel region),
// 0 when it is one of the blocks spread over the threads. BLAS's bits can depend on its
// thread count, so a caller that schedules a block's products itself asks this.
int matmul_grouped_alone(const int *offs, int G, int g);

// The grouped products of any element type (float here, bf16 in bf16.h) are one
// scaffold: the three dense products of that type, and block g cut out of A, B and C by
// offs[] as above, run under the policy above.
typedef enum { MATMUL_NT, MATMUL_NN, MATMUL_TN } matmul_form;
typedef void (*matmul_dense_fn)(float *C, const void *A, const void *B, int M, int N, int K, int acc);
typedef struct {
    matmul_dense_fn nt, nn, tn;
    size_t elem;  // bytes per element of A and B
} matmul_dense_ops;
// The grouped product of `form` (N, K as in matmul_grouped_nt/nn; M, N for TN).
void matmul_grouped(const matmul_dense_ops *ops, matmul_form form, float *C, const void *A, const void *B,
                    const int *offs, int G, int N, int K, int acc);
// The blocks on[g] marks only (a fine-tune's trained experts); the others' C_g are not
// touched, and the marked ones get the bits of the full call.
void matmul_grouped_some(const matmul_dense_ops *ops, matmul_form form, float *C, const void *A, const void *B,
                         const int *offs, int G, int N, int K, int acc, const unsigned char *on);

#endif
