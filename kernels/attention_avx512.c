// attention_avx512.c: the fused causal attention of one head with AVX-512 register tiles.
//
// Why not sgemm: a 64-row block meets 64- or 128-key tiles with a contraction of only hd
// (64): OpenBLAS spent a third of its time packing and writing back such small products,
// and the whole tile on the diagonal was computed; the attention ran at under half the
// rate of the model's big GEMMs (docs/benchmarks.md, "The attention kernel").
//
// Layout: a block of QB = 64 queries is packed transposed (qT[d][i], scaled by
// 1/sqrt(hd)), so the scores of a key tile come out transposed, sT[j][i]: 16 queries in
// the lanes of a vector, one key per vector. The softmax over the keys of a query is then
// vertical (max, exp and sum across vectors, no horizontal reductions), and the causal
// mask is a lane mask. Two register-tiled products do all the arithmetic:
//
//   scores_t   sT[j][i] = sum_d x[j][d] yT[d][i]     (4 keys x up to 4 query vectors)
//   rows_acc   C[r][:] (+)= sum_x A[r][x] B[x][:]    (4 rows x up to 64 columns, A read
//                                                     with any two strides: as P, as P^T)
//
// Forward per block and tile: scores_t (k, qT), the online-softmax update per query lane
// (docs/design.md, "Attention"), then rows_acc for o += p v (rescaling o by exp(m - m')
// as it is loaded). Backward per block and tile: scores_t twice (k, qT) and (v, doutT),
// then per lane p = exp(s - lse) and ds = scale p (dp - D), then rows_acc three times:
// dq += ds k, dk += ds^T q, dv += p^T dout. The triangle above the diagonal is skipped at
// 16-query granularity; masked entries are exact zeros, so adding them changes nothing.
#include "kernels/attention_avx512.h"

#include "kernels/attention_bf16.h"

#include "kernels/simd_math.h"

#include <math.h>
#include <string.h>

#if MO_HAVE_X86

#define QB ATT_QB
#define KT ATT_KT

// A tile's (or block's) rows: fp32, or under bf16 the bf16 rows and the pairs of rows.
typedef union {
    float f[KT * ATT_AVX512_MAX_HD];
    struct {
        mo_bf16 rows[KT * ATT_AVX512_MAX_HD];
        uint32_t pairs[KT / 2 * ATT_AVX512_MAX_HD];
    } b;
} tile_rows;
#define AI __attribute__((always_inline)) inline
#define T512 MO_TARGET_AVX512

// ---------------------------------------------------------------------------- products

// sT[jj][16 (v0 + v) + lane] = sum_d x[jj * ldx + d] yT[d * QB + 16 (v0 + v) + lane] for
// jj < NJ, v < NV: NJ x NV accumulators held over the whole contraction.
static AI T512 void scores_t(float *sT, const float *x, int ldx, const float *yT, int hd, int v0, const int NJ,
                             const int NV) {
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int j = 0; j < NJ; j++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) acc[j][v] = _mm512_setzero_ps();
    const float *y0 = yT + 16 * v0;
    for (int d = 0; d < hd; d++) {
        __m512 y[4];
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) y[v] = _mm512_load_ps(y0 + (size_t)d * QB + 16 * v);
#pragma GCC unroll 4
        for (int j = 0; j < NJ; j++) {
            __m512 b = _mm512_set1_ps(x[(size_t)j * ldx + d]);
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) acc[j][v] = _mm512_fmadd_ps(b, y[v], acc[j][v]);
        }
    }
#pragma GCC unroll 4
    for (int j = 0; j < NJ; j++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) _mm512_store_ps(sT + (size_t)j * QB + 16 * (v0 + v), acc[j][v]);
}

// C[r * ldc + 16 v + lane] = C (times alpha[r] when alpha is given) + sum over x in
// [x0, x1) of A[r * ra + x * xa] B[x * ldb + 16 v + lane], for r < R, v < NV.
static AI T512 void rows_acc(float *C, int ldc, const float *alpha, const float *A, int ra, int xa, const float *B,
                             int ldb, int x0, int x1, const int R, const int NV) {
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        __m512 s = alpha ? _mm512_set1_ps(alpha[r]) : _mm512_set1_ps(1.0f);
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) {
            __m512 c = _mm512_loadu_ps(C + (size_t)r * ldc + 16 * v);
            acc[r][v] = alpha ? _mm512_mul_ps(c, s) : c;
        }
    }
    for (int x = x0; x < x1; x++) {
        __m512 b[4];
        const float *bx = B + (size_t)x * ldb;
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) b[v] = _mm512_loadu_ps(bx + 16 * v);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            __m512 a = _mm512_set1_ps(A[(size_t)r * ra + (size_t)x * xa]);
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) acc[r][v] = _mm512_fmadd_ps(a, b[v], acc[r][v]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) _mm512_storeu_ps(C + (size_t)r * ldc + 16 * v, acc[r][v]);
}

