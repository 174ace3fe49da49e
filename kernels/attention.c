// attention.c: fused, tiled causal GQA attention (online softmax), forward and backward.
//
// Each (batch, head) is independent work for one thread, so the heads are spread over
// the OpenMP threads and every BLAS call runs single-threaded inside that region
// (docs/threading.md). Within a head the queries go in blocks of ATT_BLOCK rows and the
// keys in tiles of ATT_KTILE: a query block [r0, r1) meets only the tiles below r1, so the
// causal upper triangle is skipped except inside the tiles that straddle the diagonal.
// The scores of one block x tile live in a stack buffer (ATT_BLOCK x ATT_KTILE floats,
// cache-resident with its K and V tiles); nothing of size T x T is ever stored.
//
// Forward keeps, per query row, the running maximum m and sum l of the softmax
// (docs/design.md, "Attention"): a new tile raises m to m', rescales the row's partial
// output and l by exp(m - m'), then adds exp(s - m') V and the row sum of exp(s - m').
// At the end out /= l and lse = m + log l is all backward needs to rebuild any
// probability exactly: p = exp(s - lse).
//
// q, k, v, out are strided views: row t of head h starts at (t * heads + h) * hd, so a
// head is a [T, hd] matrix with leading dimension heads * hd, which BLAS takes as is.
#include "kernels/attention.h"

#include "kernels/attention_avx512.h"
#include "kernels/attention_bf16.h"
#include "kernels/simd_rows.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#ifndef ATT_BLOCK  // overridable at build time to measure other sizes
#define ATT_BLOCK 64  // query rows per block; measured in docs/kernels.md
#endif
#ifndef ATT_KTILE
#define ATT_KTILE 128  // keys per tile; measured in docs/kernels.md
#endif

// ---------------------------------------------------------------------------- row kernels

// One version per SIMD level from the same bodies (L: the level suffix), built from the
// row primitives of kernels/simd_rows.h.
//
// Forward, one row of a tile: s[0..n) are its visible scores (n >= 1), s[n..len) get 0.
// Raises the row's running maximum *m to m' (first tile: m' = the tile's max), turns s
// into exp(s - m'), and returns a = exp(m - m') (0 on the first tile), the factor that
// rescales the row's partial output and sum; the sum of the new exps goes to *sum.
#define ONLINE_ROW_BODY(L)                                                   \
    float mx = row_max_##L(s, (size_t)n), mnew = first ? mx : fmaxf(*m, mx); \
    float a = first ? 0.0f : expf(*m - mnew);                               \
    *sum = row_exp_##L(s, s, (size_t)n, mnew);                              \
    memset(s + n, 0, (size_t)(len - n) * sizeof *s);                        \
    *m = mnew;                                                              \
    return a;

// Backward, one row of a tile: p[u] = exp(s[u] - lse) (the probability, rebuilt from the
// score), ds[u] = p[u] (dp[u] - D); both 0 past n.
#define GRAD_ROW_BODY(L)                                                     \
    row_exp_##L(p, p, (size_t)n, lse);                                      \
    softmax_bwd_row_##L(dp, dp, p, (size_t)n, D);                           \
    memset(p + n, 0, (size_t)(len - n) * sizeof *p);                        \
    memset(dp + n, 0, (size_t)(len - n) * sizeof *dp);

static float online_row_scalar(float *s, int n, int len, int first, float *m, float *sum) { ONLINE_ROW_BODY(scalar) }
static void grad_row_scalar(float *p, float *dp, int n, int len, float lse, float D) { GRAD_ROW_BODY(scalar) }
#if MO_HAVE_X86
static MO_TARGET_AVX512 float online_row_avx512(float *s, int n, int len, int first, float *m, float *sum) {
    ONLINE_ROW_BODY(avx512)
}
static MO_TARGET_AVX512 void grad_row_avx512(float *p, float *dp, int n, int len, float lse, float D) {
    GRAD_ROW_BODY(avx512)
}
static MO_TARGET_AVX2 float online_row_avx2(float *s, int n, int len, int first, float *m, float *sum) {
    ONLINE_ROW_BODY(avx2)
}
static MO_TARGET_AVX2 void grad_row_avx2(float *p, float *dp, int n, int len, float lse, float D) {
    GRAD_ROW_BODY(avx2)
}
#endif

static float online_row(float *s, int n, int len, int first, float *m, float *sum) {
#if MO_HAVE_X86
    switch (simd_active()) {
    case SIMD_AVX512: return online_row_avx512(s, n, len, first, m, sum);
    case SIMD_AVX2: return online_row_avx2(s, n, len, first, m, sum);
    default: break;
    }
#endif
    return online_row_scalar(s, n, len, first, m, sum);
}
static void grad_row(float *p, float *dp, int n, int len, float lse, float D) {
    MO_SIMD_DISPATCH(grad_row, p, dp, n, len, lse, D);
}

