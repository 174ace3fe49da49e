// attention.c: causal GQA attention over per-(batch, head) sgemm calls.
//
// Each (batch, head) is independent work for one thread, so the heads are spread over
// the OpenMP threads and every BLAS call runs single-threaded inside that region
// (docs/threading.md). Within a head the queries go in blocks of ATT_BLOCK rows: a
// block [r0, r1) only meets keys 0 .. r1-1, so the causal upper triangle is skipped
// except inside the diagonal block, which halves the work of full T x T products.
//
// q, k, v, out are strided views: row t of head h starts at (t * heads + h) * hd, so a
// head is a [T, hd] matrix with leading dimension heads * hd, which BLAS takes as is.
#include "kernels/attention.h"

#include "kernels/simd.h"
#include "kernels/softmax.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#ifndef ATT_BLOCK  // overridable at build time to measure other sizes
#define ATT_BLOCK 64  // query rows per block; measured in docs/kernels.md
#endif

// ---------------------------------------------------------------------------- row softmax

// p[0..n) = softmax(p[0..n)), p[n..len) = 0: one causal row of scores (already scaled).
static void causal_softmax_row(float *p, int n, int len) {
    softmax_row(p, n);
    memset(p + n, 0, (size_t)(len - n) * sizeof *p);
}

// ---------------------------------------------------------------------------- one head

// One (batch, head): out[T, hd] and att[T, T] from q[T, hd] (leading dimension ldq) and
// k, v[T, hd] (leading dimension ldkv).
static void forward_head(float *out, float *att, const float *q, const float *k, const float *v, int T, int ldq,
                         int ldkv, int hd, float scale) {
    for (int r0 = 0; r0 < T; r0 += ATT_BLOCK) {
        int r1 = r0 + ATT_BLOCK < T ? r0 + ATT_BLOCK : T, bs = r1 - r0;
        float *a = att + (size_t)r0 * T;
        // scores[r0:r1, 0:r1] = scale * q[r0:r1] k[0:r1]^T
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, bs, r1, hd, scale, q + (size_t)r0 * ldq, ldq, k, ldkv,
                    0.0f, a, T);
        for (int t = r0; t < r1; t++) causal_softmax_row(att + (size_t)t * T, t + 1, T);
        // out[r0:r1] = att[r0:r1, 0:r1] v[0:r1]  (att is zero above the diagonal)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, bs, hd, r1, 1.0f, a, T, v, ldkv, 0.0f,
                    out + (size_t)r0 * ldq, ldq);
    }
}

// One query head's share of the backward: assigns dq, adds into dk and dv (shared by the
// heads of a group). ds is ATT_BLOCK x T scratch.
static void backward_head(float *dq, float *dk, float *dv, float *ds, const float *dout, const float *att,
                          const float *q, const float *k, const float *v, int T, int ldq, int ldkv, int hd,
                          float scale) {
    for (int r0 = 0; r0 < T; r0 += ATT_BLOCK) {
        int r1 = r0 + ATT_BLOCK < T ? r0 + ATT_BLOCK : T, bs = r1 - r0;
        const float *p = att + (size_t)r0 * T, *dor = dout + (size_t)r0 * ldq, *qr = q + (size_t)r0 * ldq;
        // dp[r0:r1, 0:r1] = dout[r0:r1] v[0:r1]^T, in ds (leading dimension r1)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, bs, r1, hd, 1.0f, dor, ldq, v, ldkv, 0.0f, ds, r1);
        // through the softmax: ds_u = p_u (dp_u - sum_w p_w dp_w), zero past the diagonal
        for (int i = 0; i < bs; i++) {
            const float *pi = p + (size_t)i * T;
            float *di = ds + (size_t)i * r1, dot = 0.0f;
            int n = r0 + i + 1;
            for (int u = 0; u < n; u++) dot += pi[u] * di[u];
            for (int u = 0; u < n; u++) di[u] = pi[u] * (di[u] - dot);
            for (int u = n; u < r1; u++) di[u] = 0.0f;
        }
        // dq[r0:r1] = scale * ds k[0:r1]
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, bs, hd, r1, scale, ds, r1, k, ldkv, 0.0f,
                    dq + (size_t)r0 * ldq, ldq);
        // dk[0:r1] += scale * ds^T q[r0:r1];  dv[0:r1] += att[r0:r1, 0:r1]^T dout[r0:r1]
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r1, hd, bs, scale, ds, r1, qr, ldq, 1.0f, dk, ldkv);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r1, hd, bs, 1.0f, p, T, dor, ldq, 1.0f, dv, ldkv);
    }
}

// ---------------------------------------------------------------------------- API

void attention_forward(float *out, float *att, const float *q, const float *k, const float *v, int B, int T, int nh,
                       int nkv, int hd) {
    if (B <= 0 || T <= 0 || nh <= 0 || hd <= 0) return;
    const float scale = 1.0f / sqrtf((float)hd);
    const int group = nh / nkv, ldq = nh * hd, ldkv = nkv * hd;
    simd_active();  // decide the SIMD level before the threads read it
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < nh; h++) {
            size_t qo = (size_t)b * T * ldq + (size_t)h * hd, kvo = (size_t)b * T * ldkv + (size_t)(h / group) * hd;
            forward_head(out + qo, att + ((size_t)b * nh + h) * T * T, q + qo, k + kvo, v + kvo, T, ldq, ldkv, hd,
                         scale);
        }
}

// One ATT_BLOCK x T block per thread that can run the backward.
size_t attention_scratch_floats(int B, int T, int nh, int nkv, int hd) {
    (void)B, (void)nh, (void)nkv, (void)hd;
    return (size_t)omp_get_max_threads() * ATT_BLOCK * (size_t)(T > 0 ? T : 0);
}

void attention_backward(float *dq, float *dk, float *dv, float *scratch, const float *dout, const float *att,
                        const float *q, const float *k, const float *v, int B, int T, int nh, int nkv, int hd) {
    if (B <= 0 || T <= 0 || nh <= 0 || hd <= 0) return;
    const float scale = 1.0f / sqrtf((float)hd);
    const int group = nh / nkv, ldq = nh * hd, ldkv = nkv * hd;
    // One work item per (batch, kv head): the query heads of a group all add into the
    // same dk and dv, so they run one after the other on the thread that owns them.
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int g = 0; g < nkv; g++) {
            float *ds = scratch + (size_t)omp_get_thread_num() * ATT_BLOCK * T;
            size_t kvo = (size_t)b * T * ldkv + (size_t)g * hd;
            for (int t = 0; t < T; t++) {
                memset(dk + kvo + (size_t)t * ldkv, 0, (size_t)hd * sizeof *dk);
                memset(dv + kvo + (size_t)t * ldkv, 0, (size_t)hd * sizeof *dv);
            }
            for (int h = g * group; h < (g + 1) * group; h++) {
                size_t qo = (size_t)b * T * ldq + (size_t)h * hd;
                backward_head(dq + qo, dk + kvo, dv + kvo, ds, dout + qo, att + ((size_t)b * nh + h) * T * T, q + qo,
                              k + kvo, v + kvo, T, ldq, ldkv, hd, scale);
            }
        }
}