static T512 void scores_t_any(float *sT, const float *x, int ldx, const float *yT, int hd, int v0, int n1, int n2) {
    ATT_CASES(scores_t, sT, x, ldx, yT, hd, v0)
}

static T512 void rows_acc_any(float *C, int ldc, const float *alpha, const float *A, int ra, int xa, const float *B,
                              int ldb, int x0, int x1, int n1, int n2) {
    ATT_CASES(rows_acc, C, ldc, alpha, A, ra, xa, B, ldb, x0, x1)
}

// Scores of the key tile [c0, c0 + bc) against the packed block yT of queries [r0, r0 +
// nv * 16): each group of 4 keys skips the query vectors that lie wholly before its first key.
static T512 void tile_scores(float *sT, const float *x, int ldx, const float *yT, int hd, int r0, int nv, int c0,
                             int bc) {
    for (int j = 0; j < bc; j += 4) {
        int n1 = bc - j < 4 ? bc - j : 4, v0 = att_first_vector(c0, j, r0), n2 = nv - v0;
        scores_t_any(sT + (size_t)j * QB, x + (size_t)j * ldx, ldx, yT, hd, v0, n1, n2);
    }
}

// ---------------------------------------------------------------------------- packing

// r[0..16) -> their transpose, in place: column c of the rows ends in r[c].
static AI T512 void transpose16(__m512 r[16]) {
    __m512 a[16], b[16];
    for (int k = 0; k < 8; k++) {  // pairs of rows interleaved within each 128-bit lane
        a[2 * k] = _mm512_unpacklo_ps(r[2 * k], r[2 * k + 1]);
        a[2 * k + 1] = _mm512_unpackhi_ps(r[2 * k], r[2 * k + 1]);
    }
    for (int k = 0; k < 4; k++) {  // b[4k + e], lane L: element 4L + e of rows 4k .. 4k + 3
        __m512d x0 = _mm512_castps_pd(a[4 * k]), x1 = _mm512_castps_pd(a[4 * k + 1]);
        __m512d x2 = _mm512_castps_pd(a[4 * k + 2]), x3 = _mm512_castps_pd(a[4 * k + 3]);
        b[4 * k] = _mm512_castpd_ps(_mm512_unpacklo_pd(x0, x2));
        b[4 * k + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(x0, x2));
        b[4 * k + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(x1, x3));
        b[4 * k + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(x1, x3));
    }
    for (int e = 0; e < 4; e++) {  // gather lane L of b[e], b[4 + e], b[8 + e], b[12 + e]: column 4L + e
        __m512 c0 = _mm512_shuffle_f32x4(b[e], b[4 + e], 0x88), c1 = _mm512_shuffle_f32x4(b[e], b[4 + e], 0xDD);
        __m512 c2 = _mm512_shuffle_f32x4(b[8 + e], b[12 + e], 0x88), c3 = _mm512_shuffle_f32x4(b[8 + e], b[12 + e], 0xDD);
        r[e] = _mm512_shuffle_f32x4(c0, c2, 0x88);
        r[8 + e] = _mm512_shuffle_f32x4(c0, c2, 0xDD);
        r[4 + e] = _mm512_shuffle_f32x4(c1, c3, 0x88);
        r[12 + e] = _mm512_shuffle_f32x4(c1, c3, 0xDD);
    }
}

// yT[d][i] = s * y[i][d] for i < n, 0 for n <= i < QB: 16 x 16 blocks transposed in the
// registers, rows read whole and columns written whole.
static T512 void pack_t(float *yT, const float *y, int ldy, int n, int hd, float s) {
    __m512 vs = _mm512_set1_ps(s), r[16];
    for (int i0 = 0; i0 < QB; i0 += 16)
        for (int d0 = 0; d0 < hd; d0 += 16) {
            for (int k = 0; k < 16; k++)
                r[k] = i0 + k < n ? _mm512_mul_ps(vs, _mm512_loadu_ps(y + (size_t)(i0 + k) * ldy + d0))
                                  : _mm512_setzero_ps();
            transpose16(r);
            for (int c = 0; c < 16; c++) _mm512_store_ps(yT + (size_t)(d0 + c) * QB + i0, r[c]);
        }
}

