// matmul_small.c: sgemm for one small dimension (see matmul_small.h).
//
// The AVX-512 kernel holds a tile of MR = 6 rows x up to 64 columns of C (24 zmm
// accumulators) over the whole K loop: per k it loads 4 vectors of B's row k and
// broadcasts 6 elements of A, for 24 fused multiply-adds. A is addressed in place by
// row and column strides (an NT/NN A row is contiguous in k, a TN A column is), so no
// copy of the large operand is made; B's row k must be contiguous in n, which NN and TN
// give as they are and NT gets by transposing B (N x K: small) into a scratch once per
// call. The scalar version is the same sum with fmaf in the same order, so both give the
// same bits; it serves the other SIMD levels and the tests.
#include "kernels/matmul_small.h"

#include "kernels/simd.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#if MO_HAVE_X86
#include <immintrin.h>
#endif

#define MR 6
#define NR 64

int matmul_small_use(matmul_small_form form, int M, int N, int K) {
    if (simd_active() != SIMD_AVX512) return 0;
    // The small dimension is the expert's d_ff: K of NT's (x w1^T) output N, NN's
    // (dh w1) depth K, TN's (dh^T x) M, or the other way round. Up to 256 the kernel
    // beats OpenBLAS at one thread (docs/benchmarks.md); bench-S's 1024 stays with BLAS.
    int small = form == MATMUL_SMALL_TN ? (M < N ? M : N) : (N < K ? N : K);
    (void)M;
    return small > 0 && small <= 256;
}

// C[i, j] (+)= sum_k A[i*ars + k*acs] * B[k*ldb + j*bcs], i < M, j < N.
static void small_scalar(float *C, const float *A, size_t ars, size_t acs, const float *B, size_t ldb, size_t bcs,
                         int M, int N, int K, int acc) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            float s = 0;
            for (int k = 0; k < K; k++) s = fmaf(A[i * ars + k * acs], B[k * ldb + j * bcs], s);
            float *c = C + (size_t)i * N + j;
            *c = acc ? *c + s : s;
        }
}

#if MO_HAVE_X86
// One MR' x (16 NV) tile, MR' <= MR and NV <= 4 compile-time after inlining; the last
// vector's columns are `last` (a mask, all ones for a full one).
static MO_TARGET_AVX512 inline __attribute__((always_inline)) void tile(int mr, int nv, __mmask16 last, float *C,
                                                                      size_t ldc, const float *A, size_t ars,
                                                                      size_t acs, const float *B, size_t ldb, int K,
                                                                      int acc) {
    __m512 c[MR][4];
    const float *a[MR];
#pragma GCC unroll 6
    for (int i = 0; i < mr; i++) {
        a[i] = A + i * ars;
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) c[i][v] = _mm512_setzero_ps();
    }
    for (int k = 0; k < K; k++) {
        __m512 b[4];
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++)
            b[v] = v == nv - 1 ? _mm512_maskz_loadu_ps(last, B + 16 * v) : _mm512_loadu_ps(B + 16 * v);
#pragma GCC unroll 6
        for (int i = 0; i < mr; i++) {
            const __m512 x = _mm512_set1_ps(*a[i]);
            a[i] += acs;
#pragma GCC unroll 4
            for (int v = 0; v < nv; v++) c[i][v] = _mm512_fmadd_ps(x, b[v], c[i][v]);
        }
        B += ldb;
    }
#pragma GCC unroll 6
    for (int i = 0; i < mr; i++)
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) {
            const __mmask16 m = v == nv - 1 ? last : (__mmask16)0xffff;
            float *p = C + i * ldc + 16 * v;
            __m512 r = acc ? _mm512_add_ps(_mm512_maskz_loadu_ps(m, p), c[i][v]) : c[i][v];
            _mm512_mask_storeu_ps(p, m, r);
        }
}

#define TILE_NV(mr)                                                              \
    switch (nv) {                                                                \
    case 1: tile(mr, 1, last, C, ldc, A, ars, acs, B, ldb, K, acc); return;     \
    case 2: tile(mr, 2, last, C, ldc, A, ars, acs, B, ldb, K, acc); return;     \
    case 3: tile(mr, 3, last, C, ldc, A, ars, acs, B, ldb, K, acc); return;     \
    default: tile(mr, 4, last, C, ldc, A, ars, acs, B, ldb, K, acc); return;    \
    }

static MO_TARGET_AVX512 void tile_any(int mr, int nv, __mmask16 last, float *C, size_t ldc, const float *A,
                                      size_t ars, size_t acs, const float *B, size_t ldb, int K, int acc) {
    switch (mr) {
    case 1: TILE_NV(1)
    case 2: TILE_NV(2)
    case 3: TILE_NV(3)
    case 4: TILE_NV(4)
    case 5: TILE_NV(5)
    default: TILE_NV(6)
    }
}
#undef TILE_NV

// Column panels of NR outer (B's K x NR panel stays in L2 while every row block of A
// passes it), row blocks of MR inner.
static MO_TARGET_AVX512 void small_avx512(float *C, const float *A, size_t ars, size_t acs, const float *B,
                                          size_t ldb, int M, int N, int K, int acc) {
    for (int j0 = 0; j0 < N; j0 += NR) {
        const int nr = N - j0 < NR ? N - j0 : NR, nv = (nr + 15) / 16;
        const __mmask16 last = nr % 16 ? (__mmask16)((1u << (nr % 16)) - 1) : (__mmask16)0xffff;
        for (int i0 = 0; i0 < M; i0 += MR)
            tile_any(M - i0 < MR ? M - i0 : MR, nv, last, C + (size_t)i0 * N + j0, (size_t)N, A + i0 * ars, ars,
                     acs, B + j0, ldb, K, acc);
    }
}
#endif

