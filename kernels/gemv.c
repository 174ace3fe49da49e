// gemv.c: matrix-vector products (fp32 and 8-bit weights), scalar / AVX2 / AVX-512,
// and the threaded runner of several products at once.
//
// Every level computes each row on its own, the same way wherever it runs, so a row's
// result does not depend on how the rows are split over threads.
#include "kernels/gemv.h"

#include "kernels/simd.h"
#include "kernels/simd_math.h"

#include <math.h>
#include <omp.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------- fp32 access

static _Atomic int pairs = -1;  // -1: not read from the environment yet

void gemv_set_f32_pairs(int on) { atomic_store_explicit(&pairs, on != 0, memory_order_relaxed); }

int gemv_f32_pairs(void) {
    int p = atomic_load_explicit(&pairs, memory_order_relaxed);
    if (p < 0) {
        const char *env = getenv("MONOLITH_GEMV_PAIRS");
        p = !(env && !strcmp(env, "0"));
        atomic_store_explicit(&pairs, p, memory_order_relaxed);
    }
    return p;
}

// ---------------------------------------------------------------------------- quantize

void q8_quantize(int8_t *q, float *scale, const float *W, size_t rows, int cols) {
    const int nb = q8_blocks(cols);
#pragma omp parallel for schedule(static) if (rows * (size_t)cols >= ((size_t)1 << 18))
    for (size_t r = 0; r < rows; r++)
        for (int b = 0; b < nb; b++) {
            const int c0 = b * Q8_BLOCK, c1 = c0 + Q8_BLOCK < cols ? c0 + Q8_BLOCK : cols;
            const float *w = W + r * cols;
            float amax = 0;
            for (int c = c0; c < c1; c++) amax = fabsf(w[c]) > amax ? fabsf(w[c]) : amax;
            float s = amax / 127.0f, inv = amax > 0 ? 127.0f / amax : 0.0f;
            scale[r * nb + b] = s;
            for (int c = c0; c < c1; c++) {
                long v = lrintf(w[c] * inv);
                q[r * cols + c] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
            }
        }
}

static void dequant_row_scalar(float *w, const int8_t *q, const float *scale, int cols) {
    for (int c = 0; c < cols; c++) w[c] = scale[c / Q8_BLOCK] * (float)q[c];
}

// ---------------------------------------------------------------------------- scalar

// Scalar rows accumulate in double: one float accumulator over a long row loses more
// than the SIMD lanes do (as in simd_rows.h).
static void gemv_f32_scalar(float *y, const float *W, const float *x, int rows, int cols, size_t ld, float alpha,
                            int acc) {
    for (int r = 0; r < rows; r++) {
        const float *w = W + r * ld;
        double s = 0;
        for (int c = 0; c < cols; c++) s += (double)w[c] * x[c];
        y[r] = (acc ? y[r] : 0.0f) + alpha * (float)s;
    }
}

// x quantized for the 8-bit products (gemv.h), per block of 32: xs = max|x| / 32767,
// x16 = round(x / xs) to nearest even (lrintf in the default mode, as cvtps2dq).
static void quantize_x_scalar(int16_t *x16, float *xs, const float *x, int cols) {
    for (int c0 = 0, b = 0; c0 < cols; c0 += Q8_BLOCK, b++) {
        const int c1 = c0 + Q8_BLOCK < cols ? c0 + Q8_BLOCK : cols;
        float amax = 0;
        for (int c = c0; c < c1; c++) amax = fmaxf(amax, fabsf(x[c]));
        const float inv = amax > 0 ? 32767.0f / amax : 0.0f;
        xs[b] = amax / 32767.0f;
        for (int c = c0; c < c1; c++) {
            long v = lrintf(x[c] * inv);
            x16[c] = (int16_t)(v > 32767 ? 32767 : v < -32767 ? -32767 : v);
        }
    }
}

// 8-bit rows against x16: per block an exact integer sum, times the weights' and x's
// scales, summed in double.
static void gemv_q8_scalar(float *y, const int8_t *Q, const float *S, const int16_t *x16, const float *xs, int rows,
                           int cols, size_t ld, size_t nbl, float alpha, int acc) {
    const int nb = q8_blocks(cols);
    for (int r = 0; r < rows; r++) {
        const int8_t *q = Q + r * ld;
        double s = 0;
        for (int b = 0; b < nb; b++) {
            const int c0 = b * Q8_BLOCK, c1 = c0 + Q8_BLOCK < cols ? c0 + Q8_BLOCK : cols;
            int32_t t = 0;
            for (int c = c0; c < c1; c++) t += (int32_t)q[c] * x16[c];
            s += (double)(S[r * nbl + b] * xs[b]) * t;
        }
        y[r] = (acc ? y[r] : 0.0f) + alpha * (float)s;
    }
}

