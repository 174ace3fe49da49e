// simd_rows.h: row primitives shared by the row-wise kernels (softmax, logsumexp,
// cross-entropy, rmsnorm), one version per SIMD level (private to kernels/).
//
// Each SIMD version runs whole vectors, reduces its lanes, then finishes the tail with
// scalar code. SIMD sums accumulate in 8 or 16 float lanes; the scalar versions sum in
// double, since one float accumulator over a 4k-long row loses more than the lanes do.
// The levels differ only by rounding, never by the formula.
#ifndef MONOLITH_SIMD_ROWS_H
#define MONOLITH_SIMD_ROWS_H

#include "kernels/simd_math.h"

#include <math.h>
#include <stddef.h>

// ---------------------------------------------------------------------------- scalar

static inline float row_max_scalar(const float *x, size_t n) {
    float m = -INFINITY;
    for (size_t i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}

// sum_i exp(x_i - m)
static inline float row_sumexp_scalar(const float *x, size_t n, float m) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += expf(x[i] - m);
    return (float)s;
}

// out_i = exp(x_i - m); returns their sum. out may alias x.
static inline float row_exp_scalar(float *out, const float *x, size_t n, float m) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (out[i] = expf(x[i] - m));
    return (float)s;
}

// out_i = x_i * c. out may alias x.
static inline void row_scale_scalar(float *out, const float *x, size_t n, float c) {
    for (size_t i = 0; i < n; i++) out[i] = x[i] * c;
}

// sum_i a_i b_i
static inline float row_dot_scalar(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return (float)s;
}

// d_i = y_i * (g_i - dot): the softmax's backward, given dot = <g, y>
static inline void softmax_bwd_row_scalar(float *d, const float *g, const float *y, size_t n, float dot) {
    for (size_t i = 0; i < n; i++) d[i] = y[i] * (g[i] - dot);
}

#if MO_HAVE_X86
// ---------------------------------------------------------------------------- AVX-512

static inline MO_TARGET_AVX512 float row_max_avx512(const float *x, size_t n) {
    size_t i = 0;
    float m = -INFINITY;
    if (n >= 16) {
        __m512 vm = _mm512_loadu_ps(x);
        for (i = 16; i + 16 <= n; i += 16) vm = _mm512_max_ps(vm, _mm512_loadu_ps(x + i));
        m = _mm512_reduce_max_ps(vm);
    }
    float t = row_max_scalar(x + i, n - i);
    return t > m ? t : m;
}

static inline MO_TARGET_AVX512 float row_sumexp_avx512(const float *x, size_t n, float m) {
    __m512 vm = _mm512_set1_ps(m), acc = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) acc = _mm512_add_ps(acc, mo_exp512(_mm512_sub_ps(_mm512_loadu_ps(x + i), vm)));
    return _mm512_reduce_add_ps(acc) + row_sumexp_scalar(x + i, n - i, m);
}

static inline MO_TARGET_AVX512 float row_exp_avx512(float *out, const float *x, size_t n, float m) {
    __m512 vm = _mm512_set1_ps(m), acc = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 e = mo_exp512(_mm512_sub_ps(_mm512_loadu_ps(x + i), vm));
        _mm512_storeu_ps(out + i, e);
        acc = _mm512_add_ps(acc, e);
    }
    return _mm512_reduce_add_ps(acc) + row_exp_scalar(out + i, x + i, n - i, m);
}

static inline MO_TARGET_AVX512 void row_scale_avx512(float *out, const float *x, size_t n, float c) {
    __m512 vc = _mm512_set1_ps(c);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(out + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), vc));
    row_scale_scalar(out + i, x + i, n - i, c);
}

static inline MO_TARGET_AVX512 float row_dot_avx512(const float *a, const float *b, size_t n) {
    __m512 acc = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc);
    return _mm512_reduce_add_ps(acc) + row_dot_scalar(a + i, b + i, n - i);
}

static inline MO_TARGET_AVX512 void softmax_bwd_row_avx512(float *d, const float *g, const float *y, size_t n,
                                                           float dot) {
    __m512 vdot = _mm512_set1_ps(dot);
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(d + i, _mm512_mul_ps(_mm512_loadu_ps(y + i), _mm512_sub_ps(_mm512_loadu_ps(g + i), vdot)));
    softmax_bwd_row_scalar(d + i, g + i, y + i, n - i, dot);
}

// ---------------------------------------------------------------------------- AVX2

static inline MO_TARGET_AVX2 float row_max_avx2(const float *x, size_t n) {
    size_t i = 0;
    float m = -INFINITY;
    if (n >= 8) {
        __m256 vm = _mm256_loadu_ps(x);
        for (i = 8; i + 8 <= n; i += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(x + i));
        m = mo_hmax256(vm);
    }
    float t = row_max_scalar(x + i, n - i);
    return t > m ? t : m;
}

static inline MO_TARGET_AVX2 float row_sumexp_avx2(const float *x, size_t n, float m) {
    __m256 vm = _mm256_set1_ps(m), acc = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) acc = _mm256_add_ps(acc, mo_exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm)));
    return mo_hsum256(acc) + row_sumexp_scalar(x + i, n - i, m);
}

static inline MO_TARGET_AVX2 float row_exp_avx2(float *out, const float *x, size_t n, float m) {
    __m256 vm = _mm256_set1_ps(m), acc = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = mo_exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
        _mm256_storeu_ps(out + i, e);
        acc = _mm256_add_ps(acc, e);
    }
    return mo_hsum256(acc) + row_exp_scalar(out + i, x + i, n - i, m);
}

static inline MO_TARGET_AVX2 void row_scale_avx2(float *out, const float *x, size_t n, float c) {
    __m256 vc = _mm256_set1_ps(c);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), vc));
    row_scale_scalar(out + i, x + i, n - i, c);
}

static inline MO_TARGET_AVX2 float row_dot_avx2(const float *a, const float *b, size_t n) {
    __m256 acc = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
    return mo_hsum256(acc) + row_dot_scalar(a + i, b + i, n - i);
}

static inline MO_TARGET_AVX2 void softmax_bwd_row_avx2(float *d, const float *g, const float *y, size_t n,
                                                       float dot) {
    __m256 vdot = _mm256_set1_ps(dot);
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(d + i, _mm256_mul_ps(_mm256_loadu_ps(y + i), _mm256_sub_ps(_mm256_loadu_ps(g + i), vdot)));
    softmax_bwd_row_scalar(d + i, g + i, y + i, n - i, dot);
}
#endif

// Row loops run on OpenMP threads only when a call moves enough data to pay for the
// fork/join (about 10 us); small calls (and the router's [T, E] rows) stay serial.
#define MO_ROWS_PAR_MIN ((size_t)1 << 16)

#endif
