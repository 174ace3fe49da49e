// gemv.c: matrix-vector products (fp32 and 8-bit weights), scalar / AVX2 / AVX-512,
// and the threaded runner of several products at once.
//
// Every level computes each row on its own, the same way wherever it runs, so a row's
// result does not depend on how the rows are split over threads.
#include "kernels/gemv.h"

#include "kernels/simd.h"

#include <math.h>
#include <omp.h>
#include <string.h>

// ---------------------------------------------------------------------------- quantize

void q8_quantize(int8_t *q, float *scale, const float *W, size_t rows, int cols) {
    const int nb = q8_blocks(cols);
#pragma omp parallel for schedule(static) if (rows * (size_t)cols >= ((size_t)1 << 18))
    for (size_t r = 0; r < rows; r++)
        for (int b = 0; b < nb; b++) {
            const int c0 = b * Q8_BLOCK, c1 = c0 + Q8_BLOCK < cols ? c0 + Q8_BLOCK : cols;
            const float *w = W + r * cols;
            float amax = 0;
            for (int c = c0; c < c1; c++) amax = fabsf(w[c]) > amax ? fabsf(w[c]) : amax;
            float s = amax / 127.0f, inv = amax > 0 ? 127.0f / amax : 0.0f;
            scale[r * nb + b] = s;
            for (int c = c0; c < c1; c++) {
                long v = lrintf(w[c] * inv);
                q[r * cols + c] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
            }
        }
}

static void dequant_row_scalar(float *w, const int8_t *q, const float *scale, int cols) {
    for (int c = 0; c < cols; c++) w[c] = scale[c / Q8_BLOCK] * (float)q[c];
}

// ---------------------------------------------------------------------------- scalar

// Scalar rows accumulate in double: one float accumulator over a long row loses more
// than the SIMD lanes do (as in simd_rows.h).
static void gemv_f32_scalar(float *y, const float *W, const float *x, int rows, int cols, size_t ld, float alpha,
                            int acc) {
    for (int r = 0; r < rows; r++) {
        const float *w = W + r * ld;
        double s = 0;
        for (int c = 0; c < cols; c++) s += (double)w[c] * x[c];
        y[r] = (acc ? y[r] : 0.0f) + alpha * (float)s;
    }
}

static void gemv_q8_scalar(float *y, const int8_t *Q, const float *S, const float *x, int rows, int cols, size_t ld,
                           float alpha, int acc) {
    const int nb = q8_blocks(cols);
    const size_t nbl = (size_t)q8_blocks((int)ld);
    for (int r = 0; r < rows; r++) {
        const int8_t *q = Q + r * ld;
        double s = 0;
        for (int b = 0; b < nb; b++) {
            const int c0 = b * Q8_BLOCK, c1 = c0 + Q8_BLOCK < cols ? c0 + Q8_BLOCK : cols;
            double t = 0;
            for (int c = c0; c < c1; c++) t += (double)q[c] * x[c];
            s += S[r * nbl + b] * t;
        }
        y[r] = (acc ? y[r] : 0.0f) + alpha * (float)s;
    }
}

#if MO_HAVE_X86
#include <immintrin.h>

// ---------------------------------------------------------------------------- AVX-512

// One row at a time, read as one sequential stream: four 16-lane accumulators over
// 64 columns per step, then 16 at a time, the tail under a mask. (Four rows at once,
// sharing the loads of x, read four streams 2 KB apart and ran at half the bandwidth.)
static inline MO_TARGET_AVX512 float dot_f32_512(const float *w, const float *x, int cols) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int c = 0;
    for (; c + 64 <= cols; c += 64) {
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + c), _mm512_loadu_ps(x + c), a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(w + c + 16), _mm512_loadu_ps(x + c + 16), a1);
        a2 = _mm512_fmadd_ps(_mm512_loadu_ps(w + c + 32), _mm512_loadu_ps(x + c + 32), a2);
        a3 = _mm512_fmadd_ps(_mm512_loadu_ps(w + c + 48), _mm512_loadu_ps(x + c + 48), a3);
    }
    for (; c + 16 <= cols; c += 16) a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + c), _mm512_loadu_ps(x + c), a0);
    if (c < cols) {
        __mmask16 m = (__mmask16)((1u << (cols - c)) - 1);
        a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, w + c), _mm512_maskz_loadu_ps(m, x + c), a0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

static MO_TARGET_AVX512 void gemv_f32_avx512(float *y, const float *W, const float *x, int rows, int cols,
                                             size_t ld, float alpha, int acc) {
    for (int r = 0; r < rows; r++) {
        float s = alpha * dot_f32_512(W + r * ld, x, cols);
        y[r] = acc ? y[r] + s : s;
    }
}

// 16 int8 weights at q (the first `m` of them under a mask) as floats.
static inline MO_TARGET_AVX512 __m512 q8_load16(const int8_t *q, __mmask16 m) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, q)));
}

