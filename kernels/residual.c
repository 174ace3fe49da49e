// residual.c: the residual add and its backward, scalar and SIMD (AVX2, AVX-512).
// Memory-bound: one pass, whole vectors, scalar tail.
#include "kernels/residual.h"

#include "kernels/simd.h"

#if MO_HAVE_X86
#include <immintrin.h>
#endif

// ---------------------------------------------------------------------------- scalar

static void add_scalar(float *out, const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

#if MO_HAVE_X86
// ---------------------------------------------------------------------------- AVX-512

static MO_TARGET_AVX512 void add_avx512(float *out, const float *a, const float *b, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(out + i, _mm512_add_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i)));
    add_scalar(out + i, a + i, b + i, n - i);
}

// ---------------------------------------------------------------------------- AVX2

static MO_TARGET_AVX2 void add_avx2(float *out, const float *a, const float *b, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_add_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)));
    add_scalar(out + i, a + i, b + i, n - i);
}
#endif

// ---------------------------------------------------------------------------- dispatch

static void add(float *out, const float *a, const float *b, size_t n) { MO_SIMD_DISPATCH(add, out, a, b, n); }

void residual_forward(float *out, const float *a, const float *b, size_t n) { add(out, a, b, n); }

// Accumulating is an add in place; a NULL gradient is one nobody reads.
void residual_backward(float *da, float *db, const float *dout, size_t n) {
    if (da) add(da, da, dout, n);
    if (db) add(db, db, dout, n);
}