#if MO_HAVE_X86
#include <immintrin.h>

// ---------------------------------------------------------------------------- AVX-512

// A fp32 row: 64 columns per step into four 16-lane accumulators, then 16 at a time, the
// tail under a mask. Rows go in pairs (dot2_f32_512, the default) or one after the other
// (MONOLITH_GEMV_PAIRS=0, one stream as a plain read streams); the sums are the same.
// pf (gemv_next): a line prefetched at pf + 4 c for every line read at w + c; NULL, none
// (constant in every caller, so the test is folded away). The sums are the same.
static inline MO_TARGET_AVX512 float dot_f32_512(const float *w, const float *x, int cols, const char *pf) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int c = 0;
    for (; c + 64 <= cols; c += 64) {
        if (pf) {
            const char *f = pf + 4 * (size_t)c;
            _mm_prefetch(f, _MM_HINT_T0), _mm_prefetch(f + 64, _MM_HINT_T0);
            _mm_prefetch(f + 128, _MM_HINT_T0), _mm_prefetch(f + 192, _MM_HINT_T0);
        }
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + c), _mm512_loadu_ps(x + c), a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(w + c + 16), _mm512_loadu_ps(x + c + 16), a1);
        a2 = _mm512_fmadd_ps(_mm512_loadu_ps(w + c + 32), _mm512_loadu_ps(x + c + 32), a2);
        a3 = _mm512_fmadd_ps(_mm512_loadu_ps(w + c + 48), _mm512_loadu_ps(x + c + 48), a3);
    }
    for (; c + 16 <= cols; c += 16) {
        if (pf) _mm_prefetch(pf + 4 * (size_t)c, _MM_HINT_T0);
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + c), _mm512_loadu_ps(x + c), a0);
    }
    if (c < cols) {
        __mmask16 m = (__mmask16)((1u << (cols - c)) - 1);
        a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, w + c), _mm512_maskz_loadu_ps(m, x + c), a0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

// dot_f32_512 of two rows (p, q) at once, each row's sums exactly dot_f32_512's (the same
// accumulators, steps and order), each row's lines prefetched GEMV_PAIR_PREFETCH bytes
// ahead: the 8-bit kernel's access, two streams a thread (rows r and r + rows/2), each
// prefetched. Decode in one process alternating the two accesses, bench-S, 64 tokens a
// round: 1.14x the tokens/s of one stream at 2 threads (wins 14 of 20 rounds), 1.10x at
// one thread (13 of 14), at load 5-7 (docs/benchmarks.md, "fp32 rows in pairs"); two
// streams without the prefetches had read slower than one (0.80-0.96 of a plain read).
#define GEMV_PAIR_PREFETCH 2048
static inline MO_TARGET_AVX512 void dot2_f32_512(float *yp, float *yq, const float *p, const float *q,
                                                 const float *x, int cols) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    int c = 0;
    for (; c + 64 <= cols; c += 64) {
        const char *f = (const char *)(p + c) + GEMV_PAIR_PREFETCH, *g = (const char *)(q + c) + GEMV_PAIR_PREFETCH;
        _mm_prefetch(f, _MM_HINT_T0), _mm_prefetch(f + 64, _MM_HINT_T0);
        _mm_prefetch(f + 128, _MM_HINT_T0), _mm_prefetch(f + 192, _MM_HINT_T0);
        _mm_prefetch(g, _MM_HINT_T0), _mm_prefetch(g + 64, _MM_HINT_T0);
        _mm_prefetch(g + 128, _MM_HINT_T0), _mm_prefetch(g + 192, _MM_HINT_T0);
        const __m512 x0 = _mm512_loadu_ps(x + c), x1 = _mm512_loadu_ps(x + c + 16);
        const __m512 x2 = _mm512_loadu_ps(x + c + 32), x3 = _mm512_loadu_ps(x + c + 48);
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(p + c), x0, a0);
        b0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + c), x0, b0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(p + c + 16), x1, a1);
        b1 = _mm512_fmadd_ps(_mm512_loadu_ps(q + c + 16), x1, b1);
        a2 = _mm512_fmadd_ps(_mm512_loadu_ps(p + c + 32), x2, a2);
        b2 = _mm512_fmadd_ps(_mm512_loadu_ps(q + c + 32), x2, b2);
        a3 = _mm512_fmadd_ps(_mm512_loadu_ps(p + c + 48), x3, a3);
        b3 = _mm512_fmadd_ps(_mm512_loadu_ps(q + c + 48), x3, b3);
    }
    for (; c + 16 <= cols; c += 16) {
        const __m512 xc = _mm512_loadu_ps(x + c);
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(p + c), xc, a0);
        b0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + c), xc, b0);
    }
    if (c < cols) {
        const __mmask16 m = (__mmask16)((1u << (cols - c)) - 1);
        const __m512 xc = _mm512_maskz_loadu_ps(m, x + c);
        a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, p + c), xc, a0);
        b0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, q + c), xc, b0);
    }
    *yp = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
    *yq = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(b0, b1), _mm512_add_ps(b2, b3)));
}