// One 8-bit row: per block of 32 columns, its int8 x fp32 products in one register,
// added to the row's accumulator times the block's scale (two accumulators, even and
// odd blocks); a short last block under masks.
static inline MO_TARGET_AVX512 float dot_q8_512(const int8_t *q, const float *sc, const float *x, int cols) {
    const int nb = q8_blocks(cols);
    __m512 acc[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
    for (int b = 0; b < nb; b++) {
        const int c = b * Q8_BLOCK, n = cols - c < Q8_BLOCK ? cols - c : Q8_BLOCK;
        const __mmask16 m0 = n >= 16 ? 0xFFFF : (__mmask16)((1u << n) - 1);
        const __mmask16 m1 = n >= 32 ? 0xFFFF : n > 16 ? (__mmask16)((1u << (n - 16)) - 1) : 0;
        __m512 t = _mm512_mul_ps(q8_load16(q + c, m0), _mm512_maskz_loadu_ps(m0, x + c));
        t = _mm512_fmadd_ps(q8_load16(q + c + 16, m1), _mm512_maskz_loadu_ps(m1, x + c + 16), t);
        acc[b & 1] = _mm512_fmadd_ps(_mm512_set1_ps(sc[b]), t, acc[b & 1]);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(acc[0], acc[1]));
}

static MO_TARGET_AVX512 void gemv_q8_avx512(float *y, const int8_t *Q, const float *S, const float *x, int rows,
                                            int cols, size_t ld, float alpha, int acc) {
    const size_t nbl = (size_t)q8_blocks((int)ld);
    for (int r = 0; r < rows; r++) {
        float s = alpha * dot_q8_512(Q + r * ld, S + r * nbl, x, cols);
        y[r] = acc ? y[r] + s : s;
    }
}

// One row: 16 weights at a time, the short last block under a mask.
static MO_TARGET_AVX512 void dequant_row_avx512(float *w, const int8_t *q, const float *scale, int cols) {
    for (int c = 0; c < cols; c += 16) {
        const __mmask16 m = cols - c >= 16 ? 0xFFFF : (__mmask16)((1u << (cols - c)) - 1);
        _mm512_mask_storeu_ps(w + c, m, _mm512_mul_ps(_mm512_set1_ps(scale[c / Q8_BLOCK]), q8_load16(q + c, m)));
    }
}

// ---------------------------------------------------------------------------- AVX2

static inline MO_TARGET_AVX2 float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// One row: 8 lanes over whole vectors, the tail added in double after the reduction.
static MO_TARGET_AVX2 void gemv_f32_avx2(float *y, const float *W, const float *x, int rows, int cols, size_t ld,
                                         float alpha, int acc) {
    for (int r = 0; r < rows; r++) {
        const float *w = W + r * ld;
        __m256 a = _mm256_setzero_ps();
        int c = 0;
        for (; c + 8 <= cols; c += 8) a = _mm256_fmadd_ps(_mm256_loadu_ps(w + c), _mm256_loadu_ps(x + c), a);
        double s = hsum256(a);
        for (; c < cols; c++) s += (double)w[c] * x[c];
        y[r] = (acc ? y[r] : 0.0f) + alpha * (float)s;
    }
}

static inline MO_TARGET_AVX2 __m256 q8_load8(const int8_t *q) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)q)));
}

static MO_TARGET_AVX2 void dequant_row_avx2(float *w, const int8_t *q, const float *scale, int cols) {
    int c = 0;
    for (; c + 8 <= cols; c += 8)
        _mm256_storeu_ps(w + c, _mm256_mul_ps(_mm256_set1_ps(scale[c / Q8_BLOCK]), q8_load8(q + c)));
    for (; c < cols; c++) w[c] = scale[c / Q8_BLOCK] * (float)q[c];
}

// One row: whole blocks in 8 lanes, a short last block in scalar code.
static MO_TARGET_AVX2 void gemv_q8_avx2(float *y, const int8_t *Q, const float *S, const float *x, int rows, int cols,
                                        size_t ld, float alpha, int acc) {
    const int nb = q8_blocks(cols), full = cols / Q8_BLOCK;
    const size_t nbl = (size_t)q8_blocks((int)ld);
    for (int r = 0; r < rows; r++) {
        const int8_t *q = Q + r * ld;
        const float *sc = S + r * nbl;
        __m256 a = _mm256_setzero_ps();
        for (int b = 0; b < full; b++) {
            const int c = b * Q8_BLOCK;
            __m256 t = _mm256_mul_ps(q8_load8(q + c), _mm256_loadu_ps(x + c));
            t = _mm256_fmadd_ps(q8_load8(q + c + 8), _mm256_loadu_ps(x + c + 8), t);
            t = _mm256_fmadd_ps(q8_load8(q + c + 16), _mm256_loadu_ps(x + c + 16), t);
            t = _mm256_fmadd_ps(q8_load8(q + c + 24), _mm256_loadu_ps(x + c + 24), t);
            a = _mm256_fmadd_ps(_mm256_set1_ps(sc[b]), t, a);
        }
        double s = hsum256(a);
        if (full < nb) {
            double t = 0;
            for (int c = full * Q8_BLOCK; c < cols; c++) t += (double)q[c] * x[c];
            s += sc[full] * t;
        }
        y[r] = (acc ? y[r] : 0.0f) + alpha * (float)s;
    }
}
#endif

