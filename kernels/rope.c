// rope.c: rotary position embedding (adjacent pairs), scalar and SIMD (AVX2, AVX-512).
//
// One row of a head holds pairs (x0, x1); with c, s the table entries of its position:
//   forward   x0' = x0 c - x1 s,   x1' = x1 c + x0 s
//   backward  g0' = g0 c + g1 s,   g1' = g1 c - g0 s     (the inverse rotation)
// The SIMD versions load c and s for 8 (AVX-512) or 4 (AVX2) pairs, duplicate each into
// both lanes of its pair, swap the lanes of x within each pair, and use fmaddsub /
// fmsubadd (even lanes subtract / add, odd lanes the other).
#include "kernels/rope.h"

#include "kernels/simd.h"
#include "kernels/threads.h"

#include <math.h>
#include <stddef.h>

#if MO_HAVE_X86
#include <immintrin.h>
#endif

void rope_tables(float *cos_tab, float *sin_tab, int max_seq, int head_dim, double theta) {
    int half = head_dim / 2;
    for (int i = 0; i < half; i++) {
        double inv_freq = pow(theta, -2.0 * i / head_dim);
        for (int p = 0; p < max_seq; p++) {
            double a = p * inv_freq;
            cos_tab[(size_t)p * half + i] = (float)cos(a);
            sin_tab[(size_t)p * half + i] = (float)sin(a);
        }
    }
}

// Rows (one position each) run on OpenMP threads when the call is large.
#define ROPE_BODY(row_fn)                                                        \
    int half = head_dim / 2;                                                     \
    MO_PAR_ROWS((size_t)n * n_heads * head_dim >= ((size_t)1 << 16),           \
    for (int r = 0; r < n; r++) {                                                \
        const float *c = cos_tab + (size_t)pos[r] * half, *s = sin_tab + (size_t)pos[r] * half; \
        for (int h = 0; h < n_heads; h++) row_fn(x + ((size_t)r * n_heads + h) * head_dim, c, s, (size_t)half); \
    })

// ---------------------------------------------------------------------------- scalar

// sign = +1: forward rotation; sign = -1: inverse.
static inline void rot_scalar(float *x, const float *c, const float *s, size_t np, float sign) {
    for (size_t i = 0; i < np; i++) {
        float x0 = x[2 * i], x1 = x[2 * i + 1], si = sign * s[i];
        x[2 * i] = x0 * c[i] - x1 * si;
        x[2 * i + 1] = x1 * c[i] + x0 * si;
    }
}
static inline void fwd_row_scalar(float *x, const float *c, const float *s, size_t np) { rot_scalar(x, c, s, np, 1); }
static inline void bwd_row_scalar(float *x, const float *c, const float *s, size_t np) { rot_scalar(x, c, s, np, -1); }

static void rope_fwd_scalar(float *x, const int *pos, const float *cos_tab, const float *sin_tab, int n, int n_heads,
                            int head_dim) {
    ROPE_BODY(fwd_row_scalar)
}
static void rope_bwd_scalar(float *x, const int *pos, const float *cos_tab, const float *sin_tab, int n, int n_heads,
                            int head_dim) {
    ROPE_BODY(bwd_row_scalar)
}

#if MO_HAVE_X86
// ---------------------------------------------------------------------------- AVX-512

static inline MO_TARGET_AVX512 __m512 dup_pairs512(const float *t) {
    const __m512i idx = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    return _mm512_permutexvar_ps(idx, _mm512_castps256_ps512(_mm256_loadu_ps(t)));
}

static inline MO_TARGET_AVX512 void fwd_row_avx512(float *x, const float *c, const float *s, size_t np) {
    size_t i = 0;
    for (; i + 8 <= np; i += 8) {
        __m512 v = _mm512_loadu_ps(x + 2 * i), sw = _mm512_permute_ps(v, 0xB1);
        _mm512_storeu_ps(x + 2 * i, _mm512_fmaddsub_ps(v, dup_pairs512(c + i), _mm512_mul_ps(sw, dup_pairs512(s + i))));
    }
    fwd_row_scalar(x + 2 * i, c + i, s + i, np - i);
}