// Keys of tile [c0, c1) that query t may see: min(c1, t + 1) - c0, at least 0.
static inline int visible(int t, int c0, int c1) {
    int n = (c1 < t + 1 ? c1 : t + 1) - c0;
    return n > 0 ? n : 0;
}

// ---------------------------------------------------------------------------- one head

// One (batch, head): out[T, hd] (leading dimension ldq) and lse[T] from q[T, hd]
// (leading dimension ldq) and k, v[T, hd] (leading dimension ldkv).
static void forward_head(float *out, float *lse, const float *q, const float *k, const float *v, int T, int ldq,
                         int ldkv, int hd, float scale) {
    float s[ATT_BLOCK * ATT_KTILE], mrow[ATT_BLOCK], lrow[ATT_BLOCK];
    for (int r0 = 0; r0 < T; r0 += ATT_BLOCK) {
        int r1 = r0 + ATT_BLOCK < T ? r0 + ATT_BLOCK : T, bs = r1 - r0;
        float *o = out + (size_t)r0 * ldq;
        for (int c0 = 0; c0 < r1; c0 += ATT_KTILE) {
            int c1 = c0 + ATT_KTILE < r1 ? c0 + ATT_KTILE : r1, bc = c1 - c0;
            // s = scale * q[r0:r1] k[c0:c1]^T
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, bs, bc, hd, scale, q + (size_t)r0 * ldq, ldq,
                        k + (size_t)c0 * ldkv, ldkv, 0.0f, s, bc);
            for (int i = 0; i < bs; i++) {
                float *si = s + (size_t)i * bc, sum;
                int n = visible(r0 + i, c0, c1);
                if (n == 0) {  // the whole tile lies after this query (never the first: key 0 is seen by all)
                    memset(si, 0, (size_t)bc * sizeof *si);
                    continue;
                }
                float alpha = online_row(si, n, bc, c0 == 0, &mrow[i], &sum);
                if (c0 == 0) {
                    lrow[i] = sum;
                    continue;
                }
                if (alpha != 1.0f) {
                    float *oi = o + (size_t)i * ldq;
                    for (int j = 0; j < hd; j++) oi[j] *= alpha;
                }
                lrow[i] = lrow[i] * alpha + sum;
            }
            // o (+)= p v[c0:c1]
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, bs, hd, bc, 1.0f, s, bc, v + (size_t)c0 * ldkv,
                        ldkv, c0 ? 1.0f : 0.0f, o, ldq);
        }
        for (int i = 0; i < bs; i++) {
            float *oi = o + (size_t)i * ldq, inv = 1.0f / lrow[i];
            for (int j = 0; j < hd; j++) oi[j] *= inv;
            lse[r0 + i] = mrow[i] + logf(lrow[i]);
        }
    }
}

// One query head's share of the backward: assigns dq, adds into dk and dv (shared by the
// heads of a group). Every probability is rebuilt from its score and the row's lse.
static void backward_head(float *dq, float *dk, float *dv, const float *dout, const float *out, const float *lse,
                          const float *q, const float *k, const float *v, int T, int ldq, int ldkv, int hd,
                          float scale) {
    float p[ATT_BLOCK * ATT_KTILE], ds[ATT_BLOCK * ATT_KTILE], D[ATT_BLOCK];
    for (int r0 = 0; r0 < T; r0 += ATT_BLOCK) {
        int r1 = r0 + ATT_BLOCK < T ? r0 + ATT_BLOCK : T, bs = r1 - r0;
        const float *dor = dout + (size_t)r0 * ldq, *qr = q + (size_t)r0 * ldq;
        // D_t = sum_u p_u dp_u = dout_t . out_t (the softmax's row term, without the T x T row)
        for (int i = 0; i < bs; i++) {
            const float *a = dor + (size_t)i * ldq, *b = out + (size_t)(r0 + i) * ldq;
            float s = 0.0f;
            for (int j = 0; j < hd; j++) s += a[j] * b[j];
            D[i] = s;
        }
        for (int c0 = 0; c0 < r1; c0 += ATT_KTILE) {
            int c1 = c0 + ATT_KTILE < r1 ? c0 + ATT_KTILE : r1, bc = c1 - c0;
            const float *kt = k + (size_t)c0 * ldkv, *vt = v + (size_t)c0 * ldkv;
            // scores again, and dp = dout[r0:r1] v[c0:c1]^T
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, bs, bc, hd, scale, qr, ldq, kt, ldkv, 0.0f, p, bc);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, bs, bc, hd, 1.0f, dor, ldq, vt, ldkv, 0.0f, ds, bc);
            for (int i = 0; i < bs; i++)
                grad_row(p + (size_t)i * bc, ds + (size_t)i * bc, visible(r0 + i, c0, c1), bc, lse[r0 + i], D[i]);
            // dq[r0:r1] (+)= scale * ds k[c0:c1]
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, bs, hd, bc, scale, ds, bc, kt, ldkv,
                        c0 ? 1.0f : 0.0f, dq + (size_t)r0 * ldq, ldq);
            // dk[c0:c1] += scale * ds^T q[r0:r1];  dv[c0:c1] += p^T dout[r0:r1]
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, bc, hd, bs, scale, ds, bc, qr, ldq, 1.0f,
                        dk + (size_t)c0 * ldkv, ldkv);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, bc, hd, bs, 1.0f, p, bc, dor, ldq, 1.0f,
                        dv + (size_t)c0 * ldkv, ldkv);
        }
    }
}