static MO_TARGET_AVX512 void gemv_f32_avx512(float *y, const float *W, const float *x, int rows, int cols,
                                             size_t ld, float alpha, int acc) {
    int r = 0;
    if (rows >= 2 && gemv_f32_pairs()) {  // rows r and r + h side by side
        const int h = rows / 2;
        for (; r < h; r++) {
            float sp, sq;
            dot2_f32_512(&sp, &sq, W + (size_t)r * ld, W + (size_t)(r + h) * ld, x, cols);
            sp *= alpha, sq *= alpha;
            y[r] = acc ? y[r] + sp : sp;
            y[r + h] = acc ? y[r + h] + sq : sq;
        }
        r = 2 * h;
    }
    for (; r < rows; r++) {
        const float s = alpha * dot_f32_512(W + (size_t)r * ld, x, cols, NULL);
        y[r] = acc ? y[r] + s : s;
    }
}

// gemv_f32_avx512 of contiguous rows whose last GEMV_NEXT_BYTES (whole rows) prefetch as
// many bytes from `next` on, line for line.
static MO_TARGET_AVX512 void gemv_next_f32_avx512(float *y, const float *W, const float *x, int rows, int cols,
                                                  float alpha, int acc, const char *next) {
    const size_t row = 4 * (size_t)cols;
    const int tail = (int)((GEMV_NEXT_BYTES + row - 1) / row), r0 = rows > tail ? rows - tail : 0;
    gemv_f32_avx512(y, W, x, r0, cols, (size_t)cols, alpha, acc);
    for (int r = r0; r < rows; r++) {
        const float s = alpha * dot_f32_512(W + (size_t)r * cols, x, cols, next + (size_t)(r - r0) * row);
        y[r] = acc ? y[r] + s : s;
    }
}

// 16 int8 weights at q (the first `m` of them under a mask) as floats.
static inline MO_TARGET_AVX512 __m512 q8_load16(const int8_t *q, __mmask16 m) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, q)));
}

static MO_TARGET_AVX512 void quantize_x_avx512(int16_t *x16, float *xs, const float *x, int cols) {
    const __m512 sign = _mm512_set1_ps(-0.0f);
    for (int c = 0, b = 0; c < cols; c += Q8_BLOCK, b++) {
        const int n = cols - c < Q8_BLOCK ? cols - c : Q8_BLOCK;
        const __mmask16 m0 = n >= 16 ? 0xFFFF : (__mmask16)((1u << n) - 1);
        const __mmask16 m1 = n >= 32 ? 0xFFFF : n > 16 ? (__mmask16)((1u << (n - 16)) - 1) : 0;
        const __m512 v0 = _mm512_maskz_loadu_ps(m0, x + c), v1 = _mm512_maskz_loadu_ps(m1, x + c + 16);
        const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_andnot_ps(sign, v0), _mm512_andnot_ps(sign, v1)));
        const __m512 inv = _mm512_set1_ps(amax > 0 ? 32767.0f / amax : 0.0f);
        xs[b] = amax / 32767.0f;
        _mm256_mask_storeu_epi16(x16 + c, m0, _mm512_cvtsepi32_epi16(_mm512_cvtps_epi32(_mm512_mul_ps(v0, inv))));
        _mm256_mask_storeu_epi16(x16 + c + 16, m1, _mm512_cvtsepi32_epi16(_mm512_cvtps_epi32(_mm512_mul_ps(v1, inv))));
    }
}

