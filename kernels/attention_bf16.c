// attention_bf16.c: the bf16 x bf16 -> fp32 products of the AVX-512 attention heads
// (AVX512_BF16 `vdpbf16ps`), and the packing of their operands into pairs.
//
// Same register tiles as the fp32 scores_t and rows_acc of attention_avx512.c (4 x 4
// accumulators of 16 lanes), each step taking two terms of the contraction at once.
// Rounding to bf16 is `vcvtne2ps2bf16`: nearest, ties to even, as bf16_from_f32.
#include "kernels/attention_bf16.h"

#include "kernels/attention_avx512.h"
#include "kernels/simd.h"

#include <string.h>

#if MO_HAVE_X86 && defined(__GNUC__) && (__GNUC__ >= 10 || defined(__clang__))
#include <immintrin.h>

#define QB ATT_QB
#define AI __attribute__((always_inline)) inline
#define TBF __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx512bf16,fma")))

int att_bf16_cpu(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16");
}

// 32 floats -> 32 bf16 in order.
static AI TBF __m512i cvt32(const float *x) {
    return (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + 16), _mm512_loadu_ps(x));
}
// 16 floats -> 16 bf16 in the low half.
static AI TBF __m512i cvt16(const float *x) { return (__m512i)_mm512_cvtne2ps_pbh(_mm512_setzero_ps(), _mm512_loadu_ps(x)); }

TBF void att_bf16_pack_pairs(uint32_t *dst, int ldd, const float *src, int lds, int nrows, int ncols) {
    // word c of the pair row: element c of row a (low half), then of row b
    static const uint16_t order[32] = {0, 32, 1, 33, 2,  34, 3,  35, 4,  36, 5,  37, 6,  38, 7,  39,
                                       8, 40, 9, 41, 10, 42, 11, 43, 12, 44, 13, 45, 14, 46, 15, 47};
    const __m512i lo = _mm512_loadu_si512(order), hi = _mm512_add_epi16(lo, _mm512_set1_epi16(16));
    for (int r = 0; r < nrows; r += 2) {
        const float *a = src + (size_t)r * lds, *b = r + 1 < nrows ? a + lds : NULL;
        uint32_t *d = dst + (size_t)(r / 2) * ldd;
        int c = 0;
        for (; c + 32 <= ncols; c += 32) {
            __m512i va = cvt32(a + c), vb = b ? cvt32(b + c) : _mm512_setzero_si512();
            _mm512_storeu_si512(d + c, _mm512_permutex2var_epi16(va, lo, vb));
            _mm512_storeu_si512(d + c + 16, _mm512_permutex2var_epi16(va, hi, vb));
        }
        if (c < ncols) {  // 16 columns left
            __m512i va = cvt16(a + c), vb = b ? cvt16(b + c) : _mm512_setzero_si512();
            _mm512_storeu_si512(d + c, _mm512_permutex2var_epi16(va, lo, vb));
        }
    }
}

TBF void att_bf16_rows(mo_bf16 *dst, int ldd, const float *src, int lds, int nrows, int ncols) {
    for (int r = 0; r < nrows; r++) {
        const float *s = src + (size_t)r * lds;
        mo_bf16 *d = dst + (size_t)r * ldd;
        int c = 0;
        for (; c + 32 <= ncols; c += 32) _mm512_storeu_si512(d + c, cvt32(s + c));
        if (c < ncols) _mm256_storeu_si256((__m256i *)(d + c), _mm512_castsi512_si256(cvt16(s + c)));
    }
}

// The fp32 scores_t with pairs along d: sT[jj][16 (v0 + v) + lane] for jj < NJ, v < NV.
static AI TBF void scores_t(float *sT, const mo_bf16 *x, int ldx, const uint32_t *yT2, int hd, int v0, const int NJ,
                            const int NV) {
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int j = 0; j < NJ; j++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) acc[j][v] = _mm512_setzero_ps();
    const uint32_t *y0 = yT2 + 16 * v0;
    for (int d2 = 0; d2 < hd / 2; d2++) {
        __m512bh y[4];
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) y[v] = (__m512bh)_mm512_load_si512(y0 + (size_t)d2 * QB + 16 * v);
#pragma GCC unroll 4
        for (int j = 0; j < NJ; j++) {
            uint32_t w;
            memcpy(&w, x + (size_t)j * ldx + 2 * d2, sizeof w);
            __m512bh b = (__m512bh)_mm512_set1_epi32((int)w);
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) acc[j][v] = _mm512_dpbf16_ps(acc[j][v], b, y[v]);
        }
    }