// ---------------------------------------------------------------------------- API

int attention_bf16_takes(int hd) { return attention_avx512_takes(hd) && att_bf16_cpu(); }

// want_bf16: the products in bf16 where attention_bf16_takes.
static void forward(const mo_attention *a, int want_bf16) {
    float *out = a->out, *lse = a->lse;
    const float *q = a->q, *k = a->k, *v = a->v;
    const int B = a->B, T = a->T, nh = a->nh, nkv = a->nkv, hd = a->hd;
    if (B <= 0 || T <= 0 || nh <= 0 || hd <= 0) return;
    const float scale = 1.0f / sqrtf((float)hd);
    const int group = nh / nkv, ldq = nh * hd, ldkv = nkv * hd;
    const int tiles = attention_avx512_takes(hd), bf16 = want_bf16 && attention_bf16_takes(hd);  // before the threads read the level
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < nh; h++) {
            size_t qo = (size_t)b * T * ldq + (size_t)h * hd, kvo = (size_t)b * T * ldkv + (size_t)(h / group) * hd;
            float *lh = lse + ((size_t)b * nh + h) * T;
            if (tiles)
                attention_forward_head_avx512(out + qo, lh, q + qo, k + kvo, v + kvo, T, ldq, ldkv, hd, scale, bf16);
            else
                forward_head(out + qo, lh, q + qo, k + kvo, v + kvo, T, ldq, ldkv, hd, scale);
        }
}

static void backward(const mo_attention *a, const float *dout, float *dq, float *dk, float *dv, int want_bf16) {
    const float *out = a->out, *lse = a->lse, *q = a->q, *k = a->k, *v = a->v;
    const int B = a->B, T = a->T, nh = a->nh, nkv = a->nkv, hd = a->hd;
    if (B <= 0 || T <= 0 || nh <= 0 || hd <= 0) return;
    const float scale = 1.0f / sqrtf((float)hd);
    const int group = nh / nkv, ldq = nh * hd, ldkv = nkv * hd;
    const int tiles = attention_avx512_takes(hd), bf16 = want_bf16 && attention_bf16_takes(hd);
    // One work item per (batch, kv head): the query heads of a group all add into the
    // same dk and dv, so they run one after the other on the thread that owns them.
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int g = 0; g < nkv; g++) {
            size_t kvo = (size_t)b * T * ldkv + (size_t)g * hd;
            for (int t = 0; t < T; t++) {
                memset(dk + kvo + (size_t)t * ldkv, 0, (size_t)hd * sizeof *dk);
                memset(dv + kvo + (size_t)t * ldkv, 0, (size_t)hd * sizeof *dv);
            }
            for (int h = g * group; h < (g + 1) * group; h++) {
                size_t qo = (size_t)b * T * ldq + (size_t)h * hd;
                const float *lh = lse + ((size_t)b * nh + h) * T;
                if (tiles)
                    attention_backward_head_avx512(dq + qo, dk + kvo, dv + kvo, dout + qo, out + qo, lh, q + qo,
                                                   k + kvo, v + kvo, T, ldq, ldkv, hd, scale, bf16);
                else
                    backward_head(dq + qo, dk + kvo, dv + kvo, dout + qo, out + qo, lh, q + qo, k + kvo, v + kvo, T,
                                  ldq, ldkv, hd, scale);
            }
        }
}

void attention_forward(const mo_attention *a) { forward(a, 0); }
void attention_forward_bf16(const mo_attention *a) { forward(a, 1); }
void attention_backward(const mo_attention *a, const float *dout, float *dq, float *dk, float *dv) {
    backward(a, dout, dq, dk, dv, 0);
}
void attention_backward_bf16(const mo_attention *a, const float *dout, float *dq, float *dk, float *dv) {
    backward(a, dout, dq, dk, dv, 1);
}