// One block of 32: int8 weights widened to int16, multiplied by x16 and added in pairs
// (vpmaddwd): 16 exact int32 sums, as floats. The weights past n (< 32) are masked to 0.
static inline MO_TARGET_AVX512 __m512 q8x_block(const int8_t *q, const int16_t *x16, __mmask32 m) {
    __m512i w = _mm512_cvtepi8_epi16(_mm256_maskz_loadu_epi8(m, q));
    return _mm512_cvtepi32_ps(_mm512_madd_epi16(w, _mm512_maskz_loadu_epi16(m, x16)));
}

// One 8-bit row: each block's 16 partial sums times its scale into one of four
// accumulators (blocks b, b+1, b+2, b+3), a short last block under a mask.
static inline MO_TARGET_AVX512 float dot_q8_512(const int8_t *q, const float *sc, const int16_t *x16, const float *xs,
                                                int cols) {
    const int full = cols / Q8_BLOCK;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int b = 0;
    for (; b + 16 <= full; b += 16) {  // 16 blocks: their 16 scale products in one multiply
        _Alignas(64) float ps[16];
        _mm512_store_ps(ps, _mm512_mul_ps(_mm512_loadu_ps(sc + b), _mm512_loadu_ps(xs + b)));
        for (int j = 0; j < 16; j += 4) {
            const int8_t *w = q + (b + j) * Q8_BLOCK;
            const int16_t *x = x16 + (b + j) * Q8_BLOCK;
            a0 = _mm512_fmadd_ps(q8x_block(w, x, ~0u), _mm512_set1_ps(ps[j]), a0);
            a1 = _mm512_fmadd_ps(q8x_block(w + 32, x + 32, ~0u), _mm512_set1_ps(ps[j + 1]), a1);
            a2 = _mm512_fmadd_ps(q8x_block(w + 64, x + 64, ~0u), _mm512_set1_ps(ps[j + 2]), a2);
            a3 = _mm512_fmadd_ps(q8x_block(w + 96, x + 96, ~0u), _mm512_set1_ps(ps[j + 3]), a3);
        }
    }
    for (; b + 4 <= full; b += 4) {
        const int8_t *w = q + b * Q8_BLOCK;
        const int16_t *x = x16 + b * Q8_BLOCK;
        a0 = _mm512_fmadd_ps(q8x_block(w, x, ~0u), _mm512_set1_ps(sc[b] * xs[b]), a0);
        a1 = _mm512_fmadd_ps(q8x_block(w + 32, x + 32, ~0u), _mm512_set1_ps(sc[b + 1] * xs[b + 1]), a1);
        a2 = _mm512_fmadd_ps(q8x_block(w + 64, x + 64, ~0u), _mm512_set1_ps(sc[b + 2] * xs[b + 2]), a2);
        a3 = _mm512_fmadd_ps(q8x_block(w + 96, x + 96, ~0u), _mm512_set1_ps(sc[b + 3] * xs[b + 3]), a3);
    }
    for (; b < full; b++)
        a0 = _mm512_fmadd_ps(q8x_block(q + b * Q8_BLOCK, x16 + b * Q8_BLOCK, ~0u), _mm512_set1_ps(sc[b] * xs[b]), a0);
    if (full * Q8_BLOCK < cols) {
        const __mmask32 m = (__mmask32)((1u << (cols - full * Q8_BLOCK)) - 1);
        a1 = _mm512_fmadd_ps(q8x_block(q + b * Q8_BLOCK, x16 + b * Q8_BLOCK, m), _mm512_set1_ps(sc[b] * xs[b]), a1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

// dot_q8_512 of two rows (weights p, q; scales sp, sq) at once, sharing x, each row's
// weights and scales prefetched Q8_PREFETCH bytes ahead. The 8-bit product spends about
// ten vector instructions on 64 weights, which fills the core's window of instructions in
// flight long before it holds enough loads to keep memory busy: out of cache it read at
// 0.7-0.9 of a plain read of its bytes without the prefetches, 0.9-1.0 with them
// (docs/benchmarks.md). Two rows far apart (r and r + rows/2) share the loads of x.
#define Q8_PREFETCH 2048
static inline MO_TARGET_AVX512 void dot2_q8_512(float *yp, float *yq, const int8_t *p, const float *sp,
                                                const int8_t *q, const float *sq, const int16_t *x16,
                                                const float *xs, int cols) {
    const int full = cols / Q8_BLOCK;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    int b = 0;
    for (; b + 16 <= full; b += 16) {  // as in dot_q8_512
        _Alignas(64) float pp[16], pq[16];
        const char *fp = (const char *)(p + b * Q8_BLOCK) + Q8_PREFETCH, *fq = (const char *)(q + b * Q8_BLOCK) + Q8_PREFETCH;
        for (int i = 0; i < 16 * Q8_BLOCK; i += 64) _mm_prefetch(fp + i, _MM_HINT_T0), _mm_prefetch(fq + i, _MM_HINT_T0);
        _mm_prefetch((const char *)(sp + b) + Q8_PREFETCH / 8, _MM_HINT_T0);
        _mm_prefetch((const char *)(sq + b) + Q8_PREFETCH / 8, _MM_HINT_T0);
        const __m512 x = _mm512_loadu_ps(xs + b);
        _mm512_store_ps(pp, _mm512_mul_ps(_mm512_loadu_ps(sp + b), x));
        _mm512_store_ps(pq, _mm512_mul_ps(_mm512_loadu_ps(sq + b), x));
        for (int j = 0; j < 16; j += 4) {
            const int o = (b + j) * Q8_BLOCK;
            a0 = _mm512_fmadd_ps(q8x_block(p + o, x16 + o, ~0u), _mm512_set1_ps(pp[j]), a0);
            b0 = _mm512_fmadd_ps(q8x_block(q + o, x16 + o, ~0u), _mm512_set1_ps(pq[j]), b0);
            a1 = _mm512_fmadd_ps(q8x_block(p + o + 32, x16 + o + 32, ~0u), _mm512_set1_ps(pp[j + 1]), a1);
            b1 = _mm512_fmadd_ps(q8x_block(q + o + 32, x16 + o + 32, ~0u), _mm512_set1_ps(pq[j + 1]), b1);
            a2 = _mm512_fmadd_ps(q8x_block(p + o + 64, x16 + o + 64, ~0u), _mm512_set1_ps(pp[j + 2]), a2);
            b2 = _mm512_fmadd_ps(q8x_block(q + o + 64, x16 + o + 64, ~0u), _mm512_set1_ps(pq[j + 2]), b2);
            a3 = _mm512_fmadd_ps(q8x_block(p + o + 96, x16 + o + 96, ~0u), _mm512_set1_ps(pp[j + 3]), a3);
            b3 = _mm512_fmadd_ps(q8x_block(q + o + 96, x16 + o + 96, ~0u), _mm512_set1_ps(pq[j + 3]), b3);
        }
    }
    for (; b + 4 <= full; b += 4) {
        const int o = b * Q8_BLOCK;
        a0 = _mm512_fmadd_ps(q8x_block(p + o, x16 + o, ~0u), _mm512_set1_ps(sp[b] * xs[b]), a0);
        b0 = _mm512_fmadd_ps(q8x_block(q + o, x16 + o, ~0u), _mm512_set1_ps(sq[b] * xs[b]), b0);
        a1 = _mm512_fmadd_ps(q8x_block(p + o + 32, x16 + o + 32, ~0u), _mm512_set1_ps(sp[b + 1] * xs[b + 1]), a1);
        b1 = _mm512_fmadd_ps(q8x_block(q + o + 32, x16 + o + 32, ~0u), _mm512_set1_ps(sq[b + 1] * xs[b + 1]), b1);
        a2 = _mm512_fmadd_ps(q8x_block(p + o + 64, x16 + o + 64, ~0u), _mm512_set1_ps(sp[b + 2] * xs[b + 2]), a2);
        b2 = _mm512_fmadd_ps(q8x_block(q + o + 64, x16 + o + 64, ~0u), _mm512_set1_ps(sq[b + 2] * xs[b + 2]), b2);
        a3 = _mm512_fmadd_ps(q8x_block(p + o + 96, x16 + o + 96, ~0u), _mm512_set1_ps(sp[b + 3] * xs[b + 3]), a3);
        b3 = _mm512_fmadd_ps(q8x_block(q + o + 96, x16 + o + 96, ~0u), _mm512_set1_ps(sq[b + 3] * xs[b + 3]), b3);
    }
    for (; b < full; b++) {
        const int o = b * Q8_BLOCK;
        a0 = _mm512_fmadd_ps(q8x_block(p + o, x16 + o, ~0u), _mm512_set1_ps(sp[b] * xs[b]), a0);
        b0 = _mm512_fmadd_ps(q8x_block(q + o, x16 + o, ~0u), _mm512_set1_ps(sq[b] * xs[b]), b0);
    }
    if (full * Q8_BLOCK < cols) {
        const int o = b * Q8_BLOCK;
        const __mmask32 m = (__mmask32)((1u << (cols - o)) - 1);
        a1 = _mm512_fmadd_ps(q8x_block(p + o, x16 + o, m), _mm512_set1_ps(sp[b] * xs[b]), a1);
        b1 = _mm512_fmadd_ps(q8x_block(q + o, x16 + o, m), _mm512_set1_ps(sq[b] * xs[b]), b1);
    }
    *yp = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
    *yq = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(b0, b1), _mm512_add_ps(b2, b3)));
}

static MO_TARGET_AVX512 void gemv_q8_avx512(float *y, const int8_t *Q, const float *S, const int16_t *x16,
                                            const float *xs, int rows, int cols, size_t ld, size_t nbl, float alpha,
                                            int acc) {
    const int h = rows / 2;
    for (int r = 0; r < h; r++) {
        float sp, sq;
        dot2_q8_512(&sp, &sq, Q + r * ld, S + r * nbl, Q + (r + h) * ld, S + (r + h) * nbl, x16, xs, cols);
        sp *= alpha, sq *= alpha;
        y[r] = acc ? y[r] + sp : sp;
        y[r + h] = acc ? y[r + h] + sq : sq;
    }
    if (rows & 1) {
        const int r = rows - 1;
        float s = alpha * dot_q8_512(Q + r * ld, S + r * nbl, x16, xs, cols);
        y[r] = acc ? y[r] + s : s;
    }
}

// One row: 16 weights at a time, the short last block under a mask.
static MO_TARGET_AVX512 void dequant_row_avx512(float *w, const int8_t *q, const float *scale, int cols) {
    for (int c = 0; c < cols; c += 16) {
        const __mmask16 m = cols - c >= 16 ? 0xFFFF : (__mmask16)((1u << (cols - c)) - 1);
        _mm512_mask_storeu_ps(w + c, m, _mm512_mul_ps(_mm512_set1_ps(scale[c / Q8_BLOCK]), q8_load16(q + c, m)));
    }
}

// ---------------------------------------------------------------------------- AVX2

// One row: 8 lanes over whole vectors, the tail added in double after the reduction.
static MO_TARGET_AVX2 void gemv_f32_avx2(float *y, const float *W, const float *x, int rows, int cols, size_t ld,
                                         float alpha, int acc) {
    for (int r = 0; r < rows; r++) {
        const float *w = W + r * ld;
        __m256 a = _mm256_setzero_ps();
        int c = 0;
        for (; c + 8 <= cols; c += 8) a = _mm256_fmadd_ps(_mm256_loadu_ps(w + c), _mm256_loadu_ps(x + c), a);
        double s = mo_hsum256(a);
        for (; c < cols; c++) s += (double)w[c] * x[c];
        y[r] = (acc ? y[r] : 0.0f) + alpha * (float)s;
    }
}

static inline MO_TARGET_AVX2 __m256 q8_load8(const int8_t *q) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)q)));
}

