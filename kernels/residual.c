// residual.c: the residual add and its backward, scalar and SIMD (AVX2, AVX-512).
// Memory-bound: one pass, whole vectors, scalar tail; large calls on every OpenMP thread.
#include "kernels/residual.h"

#include "kernels/simd.h"
#include "kernels/threads.h"

#include <string.h>

#if MO_HAVE_X86
#include <immintrin.h>
#endif

#define ADD_PAR_MIN ((size_t)1 << 17)  // below this the fork/join costs more than a core saves

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

static void add_range(float *out, const float *a, const float *b, size_t n) { MO_SIMD_DISPATCH(add, out, a, b, n); }

// Large calls (the [tokens, d] residual stream) on every OpenMP thread (threads_split16).
typedef struct {
    float *out;
    const float *a, *b;
} pass;

static void add_part(const void *ctx, size_t lo, size_t n) {
    const pass *p = ctx;
    add_range(p->out + lo, p->a + lo, p->b + lo, n);
}

static void copy_part(const void *ctx, size_t lo, size_t n) {
    const pass *p = ctx;
    memcpy(p->out + lo, p->a + lo, n * sizeof *p->out);
}

static void add(float *out, const float *a, const float *b, size_t n) {
    threads_split16(n, ADD_PAR_MIN, add_part, &(pass){out, a, b});
}

void residual_forward(float *out, const float *a, const float *b, size_t n) { add(out, a, b, n); }

void residual_copy(float *out, const float *a, size_t n) {
    threads_split16(n, ADD_PAR_MIN, copy_part, &(pass){out, a, NULL});
}

// Accumulating is an add in place; a NULL gradient is one nobody reads.
void residual_backward(float *da, float *db, const float *dout, size_t n) {
    if (da) add(da, da, dout, n);
    if (db) add(db, db, dout, n);
}
