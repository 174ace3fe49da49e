// sumsq.c: the sum of squares in double over 16 interleaved lanes (sumsq.h), scalar
// and SIMD (AVX2: four vectors of 4 doubles; AVX-512: two of 8). One thread: the caller
// splits the work (the gradient norm runs one range per task).
#include "kernels/sumsq.h"

#include "kernels/simd.h"

#if MO_HAVE_X86
#include <immintrin.h>
#endif

// The lanes' sums added in lane order; the tail elements i (fewer than 16) go to lane
// i % 16 after the whole vectors, as the scalar loop puts them.
static double finish(double lane[SUMSQ_LANES], const float *x, size_t i, size_t n) {
    for (; i < n; i++) lane[i % SUMSQ_LANES] += (double)x[i] * (double)x[i];
    double s = 0;
    for (int j = 0; j < SUMSQ_LANES; j++) s += lane[j];
    return s;
}

// ---------------------------------------------------------------------------- scalar

static double sumsq_scalar(const float *x, size_t n) {
    double lane[SUMSQ_LANES] = {0};
    size_t i = 0;
    for (; i + SUMSQ_LANES <= n; i += SUMSQ_LANES)
        for (int j = 0; j < SUMSQ_LANES; j++) lane[j] += (double)x[i + j] * (double)x[i + j];
    return finish(lane, x, i, n);
}

#if MO_HAVE_X86
// ---------------------------------------------------------------------------- AVX-512

static MO_TARGET_AVX512 double sumsq_avx512(const float *x, size_t n) {
    __m512d a0 = _mm512_setzero_pd(), a1 = _mm512_setzero_pd();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512d v0 = _mm512_cvtps_pd(_mm256_loadu_ps(x + i)), v1 = _mm512_cvtps_pd(_mm256_loadu_ps(x + i + 8));
        a0 = _mm512_fmadd_pd(v0, v0, a0);
        a1 = _mm512_fmadd_pd(v1, v1, a1);
    }
    double lane[SUMSQ_LANES];
    _mm512_storeu_pd(lane, a0);
    _mm512_storeu_pd(lane + 8, a1);
    return finish(lane, x, i, n);
}

// ---------------------------------------------------------------------------- AVX2

static MO_TARGET_AVX2 double sumsq_avx2(const float *x, size_t n) {
    __m256d a[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd()};
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int q = 0; q < 4; q++) {
            __m256d v = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 4 * q));
            a[q] = _mm256_fmadd_pd(v, v, a[q]);
        }
    double lane[SUMSQ_LANES];
    for (int q = 0; q < 4; q++) _mm256_storeu_pd(lane + 4 * q, a[q]);
    return finish(lane, x, i, n);
}
#endif

// ---------------------------------------------------------------------------- dispatch

double sumsq_f64(const float *x, size_t n) {
#if MO_HAVE_X86
    switch (simd_active()) {
    case SIMD_AVX512: return sumsq_avx512(x, n);
    case SIMD_AVX2: return sumsq_avx2(x, n);
    default: return sumsq_scalar(x, n);
    }
#else
    return sumsq_scalar(x, n);
#endif
}