static MO_TARGET_AVX2 void dequant_row_avx2(float *w, const int8_t *q, const float *scale, int cols) {
    int c = 0;
    for (; c + 8 <= cols; c += 8)
        _mm256_storeu_ps(w + c, _mm256_mul_ps(_mm256_set1_ps(scale[c / Q8_BLOCK]), q8_load8(q + c)));
    for (; c < cols; c++) w[c] = scale[c / Q8_BLOCK] * (float)q[c];
}

static MO_TARGET_AVX2 void quantize_x_avx2(int16_t *x16, float *xs, const float *x, int cols) {
    const int full = cols / Q8_BLOCK;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int b = 0; b < full; b++) {
        const float *v = x + b * Q8_BLOCK;
        __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(v)),
                                               _mm256_andnot_ps(sign, _mm256_loadu_ps(v + 8))),
                                 _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(v + 16)),
                                               _mm256_andnot_ps(sign, _mm256_loadu_ps(v + 24))));
        const float amax = mo_hmax256(m);
        const __m256 inv = _mm256_set1_ps(amax > 0 ? 32767.0f / amax : 0.0f);
        xs[b] = amax / 32767.0f;
        for (int c = 0; c < Q8_BLOCK; c += 8) {
            __m256i i = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(v + c), inv));
            _mm_storeu_si128((__m128i *)(x16 + b * Q8_BLOCK + c),
                             _mm_packs_epi32(_mm256_castsi256_si128(i), _mm256_extracti128_si256(i, 1)));
        }
    }
    if (full * Q8_BLOCK < cols)
        quantize_x_scalar(x16 + full * Q8_BLOCK, xs + full, x + full * Q8_BLOCK, cols - full * Q8_BLOCK);
}