static inline MO_TARGET_AVX512 void bwd_row_avx512(float *x, const float *c, const float *s, size_t np) {
    size_t i = 0;
    for (; i + 8 <= np; i += 8) {
        __m512 v = _mm512_loadu_ps(x + 2 * i), sw = _mm512_permute_ps(v, 0xB1);
        _mm512_storeu_ps(x + 2 * i, _mm512_fmsubadd_ps(v, dup_pairs512(c + i), _mm512_mul_ps(sw, dup_pairs512(s + i))));
    }
    bwd_row_scalar(x + 2 * i, c + i, s + i, np - i);
}

static MO_TARGET_AVX512 void rope_fwd_avx512(float *x, const int *pos, const float *cos_tab, const float *sin_tab,
                                             int n, int n_heads, int head_dim) {
    ROPE_BODY(fwd_row_avx512)
}
static MO_TARGET_AVX512 void rope_bwd_avx512(float *x, const int *pos, const float *cos_tab, const float *sin_tab,
                                             int n, int n_heads, int head_dim) {
    ROPE_BODY(bwd_row_avx512)
}

// ---------------------------------------------------------------------------- AVX2

static inline MO_TARGET_AVX2 __m256 dup_pairs256(const float *t) {
    const __m256i idx = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3);
    return _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_loadu_ps(t)), idx);
}

static inline MO_TARGET_AVX2 void fwd_row_avx2(float *x, const float *c, const float *s, size_t np) {
    size_t i = 0;
    for (; i + 4 <= np; i += 4) {
        __m256 v = _mm256_loadu_ps(x + 2 * i), sw = _mm256_permute_ps(v, 0xB1);
        _mm256_storeu_ps(x + 2 * i, _mm256_fmaddsub_ps(v, dup_pairs256(c + i), _mm256_mul_ps(sw, dup_pairs256(s + i))));
    }
    fwd_row_scalar(x + 2 * i, c + i, s + i, np - i);
}

static inline MO_TARGET_AVX2 void bwd_row_avx2(float *x, const float *c, const float *s, size_t np) {
    size_t i = 0;
    for (; i + 4 <= np; i += 4) {
        __m256 v = _mm256_loadu_ps(x + 2 * i), sw = _mm256_permute_ps(v, 0xB1);
        _mm256_storeu_ps(x + 2 * i, _mm256_fmsubadd_ps(v, dup_pairs256(c + i), _mm256_mul_ps(sw, dup_pairs256(s + i))));
    }
    bwd_row_scalar(x + 2 * i, c + i, s + i, np - i);
}

static MO_TARGET_AVX2 void rope_fwd_avx2(float *x, const int *pos, const float *cos_tab, const float *sin_tab, int n,
                                         int n_heads, int head_dim) {
    ROPE_BODY(fwd_row_avx2)
}
static MO_TARGET_AVX2 void rope_bwd_avx2(float *x, const int *pos, const float *cos_tab, const float *sin_tab, int n,
                                         int n_heads, int head_dim) {
    ROPE_BODY(bwd_row_avx2)
}
#endif

// ---------------------------------------------------------------------------- dispatch

void rope_forward(float *x, const int *pos, const float *cos_tab, const float *sin_tab, int n, int n_heads,
                  int head_dim) {
    MO_SIMD_DISPATCH(rope_fwd, x, pos, cos_tab, sin_tab, n, n_heads, head_dim);
}

void rope_backward(float *dx, const int *pos, const float *cos_tab, const float *sin_tab, int n, int n_heads,
                   int head_dim) {
    MO_SIMD_DISPATCH(rope_bwd, dx, pos, cos_tab, sin_tab, n, n_heads, head_dim);
}
