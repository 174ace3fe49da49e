// bf16.h: bfloat16 storage and bf16 x bf16 -> fp32 matrix products (--precision bf16).
//
// bfloat16 is the top half of an IEEE float32: same exponent range, 8 bits of mantissa
// (relative rounding error 2^-9). The model keeps fp32 master weights and fp32
// activations; for bf16 compute each GEMM's inputs are rounded to bf16 (weights once per
// forward, activations right before their product) and the products accumulate and are
// stored in fp32.
//
// The products run on oneDNN's bf16 GEMM (Debian's libdnnl, its AVX512_BF16 `vdpbf16ps`
// kernels; OpenBLAS 0.3.21 declares cblas_sbgemm in its header, but Debian builds it
// without bf16, so the symbol is absent). Same shapes, forms and acc rules as matmul.h;
// the grouped forms share its thread policy (matmul_grouped in matmul.h).
#ifndef MONOLITH_BF16_H
#define MONOLITH_BF16_H

#include <stddef.h>
#include <stdint.h>

typedef uint16_t mo_bf16;

// 1 when this CPU runs bf16 products natively (AVX512_BF16, as oneDNN sees it), else 0.
// Without it oneDNN would emulate them at a fraction of the fp32 rate: callers refuse
// bf16 compute instead (see model_set_precision). Native is not always faster than fp32:
// Intel's cores without AMX run vdpbf16ps at half their FMAs' multiply-adds a cycle
// (roofline_bf16_gflops measures it; docs/benchmarks.md).
int bf16_supported(void);

// dst[i] = x[i] rounded to the nearest bf16, ties to even (NaN stays a quiet NaN,
// overflow rounds to infinity, subnormals round like any other value). Every SIMD level
// gives the same bits. Threads over large arrays.
void bf16_from_f32(mo_bf16 *dst, const float *x, size_t n);
// The same bits with non-temporal stores, on the calling thread: for a copy that is
// written now and read much later (AdamW's bf16 copy of the weights, read by the next
// forward), whose cache lines need not be read in before they are written.
void bf16_from_f32_stream(mo_bf16 *dst, const float *x, size_t n);
// dst[i] = (s * x[i]) rounded: the product in float32, then the rounding above, so the
// bits of scaling into float32 and rounding that in a pass of its own; on the calling
// thread (a row at a time, inside the caller's row loop).
void bf16_from_f32_scaled(mo_bf16 *dst, const float *x, float s, size_t n);
// dst[i] = the float of x[i] (exact).
void bf16_to_f32(float *dst, const mo_bf16 *x, size_t n);

// The products of matmul.h with bf16 inputs and fp32 C: C[M,N] (+)= op(A) op(B).
void matmul_bf16_nn(float *C, const mo_bf16 *A, const mo_bf16 *B, int M, int N, int K, int acc);
void matmul_bf16_nt(float *C, const mo_bf16 *A, const mo_bf16 *B, int M, int N, int K, int acc);
void matmul_bf16_tn(float *C, const mo_bf16 *A, const mo_bf16 *B, int M, int N, int K, int acc);
void matmul_bf16_grouped_nt(float *C, const mo_bf16 *A, const mo_bf16 *B, const int *offs, int G, int N, int K,
                            int acc);
void matmul_bf16_grouped_nn(float *C, const mo_bf16 *A, const mo_bf16 *B, const int *offs, int G, int N, int K,
                            int acc);
void matmul_bf16_grouped_tn(float *C, const mo_bf16 *A, const mo_bf16 *B, const int *offs, int G, int M, int N,
                            int acc);
// The blocks on[g] marks only (matmul_grouped_some).
void matmul_bf16_grouped_nn_some(float *C, const mo_bf16 *A, const mo_bf16 *B, const int *offs, int G, int N, int K,
                                 int acc, const unsigned char *on);
void matmul_bf16_grouped_tn_some(float *C, const mo_bf16 *A, const mo_bf16 *B, const int *offs, int G, int M, int N,
                                 int acc, const unsigned char *on);

#endif
