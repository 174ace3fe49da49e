// matmul_small.c: sgemm for one small dimension (see matmul_small.h).
//
// The AVX-512 kernel holds a tile of MR = 6 rows x up to 64 columns of C (24 zmm
// accumulators) over the whole K loop (and over both terms of a fused sum): per k it
// loads 4 vectors of B's row k and broadcasts 6 elements of A, for 24 fused
// multiply-adds. A is addressed in place by row and column strides (an NT/NN A row is
// contiguous in k, a TN A column is), so no copy of the large operand is made; B's row k
// must be contiguous in n, which NN and TN give as they are and NT gets by transposing B
// (N x K: small) into a per-thread scratch once per call. The scalar version is the same
// sum with fmaf in the same order, so both give the same bits; it serves the other SIMD
// levels and the tests.
#include "kernels/matmul_small.h"

#include "kernels/matmul.h"
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
    // The small dimension is the expert's d_ff: NT's (x w1^T) output N or depth K, NN's
    // (dh w1) depth K or output N, TN's (dh^T x) M or N. Forward (NT) beats OpenBLAS at
    // one thread up to 256; the backward forms only up to 64: at d_ff 128 OpenBLAS's TN
    // and NN were as fast or faster (docs/benchmarks.md). bench-S's 1024 stays with BLAS.
    int small = form == MATMUL_SMALL_TN ? (M < N ? M : N) : (N < K ? N : K);
    return small > 0 && small <= (form == MATMUL_SMALL_NT ? 256 : 64);
}

// One product term of an output: A(i, k) = A[row(i) * ars + k * acs] with row(i) = i, or
// rows[i] / div when `rows` is given (A's rows read through the experts' dispatch, no
// gathered copy); B's row k = B + col(k) * ldb, contiguous in n, with col(k) = k or
// bcols[k] / bdiv likewise.
typedef struct {
    const float *A;
    size_t ars, acs;
    const int *rows;
    int div;
    const float *B;
    size_t ldb;
    const int *bcols;
    int bdiv;
} term;

// One output C[M, N] (row stride N) = the sum of its 1 or 2 terms, each over k < K.
typedef struct {
    float *C;
    int nt;
    term t[2];
} out;

static inline const float *a_row(const term *t, int i) {
    return t->A + (size_t)(t->rows ? t->rows[i] / t->div : i) * t->ars;
}
static inline const float *b_row(const term *t, int k) {
    return t->B + (size_t)(t->bcols ? t->bcols[k] / t->bdiv : k) * t->ldb;
}

// Rows i0 .. i1-1 of every output: each element summed over its terms in order, k
// ascending, by fmaf from 0, then added to C (acc) or stored.
static void small_scalar(const out *o, int nout, int i0, int i1, int N, int K, int acc) {
    for (int q = 0; q < nout; q++)
        for (int i = i0; i < i1; i++)
            for (int j = 0; j < N; j++) {
                float s = 0;
                for (int p = 0; p < o[q].nt; p++) {
                    const term *t = &o[q].t[p];
                    const float *a = a_row(t, i);
                    for (int k = 0; k < K; k++) s = fmaf(a[k * t->acs], b_row(t, k)[j], s);
                }
                float *c = o[q].C + (size_t)i * N + j;
                *c = acc ? *c + s : s;
            }
}

#if MO_HAVE_X86
// One MR' x (16 NV) tile at rows i0.., columns j0.. of output o, MR' <= MR and NV <= 4
// compile-time after inlining; the last vector's columns are `last` (a mask, all ones
// for a full one).
static MO_TARGET_AVX512 inline __attribute__((always_inline)) void tile(int mr, int nv, __mmask16 last, const out *o,
                                                                      int i0, int j0, int N, int K, int acc) {
    __m512 c[MR][4];
#pragma GCC unroll 6
    for (int i = 0; i < mr; i++)
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) c[i][v] = _mm512_setzero_ps();
    for (int p = 0; p < o->nt; p++) {
        const term *t = &o->t[p];
        const float *a[MR];
        const size_t acs = t->acs;
#pragma GCC unroll 6
        for (int i = 0; i < mr; i++) a[i] = a_row(t, i0 + i);
        for (int k = 0; k < K; k++) {
            const float *B = b_row(t, k) + j0;
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
        }
    }
