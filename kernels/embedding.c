// embedding.c: token embedding lookup and its scatter-add backward.
//
// Forward is a row copy (memcpy is already vectorized). Backward adds rows of dout into
// rows of dtable with SIMD; it stays serial because repeated tokens write the same row,
// and the summation order (token order) is then the same on every run.
#include "kernels/embedding.h"

#include "kernels/simd.h"

#include <string.h>

#if MO_HAVE_X86
#include <immintrin.h>
#endif

// ---------------------------------------------------------------------------- scalar

// y[d] += x[d]
static void row_acc_scalar(float *y, const float *x, size_t d) {
    for (size_t j = 0; j < d; j++) y[j] += x[j];
}

#if MO_HAVE_X86
// ---------------------------------------------------------------------------- AVX-512

static MO_TARGET_AVX512 void row_acc_avx512(float *y, const float *x, size_t d) {
    size_t j = 0;
    for (; j + 16 <= d; j += 16) _mm512_storeu_ps(y + j, _mm512_add_ps(_mm512_loadu_ps(y + j), _mm512_loadu_ps(x + j)));
    row_acc_scalar(y + j, x + j, d - j);
}

// ---------------------------------------------------------------------------- AVX2

static MO_TARGET_AVX2 void row_acc_avx2(float *y, const float *x, size_t d) {
    size_t j = 0;
    for (; j + 8 <= d; j += 8) _mm256_storeu_ps(y + j, _mm256_add_ps(_mm256_loadu_ps(y + j), _mm256_loadu_ps(x + j)));
    row_acc_scalar(y + j, x + j, d - j);
}
#endif

// ---------------------------------------------------------------------------- dispatch

static void row_acc(float *y, const float *x, size_t d) { MO_SIMD_DISPATCH(row_acc, y, x, d); }

void embedding_forward(float *out, const int *tokens, const float *table, int n, int d) {
    for (int i = 0; i < n; i++)
        memcpy(out + (size_t)i * d, table + (size_t)tokens[i] * d, (size_t)d * sizeof *out);
}

void embedding_backward(float *dtable, const float *dout, const int *tokens, int n, int d) {
    for (int i = 0; i < n; i++) row_acc(dtable + (size_t)tokens[i] * d, dout + (size_t)i * d, (size_t)d);
}
