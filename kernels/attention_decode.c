// attention_decode.c: one query head over the KV cache, scalar / AVX2 / AVX-512.
#include "kernels/attention_decode.h"

#include "kernels/simd.h"
#include "kernels/softmax.h"

#include <math.h>
#include <stddef.h>

static void scores_scalar(float *p, const float *q, const float *K, int n, int hd, float scale) {
    for (int j = 0; j < n; j++) {
        const float *k = K + (size_t)j * hd;
        double s = 0;
        for (int i = 0; i < hd; i++) s += (double)q[i] * k[i];
        p[j] = scale * (float)s;
    }
}

static void weighted_sum_scalar(float *out, const float *p, const float *V, int n, int hd) {
    for (int i = 0; i < hd; i++) out[i] = 0;
    for (int j = 0; j < n; j++)
        for (int i = 0; i < hd; i++) out[i] += p[j] * V[(size_t)j * hd + i];
}

#if MO_HAVE_X86
#include <immintrin.h>

// One key at a time: 16 lanes over hd (the tail masked), then one reduction.
static MO_TARGET_AVX512 void scores_avx512(float *p, const float *q, const float *K, int n, int hd, float scale) {
    for (int j = 0; j < n; j++) {
        const float *k = K + (size_t)j * hd;
        __m512 a = _mm512_setzero_ps();
        int i = 0;
        for (; i + 16 <= hd; i += 16) a = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), _mm512_loadu_ps(k + i), a);
        if (i < hd) {
            __mmask16 m = (__mmask16)((1u << (hd - i)) - 1);
            a = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, q + i), _mm512_maskz_loadu_ps(m, k + i), a);
        }
        p[j] = scale * _mm512_reduce_add_ps(a);
    }
}

// out = sum_j p_j V_j, hd in chunks of 64 columns held in four registers across all j.
static MO_TARGET_AVX512 void weighted_sum_avx512(float *out, const float *p, const float *V, int n, int hd) {
    for (int c0 = 0; c0 < hd; c0 += 64) {
        const int w = hd - c0 < 64 ? hd - c0 : 64;
        __mmask16 m[4];
        for (int u = 0; u < 4; u++) {
            int left = w - 16 * u;
            m[u] = left >= 16 ? 0xFFFF : left > 0 ? (__mmask16)((1u << left) - 1) : 0;
        }
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int j = 0; j < n; j++) {
            const float *v = V + (size_t)j * hd + c0;
            __m512 pj = _mm512_set1_ps(p[j]);
            a0 = _mm512_fmadd_ps(pj, _mm512_maskz_loadu_ps(m[0], v), a0);
            a1 = _mm512_fmadd_ps(pj, _mm512_maskz_loadu_ps(m[1], v + 16), a1);
            a2 = _mm512_fmadd_ps(pj, _mm512_maskz_loadu_ps(m[2], v + 32), a2);
            a3 = _mm512_fmadd_ps(pj, _mm512_maskz_loadu_ps(m[3], v + 48), a3);
        }
        _mm512_mask_storeu_ps(out + c0, m[0], a0);
        _mm512_mask_storeu_ps(out + c0 + 16, m[1], a1);
        _mm512_mask_storeu_ps(out + c0 + 32, m[2], a2);
        _mm512_mask_storeu_ps(out + c0 + 48, m[3], a3);
    }
}

static inline MO_TARGET_AVX2 float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static MO_TARGET_AVX2 void scores_avx2(float *p, const float *q, const float *K, int n, int hd, float scale) {
    for (int j = 0; j < n; j++) {
        const float *k = K + (size_t)j * hd;
        __m256 a = _mm256_setzero_ps();
        int i = 0;
        for (; i + 8 <= hd; i += 8) a = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), _mm256_loadu_ps(k + i), a);
        float s = hsum8(a);
        for (; i < hd; i++) s += q[i] * k[i];
        p[j] = scale * s;
    }
}

static MO_TARGET_AVX2 void weighted_sum_avx2(float *out, const float *p, const float *V, int n, int hd) {
    int c0 = 0;
    for (; c0 + 32 <= hd; c0 += 32) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int j = 0; j < n; j++) {
            const float *v = V + (size_t)j * hd + c0;
            __m256 pj = _mm256_set1_ps(p[j]);
            a0 = _mm256_fmadd_ps(pj, _mm256_loadu_ps(v), a0);
            a1 = _mm256_fmadd_ps(pj, _mm256_loadu_ps(v + 8), a1);
            a2 = _mm256_fmadd_ps(pj, _mm256_loadu_ps(v + 16), a2);
            a3 = _mm256_fmadd_ps(pj, _mm256_loadu_ps(v + 24), a3);
        }
        _mm256_storeu_ps(out + c0, a0);
        _mm256_storeu_ps(out + c0 + 8, a1);
        _mm256_storeu_ps(out + c0 + 16, a2);
        _mm256_storeu_ps(out + c0 + 24, a3);
    }
    for (int i = c0; i < hd; i++) {
        float s = 0;
        for (int j = 0; j < n; j++) s += p[j] * V[(size_t)j * hd + i];
        out[i] = s;
    }
}
#endif

static void scores(float *p, const float *q, const float *K, int n, int hd, float scale) {
    MO_SIMD_DISPATCH(scores, p, q, K, n, hd, scale);
}

static void weighted_sum(float *out, const float *p, const float *V, int n, int hd) {
    MO_SIMD_DISPATCH(weighted_sum, out, p, V, n, hd);
}

void attention_decode_head(float *out, float *p, const float *q, const float *K, const float *V, int n, int hd) {
    scores(p, q, K, n, hd, 1.0f / sqrtf((float)hd));
    softmax_forward(p, p, 1, n);
    weighted_sum(out, p, V, n, hd);
}