// One row: whole blocks in 8 int32 lanes (two vpmaddwd of 16 weights, added exactly),
// times the block's scale; a short last block in scalar code.
static MO_TARGET_AVX2 void gemv_q8_avx2(float *y, const int8_t *Q, const float *S, const int16_t *x16,
                                        const float *xs, int rows, int cols, size_t ld, size_t nbl, float alpha,
                                        int acc) {
    const int nb = q8_blocks(cols), full = cols / Q8_BLOCK;
    for (int r = 0; r < rows; r++) {
        const int8_t *q = Q + r * ld;
        const float *sc = S + r * nbl;
        __m256 a = _mm256_setzero_ps();
        for (int b = 0; b < full; b++) {
            const int c = b * Q8_BLOCK;
            __m256i w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(q + c)));
            __m256i w1 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(q + c + 16)));
            __m256i t = _mm256_add_epi32(_mm256_madd_epi16(w0, _mm256_loadu_si256((const __m256i *)(x16 + c))),
                                         _mm256_madd_epi16(w1, _mm256_loadu_si256((const __m256i *)(x16 + c + 16))));
            a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(t), _mm256_set1_ps(sc[b] * xs[b]), a);
        }
        double s = mo_hsum256(a);
        if (full < nb) {
            int32_t t = 0;
            for (int c = full * Q8_BLOCK; c < cols; c++) t += (int32_t)q[c] * x16[c];
            s += (double)(sc[full] * xs[full]) * t;
        }
        y[r] = (acc ? y[r] : 0.0f) + alpha * (float)s;
    }
}
#endif

