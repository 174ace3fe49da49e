// softmax.c: row softmax, its backward and row log-sum-exp, scalar and SIMD (AVX2,
// AVX-512), built from the row primitives of kernels/simd_rows.h. Rows run on OpenMP
// threads when the call is large (MO_ROWS_PAR_MIN); each row is independent, so the
// result does not depend on the thread count.
#include "kernels/softmax.h"

#include "kernels/simd_rows.h"
#include "kernels/threads.h"

// One version of each row loop per SIMD level, from the same body: L is the level suffix.
// One row: o = softmax(xr) over n, max-subtracted (o may be xr).
#define SOFTMAX_ROW(L, o, xr, n)                                                \
    do {                                                                        \
        float m_ = row_max_##L(xr, n);                                          \
        float s_ = row_exp_##L(o, xr, n, m_);                                   \
        row_scale_##L(o, o, n, 1.0f / s_);                                      \
    } while (0)

#define SOFTMAX_FWD_BODY(L)                                                     \
    MO_PAR_ROWS((size_t)rows * cols >= MO_ROWS_PAR_MIN,                         \
    for (int r = 0; r < rows; r++)                                              \
        SOFTMAX_ROW(L, out + (size_t)r * cols, x + (size_t)r * cols, (size_t)cols);)

// dx = out * (dout - <dout, out>): the dot is taken before dx (which may be dout) is written.
#define SOFTMAX_BWD_BODY(L)                                                     \
    _Pragma("omp parallel for schedule(static) if ((size_t)rows * cols >= MO_ROWS_PAR_MIN)") \
    for (int r = 0; r < rows; r++) {                                            \
        const float *g = dout + (size_t)r * cols, *y = out + (size_t)r * cols;  \
        float *d = dx + (size_t)r * cols;                                       \
        softmax_bwd_row_##L(d, g, y, (size_t)cols, row_dot_##L(g, y, (size_t)cols)); \
    }

#define LSE_BODY(L)                                                             \
    _Pragma("omp parallel for schedule(static) if ((size_t)rows * cols >= MO_ROWS_PAR_MIN)") \
    for (int r = 0; r < rows; r++) {                                            \
        const float *xr = x + (size_t)r * cols;                                 \
        float m = row_max_##L(xr, (size_t)cols);                                \
        lse[r] = m + logf(row_sumexp_##L(xr, (size_t)cols, m));                 \
    }

// ---------------------------------------------------------------------------- scalar

static void softmax_fwd_scalar(float *out, const float *x, int rows, int cols) { SOFTMAX_FWD_BODY(scalar) }
static void softmax_row_scalar(float *p, int n) { SOFTMAX_ROW(scalar, p, p, (size_t)n); }
static void softmax_bwd_scalar(float *dx, const float *dout, const float *out, int rows, int cols) {
    SOFTMAX_BWD_BODY(scalar)
}
static void lse_scalar(float *lse, const float *x, int rows, int cols) { LSE_BODY(scalar) }

#if MO_HAVE_X86
// ---------------------------------------------------------------------------- AVX-512

static MO_TARGET_AVX512 void softmax_fwd_avx512(float *out, const float *x, int rows, int cols) {
    SOFTMAX_FWD_BODY(avx512)
}
static MO_TARGET_AVX512 void softmax_row_avx512(float *p, int n) { SOFTMAX_ROW(avx512, p, p, (size_t)n); }
static MO_TARGET_AVX512 void softmax_bwd_avx512(float *dx, const float *dout, const float *out, int rows, int cols) {
    SOFTMAX_BWD_BODY(avx512)
}
static MO_TARGET_AVX512 void lse_avx512(float *lse, const float *x, int rows, int cols) { LSE_BODY(avx512) }

// ---------------------------------------------------------------------------- AVX2

static MO_TARGET_AVX2 void softmax_fwd_avx2(float *out, const float *x, int rows, int cols) { SOFTMAX_FWD_BODY(avx2) }
static MO_TARGET_AVX2 void softmax_row_avx2(float *p, int n) { SOFTMAX_ROW(avx2, p, p, (size_t)n); }
static MO_TARGET_AVX2 void softmax_bwd_avx2(float *dx, const float *dout, const float *out, int rows, int cols) {
    SOFTMAX_BWD_BODY(avx2)
}
static MO_TARGET_AVX2 void lse_avx2(float *lse, const float *x, int rows, int cols) { LSE_BODY(avx2) }
#endif

// ---------------------------------------------------------------------------- dispatch

void softmax_forward(float *out, const float *x, int rows, int cols) {
    MO_SIMD_DISPATCH(softmax_fwd, out, x, rows, cols);
}

void softmax_row(float *p, int n) { MO_SIMD_DISPATCH(softmax_row, p, n); }

void softmax_backward(float *dx, const float *dout, const float *out, int rows, int cols) {
    MO_SIMD_DISPATCH(softmax_bwd, dx, dout, out, rows, cols);
}

void logsumexp_rows(float *lse, const float *x, int rows, int cols) { MO_SIMD_DISPATCH(lse, lse, x, rows, cols); }