#pragma GCC unroll 4
    for (int j = 0; j < NJ; j++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) _mm512_store_ps(sT + (size_t)j * QB + 16 * (v0 + v), acc[j][v]);
}

// The fp32 rows_acc with pairs along x (x0, x1 even).
static AI TBF void rows_acc(float *C, int ldc, const float *alpha, const uint32_t *A, int ra, int xa,
                            const uint32_t *B2, int ldb, int x0, int x1, const int R, const int NV) {
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        __m512 s = alpha ? _mm512_set1_ps(alpha[r]) : _mm512_set1_ps(1.0f);
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) {
            __m512 c = _mm512_loadu_ps(C + (size_t)r * ldc + 16 * v);
            acc[r][v] = alpha ? _mm512_mul_ps(c, s) : c;
        }
    }
    for (int x2 = x0 / 2; x2 < x1 / 2; x2++) {
        __m512bh b[4];
        const uint32_t *bx = B2 + (size_t)x2 * ldb;
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) b[v] = (__m512bh)_mm512_loadu_si512(bx + 16 * v);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            __m512bh a = (__m512bh)_mm512_set1_epi32((int)A[(size_t)r * ra + (size_t)x2 * xa]);
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], a, b[v]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) _mm512_storeu_ps(C + (size_t)r * ldc + 16 * v, acc[r][v]);
}

TBF void att_bf16_tile_scores(float *sT, const mo_bf16 *x, int ldx, const uint32_t *yT2, int hd, int r0, int nv,
                              int c0, int bc) {
    for (int j = 0; j < bc; j += 4) {
        int n1 = bc - j < 4 ? bc - j : 4, v0 = att_first_vector(c0, j, r0), n2 = nv - v0;
        ATT_CASES(scores_t, sT + (size_t)j * QB, x + (size_t)j * ldx, ldx, yT2, hd, v0)
    }
}

TBF void att_bf16_rows_acc(float *C, int ldc, const float *alpha, const uint32_t *A, int ra, int xa,
                           const uint32_t *B2, int ldb, int x0, int x1, int n1, int n2) {
    ATT_CASES(rows_acc, C, ldc, alpha, A, ra, xa, B2, ldb, x0, x1)
}

#else  // no AVX512_BF16 target: never called (att_bf16_cpu says 0)

int att_bf16_cpu(void) { return 0; }
void att_bf16_pack_pairs(uint32_t *dst, int ldd, const float *src, int lds, int nrows, int ncols) {
    (void)dst, (void)ldd, (void)src, (void)lds, (void)nrows, (void)ncols;
}
void att_bf16_rows(mo_bf16 *dst, int ldd, const float *src, int lds, int nrows, int ncols) {
    (void)dst, (void)ldd, (void)src, (void)lds, (void)nrows, (void)ncols;
}
void att_bf16_tile_scores(float *sT, const mo_bf16 *x, int ldx, const uint32_t *yT2, int hd, int r0, int nv, int c0,
                          int bc) {
    (void)sT, (void)x, (void)ldx, (void)yT2, (void)hd, (void)r0, (void)nv, (void)c0, (void)bc;
}
void att_bf16_rows_acc(float *C, int ldc, const float *alpha, const uint32_t *A, int ra, int xa, const uint32_t *B2,
                       int ldb, int x0, int x1, int n1, int n2) {
    (void)C, (void)ldc, (void)alpha, (void)A, (void)ra, (void)xa, (void)B2, (void)ldb, (void)x0, (void)x1, (void)n1,
        (void)n2;
}
#endif
