// simd_math.h: vector exp and horizontal reductions for the AVX2 and AVX-512 kernels
// (private to kernels/).
//
// exp(x) = 2^n * exp(r), n = round(x / ln2), r = x - n ln2 (ln2 split in two parts so
// r is exact), exp(r) by the Cephes degree-6 polynomial on [-ln2/2, ln2/2]. Relative
// error about 2 ulp over the clamped range [-87.3, 88.7]; below it the result is 0-ish,
// which is what every caller (sigmoid, softmax) wants.
#ifndef MONOLITH_SIMD_MATH_H
#define MONOLITH_SIMD_MATH_H

#include "kernels/simd.h"

#if MO_HAVE_X86
#include <immintrin.h>

#define MO_EXP_P0 1.9875691500E-4f
#define MO_EXP_P1 1.3981999507E-3f
#define MO_EXP_P2 8.3334519073E-3f
#define MO_EXP_P3 4.1665795894E-2f
#define MO_EXP_P4 1.6666665459E-1f
#define MO_EXP_P5 5.0000001201E-1f

static inline MO_TARGET_AVX512 __m512 mo_exp512(__m512 x) {
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.3f)), _mm512_set1_ps(88.7f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504089f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(MO_EXP_P0);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(MO_EXP_P1));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(MO_EXP_P2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(MO_EXP_P3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(MO_EXP_P4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(MO_EXP_P5));
    __m512 y = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(y, n);
}

// The sum and the largest of the 8 lanes (horizontal reductions; the lanes are added
// pairwise: (0+4, 1+5, 2+6, 3+7), then halves, then the last pair).
static inline MO_TARGET_AVX2 float mo_hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline MO_TARGET_AVX2 float mo_hmax256(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline MO_TARGET_AVX2 __m256 mo_exp256(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.7f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504089f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(MO_EXP_P0);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(MO_EXP_P1));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(MO_EXP_P2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(MO_EXP_P3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(MO_EXP_P4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(MO_EXP_P5));
    __m256 y = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}
#endif

#endif
