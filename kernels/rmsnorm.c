// rmsnorm.c: RMSNorm forward and backward, scalar and SIMD (AVX2, AVX-512).
//
// Per row of d:  r = 1 / sqrt(mean(x^2) + eps),  out = x * r * w.
// Backward, with c = sum_j dout_j w_j x_j:
//   dx_j += r * dout_j * w_j - (r^3 c / d) * x_j
//   dw_j += sum over rows of dout_j * x_j * r
// dx is split by rows; dw by columns, each thread summing its range of columns over the
// rows in row order (contiguous within a row, so the prefetchers follow), so dw needs no
// per-thread scratch and its sums do not depend on the thread count. Both in one pass
// over memory, block of rows by block of rows (RMS_BWD_BODY).
#include "kernels/rmsnorm.h"

#include "kernels/simd_rows.h"
#include "kernels/threads.h"

#include <omp.h>

#define RMS_FWD_BODY(L)                                                          \
    MO_PAR_ROWS((size_t)n * d >= MO_ROWS_PAR_MIN,                                \
    for (int i = 0; i < n; i++) {                                                \
        const float *xr = x + (size_t)i * d;                                     \
        float r = 1.0f / sqrtf(row_dot_##L(xr, xr, (size_t)d) / (float)d + eps); \
        rstd[i] = r;                                                             \
        rms_fwd_row_##L(out + (size_t)i * d, xr, w, (size_t)d, r);               \
    })

// Backward is one pass over memory: rows in blocks of RMS_BWD_ROWS, in one parallel
// region; in each block a thread computes dx for its share of the rows, then dw for its
// share of the columns over every row of the block, which the threads have just read
// (in cache). dw reads only inputs, so no thread waits for another; each column still
// adds the rows one after the other in row order (a thread keeps its columns in every
// block and takes the blocks in order): the bits of one row pass then one column pass.
#define RMS_BWD_BODY(L)                                                                          \
    _Pragma("omp parallel if ((size_t)n * d >= MO_ROWS_PAR_MIN)")                                \
    {                                                                                            \
        const int nt = omp_get_num_threads(), me = omp_get_thread_num();                         \
        size_t j0 = 0, nj = 0;                                                                   \
        if (dw) dw_columns((size_t)d, &j0, &nj);                                                 \
        for (int b = 0; b < n; b += RMS_BWD_ROWS) {                                              \
            const int len = n - b < RMS_BWD_ROWS ? n - b : RMS_BWD_ROWS;                         \
            for (int i = b + len * me / nt; i < b + len * (me + 1) / nt; i++) {                  \
                size_t o = (size_t)i * d;                                                        \
                float r = rstd[i];                                                               \
                float c = rms_dot3_##L(dout + o, w, x + o, (size_t)d);                           \
                rms_dx_row_##L(dx + o, dout + o, x + o, w, (size_t)d, r, r * r * r * c / (float)d); \
            }                                                                                    \
            for (int i = b; nj && i < b + len; i++)                                              \
                rms_dw_row_##L(dw + j0, dout + (size_t)i * d + j0, x + (size_t)i * d + j0, nj, rstd[i]); \
        }                                                                                        \
    }

// Rows of a backward block: their dout and x (2 x 32 rows x d floats, 128 KB at d 512)
// stay in the cores' L2 between the row part and the column part.
#define RMS_BWD_ROWS 32

// This thread's share of the d columns of dw: a contiguous range, a multiple of 16 wide
// (whole vectors), that it walks row after row in row order.
static inline void dw_columns(size_t d, size_t *j0, size_t *nj) {
    size_t lo, hi;
    threads_share16(d, &lo, &hi);
    *j0 = lo, *nj = hi - lo;
}

// ---------------------------------------------------------------------------- scalar

// out_j = x_j * r * w_j
static inline void rms_fwd_row_scalar(float *out, const float *x, const float *w, size_t d, float r) {
    for (size_t j = 0; j < d; j++) out[j] = x[j] * r * w[j];
}

// sum_j g_j w_j x_j
static inline float rms_dot3_scalar(const float *g, const float *w, const float *x, size_t d) {
    double s = 0;  // double, as in simd_rows.h
    for (size_t j = 0; j < d; j++) s += g[j] * w[j] * x[j];
    return (float)s;
}

// dx_j += r g_j w_j - k x_j
static inline void rms_dx_row_scalar(float *dx, const float *g, const float *x, const float *w, size_t d, float r,
                                     float k) {
    for (size_t j = 0; j < d; j++) dx[j] += r * g[j] * w[j] - k * x[j];
}

// dw_j += g_j x_j r
static inline void rms_dw_row_scalar(float *dw, const float *g, const float *x, size_t d, float r) {
    for (size_t j = 0; j < d; j++) dw[j] += g[j] * x[j] * r;
}

static void rms_fwd_scalar(float *out, float *rstd, const float *x, const float *w, int n, int d, float eps) {
    RMS_FWD_BODY(scalar)
}
static void rms_bwd_scalar(float *dx, float *dw, const float *dout, const float *x, const float *w,
                           const float *rstd, int n, int d) {
    RMS_BWD_BODY(scalar)
}

#if MO_HAVE_X86
// ---------------------------------------------------------------------------- AVX-512

static inline MO_TARGET_AVX512 void rms_fwd_row_avx512(float *out, const float *x, const float *w, size_t d,
                                                       float r) {
    __m512 vr = _mm512_set1_ps(r);
    size_t j = 0;
    for (; j + 16 <= d; j += 16)
        _mm512_storeu_ps(out + j, _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(x + j), vr), _mm512_loadu_ps(w + j)));
    rms_fwd_row_scalar(out + j, x + j, w + j, d - j, r);
}

