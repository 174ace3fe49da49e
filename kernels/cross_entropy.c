// cross_entropy.c: cross-entropy from logits fused with the softmax, scalar and SIMD
// (AVX2, AVX-512), built from kernels/simd_rows.h. Backward recomputes the softmax row
// by row (max, sum of exps, then one pass writing exp(x - max) * dloss / sum) so it can
// overwrite the logits in place, or takes the max and sum forward kept and makes only
// the last pass. Rows run on OpenMP threads when the call is large.
#include "kernels/cross_entropy.h"

#include "kernels/bf16_round.h"
#include "kernels/simd_rows.h"

#include <string.h>

// loss = (max - x_t) + log sum exp(x - max): the difference first, which is exact when
// the target is near the max, rather than rounding a large max + log sum first.
#define CE_FWD_BODY(L)                                                          \
    _Pragma("omp parallel for schedule(static) if ((size_t)n * V >= MO_ROWS_PAR_MIN)") \
    for (int i = 0; i < n; i++) {                                               \
        const float *x = logits + (size_t)i * V;                                \
        int t = targets[i];                                                     \
        if (t < 0) {                                                            \
            losses[i] = 0.0f;                                                   \
            continue;                                                           \
        }                                                                       \
        float m = row_max_##L(x, (size_t)V);                                    \
        float s = row_sumexp_##L(x, (size_t)V, m);                              \
        if (stats) stats[2 * i] = m, stats[2 * i + 1] = s;                      \
        losses[i] = (m - x[t]) + logf(s);                                       \
    }

// d loss / d logits of each row into T *dlogits: T float (dlogits may be logits: the
// target's logit is read before the row is overwritten) or mo_bf16 with B = _bf16
// (cross_entropy_backward_bf16: each value computed as for float, then rounded by ONE; the
// target's logit is read from the float row). B is empty for float, ONE then nothing.
#define CE_BWD_BODY(L, T, B, ONE)                                               \
    _Pragma("omp parallel for schedule(static) if ((size_t)n * V >= MO_ROWS_PAR_MIN)") \
    for (int i = 0; i < n; i++) {                                               \
        const float *x = logits + (size_t)i * V;                                \
        T *d = dlogits + (size_t)i * V;                                         \
        int t = targets[i];                                                     \
        if (t < 0) {                                                            \
            memset(d, 0, (size_t)V * sizeof *d);                                \
            continue;                                                           \
        }                                                                       \
        float m = stats ? stats[2 * i] : row_max_##L(x, (size_t)V);             \
        float s = stats ? stats[2 * i + 1] : row_sumexp_##L(x, (size_t)V, m);   \
        float pt = expf(x[t] - m) / s;                                          \
        row_expscale##B##_##L(d, x, (size_t)V, m, dloss[i] / s);                \
        d[t] = ONE(dloss[i] * (pt - 1.0f));                                     \
    }

// ---------------------------------------------------------------------------- scalar

// d_j = exp(x_j - m) * c. d may alias x.
static inline void row_expscale_scalar(float *d, const float *x, size_t n, float m, float c) {
    for (size_t j = 0; j < n; j++) d[j] = expf(x[j] - m) * c;
}

static inline void row_expscale_bf16_scalar(mo_bf16 *d, const float *x, size_t n, float m, float c) {
    for (size_t j = 0; j < n; j++) d[j] = bf16_round_one(expf(x[j] - m) * c);
}

static void ce_fwd_scalar(float *losses, float *stats, const float *logits, const int *targets, int n, int V) {
    CE_FWD_BODY(scalar)
}
static void ce_bwd_scalar(float *dlogits, const float *logits, const float *stats, const int *targets,
                          const float *dloss, int n, int V) {
    CE_BWD_BODY(scalar, float, , )
}
static void ce_bwd_bf16_scalar(mo_bf16 *dlogits, const float *logits, const float *stats, const int *targets,
                               const float *dloss, int n, int V) {
    CE_BWD_BODY(scalar, mo_bf16, _bf16, bf16_round_one)
}

#if MO_HAVE_X86
// ---------------------------------------------------------------------------- AVX-512

