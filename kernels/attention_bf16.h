// attention_bf16.h: the bf16 products of the AVX-512 attention heads (private to kernels/,
// used by attention_avx512.c under mo_attention.bf16).
//
// `vdpbf16ps` multiplies pairs of bf16 and adds both products to an fp32 lane, so every
// operand is stored as 32-bit words holding two bf16 values adjacent in the contraction:
// "pairs" below. The arithmetic is that of the fp32 heads' scores_t and rows_acc with the
// contraction taken two at a time; the outputs stay fp32.
#ifndef MONOLITH_ATTENTION_BF16_H
#define MONOLITH_ATTENTION_BF16_H

#include "kernels/bf16.h"

#include <stdint.h>

// 1 when the CPU has AVX512_BF16 (and the build's compiler could target it).
int att_bf16_cpu(void);

// dst[r2 * ldd + c] = (bf16 src[2 r2][c], bf16 src[2 r2 + 1][c]) for 2 r2 < nrows, c < ncols
// (a multiple of 16); an odd last row is paired with 0. src rows lds floats apart.
void att_bf16_pack_pairs(uint32_t *dst, int ldd, const float *src, int lds, int nrows, int ncols);
// dst[r * ldd + c] = bf16 src[r * lds + c] for r < nrows, c < ncols (a multiple of 16).
void att_bf16_rows(mo_bf16 *dst, int ldd, const float *src, int lds, int nrows, int ncols);

// sT[j][i] = sum_d x[j][d] yT[d][i] for the keys j < bc of a tile at c0 and the query
// vectors of block r0 that see them (the fp32 heads' tile_scores): x bf16 rows (ldx
// elements apart), yT2 the pairs along d of yT ([hd / 2][ATT_QB] words).
void att_bf16_tile_scores(float *sT, const mo_bf16 *x, int ldx, const uint32_t *yT2, int hd, int r0, int nv, int c0,
                          int bc);

// C[r * ldc + 16 v + lane] = C (times alpha[r] if given) + sum over even x in [x0, x1) of
// the pair A[r * ra + (x / 2) * xa] . the pair B2[(x / 2) * ldb + 16 v + lane], for r < n1
// and v < n2 (each 1 to 4); x0 and x1 even.
void att_bf16_rows_acc(float *C, int ldc, const float *alpha, const uint32_t *A, int ra, int xa, const uint32_t *B2,
                       int ldb, int x0, int x1, int n1, int n2);

#endif