// Lanes of query vector v of block r0 that see key c0 + j: those with c0 + j <= r0 + 16 v + lane.
static inline __mmask16 visible_lanes(int c0, int j, int r0, int v) {
    int first = c0 + j - (r0 + 16 * v);  // the first lane that sees the key
    return first <= 0 ? (__mmask16)0xFFFF : first >= 16 ? 0 : (__mmask16)(0xFFFFu << first);
}

// Keys of the tile (from its start) that some lane of query vector v sees.
static inline int tile_keys(int c0, int bc, int r0, int v) {
    int n = r0 + 16 * v + 16 - c0;
    return n < bc ? n : bc;
}

// Asks for rows [0, n) of y (hd floats each, leading dimension ldy) ahead of use: rows
// 2 KB or more apart defeat the hardware's stream prefetch, and each one costs a miss.
static inline void prefetch_rows(const float *y, int ldy, int n, int hd) {
    for (int i = 0; i < n; i++)
        for (int c = 0; c < hd; c += 16) _mm_prefetch((const char *)(y + (size_t)i * ldy + c), _MM_HINT_T0);
}

// The K and V rows of the tile after the one at c0 (of a block ending at r1), asked for
// while this tile computes: at long sequences a block meets tiles that left L2 long ago.
static inline void prefetch_next_tile(const float *kt, const float *vt, int ldkv, int c0, int r1, int hd) {
    int next = r1 - (c0 + KT);
    if (next <= 0) return;
    next = next < KT ? next : KT;
    for (int i = 0; i < next; i++)  // into L2: L1 holds this tile's working set
        for (int c = 0; c < hd; c += 16) {
            _mm_prefetch((const char *)(kt + (size_t)(KT + i) * ldkv + c), _MM_HINT_T1);
            _mm_prefetch((const char *)(vt + (size_t)(KT + i) * ldkv + c), _MM_HINT_T1);
        }
}

// dst[i][0, hd) = y[i * ldy + 0, hd) for i < n: a contiguous copy of strided rows. The
// rows of one head are heads * hd floats apart (2 KB at bench-S), which maps them onto a
// few sets of the L1 cache; read 64 at a time they evict each other.
static inline void copy_rows(float *dst, const float *y, int ldy, int n, int hd) {
    for (int i = 0; i < n; i++) memcpy(dst + (size_t)i * hd, y + (size_t)i * ldy, (size_t)hd * sizeof *dst);
}

// ---------------------------------------------------------------------------- forward

int attention_avx512_takes(int hd) {
    return simd_active() == SIMD_AVX512 && hd > 0 && hd % 16 == 0 && hd <= ATT_AVX512_MAX_HD;
}

