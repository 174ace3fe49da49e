// router_init.c: data-driven starting rows for new experts' router rows.
#include "train/router_init.h"

#include "engine/base/error.h"
#include "engine/model.h"
#include "train/evaluate.h"
#include "train/route_map.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int router_init_parse(const char *s, const char *flag, router_init_mode *mode) {
    if (!strcmp(s, "below")) *mode = ROUTER_INIT_BELOW;
    else if (!strcmp(s, "mean")) *mode = ROUTER_INIT_MEAN;
    else if (!strcmp(s, "fit")) *mode = ROUTER_INIT_FIT;
    else return mo_errorf("%s %s: use below (under the trained rows' logits), mean (the domain's mean router input) or "
                          "fit (above them on the domain's tokens, below on the others')",
                          flag, s);
    return 0;
}

static double dot(const float *a, const double *b, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

// 1 when row e is among the top k of `logits` (fewer than k rows strictly above it).
static int in_top_k(const double *logits, int E, int k, int e) {
    int above = 0;
    for (int j = 0; j < E; j++) above += logits[j] > logits[e];
    return above < k;
}

// The k-th largest (returned) and the largest (*top) of the trained rows' logits at x;
// logit [E] is scratch.
static double trained_kth(const float *R, int E, int k, const unsigned char *is_new, const float *x, int d,
                          double *logit, double *top) {
    int n_tr = 0;
    for (int e = 0; e < E; e++) {
        if (is_new[e]) continue;
        double z = 0;
        for (int c = 0; c < d; c++) z += (double)R[(size_t)e * d + c] * x[c];
        logit[n_tr++] = z;
    }
    double kv = -INFINITY;
    *top = -INFINITY;
    for (int t = 0; t < k && t < n_tr; t++) {  // k is small: k passes of max
        int best = 0;
        for (int q = 1; q < n_tr; q++)
            if (logit[q] > logit[best]) best = q;
        if (t == 0) *top = logit[best];
        kv = logit[best];
        logit[best] = -INFINITY;
    }
    return kv;
}

typedef struct {
    int nd, B, T, nb, d;
    int *windows;  // [nd][nb][B*(T+1)] the sampled training windows
    float *x;      // [nd][nb*B*T][d] one layer's router inputs
    double *mu;    // [nd][d] their means
} samples;

static size_t rows_of(const samples *s) { return (size_t)s->nb * s->B * s->T; }

// Router inputs of layer l for every sampled window: one forward pass per batch.
static int collect(samples *s, mo_model *m, const float *params, int l, int *tokens, int *targets) {
    const int B = s->B, T = s->T, d = s->d;
    for (int dom = 0; dom < s->nd; dom++) {
        double *mu = s->mu + (size_t)dom * d;
        memset(mu, 0, (size_t)d * sizeof *mu);
        for (int b = 0; b < s->nb; b++) {
            const int *w = s->windows + ((size_t)dom * s->nb + b) * B * (T + 1);
            for (int r = 0; r < B; r++)
                for (int j = 0; j < T; j++) {
                    tokens[r * T + j] = w[r * (T + 1) + j];
                    targets[r * T + j] = w[r * (T + 1) + j + 1];
                }
            if (model_forward(m, params, tokens, targets)) return -1;
            float *dst = s->x + ((size_t)dom * rows_of(s) + (size_t)b * B * T) * d;
            memcpy(dst, m->layer[l].m, (size_t)B * T * d * sizeof *dst);
            for (size_t i = 0; i < (size_t)B * T; i++)
                for (int c = 0; c < d; c++) mu[c] += dst[i * d + c];
        }
        for (int c = 0; c < d; c++) mu[c] /= (double)rows_of(s);
    }
    return 0;
}

static double softplus(double z) { return z > 30 ? z : log1p(exp(z)); }
static double sigm(double z) { return 1.0 / (1.0 + exp(-z)); }

// fit: row e of R [E, d] by a regularised logistic fit on the sampled router inputs. Its
// domain's tokens should score `margin` above their largest trained logit (the new expert
// first among their top-k), every other domain's tokens `margin` below their k-th largest
// trained logit (out of their top-k):
//   L(r) = sum over domains j of w_j/n_j sum_i softplus(s_ji (t_i - r.x_i))  / n_domains
//          + lambda |r|^2 mean |x|^2
// with s = +1, t = largest + margin, w = 1 for the row's domain and s = -1, t = k-th -
// margin, w = FIT_W_OTHER for the others (a token of another domain that the new expert
// takes is what moves the old domains' losses); each domain's tokens are averaged, so its
// size does not weigh. Convex in r; Adam from 0,
// FIT_ITERS full-batch steps, the rate 0.5 / mean |x|_1 (a logit moves by at most about 0.5
// per step), cosine to 1%.
#define FIT_ITERS 400
#define FIT_LAMBDA 1e-3
#define FIT_W_OTHER 4.0
static int fit_row(const samples *s, float *R, int E, int k, const unsigned char *is_new, int e, int dom, double margin,
                   int l) {
    const int d = s->d;
    const size_t n = rows_of(s), all = n * (size_t)s->nd;
    if (s->nd < 2)
        return mo_errorf("--router-init fit needs the other domains' token sets in --data too (tokens the row must "
                         "stay off), not only its own");
    double *t = malloc(all * sizeof *t), *logit = malloc((size_t)E * sizeof *logit);
    double *r = calloc((size_t)d, sizeof *r), *g = malloc((size_t)d * sizeof *g);
    double *m1 = calloc((size_t)d, sizeof *m1), *m2 = calloc((size_t)d, sizeof *m2);
    if (!t || !logit || !r || !g || !m1 || !m2) {
        free(t), free(logit), free(r), free(g), free(m1), free(m2);
        return mo_errorf("out of memory");
    }
    double xx = 0, x1 = 0;
    for (size_t i = 0; i < all; i++) {
        const float *x = s->x + i * d;
        const int j = (int)(i / n);
        double top, kv = trained_kth(R, E, k, is_new, x, d, logit, &top);
        t[i] = j == dom ? top + margin : kv - margin;
        for (int c = 0; c < d; c++) xx += (double)x[c] * x[c], x1 += fabs((double)x[c]);
    }
    xx /= (double)all, x1 /= (double)all;
    const double lr0 = 0.5 / (x1 > 0 ? x1 : 1), lambda = FIT_LAMBDA * xx;
    double loss = 0;
    for (int it = 0; it <= FIT_ITERS; it++) {
        for (int c = 0; c < d; c++) g[c] = 2 * lambda * r[c];
        loss = 0;
        for (int c = 0; c < d; c++) loss += lambda * r[c] * r[c];
        for (int j = 0; j < s->nd; j++) {
            const double sg = j == dom ? 1.0 : -1.0, w = (j == dom ? 1.0 : FIT_W_OTHER) / ((double)n * s->nd);
            for (size_t i = j * n; i < (j + 1) * n; i++) {
                const float *x = s->x + i * d;
                const double z = sg * (t[i] - dot(x, r, d));
                loss += w * softplus(z);
                const double dz = -sg * w * sigm(z);  // d softplus(z) / d r = sigma(z) dz/dr, dz/dr = -sg x
                for (int c = 0; c < d; c++) g[c] += dz * x[c];
            }
        }
        if (it == FIT_ITERS) break;
        const double lr = lr0 * (0.01 + 0.99 * 0.5 * (1 + cos(M_PI * it / FIT_ITERS)));
        const double b1 = 0.9, b2 = 0.999, c1 = 1 - pow(b1, it + 1), c2 = 1 - pow(b2, it + 1);
        for (int c = 0; c < d; c++) {
            m1[c] = b1 * m1[c] + (1 - b1) * g[c], m2[c] = b2 * m2[c] + (1 - b2) * g[c] * g[c];
            r[c] -= lr * (m1[c] / c1) / (sqrt(m2[c] / c2) + 1e-12);
        }
    }
    int rc = 0;
    if (!isfinite(loss)) rc = mo_errorf("layer %d: the fit of expert %d's row did not converge (loss %g)", l, e, loss);
    else
        for (int c = 0; c < d; c++) R[(size_t)e * d + c] = (float)r[c];
    free(t), free(logit), free(r), free(g), free(m1), free(m2);
    return rc;
}

// Sets the new rows of one layer's router R [E, d].
static int set_rows(const samples *s, float *R, int E, int k, const unsigned char *is_new, const int *dom_of,
                    const int *old_dom, const router_init_opts *o, double margin, int l) {
    const int d = s->d;
    double *v = calloc((size_t)d, sizeof *v), *logit = calloc((size_t)E, sizeof *logit);
    if (!v || !logit) {
        free(v), free(logit);
        return mo_errorf("out of memory");
    }
    int rc = 0;
    if (o->mode == ROUTER_INIT_FIT) {
        for (int e = 0; e < E && !rc; e++)
            if (is_new[e]) rc = fit_row(s, R, E, k, is_new, e, dom_of[e], margin, l);
    } else if (o->mode == ROUTER_INIT_MEAN) {
        for (int e = 0; e < E && !rc; e++) {
            if (!is_new[e]) continue;
            int dom = dom_of[e], others = 0;
            memset(v, 0, (size_t)d * sizeof *v);
            for (int j = 0; j < s->nd; j++) {
                if (j == dom) continue;
                for (int c = 0; c < d; c++) v[c] -= s->mu[(size_t)j * d + c];
                others++;
            }
            double nn = 0;
            for (int c = 0; c < d; c++) {
                v[c] = s->mu[(size_t)dom * d + c] + (others ? v[c] / others : 0);
                nn += v[c] * v[c];
            }
            if (!(nn > 1e-20)) {
                rc = mo_errorf("layer %d: the mean router input of expert %d's domain equals the others'; mean cannot "
                               "tell them apart",
                               l, e);
                break;
            }
            for (int c = 0; c < d; c++) R[(size_t)e * d + c] = (float)(margin * v[c] / nn);
        }
    } else {
        // u: the unit mean of the old domains' means.
        double nn = 0;
        int n_old = 0;
        memset(v, 0, (size_t)d * sizeof *v);
        for (int j = 0; j < s->nd; j++)
            if (old_dom[j]) {
                for (int c = 0; c < d; c++) v[c] += s->mu[(size_t)j * d + c];
                n_old++;
            }
        for (int c = 0; c < d; c++) nn += v[c] * v[c];
        nn = sqrt(nn);
        if (!n_old || !(nn > 1e-20)) {
            free(v), free(logit);
            return mo_errorf("layer %d: below needs tokens of a domain routed to a trained expert in the data", l);
        }
        for (int c = 0; c < d; c++) v[c] /= nn;
        // kth[i]: the k-th largest trained logit of old-domain token i (in sample order).
        size_t n_rows = 0;
        for (int j = 0; j < s->nd; j++) n_rows += old_dom[j] ? rows_of(s) : 0;
        double *kth = malloc(n_rows * sizeof *kth);
        const float **xs = malloc(n_rows * sizeof *xs);
        if (!kth || !xs) {
            free(kth), free(xs), free(v), free(logit);
            return mo_errorf("out of memory");
        }
        size_t at = 0;
        for (int j = 0; j < s->nd; j++) {
            if (!old_dom[j]) continue;
            for (size_t i = 0; i < rows_of(s); i++, at++) {
                const float *x = s->x + ((size_t)j * rows_of(s) + i) * d;
                double top, kv = trained_kth(R, E, k, is_new, x, d, logit, &top);
                kth[at] = kv, xs[at] = x;
            }
        }
        // base: the mean of the trained rows, whose logit never exceeds the largest (with
        // top_k 1 it is a solution at margin 0).
        double *base = calloc((size_t)d, sizeof *base), *r = calloc((size_t)d, sizeof *r);
        double *best = malloc((size_t)d * sizeof *best);
        if (!base || !r || !best) {
            free(base), free(r), free(best), free(kth), free(xs), free(v), free(logit);
            return mo_errorf("out of memory");
        }
        int n_trained = 0;
        for (int e = 0; e < E; e++)
            if (!is_new[e]) {
                for (int c = 0; c < d; c++) base[c] += R[(size_t)e * d + c];
                n_trained++;
            }
        for (int c = 0; c < d; c++) base[c] /= n_trained;
        size_t best_bad = (size_t)-1;
        // Try the margin, then smaller ones; from two starts each: -g u, and the trained rows'
        // mean - g u, g the smallest that clears every token with u.x > 0.
        for (int m = 0; m < 4 && best_bad; m++) {
            double mg = m < 3 ? margin / (double)(1 << (2 * m)) : 0;
            for (int start = 0; start < 2 && best_bad; start++) {
                double g = 0;
                for (size_t i = 0; i < n_rows; i++) {
                    double a = dot(xs[i], v, d), b = start ? dot(xs[i], base, d) : 0;
                    if (a > 1e-6 && (b + mg - kth[i]) / a > g) g = (b + mg - kth[i]) / a;
                }
                for (int c = 0; c < d; c++) r[c] = (start ? base[c] : 0) - g * v[c];
                // Then the relaxation method for linear inequalities: project r onto
                // r.x <= kth - mg for each token that still violates it, keeping the row that
                // leaves the fewest violators (the set may have no solution).
                for (int pass = 0; pass <= 50; pass++) {
                    size_t bad = 0;
                    for (size_t i = 0; i < n_rows; i++) bad += dot(xs[i], r, d) >= kth[i] - mg;
                    if (bad < best_bad) best_bad = bad, memcpy(best, r, (size_t)d * sizeof *r);
                    if (!bad || pass == 50) break;
                    for (size_t i = 0; i < n_rows; i++) {
                        double over = dot(xs[i], r, d) - (kth[i] - mg);
                        if (over < 0) continue;
                        double xx = 0;
                        for (int c = 0; c < d; c++) xx += (double)xs[i][c] * xs[i][c];
                        if (xx <= 0) continue;
                        for (int c = 0; c < d; c++) r[c] -= (over + 1e-6) / xx * xs[i][c];
                    }
                }
            }
        }
        free(base);
        for (int e = 0; e < E; e++)
            if (is_new[e])
                for (int c = 0; c < d; c++) R[(size_t)e * d + c] = (float)(best ? best[c] : r[c]);
        free(best), free(r), free(kth), free(xs);
    }
    free(v), free(logit);
    return rc;
}

// Adds, per domain, the share of sampled tokens whose top-k holds a new expert.
static void measure(const samples *s, const float *R, const float *bias, int E, int k, const unsigned char *is_new,
                    double scale, double *share) {
    const int d = s->d;
    double *logit = malloc((size_t)E * sizeof *logit);
    if (!logit) return;
    for (int j = 0; j < s->nd; j++) {
        size_t hit = 0;
        for (size_t i = 0; i < rows_of(s); i++) {
            const float *x = s->x + ((size_t)j * rows_of(s) + i) * d;
            for (int e = 0; e < E; e++) {
                double z = 0;
                for (int c = 0; c < d; c++) z += (double)R[(size_t)e * d + c] * x[c];
                logit[e] = z;
            }
            int any = 0;
            for (int e = 0; e < E && !any; e++) any = is_new[e] && !(bias && bias[e] < 0) && in_top_k(logit, E, k, e);
            hit += (size_t)any;
        }
        share[j] += scale * (double)hit / (double)rows_of(s);
    }
    free(logit);
}

// fit: a layer whose fitted row still puts a new expert into the top-k of more than
// FIT_MAX_SHARE of another domain's sampled tokens leaves that expert out of the layer:
// router_bias[e] = -1, so its selection key s_e - 1 < 0 < every other expert's s (the bias
// only selects; gates, aux and z do not see it). The layer then computes what it computed
// before the expert was added, for every token.
#define FIT_MAX_SHARE 0.05
static int gate_layer(const samples *s, const float *R, float *bias, int E, int k, const unsigned char *is_new,
                      const int *dom_of, int l, router_init_report *rep) {
    double *share = malloc((size_t)s->nd * sizeof *share);
    unsigned char *one = calloc((size_t)E, 1);
    if (!share || !one) {
        free(share), free(one);
        return mo_errorf("out of memory");
    }
    for (int e = 0; e < E; e++) {
        if (!is_new[e]) continue;
        memset(one, 0, (size_t)E);
        one[e] = 1;
        memset(share, 0, (size_t)s->nd * sizeof *share);
        measure(s, R, NULL, E, k, one, 1.0, share);
        double worst = 0;
        for (int j = 0; j < s->nd; j++)
            if (j != dom_of[e] && share[j] > worst) worst = share[j];
        if (worst > FIT_MAX_SHARE) {
            bias[e] = -1.0f;
            if (rep->n_off < ROUTER_INIT_MAX_OFF) rep->off_layer[rep->n_off] = l, rep->off_expert[rep->n_off] = e;
            rep->n_off++;
        }
    }
    free(share), free(one);
    return 0;
}

int router_init_rows(mo_checkpoint *ck, const char *ck_name, const unsigned char *is_new, const router_init_opts *o,
                     router_init_report *rep) {
    memset(rep, 0, sizeof *rep);
    const mo_config *c = &ck->table.cfg;
    const int E = c->n_experts, k = c->top_k, n_moe = config_n_moe_layers(c);
    if (!n_moe) return mo_errorf("%s has no MoE layer: no router rows to set", ck_name);
    int n_new = 0;
    for (int e = 0; e < E; e++) n_new += is_new[e] != 0;
    if (!n_new) return 0;
    if (o->mode != ROUTER_INIT_MEAN && E - n_new < k)
        return mo_errorf("--router-init below or fit puts new rows under the k-th largest trained logit, but %s has %d trained "
                         "rows for top_k %d; use mean",
                         ck_name, E - n_new, k);
    if (!o->n_data) return mo_errorf("router rows from data need --data NAME=FILE.h5 (the domains, the new one included)");
    // fit learns a row from the samples (8 batches: with 2 it fitted python's windows and took
    // more of code's validation tokens); below and mean only take means and bounds (2)
    samples s = {.B = o->batch > 0 ? o->batch : 8,
                 .nb = o->batches > 0 ? o->batches : o->mode == ROUTER_INIT_FIT ? 8 : 2,
                 .d = c->d_model};
    s.T = o->seq > 0 ? o->seq : (c->max_seq_len < 256 ? c->max_seq_len : 256);
    if (s.T > c->max_seq_len) return mo_errorf("--seq %d is above the model's max_seq_len %d", s.T, c->max_seq_len);
    const double margin = o->margin > 0 ? o->margin : 1.0;
    loader *ld = eval_loader_open(ck, ck_name, o->data, o->n_data, s.B, s.T, o->seed);
    if (!ld) return -1;
    s.nd = rep->n_domains = loader_n_domains(ld);
    int expert_of[LOADER_MAX_DOMAINS], dom_of[1024], old_dom[LOADER_MAX_DOMAINS];
    const char *names[LOADER_MAX_DOMAINS];
    for (int j = 0; j < s.nd; j++) names[j] = rep->names[j], snprintf(rep->names[j], 128, "%s", loader_domain(ld, j));
    int rc = -1;
    mo_model m = {0};
    int *tokens = NULL, *targets = NULL, *dom_rows = NULL;
    if (E > 1024) {
        mo_errorf("%d experts: at most 1024", E);
        goto done;
    }
    if (route_map(&ck->experts, E, s.nd, names, expert_of)) goto done;
    for (int e = 0; e < E; e++) dom_of[e] = -1;
    for (int j = 0; j < s.nd; j++) {
        dom_of[expert_of[j]] = j;
        rep->is_new_domain[j] = is_new[expert_of[j]] != 0;
        old_dom[j] = o->every_domain_old || !rep->is_new_domain[j];
    }
    for (int e = 0; e < E; e++)
        if (is_new[e] && dom_of[e] < 0 && o->mode != ROUTER_INIT_BELOW) {
            mo_errorf("expert %d (%s, domain '%s') is new but no --data domain routes to it; give its domain's token "
                      "set as --data %s=FILE.h5",
                      e, ck->experts.name[e], ck->experts.domain[e],
                      ck->experts.domain[e][0] ? ck->experts.domain[e] : ck->experts.name[e]);
            goto done;
        }
    // Sample the windows: one loader per domain, so every domain gets nb batches.
    size_t wn = (size_t)s.B * (s.T + 1);
    s.windows = malloc((size_t)s.nd * s.nb * wn * sizeof *s.windows);
    s.x = malloc((size_t)s.nd * rows_of(&s) * s.d * sizeof *s.x);
    s.mu = malloc((size_t)s.nd * s.d * sizeof *s.mu);
    tokens = malloc((size_t)s.B * s.T * sizeof *tokens);
    targets = malloc((size_t)s.B * s.T * sizeof *targets);
    if (!s.windows || !s.x || !s.mu || !tokens || !targets) {
        mo_errorf("out of memory sampling %d domains x %d x %d windows", s.nd, s.nb, s.B);
        goto done;
    }
    for (int j = 0; j < s.nd; j++) {
        loader *one = eval_loader_open(ck, ck_name, &o->data[j], 1, s.B, s.T, o->seed + (uint64_t)j);
        if (!one) goto done;
        for (int b = 0; b < s.nb; b++) loader_next(one, s.windows + ((size_t)j * s.nb + b) * wn, NULL);
        loader_free(one);
    }
    if (model_alloc(&m, &ck->table, s.B, s.T)) goto done;
    for (int l = 0; l < c->n_layers; l++) {
        if (!c->moe_layers[l]) continue;
        float *R = params_at(&ck->table, ck->params, ck->table.layer[l].router);
        if (collect(&s, &m, ck->params, l, tokens, targets) ||
            set_rows(&s, R, E, k, is_new, dom_of, old_dom, o, margin, l))
            goto done;
        float *bias = params_at(&ck->table, ck->params, ck->table.layer[l].router_bias);
        if (o->mode == ROUTER_INIT_FIT && gate_layer(&s, R, bias, E, k, is_new, dom_of, l, rep)) goto done;
        measure(&s, R, bias, E, k, is_new, 1.0 / n_moe, rep->new_share);
    }
    rc = 0;
done:
    if (m.arena) model_free(&m);
    loader_free(ld);
    free(s.windows), free(s.x), free(s.mu), free(tokens), free(targets), free(dom_rows);
    return rc;
}