// ---------------------------------------------------------------------------- dispatch

static void gemv_f32(float *y, const float *W, const float *x, int rows, int cols, size_t ld, float alpha, int acc) {
    MO_SIMD_DISPATCH(gemv_f32, y, W, x, rows, cols, ld, alpha, acc);
}

static void gemv_q8(float *y, const int8_t *Q, const float *S, const float *x, int rows, int cols, size_t ld,
                    float alpha, int acc) {
    MO_SIMD_DISPATCH(gemv_q8, y, Q, S, x, rows, cols, ld, alpha, acc);
}

static void dequant_row(float *w, const int8_t *q, const float *scale, int cols) {
    MO_SIMD_DISPATCH(dequant_row, w, q, scale, cols);
}

void q8_dequantize(float *W, const int8_t *q, const float *scale, size_t rows, int cols) {
    const int nb = q8_blocks(cols);
#pragma omp parallel for schedule(static) if (rows * (size_t)cols >= ((size_t)1 << 18))
    for (size_t r = 0; r < rows; r++) dequant_row(W + r * cols, q + r * cols, scale + r * nb, cols);
}

void gemv_ld(float *y, gemv_w W, size_t ld, const float *x, int rows, int cols, float alpha, int acc) {
    if (rows <= 0) return;
    if (cols <= 0) {  // an empty sum
        for (int r = 0; r < rows; r++) y[r] = acc ? y[r] : 0.0f;
        return;
    }
    if (W.f) gemv_f32(y, W.f, x, rows, cols, ld, alpha, acc);
    else gemv_q8(y, W.q, W.scale, x, rows, cols, ld, alpha, acc);
}

void gemv(float *y, gemv_w W, const float *x, int rows, int cols, float alpha, int acc) {
    gemv_ld(y, W, (size_t)cols, x, rows, cols, alpha, acc);
}

// ---------------------------------------------------------------------------- runner

// Bytes of weights one row of a task reads.
static double task_row_bytes(const gemv_task *t) {
    double b = 0;
    for (int i = 0; i < t->n_terms; i++)
        b += t->t[i].w.f ? 4.0 * t->t[i].cols : t->t[i].cols * (1.0 + 4.0 / Q8_BLOCK);
    return b;
}

// Rows [r0, r1) of one task.
static void task_rows(const gemv_task *t, int r0, int r1) {
    if (r1 <= r0) return;
    for (int i = 0; i < t->n_terms; i++) {
        const gemv_term *u = &t->t[i];
        gemv(t->y + r0, gemv_w_rows(u->w, (size_t)r0, u->cols), u->x, r1 - r0, u->cols, u->alpha,
             i > 0 || t->acc);
    }
}

#define GEMV_PAR_MIN_BYTES 65536.0

void gemv_run(const gemv_task *tasks, int n_tasks) {
    double total = 0;
    for (int i = 0; i < n_tasks; i++) total += task_row_bytes(&tasks[i]) * tasks[i].rows;
    int nt = omp_in_parallel() || total < GEMV_PAR_MIN_BYTES ? 1 : omp_get_max_threads();
    if (nt <= 1) {
        for (int i = 0; i < n_tasks; i++) task_rows(&tasks[i], 0, tasks[i].rows);
        return;
    }
#pragma omp parallel num_threads(nt)
    {
        // Thread `me` owns the bytes [me, me+1) * total / n of the concatenated tasks, cut
        // at the nearest row; both neighbours compute a shared cut the same way.
        const int n = omp_get_num_threads(), me = omp_get_thread_num();
        const double lo = total * me / n, hi = total * (me + 1) / n;
        double start = 0;
        for (int i = 0; i < n_tasks; i++) {
            const gemv_task *t = &tasks[i];
            const double rb = task_row_bytes(t), end = start + rb * t->rows;
            if (rb == 0) {  // no columns: the rows are zeroed (or kept) by thread 0
                if (me == 0) task_rows(t, 0, t->rows);
            } else if (end > lo && start < hi) {
                int r0 = lo <= start ? 0 : (int)((lo - start) / rb + 0.5);
                int r1 = hi >= end ? t->rows : (int)((hi - start) / rb + 0.5);
                if (me == n - 1) r1 = t->rows;
                if (r0 > t->rows) r0 = t->rows;
                if (r1 > t->rows) r1 = t->rows;
                task_rows(t, r0, r1);
            }
            start = end;
        }
    }
}