T512 void attention_forward_head_avx512(float *out, float *lse, const float *q, const float *k, const float *v, int T,
                                        int ldq, int ldkv, int hd, float scale, int bf16) {
    _Alignas(64) float qT[ATT_AVX512_MAX_HD * QB], sT[KT * QB], o[QB * ATT_AVX512_MAX_HD], m[QB], l[QB], alpha[QB];
    _Alignas(64) tile_rows kb, vb;
    _Alignas(64) uint32_t qT2[ATT_AVX512_MAX_HD / 2 * QB], P2[KT / 2 * QB];  // bf16: qT and p in pairs
    for (int r0 = 0; r0 < T; r0 += QB) {
        int r1 = r0 + QB < T ? r0 + QB : T, bs = r1 - r0, nv = (bs + 15) / 16;
        // the block's queries, and the keys and values first met in its diagonal tile
        prefetch_rows(q + (size_t)r0 * ldq, ldq, bs, hd);
        prefetch_rows(k + (size_t)r0 * ldkv, ldkv, bs, hd);
        prefetch_rows(v + (size_t)r0 * ldkv, ldkv, bs, hd);
        pack_t(qT, q + (size_t)r0 * ldq, ldq, bs, hd, scale);
        if (bf16) att_bf16_pack_pairs(qT2, QB, qT, QB, hd, QB);
        memset(o, 0, (size_t)bs * hd * sizeof *o);
        for (int c0 = 0; c0 < r1; c0 += KT) {
            int bc = r1 - c0 < KT ? r1 - c0 : KT;
            const float *kt = k + (size_t)c0 * ldkv, *vt = v + (size_t)c0 * ldkv;
            prefetch_next_tile(kt, vt, ldkv, c0, r1, hd);
            if (bf16) {
                att_bf16_rows(kb.b.rows, hd, kt, ldkv, bc, hd);
                att_bf16_pack_pairs(vb.b.pairs, hd, vt, ldkv, bc, hd);
                att_bf16_tile_scores(sT, kb.b.rows, hd, qT2, hd, r0, nv, c0, bc);
            } else {
                copy_rows(kb.f, kt, ldkv, bc, hd);
                copy_rows(vb.f, vt, ldkv, bc, hd);
                tile_scores(sT, kb.f, hd, qT, hd, r0, nv, c0, bc);
            }
            // the online softmax, 16 query lanes at a time
            for (int vq = 0; vq < nv; vq++) {
                int n = tile_keys(c0, bc, r0, vq);
                float *s = sT + 16 * vq;
                __m512 mx = _mm512_set1_ps(-INFINITY), sum = _mm512_setzero_ps();
                for (int j = 0; j < n; j++)
                    mx = _mm512_mask_max_ps(mx, visible_lanes(c0, j, r0, vq), mx, _mm512_load_ps(s + (size_t)j * QB));
                __m512 mold = _mm512_load_ps(m + 16 * vq), mnew = c0 ? _mm512_max_ps(mold, mx) : mx;
                __m512 a = c0 ? mo_exp512(_mm512_sub_ps(mold, mnew)) : _mm512_setzero_ps();
                for (int j = 0; j < n; j++) {
                    float *sj = s + (size_t)j * QB;
                    __m512 p = _mm512_maskz_mov_ps(visible_lanes(c0, j, r0, vq),
                                                   mo_exp512(_mm512_sub_ps(_mm512_load_ps(sj), mnew)));
                    _mm512_store_ps(sj, p);
                    sum = _mm512_add_ps(sum, p);
                }
                _mm512_store_ps(m + 16 * vq, mnew);
                _mm512_store_ps(alpha + 16 * vq, a);
                _mm512_store_ps(l + 16 * vq, c0 ? _mm512_fmadd_ps(_mm512_load_ps(l + 16 * vq), a, sum) : sum);
            }
            // o = alpha o + p v[c0:c0+bc], 4 rows at a time over the keys they see (bf16: an
            // odd count rounded up; the pair's missing key is a zero row of the tile)
            if (bf16) att_bf16_pack_pairs(P2, QB, sT, QB, bc, QB);
            for (int i = 0; i < bs; i += 4) {
                int n1 = bs - i < 4 ? bs - i : 4, xend = r0 + i + n1 - c0;
                if (xend > bc) xend = bc;
                for (int c = 0; c < hd; c += 64) {
                    int n2 = (hd - c) / 16 < 4 ? (hd - c) / 16 : 4;
                    if (bf16)
                        att_bf16_rows_acc(o + (size_t)i * hd + c, hd, alpha + i, P2 + i, 1, QB, vb.b.pairs + c, hd, 0,
                                          xend + (xend & 1), n1, n2);
                    else
                        rows_acc_any(o + (size_t)i * hd + c, hd, alpha + i, sT + i, 1, QB, vb.f + c, hd, 0, xend, n1,
                                     n2);
                }
            }
        }
        for (int i = 0; i < bs; i++) {
            float inv = 1.0f / l[i], *oi = out + (size_t)(r0 + i) * ldq;
            for (int c = 0; c < hd; c += 16)
                _mm512_storeu_ps(oi + c, _mm512_mul_ps(_mm512_loadu_ps(o + (size_t)i * hd + c), _mm512_set1_ps(inv)));
            lse[r0 + i] = m[i] + logf(l[i]);
        }
    }
}

// ---------------------------------------------------------------------------- backward

