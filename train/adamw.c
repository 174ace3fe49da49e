// adamw.c: AdamW, scalar and SIMD (AVX2, AVX-512). The SIMD versions use the same
// operations in the same order as the scalar loop (no FMA contraction; sqrt and divide
// are correctly rounded in every ISA), so every level gives bit-identical parameters:
// a run resumed on another machine continues the same numbers.
#include "train/adamw.h"

#include "kernels/simd.h"

#include <math.h>

#if MO_HAVE_X86
#include <immintrin.h>
#endif

// Per-step scalars, computed in double and rounded once.
typedef struct {
    float gscale;     // the gradients' multiplier (adamw_step.grad_scale)
    float decay_mul;  // 1 - lr*wd, or 1 when the range does not decay
    float one_m_b1, b2, one_m_b2;
    float bc2_sqrt;   // sqrt(1 - beta2^t)
    float eps;
    float neg_step;   // -lr / (1 - beta1^t)
} coefs;

adamw_step adamw_defaults(void) {
    return (adamw_step){.lr = 0, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1, .t = 1, .grad_scale = 1};
}

static coefs make_coefs(const adamw_step *s, int decay) {
    double t = (double)(s->t < 1 ? 1 : s->t);
    return (coefs){
        .gscale = s->grad_scale,
        .decay_mul = decay ? (float)(1.0 - s->lr * s->weight_decay) : 1.0f,
        .one_m_b1 = (float)(1.0 - s->beta1),
        .b2 = (float)s->beta2,
        .one_m_b2 = (float)(1.0 - s->beta2),
        .bc2_sqrt = (float)sqrt(1.0 - pow(s->beta2, t)),
        .eps = (float)s->eps,
        .neg_step = (float)(-s->lr / (1.0 - pow(s->beta1, t))),
    };
}

// ---------------------------------------------------------------------------- scalar

static void adamw_scalar(float *p, const float *g, float *m, float *v, size_t n, const coefs *c) {
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] * c->gscale;
        float mi = m[i] + c->one_m_b1 * (gi - m[i]);
        float vi = c->b2 * v[i] + c->one_m_b2 * (gi * gi);
        float denom = sqrtf(vi) / c->bc2_sqrt + c->eps;
        m[i] = mi;
        v[i] = vi;
        p[i] = p[i] * c->decay_mul + c->neg_step * (mi / denom);
    }
}

#if MO_HAVE_X86
// ---------------------------------------------------------------------------- AVX-512

static MO_TARGET_AVX512 void adamw_avx512(float *p, const float *g, float *m, float *v, size_t n, const coefs *c) {
    __m512 dm = _mm512_set1_ps(c->decay_mul), a1 = _mm512_set1_ps(c->one_m_b1), b2 = _mm512_set1_ps(c->b2);
    __m512 a2 = _mm512_set1_ps(c->one_m_b2), bc = _mm512_set1_ps(c->bc2_sqrt), ep = _mm512_set1_ps(c->eps);
    __m512 ns = _mm512_set1_ps(c->neg_step), gs = _mm512_set1_ps(c->gscale);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 gi = _mm512_mul_ps(_mm512_loadu_ps(g + i), gs), mi = _mm512_loadu_ps(m + i), vi = _mm512_loadu_ps(v + i);
        mi = _mm512_add_ps(mi, _mm512_mul_ps(a1, _mm512_sub_ps(gi, mi)));
        vi = _mm512_add_ps(_mm512_mul_ps(b2, vi), _mm512_mul_ps(a2, _mm512_mul_ps(gi, gi)));
        __m512 denom = _mm512_add_ps(_mm512_div_ps(_mm512_sqrt_ps(vi), bc), ep);
        _mm512_storeu_ps(m + i, mi);
        _mm512_storeu_ps(v + i, vi);
        __m512 pi = _mm512_mul_ps(_mm512_loadu_ps(p + i), dm);
        _mm512_storeu_ps(p + i, _mm512_add_ps(pi, _mm512_mul_ps(ns, _mm512_div_ps(mi, denom))));
    }
    adamw_scalar(p + i, g + i, m + i, v + i, n - i, c);
}

