// bf16_round.h: one float (or one vector of floats) rounded to bfloat16, for the kernels
// that write a bf16 copy of what they compute (bf16_from_f32, the SwiGLU's bf16 outputs)
// instead of writing float32 and rounding it in a pass of its own.
//
// Round to nearest, ties to even, on the bit patterns: add 0x7FFF plus the lowest kept
// bit and drop the low 16 bits; a NaN keeps its sign and top bits and is made quiet. The
// scalar, AVX2 and AVX-512 forms give the same bits (not AVX512_BF16's vcvtneps2bf16,
// which flushes subnormal inputs to zero).
#ifndef MONOLITH_BF16_ROUND_H
#define MONOLITH_BF16_ROUND_H

#include "kernels/bf16.h"
#include "kernels/simd.h"

#include <string.h>

#if MO_HAVE_X86
#include <immintrin.h>
#endif

static inline mo_bf16 bf16_round_one(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (mo_bf16)((u >> 16) | 0x40);  // NaN: keep it quiet
    return (mo_bf16)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

#if MO_HAVE_X86
// The 16 floats of x (as bits) rounded, one bf16 in the low half of each 32-bit lane.
static inline MO_TARGET_AVX512 __m512i bf16_round_lanes512(__m512i u) {
    const __m512i one = _mm512_set1_epi32(1), bias = _mm512_set1_epi32(0x7fff), quiet = _mm512_set1_epi32(0x40);
    const __m512i absm = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
    __m512i hi = _mm512_srli_epi32(u, 16);
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(bias, _mm512_and_si512(hi, one))), 16);
    __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, absm), inf);
    return _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(hi, quiet));
}

// dst[0..15] = x rounded.
static inline MO_TARGET_AVX512 void bf16_store16_avx512(mo_bf16 *dst, __m512 x) {
    _mm256_storeu_si256((__m256i *)dst, _mm512_cvtepi32_epi16(bf16_round_lanes512(_mm512_castps_si512(x))));
}

// The 8 floats of u (as bits) rounded, one bf16 in the low half of each 32-bit lane.
static inline MO_TARGET_AVX2 __m256i bf16_round_lanes256(__m256i u) {
    const __m256i one = _mm256_set1_epi32(1), bias = _mm256_set1_epi32(0x7fff), quiet = _mm256_set1_epi32(0x40);
    const __m256i absm = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000);
    __m256i hi = _mm256_srli_epi32(u, 16);
    __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(bias, _mm256_and_si256(hi, one))), 16);
    __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, absm), inf);  // both sides are non-negative
    return _mm256_blendv_epi8(r, _mm256_or_si256(hi, quiet), nan);
}

// dst[0..7] = x rounded.
static inline MO_TARGET_AVX2 void bf16_store8_avx2(mo_bf16 *dst, __m256 x) {
    __m256i r = bf16_round_lanes256(_mm256_castps_si256(x));
    __m128i p = _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));  // lanes < 0x10000
    _mm_storeu_si128((__m128i *)dst, p);
}
#endif

#endif