#pragma GCC unroll 6
    for (int i = 0; i < mr; i++)
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) {
            const __mmask16 m = v == nv - 1 ? last : (__mmask16)0xffff;
            float *p = o->C + (size_t)(i0 + i) * N + j0 + 16 * v;
            __m512 r = acc ? _mm512_add_ps(_mm512_maskz_loadu_ps(m, p), c[i][v]) : c[i][v];
            _mm512_mask_storeu_ps(p, m, r);
        }
}

#define TILE_NV(mr)                                                \
    switch (nv) {                                                  \
    case 1: tile(mr, 1, last, o, i0, j0, N, K, acc); return;       \
    case 2: tile(mr, 2, last, o, i0, j0, N, K, acc); return;       \
    case 3: tile(mr, 3, last, o, i0, j0, N, K, acc); return;       \
    default: tile(mr, 4, last, o, i0, j0, N, K, acc); return;      \
    }

static MO_TARGET_AVX512 void tile_any(int mr, int nv, __mmask16 last, const out *o, int i0, int j0, int N, int K,
                                      int acc) {
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

// Rows i0 .. i1-1 of every output. The larger operand is read from memory once: with A
// the larger (`a_outer`), each block of MR rows of A stays in L1 while it meets every
// column panel of every output (all of B, the smaller, stays in L2); otherwise each
// K x NR panel of B stays while every row block passes it.
static MO_TARGET_AVX512 void small_avx512(const out *o, int nout, int i0, int i1, int N, int K, int acc,
                                          int a_outer) {
#define PANEL(j0) \
    const int nr = N - (j0) < NR ? N - (j0) : NR, nv = (nr + 15) / 16; \
    const __mmask16 last = nr % 16 ? (__mmask16)((1u << (nr % 16)) - 1) : (__mmask16)0xffff
    if (a_outer) {
        for (int i = i0; i < i1; i += MR)
            for (int q = 0; q < nout; q++)
                for (int j0 = 0; j0 < N; j0 += NR) {
                    PANEL(j0);
                    tile_any(i1 - i < MR ? i1 - i : MR, nv, last, &o[q], i, j0, N, K, acc);
                }
    } else {
        for (int j0 = 0; j0 < N; j0 += NR) {
            PANEL(j0);
            for (int q = 0; q < nout; q++)
                for (int i = i0; i < i1; i += MR) tile_any(i1 - i < MR ? i1 - i : MR, nv, last, &o[q], i, j0, N, K, acc);
        }
    }
#undef PANEL
}
#endif

// Every output's M x N, on the AVX-512 kernel or the scalar one (same bits). Outside a
// parallel region (a dense call, or a grouped one's big block) the rows split over the
// threads in runs of whole tiles; each element's sum is the same either way.
static void small_run(const out *o, int nout, int M, int N, int K, int acc) {
    if (M <= 0 || N <= 0) return;
    size_t a_elems = 0, b_elems = 0;
    for (int q = 0; q < nout; q++)
        for (int p = 0; p < o[q].nt; p++) {
            if (q == 0 || o[q].t[p].A != o[0].t[p].A) a_elems += (size_t)M * K;
            if (q == 0 || o[q].t[p].B != o[0].t[p].B) b_elems += (size_t)K * N;
        }
    const int a_outer = a_elems >= b_elems;
    const int nt = omp_in_parallel() || (double)M * N * K * nout < 1 << 20 ? 1 : omp_get_max_threads();
    const int tiles = (M + MR - 1) / MR, per = (tiles + nt - 1) / nt;
#pragma omp parallel for schedule(static) if (nt > 1)
    for (int t = 0; t < nt; t++) {
        const int i0 = t * per * MR, i1 = (t + 1) * per * MR < M ? (t + 1) * per * MR : M;
        if (i0 >= i1) continue;
#if MO_HAVE_X86
        if (simd_active() == SIMD_AVX512) {
            small_avx512(o, nout, i0, i1, N, K, acc, a_outer);
            continue;
        }
#endif
        small_scalar(o, nout, i0, i1, N, K, acc);
    }
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

// Room for `n` floats in the calling thread's scratch, or NULL.
static float *scratch(size_t n) {
    if (n > bt_cap) {
        float *p = realloc(bt_buf, n * sizeof *p);
        if (!p) return NULL;
        bt_buf = p, bt_cap = n;
    }
    return bt_buf;
}

static term plain(const float *A, size_t ars, size_t acs, const float *B, size_t ldb) {
    return (term){A, ars, acs, NULL, 1, B, ldb, NULL, 1};
}

void matmul_small_nn(float *C, const float *A, const float *B, int M, int N, int K, int acc) {
    out o = {C, 1, {plain(A, (size_t)K, 1, B, (size_t)N)}};
    small_run(&o, 1, M, N, K, acc);
}

void matmul_small_tn(float *C, const float *A, const float *B, int M, int N, int K, int acc) {
    out o = {C, 1, {plain(A, 1, (size_t)M, B, (size_t)N)}};
    small_run(&o, 1, M, N, K, acc);
}

void matmul_small_nn_sum(float *C, const float *A1, const float *B1, const float *A2, const float *B2, int M, int N,
                         int K, int acc) {
    out o = {C, 2, {plain(A1, (size_t)K, 1, B1, (size_t)N), plain(A2, (size_t)K, 1, B2, (size_t)N)}};
    small_run(&o, 1, M, N, K, acc);
}

void matmul_small_tn2(float *C1, float *C2, const float *A1, const float *A2, const float *B, const matmul_rows *bmap,
                      int M, int N, int K, int acc) {
    term t1 = plain(A1, 1, (size_t)M, B, (size_t)N), t2 = plain(A2, 1, (size_t)M, B, (size_t)N);
    if (bmap && bmap->rows) t1.bcols = t2.bcols = bmap->rows, t1.bdiv = t2.bdiv = bmap->div;
    out o[2] = {{C1, 1, {t1}}, {C2, 1, {t2}}};
    if (!C1) o[0] = o[1];
    small_run(o, (C1 != NULL) + (C2 != NULL), M, N, K, acc);
}

// B1 (and B2) [N, K] are transposed into the thread's scratch [K, N] first: N x K floats
// each, the small operand. Without memory for it, BLAS (other bits: only then).
void matmul_small_nt2(float *C1, float *C2, const float *A, const matmul_rows *amap, const float *B1, const float *B2,
                      int M, int N, int K, int acc) {
    if (M <= 0 || N <= 0) return;
    const int nout = C2 ? 2 : 1;
    float *Bt = scratch((size_t)K * N * nout);
    if (!Bt) {  // no memory for the transposed copy: the same sums read through B's rows
        float *C[2] = {C1, C2};
        const float *Bq[2] = {B1, B2};
        for (int q = 0; q < nout; q++)
            for (int i = 0; i < M; i++) {
                const float *a = A + (size_t)(amap && amap->rows ? amap->rows[i] / amap->div : i) * K;
                for (int j = 0; j < N; j++) {
                    float s = 0, *c = C[q] + (size_t)i * N + j;
                    for (int k = 0; k < K; k++) s = fmaf(a[k], Bq[q][(size_t)j * K + k], s);
                    *c = acc ? *c + s : s;
                }
            }
        return;
    }
    transpose(Bt, B1, N, K);
    if (C2) transpose(Bt + (size_t)K * N, B2, N, K);
    term t1 = plain(A, (size_t)K, 1, Bt, (size_t)N), t2 = plain(A, (size_t)K, 1, Bt + (size_t)K * N, (size_t)N);
    if (amap && amap->rows) t1.rows = t2.rows = amap->rows, t1.div = t2.div = amap->div;
    out o[2] = {{C1, 1, {t1}}, {C2, 1, {t2}}};
    small_run(o, nout, M, N, K, acc);
}

void matmul_small_nt(float *C, const float *A, const float *B, int M, int N, int K, int acc) {
    matmul_small_nt2(C, NULL, A, NULL, B, NULL, M, N, K, acc);
}

// ---------------------------------------------------------------------------- grouped

typedef struct {
    float *C1, *C2;
    const float *A1, *A2, *B1, *B2;
    const matmul_rows *map;  // nt2: A's rows, tn2: B's rows (offset to each block)
    const int *offs;
    int N, K, acc;  // TN: N, K are each C_g's M, N
} grouped_args;

// The map of block g's rows (starting at row r0), and the base its rows index: the
// mapped operand is not offset (the map holds absolute rows), a plain one is.
static const matmul_rows *block_map(const grouped_args *a, size_t r0, matmul_rows *m) {
    if (!a->map || !a->map->rows) return NULL;
    *m = (matmul_rows){a->map->rows + r0, a->map->div};
    return m;
}

static void nt2_block(const void *ctx, int g) {
    const grouped_args *a = ctx;
    const size_t r0 = (size_t)a->offs[g], n = (size_t)a->N, k = (size_t)a->K, w = (size_t)g * n * k;
    matmul_rows m;
    const matmul_rows *map = block_map(a, r0, &m);
    matmul_small_nt2(a->C1 + r0 * n, a->C2 ? a->C2 + r0 * n : NULL, map ? a->A1 : a->A1 + r0 * k, map, a->B1 + w,
                     a->B2 ? a->B2 + w : NULL, a->offs[g + 1] - a->offs[g], a->N, a->K, a->acc);
}

static void nn_sum_block(const void *ctx, int g) {
    const grouped_args *a = ctx;
    const size_t r0 = (size_t)a->offs[g], n = (size_t)a->N, k = (size_t)a->K, w = (size_t)g * n * k;
    matmul_small_nn_sum(a->C1 + r0 * n, a->A1 + r0 * k, a->B1 + w, a->A2 + r0 * k, a->B2 + w,
                        a->offs[g + 1] - a->offs[g], a->N, a->K, a->acc);
}

static void tn2_block(const void *ctx, int g) {
    const grouped_args *a = ctx;
    const size_t r0 = (size_t)a->offs[g], m = (size_t)a->N, n = (size_t)a->K, w = (size_t)g * m * n;
    matmul_rows bm;
    const matmul_rows *map = block_map(a, r0, &bm);
    matmul_small_tn2(a->C1 ? a->C1 + w : NULL, a->C2 ? a->C2 + w : NULL, a->A1 + r0 * m, a->A2 + r0 * m,
                     map ? a->B1 : a->B1 + r0 * n, map, a->N, a->K, a->offs[g + 1] - a->offs[g], a->acc);
}

void matmul_small_grouped_nt2(float *C1, float *C2, const float *A, const matmul_rows *amap, const float *B1,
                              const float *B2, const int *offs, int G, int N, int K, int acc) {
    grouped_args a = {C1, C2, A, NULL, B1, B2, amap, offs, N, K, acc};
    matmul_grouped_schedule(offs, G, NULL, nt2_block, &a);
}

void matmul_small_grouped_nn_sum(float *C, const float *A1, const float *B1, const float *A2, const float *B2,
                                 const int *offs, int G, int N, int K, int acc) {
    grouped_args a = {C, NULL, A1, A2, B1, B2, NULL, offs, N, K, acc};
    matmul_grouped_schedule(offs, G, NULL, nn_sum_block, &a);
}

void matmul_small_grouped_tn2_some(float *C1, float *C2, const float *A1, const float *A2, const float *B,
                                   const matmul_rows *bmap, const int *offs, int G, int M, int N, int acc,
                                   const unsigned char *on) {
    if (!C1 && !C2) return;
    grouped_args a = {C1, C2, A1, A2, B, NULL, bmap, offs, M, N, acc};
    matmul_grouped_schedule(offs, G, on, tn2_block, &a);
}