// ---------------------------------------------------------------------------- AVX2

static MO_TARGET_AVX2 void adamw_avx2(float *p, const float *g, float *m, float *v, size_t n, const coefs *c) {
    __m256 dm = _mm256_set1_ps(c->decay_mul), a1 = _mm256_set1_ps(c->one_m_b1), b2 = _mm256_set1_ps(c->b2);
    __m256 a2 = _mm256_set1_ps(c->one_m_b2), bc = _mm256_set1_ps(c->bc2_sqrt), ep = _mm256_set1_ps(c->eps);
    __m256 ns = _mm256_set1_ps(c->neg_step), gs = _mm256_set1_ps(c->gscale);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 gi = _mm256_mul_ps(_mm256_loadu_ps(g + i), gs), mi = _mm256_loadu_ps(m + i), vi = _mm256_loadu_ps(v + i);
        mi = _mm256_add_ps(mi, _mm256_mul_ps(a1, _mm256_sub_ps(gi, mi)));
        vi = _mm256_add_ps(_mm256_mul_ps(b2, vi), _mm256_mul_ps(a2, _mm256_mul_ps(gi, gi)));
        __m256 denom = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vi), bc), ep);
        _mm256_storeu_ps(m + i, mi);
        _mm256_storeu_ps(v + i, vi);
        __m256 pi = _mm256_mul_ps(_mm256_loadu_ps(p + i), dm);
        _mm256_storeu_ps(p + i, _mm256_add_ps(pi, _mm256_mul_ps(ns, _mm256_div_ps(mi, denom))));
    }
    adamw_scalar(p + i, g + i, m + i, v + i, n - i, c);
}
#endif

// ---------------------------------------------------------------------------- dispatch

static void adamw_run(float *p, const float *g, float *m, float *v, size_t n, const coefs *c) {
    MO_SIMD_DISPATCH(adamw, p, g, m, v, n, c);
}

void adamw_update(float *p, const float *g, float *m, float *v, size_t n, int decay, const adamw_step *s) {
    coefs c = make_coefs(s, decay);
    adamw_run(p, g, m, v, n, &c);
}

void adamw_apply(float *params, const float *grads, float *m, float *v, const adamw_range *ranges,
                 size_t n_ranges, const adamw_step *s) {
    adamw_apply_bf16(params, grads, m, v, NULL, ranges, n_ranges, s);
}

// Floats updated before their bf16 copy is written: 8 KB of p, still in L1 when rounded.
// The copy goes out with non-temporal stores: no reading in of its 235 MB (bench-S)
// before they are overwritten.
#define ADAMW_CHUNK 2048

void adamw_apply_bf16(float *params, const float *grads, float *m, float *v, mo_bf16 *wb,
                      const adamw_range *ranges, size_t n_ranges, const adamw_step *s) {
    coefs with = make_coefs(s, 1), without = make_coefs(s, 0);
    simd_active();  // decide the level before the threads read it
#pragma omp parallel for schedule(dynamic, 1)
    for (size_t r = 0; r < n_ranges; r++) {
        const size_t o = ranges[r].offset, n = ranges[r].length;
        const coefs *c = ranges[r].decay ? &with : &without;
        if (!wb) {
            adamw_run(params + o, grads + o, m + o, v + o, n, c);
            continue;
        }
        for (size_t i = o; i < o + n; i += ADAMW_CHUNK) {
            size_t k = o + n - i < ADAMW_CHUNK ? o + n - i : ADAMW_CHUNK;
            adamw_run(params + i, grads + i, m + i, v + i, k, c);
            bf16_from_f32_stream(wb + i, params + i, k);  // read by the next forward, long after
        }
    }
}