static inline MO_TARGET_AVX512 float rms_dot3_avx512(const float *g, const float *w, const float *x, size_t d) {
    __m512 acc = _mm512_setzero_ps();
    size_t j = 0;
    for (; j + 16 <= d; j += 16)
        acc = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_loadu_ps(g + j), _mm512_loadu_ps(w + j)), _mm512_loadu_ps(x + j),
                              acc);
    return _mm512_reduce_add_ps(acc) + rms_dot3_scalar(g + j, w + j, x + j, d - j);
}

static inline MO_TARGET_AVX512 void rms_dx_row_avx512(float *dx, const float *g, const float *x, const float *w,
                                                      size_t d, float r, float k) {
    __m512 vr = _mm512_set1_ps(r), vk = _mm512_set1_ps(k);
    size_t j = 0;
    for (; j + 16 <= d; j += 16) {
        __m512 t = _mm512_mul_ps(_mm512_mul_ps(vr, _mm512_loadu_ps(g + j)), _mm512_loadu_ps(w + j));
        t = _mm512_fnmadd_ps(vk, _mm512_loadu_ps(x + j), t);
        _mm512_storeu_ps(dx + j, _mm512_add_ps(_mm512_loadu_ps(dx + j), t));
    }
    rms_dx_row_scalar(dx + j, g + j, x + j, w + j, d - j, r, k);
}

static inline MO_TARGET_AVX512 void rms_dw_row_avx512(float *dw, const float *g, const float *x, size_t d, float r) {
    __m512 vr = _mm512_set1_ps(r);
    size_t j = 0;
    for (; j + 16 <= d; j += 16)
        _mm512_storeu_ps(dw + j, _mm512_fmadd_ps(_mm512_mul_ps(_mm512_loadu_ps(g + j), _mm512_loadu_ps(x + j)), vr,
                                                 _mm512_loadu_ps(dw + j)));
    rms_dw_row_scalar(dw + j, g + j, x + j, d - j, r);
}

static MO_TARGET_AVX512 void rms_fwd_avx512(float *out, float *rstd, const float *x, const float *w, int n, int d,
                                            float eps) {
    RMS_FWD_BODY(avx512)
}
static MO_TARGET_AVX512 void rms_bwd_avx512(float *dx, float *dw, const float *dout, const float *x, const float *w,
                                            const float *rstd, int n, int d) {
    RMS_BWD_BODY(avx512)
}

// ---------------------------------------------------------------------------- AVX2

static inline MO_TARGET_AVX2 void rms_fwd_row_avx2(float *out, const float *x, const float *w, size_t d, float r) {
    __m256 vr = _mm256_set1_ps(r);
    size_t j = 0;
    for (; j + 8 <= d; j += 8)
        _mm256_storeu_ps(out + j, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + j), vr), _mm256_loadu_ps(w + j)));
    rms_fwd_row_scalar(out + j, x + j, w + j, d - j, r);
}

static inline MO_TARGET_AVX2 float rms_dot3_avx2(const float *g, const float *w, const float *x, size_t d) {
    __m256 acc = _mm256_setzero_ps();
    size_t j = 0;
    for (; j + 8 <= d; j += 8)
        acc = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_loadu_ps(g + j), _mm256_loadu_ps(w + j)), _mm256_loadu_ps(x + j),
                              acc);
    return mo_hsum256(acc) + rms_dot3_scalar(g + j, w + j, x + j, d - j);
}

static inline MO_TARGET_AVX2 void rms_dx_row_avx2(float *dx, const float *g, const float *x, const float *w, size_t d,
                                                  float r, float k) {
    __m256 vr = _mm256_set1_ps(r), vk = _mm256_set1_ps(k);
    size_t j = 0;
    for (; j + 8 <= d; j += 8) {
        __m256 t = _mm256_mul_ps(_mm256_mul_ps(vr, _mm256_loadu_ps(g + j)), _mm256_loadu_ps(w + j));
        t = _mm256_fnmadd_ps(vk, _mm256_loadu_ps(x + j), t);
        _mm256_storeu_ps(dx + j, _mm256_add_ps(_mm256_loadu_ps(dx + j), t));
    }
    rms_dx_row_scalar(dx + j, g + j, x + j, w + j, d - j, r, k);
}

static inline MO_TARGET_AVX2 void rms_dw_row_avx2(float *dw, const float *g, const float *x, size_t d, float r) {
    __m256 vr = _mm256_set1_ps(r);
    size_t j = 0;
    for (; j + 8 <= d; j += 8)
        _mm256_storeu_ps(dw + j, _mm256_fmadd_ps(_mm256_mul_ps(_mm256_loadu_ps(g + j), _mm256_loadu_ps(x + j)), vr,
                                                 _mm256_loadu_ps(dw + j)));
    rms_dw_row_scalar(dw + j, g + j, x + j, d - j, r);
}

static MO_TARGET_AVX2 void rms_fwd_avx2(float *out, float *rstd, const float *x, const float *w, int n, int d,
                                        float eps) {
    RMS_FWD_BODY(avx2)
}
static MO_TARGET_AVX2 void rms_bwd_avx2(float *dx, float *dw, const float *dout, const float *x, const float *w,
                                        const float *rstd, int n, int d) {
    RMS_BWD_BODY(avx2)
}
#endif

// ---------------------------------------------------------------------------- dispatch

void rmsnorm_forward(float *out, float *rstd, const float *x, const float *w, int n, int d, float eps) {
    MO_SIMD_DISPATCH(rms_fwd, out, rstd, x, w, n, d, eps);
}

void rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x, const float *w, const float *rstd,
                      int n, int d) {
    MO_SIMD_DISPATCH(rms_bwd, dx, dw, dout, x, w, rstd, n, d);
}