static void small(float *C, const float *A, size_t ars, size_t acs, const float *B, size_t ldb, int M, int N, int K,
                  int acc) {
    if (M <= 0 || N <= 0) return;
#if MO_HAVE_X86
    if (simd_active() == SIMD_AVX512) {
        // Outside a parallel region (a dense call, or a grouped one's big block) the rows
        // split over the threads in runs of whole tiles; each element's sum is the same.
        const int nt = omp_in_parallel() || (double)M * N * K < 1 << 20 ? 1 : omp_get_max_threads();
        const int tiles = (M + MR - 1) / MR, per = (tiles + nt - 1) / nt;
#pragma omp parallel for schedule(static) if (nt > 1)
        for (int t = 0; t < nt; t++) {
            const int i0 = t * per * MR, i1 = (t + 1) * per * MR < M ? (t + 1) * per * MR : M;
            if (i0 < i1) small_avx512(C + (size_t)i0 * N, A + i0 * ars, ars, acs, B, ldb, i1 - i0, N, K, acc);
        }
        return;
    }
#endif
    small_scalar(C, A, ars, acs, B, ldb, 1, M, N, K, acc);
}

void matmul_small_nn(float *C, const float *A, const float *B, int M, int N, int K, int acc) {
    small(C, A, (size_t)K, 1, B, (size_t)N, M, N, K, acc);
}

void matmul_small_tn(float *C, const float *A, const float *B, int M, int N, int K, int acc) {
    small(C, A, 1, (size_t)M, B, (size_t)N, M, N, K, acc);
}

// Bt[k, n] = B[n, k], by 16 x 16 blocks transposed in registers (a column-by-column loop
// writes N lines K floats apart, which map to a few L1 sets at the expert widths, and
// AVX-512's gather costs 1.3 ns a float on this CPU); the edges element by element.
#if MO_HAVE_X86
static MO_TARGET_AVX512 void transpose16(float *dst, size_t ldd, const float *src, size_t lds) {
    __m512 r[16], t[16];
    for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_ps(src + i * lds);
    for (int i = 0; i < 16; i += 2) {  // per 128-bit lane: (r_i, r_i+1) interleaved
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {  // per lane: rows i..i+3 of lane column 0, 1, 2, 3
        __m512d a = _mm512_castps_pd(t[i]), b = _mm512_castps_pd(t[i + 1]);
        __m512d c = _mm512_castps_pd(t[i + 2]), d = _mm512_castps_pd(t[i + 3]);
        r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
        r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
        r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
        r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
    for (int j = 0; j < 4; j++) {  // r[4i + j] lane L holds rows 4i..4i+3 of column 4L + j
        t[j] = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x88);
        t[j + 4] = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xdd);
        t[j + 8] = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x88);
        t[j + 12] = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xdd);
        _mm512_storeu_ps(dst + (size_t)j * ldd, _mm512_shuffle_f32x4(t[j], t[j + 8], 0x88));
        _mm512_storeu_ps(dst + (size_t)(8 + j) * ldd, _mm512_shuffle_f32x4(t[j], t[j + 8], 0xdd));
        _mm512_storeu_ps(dst + (size_t)(4 + j) * ldd, _mm512_shuffle_f32x4(t[j + 4], t[j + 12], 0x88));
        _mm512_storeu_ps(dst + (size_t)(12 + j) * ldd, _mm512_shuffle_f32x4(t[j + 4], t[j + 12], 0xdd));
    }
}

static MO_TARGET_AVX512 void transpose_avx512(float *Bt, const float *B, int N, int K) {
    const int n16 = N / 16 * 16, k16 = K / 16 * 16;
    for (int n = 0; n < n16; n += 16)
        for (int k = 0; k < k16; k += 16) transpose16(Bt + (size_t)k * N + n, (size_t)N, B + (size_t)n * K + k, (size_t)K);
    for (int n = 0; n < N; n++)
        for (int k = n < n16 ? k16 : 0; k < K; k++) Bt[(size_t)k * N + n] = B[(size_t)n * K + k];
}
#endif

static void transpose(float *Bt, const float *B, int N, int K) {
#if MO_HAVE_X86
    if (simd_active() == SIMD_AVX512) {
        transpose_avx512(Bt, B, N, K);
        return;
    }
#endif
    for (int k = 0; k < K; k++)
        for (int n = 0; n < N; n++) Bt[(size_t)k * N + n] = B[(size_t)n * K + k];
}

// The NT form's scratch for B transposed, one per thread, kept for the next call (the
// expert layer makes thousands a step; a fresh malloc of >= 128 KB would be an mmap with
// its page faults each time). It lives as long as the thread; leak checkers see it
// through the thread's TLS.
static _Thread_local float *bt_buf;
static _Thread_local size_t bt_cap;

// B [N, K] is transposed into Bt [K, N] first: N x K floats, the small operand.
void matmul_small_nt(float *C, const float *A, const float *B, int M, int N, int K, int acc) {
    if (M <= 0 || N <= 0) return;
    const size_t need = (size_t)K * N;
    if (need > bt_cap) {
        float *p = realloc(bt_buf, need * sizeof *p);
        if (!p) {  // no memory for the scratch: the same sum read through B's strides
            small_scalar(C, A, (size_t)K, 1, B, 1, (size_t)K, M, N, K, acc);
            return;
        }
        bt_buf = p, bt_cap = need;
    }
    transpose(bt_buf, B, N, K);
    small(C, A, (size_t)K, 1, bt_buf, (size_t)N, M, N, K, acc);
}