// ---------------------------------------------------------------------------- dispatch

static void gemv_f32(float *y, const float *W, const float *x, int rows, int cols, size_t ld, float alpha, int acc) {
    MO_SIMD_DISPATCH(gemv_f32, y, W, x, rows, cols, ld, alpha, acc);
}

static void gemv_q8_rows(float *y, const int8_t *Q, const float *S, const int16_t *x16, const float *xs, int rows,
                         int cols, size_t ld, size_t nbl, float alpha, int acc) {
    MO_SIMD_DISPATCH(gemv_q8, y, Q, S, x16, xs, rows, cols, ld, nbl, alpha, acc);
}

static void quantize_x(int16_t *x16, float *xs, const float *x, int cols) {
    MO_SIMD_DISPATCH(quantize_x, x16, xs, x, cols);
}

int q8_quantize_x(int16_t *x16, float *xs, const float *x, int cols) {
    if (cols <= 0) return 0;
    quantize_x(x16, xs, x, cols);
    for (int b = 0; b < q8_blocks(cols); b++)
        if (!isfinite(xs[b])) return -1;
    return 0;
}

// 8-bit rows: x quantized GEMV_X16_COLS columns at a time into buffers on the stack, each
// chunk's products added to y.
static void gemv_q8(float *y, const int8_t *Q, const float *S, const float *x, int rows, int cols, size_t ld,
                    float alpha, int acc) {
    _Alignas(64) int16_t x16[GEMV_X16_COLS];
    _Alignas(64) float xs[GEMV_X16_COLS / Q8_BLOCK];
    const size_t nbl = (size_t)q8_blocks((int)ld);
    for (int c0 = 0; c0 < cols; c0 += GEMV_X16_COLS) {
        const int n = cols - c0 < GEMV_X16_COLS ? cols - c0 : GEMV_X16_COLS;
        if (q8_quantize_x(x16, xs, x + c0, n)) {  // inf or NaN in x: so is the float product
            for (int r = 0; r < rows; r++) y[r] = NAN;
            return;
        }
        gemv_q8_rows(y, Q + c0, S + c0 / Q8_BLOCK, x16, xs, rows, n, ld, nbl, alpha, acc || c0 > 0);
    }
}

