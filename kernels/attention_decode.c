// attention_decode.c: one query head over the KV cache, scalar / AVX2 / AVX-512, with K
// and V stored as fp32 or bf16.
//
// Each level has one body per step (scores, weighted sum) over `const void *` keys and
// values and a storage flag; the fp32 and bf16 entry points call it with the flag a
// constant, so that after inlining each is its own loop with no test inside. The fp32
// body is the same arithmetic whatever the flag's name: a bf16 element is widened to
// the float it stands for (exact), and the products and sums are those of fp32.
#include "kernels/attention_decode.h"

#include "kernels/simd.h"
#include "kernels/simd_math.h"
#include "kernels/softmax.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

#define INLINE static inline __attribute__((always_inline))

// Element i of a K or V row as a float.
INLINE float kv_at(const void *X, size_t i, int bf16) {
    if (!bf16) return ((const float *)X)[i];
    uint32_t u = (uint32_t)((const mo_bf16 *)X)[i] << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

// Row j of n x hd K or V.
INLINE const void *kv_row(const void *X, size_t j, int hd, int bf16) {
    return (const char *)X + j * hd * (bf16 ? sizeof(mo_bf16) : sizeof(float));
}

INLINE void scores_body_scalar(float *p, const float *q, const void *K, int n, int hd, float scale, int bf16,
                               const void *V) {
    (void)V;
    for (int j = 0; j < n; j++) {
        const void *k = kv_row(K, (size_t)j, hd, bf16);
        double s = 0;
        for (int i = 0; i < hd; i++) s += (double)q[i] * kv_at(k, (size_t)i, bf16);
        p[j] = scale * (float)s;
    }
}

INLINE void weighted_sum_body_scalar(float *out, const float *p, const void *V, int n, int hd, int bf16) {
    for (int i = 0; i < hd; i++) out[i] = 0;
    for (int j = 0; j < n; j++)
        for (int i = 0; i < hd; i++) out[i] += p[j] * kv_at(V, (size_t)j * hd + i, bf16);
}

#if MO_HAVE_X86
#include <immintrin.h>

// ---------------------------------------------------------------------------- AVX-512

// 16 elements of a row from column i (the first m under a mask) as floats.
INLINE MO_TARGET_AVX512 __m512 load16(const void *X, int i, __mmask16 m, int bf16) {
    if (!bf16) return _mm512_maskz_loadu_ps(m, (const float *)X + i);
    __m256i h = _mm256_maskz_loadu_epi16(m, (const mo_bf16 *)X + i);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

// Each K or V row's cache lines are prefetched ATT_PREFETCH bytes ahead (16 rows of a
// 64-wide fp32 head). A key costs about a dozen vector instructions (the FMAs and the
// reduction), which fill the core's window of instructions in flight before enough loads
// are out to keep memory busy: out of cache, 2 threads each reading heads of 320
// positions, the prefetches made a head 1.14-1.55x faster (median 1.45; 12 alternating
// rounds, load 9-10, rates over each thread's CPU time; 2 KB ahead: 1.30-1.52, 512 B:
// 0.98-1.31). The first ATT_PREFETCH bytes of K are prefetched at once when a head
// starts, the keys' last rows prefetch the first ones of V instead of the cache rows past
// the position (which nobody reads), and the values' last rows nothing: a head reads two
// short streams (80 KB each at 320 positions), whose starts would otherwise wait on
// memory's latency with few loads out.
#define ATT_PREFETCH 4096

// One key at a time: 16 lanes over hd (the tail masked), then one reduction.
INLINE MO_TARGET_AVX512 void scores_body_avx512(float *p, const float *q, const void *K, int n, int hd, float scale,
                                                int bf16, const void *V) {
    const int row_bytes = hd * (bf16 ? (int)sizeof(mo_bf16) : (int)sizeof(float));
    const size_t all = (size_t)n * row_bytes;
    for (size_t b = 0; b < ATT_PREFETCH && b < all; b += 64) _mm_prefetch((const char *)K + b, _MM_HINT_T0);
    for (int j = 0; j < n; j++) {
        const void *k = kv_row(K, (size_t)j, hd, bf16);
        const size_t ahead = (size_t)j * row_bytes + ATT_PREFETCH;
        const char *f = ahead < all ? (const char *)k + ATT_PREFETCH : (const char *)V + (ahead - all);
        for (int b = 0; b < row_bytes; b += 64) _mm_prefetch(f + b, _MM_HINT_T0);
        __m512 a = _mm512_setzero_ps();
        int i = 0;
        for (; i + 16 <= hd; i += 16) a = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), load16(k, i, 0xFFFF, bf16), a);
        if (i < hd) {
            __mmask16 m = (__mmask16)((1u << (hd - i)) - 1);
            a = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, q + i), load16(k, i, m, bf16), a);
        }
        p[j] = scale * _mm512_reduce_add_ps(a);
    }
}

