// embedding.c: token embedding lookup and its scatter-add backward.
//
// Forward is a row copy (memcpy is already vectorized), rows split over OpenMP threads
// when large. Backward adds rows of dout into rows of dtable with SIMD; repeated tokens
// write the same row, so threads split the d columns instead of the tokens: each thread
// adds its column range of every token in token order, which needs no locks and gives
// the same sums on any thread count.
#include "kernels/embedding.h"

#include "kernels/simd.h"
#include "kernels/threads.h"

#include <omp.h>
#include <string.h>

#if MO_HAVE_X86
#include <immintrin.h>
#endif

#define EMB_PAR_MIN ((size_t)1 << 17)  // elements moved below which threads cost more than they save

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
#pragma omp parallel for schedule(static) if ((size_t)n * d >= EMB_PAR_MIN)
    for (int i = 0; i < n; i++)
        memcpy(out + (size_t)i * d, table + (size_t)tokens[i] * d, (size_t)d * sizeof *out);
}

void embedding_backward(float *dtable, const float *dout, const int *tokens, int n, int d) {
    simd_active();  // decide the level before the threads read it
#pragma omp parallel if ((size_t)n * d >= EMB_PAR_MIN && d >= 64)
    {
        size_t D = (size_t)d, lo, hi;
        threads_share16(D, &lo, &hi);  // this thread's columns
        for (int i = 0; hi > lo && i < n; i++)
            row_acc(dtable + (size_t)tokens[i] * D + lo, dout + (size_t)i * D + lo, hi - lo);
    }
}