static void dequant_row(float *w, const int8_t *q, const float *scale, int cols) {
    MO_SIMD_DISPATCH(dequant_row, w, q, scale, cols);
}

void q8_dequantize(float *W, const int8_t *q, const float *scale, size_t rows, int cols) {
    const int nb = q8_blocks(cols);
#pragma omp parallel for schedule(static) if (rows * (size_t)cols >= ((size_t)1 << 18))
    for (size_t r = 0; r < rows; r++) dequant_row(W + r * cols, q + r * cols, scale + r * nb, cols);
}

void gemv_ld(float *y, gemv_w W, size_t ld, const float *x, int rows, int cols, float alpha, int acc) {
    if (rows <= 0) return;
    if (cols <= 0) {  // an empty sum
        for (int r = 0; r < rows; r++) y[r] = acc ? y[r] : 0.0f;
        return;
    }
    if (W.f) gemv_f32(y, W.f, x, rows, cols, ld, alpha, acc);
    else gemv_q8(y, W.q, W.scale, x, rows, cols, ld, alpha, acc);
}

void gemv(float *y, gemv_w W, const float *x, int rows, int cols, float alpha, int acc) {
    gemv_ld(y, W, (size_t)cols, x, rows, cols, alpha, acc);
}

void gemv_next(float *y, gemv_w W, const float *x, int rows, int cols, float alpha, int acc, const void *next) {
#if MO_HAVE_X86
    if (next && W.f && rows > 0 && cols > 0 && simd_active() == SIMD_AVX512) {
        gemv_next_f32_avx512(y, W.f, x, rows, cols, alpha, acc, next);
        return;
    }
#endif
    (void)next;
    gemv(y, W, x, rows, cols, alpha, acc);
}

// ---------------------------------------------------------------------------- runner

// Bytes of weights one row of a task reads.
static double task_row_bytes(const gemv_task *t) {
    double b = 0;
    for (int i = 0; i < t->n_terms; i++)
        b += t->t[i].w.f ? 4.0 * t->t[i].cols : t->t[i].cols * (1.0 + 4.0 / Q8_BLOCK);
    return b;
}

// Rows [r0, r1) of one task.
static void task_rows(const gemv_task *t, int r0, int r1) {
    if (r1 <= r0) return;
    for (int i = 0; i < t->n_terms; i++) {
        const gemv_term *u = &t->t[i];
        gemv(t->y + r0, gemv_w_rows(u->w, (size_t)r0, u->cols), u->x, r1 - r0, u->cols, u->alpha,
             i > 0 || t->acc);
    }
}

#define GEMV_PAR_MIN_BYTES 65536.0

void gemv_run(const gemv_task *tasks, int n_tasks) {
    double total = 0;
    for (int i = 0; i < n_tasks; i++) total += task_row_bytes(&tasks[i]) * tasks[i].rows;
    int nt = omp_in_parallel() || total < GEMV_PAR_MIN_BYTES ? 1 : omp_get_max_threads();
    if (nt <= 1) {
        for (int i = 0; i < n_tasks; i++) task_rows(&tasks[i], 0, tasks[i].rows);
        return;
    }
#pragma omp parallel num_threads(nt)
    {
        // Thread `me` owns the bytes [me, me+1) * total / n of the concatenated tasks, cut
        // at the nearest row; both neighbours compute a shared cut the same way.
        const int n = omp_get_num_threads(), me = omp_get_thread_num();
        const double lo = total * me / n, hi = total * (me + 1) / n;
        double start = 0;
        for (int i = 0; i < n_tasks; i++) {
            const gemv_task *t = &tasks[i];
            const double rb = task_row_bytes(t), end = start + rb * t->rows;
            if (rb == 0) {  // no columns: the rows are zeroed (or kept) by thread 0
                if (me == 0) task_rows(t, 0, t->rows);
            } else if (end > lo && start < hi) {
                int r0 = lo <= start ? 0 : (int)((lo - start) / rb + 0.5);
                int r1 = hi >= end ? t->rows : (int)((hi - start) / rb + 0.5);
                if (me == n - 1) r1 = t->rows;
                if (r0 > t->rows) r0 = t->rows;
                if (r1 > t->rows) r1 = t->rows;
                task_rows(t, r0, r1);
            }
            start = end;
        }
    }
}