// out = sum_j p_j V_j, hd in chunks of 64 columns held in four registers across all j.
INLINE MO_TARGET_AVX512 void weighted_sum_body_avx512(float *out, const float *p, const void *V, int n, int hd,
                                                      int bf16) {
    const int row_bytes = hd * (bf16 ? (int)sizeof(mo_bf16) : (int)sizeof(float));
    for (int c0 = 0; c0 < hd; c0 += 64) {
        const int w = hd - c0 < 64 ? hd - c0 : 64;
        __mmask16 m[4];
        for (int u = 0; u < 4; u++) {
            int left = w - 16 * u;
            m[u] = left >= 16 ? 0xFFFF : left > 0 ? (__mmask16)((1u << left) - 1) : 0;
        }
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int j = 0; j < n; j++) {
            const void *v = kv_row(V, (size_t)j, hd, bf16);
            if (c0 == 0 && (size_t)(j + ATT_PREFETCH / row_bytes) < (size_t)n)  // the whole row's lines, once
                for (int b = 0; b < row_bytes; b += 64) _mm_prefetch((const char *)v + ATT_PREFETCH + b, _MM_HINT_T0);
            __m512 pj = _mm512_set1_ps(p[j]);
            a0 = _mm512_fmadd_ps(pj, load16(v, c0, m[0], bf16), a0);
            a1 = _mm512_fmadd_ps(pj, load16(v, c0 + 16, m[1], bf16), a1);
            a2 = _mm512_fmadd_ps(pj, load16(v, c0 + 32, m[2], bf16), a2);
            a3 = _mm512_fmadd_ps(pj, load16(v, c0 + 48, m[3], bf16), a3);
        }
        _mm512_mask_storeu_ps(out + c0, m[0], a0);
        _mm512_mask_storeu_ps(out + c0 + 16, m[1], a1);
        _mm512_mask_storeu_ps(out + c0 + 32, m[2], a2);
        _mm512_mask_storeu_ps(out + c0 + 48, m[3], a3);
    }
}

// ---------------------------------------------------------------------------- AVX2

// 8 elements of a row from column i as floats.
INLINE MO_TARGET_AVX2 __m256 load8(const void *X, int i, int bf16) {
    if (!bf16) return _mm256_loadu_ps((const float *)X + i);
    __m128i h = _mm_loadu_si128((const __m128i *)((const mo_bf16 *)X + i));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

INLINE MO_TARGET_AVX2 void scores_body_avx2(float *p, const float *q, const void *K, int n, int hd, float scale,
                                            int bf16, const void *V) {
    (void)V;
    for (int j = 0; j < n; j++) {
        const void *k = kv_row(K, (size_t)j, hd, bf16);
        __m256 a = _mm256_setzero_ps();
        int i = 0;
        for (; i + 8 <= hd; i += 8) a = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), load8(k, i, bf16), a);
        float s = mo_hsum256(a);
        for (; i < hd; i++) s += q[i] * kv_at(k, (size_t)i, bf16);
        p[j] = scale * s;
    }
}