static inline MO_TARGET_AVX512 void row_expscale_avx512(float *d, const float *x, size_t n, float m, float c) {
    __m512 vm = _mm512_set1_ps(m), vc = _mm512_set1_ps(c);
    size_t j = 0;
    for (; j + 16 <= n; j += 16)
        _mm512_storeu_ps(d + j, _mm512_mul_ps(mo_exp512(_mm512_sub_ps(_mm512_loadu_ps(x + j), vm)), vc));
    row_expscale_scalar(d + j, x + j, n - j, m, c);
}

static inline MO_TARGET_AVX512 void row_expscale_bf16_avx512(mo_bf16 *d, const float *x, size_t n, float m,
                                                              float c) {
    __m512 vm = _mm512_set1_ps(m), vc = _mm512_set1_ps(c);
    size_t j = 0;
    for (; j + 16 <= n; j += 16)
        bf16_store16_avx512(d + j, _mm512_mul_ps(mo_exp512(_mm512_sub_ps(_mm512_loadu_ps(x + j), vm)), vc));
    row_expscale_bf16_scalar(d + j, x + j, n - j, m, c);
}

static MO_TARGET_AVX512 void ce_fwd_avx512(float *losses, float *stats, const float *logits, const int *targets, int n,
                                           int V) {
    CE_FWD_BODY(avx512)
}
static MO_TARGET_AVX512 void ce_bwd_avx512(float *dlogits, const float *logits, const float *stats,
                                           const int *targets, const float *dloss, int n, int V) {
    CE_BWD_BODY(avx512, float, , )
}
static MO_TARGET_AVX512 void ce_bwd_bf16_avx512(mo_bf16 *dlogits, const float *logits, const float *stats,
                                                const int *targets, const float *dloss, int n, int V) {
    CE_BWD_BODY(avx512, mo_bf16, _bf16, bf16_round_one)
}

// ---------------------------------------------------------------------------- AVX2

static inline MO_TARGET_AVX2 void row_expscale_avx2(float *d, const float *x, size_t n, float m, float c) {
    __m256 vm = _mm256_set1_ps(m), vc = _mm256_set1_ps(c);
    size_t j = 0;
    for (; j + 8 <= n; j += 8)
        _mm256_storeu_ps(d + j, _mm256_mul_ps(mo_exp256(_mm256_sub_ps(_mm256_loadu_ps(x + j), vm)), vc));
    row_expscale_scalar(d + j, x + j, n - j, m, c);
}

static inline MO_TARGET_AVX2 void row_expscale_bf16_avx2(mo_bf16 *d, const float *x, size_t n, float m, float c) {
    __m256 vm = _mm256_set1_ps(m), vc = _mm256_set1_ps(c);
    size_t j = 0;
    for (; j + 8 <= n; j += 8)
        bf16_store8_avx2(d + j, _mm256_mul_ps(mo_exp256(_mm256_sub_ps(_mm256_loadu_ps(x + j), vm)), vc));
    row_expscale_bf16_scalar(d + j, x + j, n - j, m, c);
}

static MO_TARGET_AVX2 void ce_fwd_avx2(float *losses, float *stats, const float *logits, const int *targets, int n,
                                       int V) {
    CE_FWD_BODY(avx2)
}
static MO_TARGET_AVX2 void ce_bwd_avx2(float *dlogits, const float *logits, const float *stats,
                                       const int *targets, const float *dloss, int n, int V) {
    CE_BWD_BODY(avx2, float, , )
}
static MO_TARGET_AVX2 void ce_bwd_bf16_avx2(mo_bf16 *dlogits, const float *logits, const float *stats,
                                            const int *targets, const float *dloss, int n, int V) {
    CE_BWD_BODY(avx2, mo_bf16, _bf16, bf16_round_one)
}
#endif

// ---------------------------------------------------------------------------- dispatch

void cross_entropy_forward(float *losses, float *stats, const float *logits, const int *targets, int n, int V) {
    MO_SIMD_DISPATCH(ce_fwd, losses, stats, logits, targets, n, V);
}

void cross_entropy_backward(float *dlogits, const float *logits, const float *stats, const int *targets,
                            const float *dloss, int n, int V) {
    MO_SIMD_DISPATCH(ce_bwd, dlogits, logits, stats, targets, dloss, n, V);
}

void cross_entropy_backward_bf16(mo_bf16 *dlogits, const float *logits, const float *stats, const int *targets,
                                 const float *dloss, int n, int V) {
    MO_SIMD_DISPATCH(ce_bwd_bf16, dlogits, logits, stats, targets, dloss, n, V);
}
