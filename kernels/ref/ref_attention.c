// ref_attention.c: oracle for kernels/attention.c, one query at a time in double.
#include "kernels/ref/ref.h"

#include <math.h>
#include <string.h>

// Element (b, t, head, i) of a [B, T, heads, hd] tensor.
#define AT(x, heads, b, t, head, i) (x)[((((size_t)(b) * T + (t)) * (heads) + (head)) * hd) + (i)]

void ref_attention_forward(const ref_attention *a) {
    const int B = a->B, T = a->T, nh = a->nh, nkv = a->nkv, hd = a->hd;
    const double *q = a->q, *k = a->k, *v = a->v;
    double *out = a->out, *att = a->att, *lse = a->lse;
    const double scale = 1.0 / sqrt((double)hd);
    const int group = nh / nkv;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < nh; h++) {
            int g = h / group;
            for (int t = 0; t < T; t++) {
                double *p = att + (((size_t)b * nh + h) * T + t) * T;
                double mx = -INFINITY, sum = 0;
                for (int u = 0; u <= t; u++) {
                    double s = 0;
                    for (int i = 0; i < hd; i++) s += AT(q, nh, b, t, h, i) * AT(k, nkv, b, u, g, i);
                    p[u] = s * scale;
                    if (p[u] > mx) mx = p[u];
                }
                for (int u = 0; u <= t; u++) sum += p[u] = exp(p[u] - mx);
                if (lse) lse[((size_t)b * nh + h) * T + t] = mx + log(sum);
                for (int u = 0; u <= t; u++) p[u] /= sum;
                for (int u = t + 1; u < T; u++) p[u] = 0;
                for (int i = 0; i < hd; i++) {
                    double o = 0;
                    for (int u = 0; u <= t; u++) o += p[u] * AT(v, nkv, b, u, g, i);
                    AT(out, nh, b, t, h, i) = o;
                }
            }
        }
}

void ref_attention_backward(const ref_attention *a, const double *dout, double *dq, double *dk, double *dv) {
    const int B = a->B, T = a->T, nh = a->nh, nkv = a->nkv, hd = a->hd;
    const double *q = a->q, *k = a->k, *v = a->v, *att = a->att;
    const double scale = 1.0 / sqrt((double)hd);
    const int group = nh / nkv;
    memset(dq, 0, (size_t)B * T * nh * hd * sizeof *dq);
    memset(dk, 0, (size_t)B * T * nkv * hd * sizeof *dk);
    memset(dv, 0, (size_t)B * T * nkv * hd * sizeof *dv);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < nh; h++) {
            int g = h / group;
            for (int t = 0; t < T; t++) {
                const double *p = att + (((size_t)b * nh + h) * T + t) * T;
                // dL/dp_u = dout_t . v_u; through the softmax: ds_u = p_u (dp_u - sum_w p_w dp_w)
                double dot = 0;
                for (int u = 0; u <= t; u++) {
                    double dp = 0;
                    for (int i = 0; i < hd; i++) dp += AT(dout, nh, b, t, h, i) * AT(v, nkv, b, u, g, i);
                    dot += p[u] * dp;
                }
                for (int u = 0; u <= t; u++) {
                    double dp = 0;
                    for (int i = 0; i < hd; i++) dp += AT(dout, nh, b, t, h, i) * AT(v, nkv, b, u, g, i);
                    double ds = p[u] * (dp - dot) * scale;  // gradient of the unscaled q.k
                    for (int i = 0; i < hd; i++) {
                        AT(dq, nh, b, t, h, i) += ds * AT(k, nkv, b, u, g, i);
                        AT(dk, nkv, b, u, g, i) += ds * AT(q, nh, b, t, h, i);
                        AT(dv, nkv, b, u, g, i) += p[u] * AT(dout, nh, b, t, h, i);
                    }
                }
            }
        }
}