INLINE MO_TARGET_AVX2 void weighted_sum_body_avx2(float *out, const float *p, const void *V, int n, int hd,
                                                  int bf16) {
    int c0 = 0;
    for (; c0 + 32 <= hd; c0 += 32) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int j = 0; j < n; j++) {
            const void *v = kv_row(V, (size_t)j, hd, bf16);
            __m256 pj = _mm256_set1_ps(p[j]);
            a0 = _mm256_fmadd_ps(pj, load8(v, c0, bf16), a0);
            a1 = _mm256_fmadd_ps(pj, load8(v, c0 + 8, bf16), a1);
            a2 = _mm256_fmadd_ps(pj, load8(v, c0 + 16, bf16), a2);
            a3 = _mm256_fmadd_ps(pj, load8(v, c0 + 24, bf16), a3);
        }
        _mm256_storeu_ps(out + c0, a0);
        _mm256_storeu_ps(out + c0 + 8, a1);
        _mm256_storeu_ps(out + c0 + 16, a2);
        _mm256_storeu_ps(out + c0 + 24, a3);
    }
    for (int i = c0; i < hd; i++) {
        float s = 0;
        for (int j = 0; j < n; j++) s += p[j] * kv_at(V, (size_t)j * hd + i, bf16);
        out[i] = s;
    }
}
#endif

// ---------------------------------------------------------------------------- entry points

// The two storages of every level: name##_f32_LEVEL and name##_bf16_LEVEL.
#define KV_VARIANTS(level, target)                                                                             \
    static target void scores_f32_##level(float *p, const float *q, const void *K, int n, int hd, float s,      \
                                          const void *V) {                                                      \
        scores_body_##level(p, q, K, n, hd, s, 0, V);                                                           \
    }                                                                                                           \
    static target void scores_bf16_##level(float *p, const float *q, const void *K, int n, int hd, float s,     \
                                           const void *V) {                                                     \
        scores_body_##level(p, q, K, n, hd, s, 1, V);                                                           \
    }                                                                                                           \
    static target void weighted_sum_f32_##level(float *out, const float *p, const void *V, int n, int hd) {     \
        weighted_sum_body_##level(out, p, V, n, hd, 0);                                                         \
    }                                                                                                           \
    static target void weighted_sum_bf16_##level(float *out, const float *p, const void *V, int n, int hd) {    \
        weighted_sum_body_##level(out, p, V, n, hd, 1);                                                         \
    }

KV_VARIANTS(scalar, )
#if MO_HAVE_X86
KV_VARIANTS(avx2, MO_TARGET_AVX2)
KV_VARIANTS(avx512, MO_TARGET_AVX512)
#endif

// V: the values the head reads next (the AVX-512 keys prefetch their first lines).
static void scores_f32(float *p, const float *q, const void *K, int n, int hd, float scale, const void *V) {
    MO_SIMD_DISPATCH(scores_f32, p, q, K, n, hd, scale, V);
}
static void scores_bf16(float *p, const float *q, const void *K, int n, int hd, float scale, const void *V) {
    MO_SIMD_DISPATCH(scores_bf16, p, q, K, n, hd, scale, V);
}
static void weighted_sum_f32(float *out, const float *p, const void *V, int n, int hd) {
    MO_SIMD_DISPATCH(weighted_sum_f32, out, p, V, n, hd);
}
static void weighted_sum_bf16(float *out, const float *p, const void *V, int n, int hd) {
    MO_SIMD_DISPATCH(weighted_sum_bf16, out, p, V, n, hd);
}

void attention_decode_head(float *out, float *p, const float *q, const float *K, const float *V, int n, int hd) {
    scores_f32(p, q, K, n, hd, 1.0f / sqrtf((float)hd), V);
    softmax_row(p, n);
    weighted_sum_f32(out, p, V, n, hd);
}

void attention_decode_head_bf16(float *out, float *p, const float *q, const mo_bf16 *K, const mo_bf16 *V, int n,
                                int hd) {
    scores_bf16(p, q, K, n, hd, 1.0f / sqrtf((float)hd), V);
    softmax_row(p, n);
    weighted_sum_bf16(out, p, V, n, hd);
}