T512 void attention_backward_head_avx512(float *dq, float *dk, float *dv, const float *dout, const float *out,
                                         const float *lse, const float *q, const float *k, const float *v, int T,
                                         int ldq, int ldkv, int hd, float scale, int bf16) {
    _Alignas(64) float qT[ATT_AVX512_MAX_HD * QB], doT[ATT_AVX512_MAX_HD * QB], pT[KT * QB], dsT[KT * QB];
    _Alignas(64) float dqb[QB * ATT_AVX512_MAX_HD], D[QB], L[QB];
    _Alignas(64) tile_rows qb, dob, kb, vb;  // QB == KT: the block's rows fit a tile's
    // bf16: qT and doT in pairs along d, ds in pairs along the keys, p and ds^T as bf16 rows
    _Alignas(64) uint32_t qT2[ATT_AVX512_MAX_HD / 2 * QB], doT2[ATT_AVX512_MAX_HD / 2 * QB], dS2[KT / 2 * QB];
    _Alignas(64) uint32_t pTb[KT * QB / 2], dsTb[KT * QB / 2];  // written as bf16 rows, read as pairs
    for (int r0 = 0; r0 < T; r0 += QB) {
        int r1 = r0 + QB < T ? r0 + QB : T, bs = r1 - r0, nv = (bs + 15) / 16;
        const float *qr = q + (size_t)r0 * ldq, *dor = dout + (size_t)r0 * ldq;
        prefetch_rows(qr, ldq, bs, hd);
        prefetch_rows(dor, ldq, bs, hd);
        prefetch_rows(out + (size_t)r0 * ldq, ldq, bs, hd);
        prefetch_rows(k + (size_t)r0 * ldkv, ldkv, bs, hd);
        prefetch_rows(v + (size_t)r0 * ldkv, ldkv, bs, hd);
        pack_t(qT, qr, ldq, bs, hd, scale);  // the forward's scaled scores, bit for bit
        pack_t(doT, dor, ldq, bs, hd, 1.0f);
        if (bf16) {
            att_bf16_pack_pairs(qT2, QB, qT, QB, hd, QB);
            att_bf16_pack_pairs(doT2, QB, doT, QB, hd, QB);
            att_bf16_pack_pairs(qb.b.pairs, hd, qr, ldq, bs, hd);
            att_bf16_pack_pairs(dob.b.pairs, hd, dor, ldq, bs, hd);
        } else {
            copy_rows(qb.f, qr, ldq, bs, hd);
            copy_rows(dob.f, dor, ldq, bs, hd);
        }
        // D_i = dout_i . out_i, the softmax's row term
        for (int i = 0; i < QB; i++) {
            __m512 s = _mm512_setzero_ps();
            if (i < bs)
                for (int c = 0; c < hd; c += 16)
                    s = _mm512_fmadd_ps(_mm512_loadu_ps(dor + (size_t)i * ldq + c),
                                        _mm512_loadu_ps(out + (size_t)(r0 + i) * ldq + c), s);
            D[i] = i < bs ? _mm512_reduce_add_ps(s) : 0.0f;
            L[i] = i < bs ? lse[r0 + i] : 0.0f;
        }
        memset(dqb, 0, (size_t)bs * hd * sizeof *dqb);
        for (int c0 = 0; c0 < r1; c0 += KT) {
            int bc = r1 - c0 < KT ? r1 - c0 : KT;
            const float *kt = k + (size_t)c0 * ldkv, *vt = v + (size_t)c0 * ldkv;
            prefetch_next_tile(kt, vt, ldkv, c0, r1, hd);
            if (bf16) {
                att_bf16_rows(kb.b.rows, hd, kt, ldkv, bc, hd);
                att_bf16_pack_pairs(kb.b.pairs, hd, kt, ldkv, bc, hd);
                att_bf16_rows(vb.b.rows, hd, vt, ldkv, bc, hd);
                att_bf16_tile_scores(pT, kb.b.rows, hd, qT2, hd, r0, nv, c0, bc);
                att_bf16_tile_scores(dsT, vb.b.rows, hd, doT2, hd, r0, nv, c0, bc);
            } else {
                copy_rows(kb.f, kt, ldkv, bc, hd);
                copy_rows(vb.f, vt, ldkv, bc, hd);
                tile_scores(pT, kb.f, hd, qT, hd, r0, nv, c0, bc);
                tile_scores(dsT, vb.f, hd, doT, hd, r0, nv, c0, bc);  // dp^T = v dout^T
            }
            // p = exp(s - lse), ds = scale p (dp - D), both 0 where masked
            __m512 vs = _mm512_set1_ps(scale);
            for (int vq = 0; vq < nv; vq++) {
                int n = tile_keys(c0, bc, r0, vq);
                __m512 lv = _mm512_load_ps(L + 16 * vq), dv_ = _mm512_load_ps(D + 16 * vq);
                for (int j = 0; j < n; j++) {
                    float *pj = pT + (size_t)j * QB + 16 * vq, *dj = dsT + (size_t)j * QB + 16 * vq;
                    __m512 p = _mm512_maskz_mov_ps(visible_lanes(c0, j, r0, vq),
                                                   mo_exp512(_mm512_sub_ps(_mm512_load_ps(pj), lv)));
                    _mm512_store_ps(pj, p);
                    _mm512_store_ps(dj, _mm512_mul_ps(_mm512_mul_ps(p, vs), _mm512_sub_ps(_mm512_load_ps(dj), dv_)));
                }
            }
            if (bf16) {
                att_bf16_pack_pairs(dS2, QB, dsT, QB, bc, QB);
                att_bf16_rows((mo_bf16 *)dsTb, QB, dsT, QB, bc, QB);
                att_bf16_rows((mo_bf16 *)pTb, QB, pT, QB, bc, QB);
            }
            // (bf16: contraction counts rounded up to even; the missing row of a pair is zero)
            for (int c = 0; c < hd; c += 64) {
                int n2 = (hd - c) / 16 < 4 ? (hd - c) / 16 : 4;
                // dq[i] += sum_j ds[i][j] k[j], over the keys row group i sees
                for (int i = 0; i < bs; i += 4) {
                    int n1 = bs - i < 4 ? bs - i : 4, xend = r0 + i + n1 - c0;
                    if (xend > bc) xend = bc;
                    float *C = dqb + (size_t)i * hd + c;
                    if (bf16)
                        att_bf16_rows_acc(C, hd, NULL, dS2 + i, 1, QB, kb.b.pairs + c, hd, 0, xend + (xend & 1), n1, n2);
                    else
                        rows_acc_any(C, hd, NULL, dsT + i, 1, QB, kb.f + c, hd, 0, xend, n1, n2);
                }
                // dk[j] += sum_i ds[i][j] q[i] and dv[j] += sum_i p[i][j] dout[i], over the queries that see key j
                for (int j = 0; j < bc; j += 4) {
                    int n1 = bc - j < 4 ? bc - j : 4, x0 = c0 + j - r0 > 0 ? c0 + j - r0 : 0;
                    float *Ck = dk + (size_t)(c0 + j) * ldkv + c, *Cv = dv + (size_t)(c0 + j) * ldkv + c;
                    if (bf16) {
                        const uint32_t *dsw = dsTb + (size_t)j * QB / 2, *pw = pTb + (size_t)j * QB / 2;
                        att_bf16_rows_acc(Ck, ldkv, NULL, dsw, QB / 2, 1, qb.b.pairs + c, hd, x0, bs + (bs & 1), n1, n2);
                        att_bf16_rows_acc(Cv, ldkv, NULL, pw, QB / 2, 1, dob.b.pairs + c, hd, x0, bs + (bs & 1), n1, n2);
                    } else {
                        rows_acc_any(Ck, ldkv, NULL, dsT + (size_t)j * QB, QB, 1, qb.f + c, hd, x0, bs, n1, n2);
                        rows_acc_any(Cv, ldkv, NULL, pT + (size_t)j * QB, QB, 1, dob.f + c, hd, x0, bs, n1, n2);
                    }
                }
            }
        }
        for (int i = 0; i < bs; i++) memcpy(dq + (size_t)(r0 + i) * ldq, dqb + (size_t)i * hd, (size_t)hd * sizeof *dq);
    }
}

#else  // no x86: the generic heads of attention.c run everything

int attention_avx512_takes(int hd) {
    (void)hd;
    simd_active();
    return 0;
}
void attention_forward_head_avx512(float *out, float *lse, const float *q, const float *k, const float *v, int T,
                                   int ldq, int ldkv, int hd, float scale, int bf16) {
    (void)out, (void)lse, (void)q, (void)k, (void)v, (void)T, (void)ldq, (void)ldkv, (void)hd, (void)scale, (void)bf16;
}
void attention_backward_head_avx512(float *dq, float *dk, float *dv, const float *dout, const float *out,
                                    const float *lse, const float *q, const float *k, const float *v, int T, int ldq,
                                    int ldkv, int hd, float scale, int bf16) {
    (void)dq, (void)dk, (void)dv, (void)dout, (void)out, (void)lse, (void)q, (void)k, (void)v, (void)T, (void)ldq,
        (void)ldkv, (void)hd, (void)scale, (void)bf16;
}
#endif
