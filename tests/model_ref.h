// model_ref.h: a double-precision reference forward of the whole model (docs/design.md section 3),
// composed from the kernels/ref oracles and plain loops, for tests only.
//
// It shares nothing with engine/model.c but the parameter table (so both read the same
// arena layout): no activation arena, no sorting, no grouped GEMMs; each token visits
// its k experts one by one. It returns the loss, and the smallest top-k margin of any
// token in any MoE layer (p of the k-th choice minus p of the best unchosen expert), so
// a finite-difference test can assert it sits far from a routing kink.
//
// The routing variants of docs/design.md, "Routing" are written here from that text:
// sigmoid scores, selection by s + router_bias, top-p, routed_scale, capacity in GShard's
// order (a second pass over the tokens), and with `noise` (may be NULL: none) the
// training noise fl32(router_noise * n), n drawn from that generator row by row per MoE
// layer. The margin also covers top-p's distance to its threshold.
//
// `forced` (may be NULL) is the route-by-domain hook of engine/router.h: a row with
// forced[i] >= 0 goes to that expert alone with gate 1 and counts one routed slot, and
// router_ce_coef weighs the router's cross-entropy against the forced experts (mean
// -log p_forced over the forced rows of a layer, averaged over MoE layers) in the loss.
// With `targets_only` the forced experts are that term's targets only and every row is
// routed normally (supervised routing, model_set_forced_targets_only).
#ifndef MONOLITH_MODEL_REF_H
#define MONOLITH_MODEL_REF_H

#include "engine/base/rng.h"
#include "engine/params.h"
#include "kernels/ref/ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    double loss, ce, aux, z;
    double router_ce;   // 0 without forced rows
    double min_margin;  // smallest top-k boundary gap in probability over MoE layers (inf if none)
} ref_model_result;

// y[n, dm] (+)= swiglu FFN of x[n, dm] with w1, w3 [f, dm], w2 [dm, f] (all double).
static void ref_model_ffn(double *y, const double *x, const double *w1, const double *w3, const double *w2, int n,
                          int f, int dm, double scale) {
    double *h1 = malloc((size_t)n * f * sizeof *h1), *h3 = malloc((size_t)n * f * sizeof *h3);
    double *o = malloc((size_t)n * dm * sizeof *o);
    ref_matmul_nt(h1, x, w1, n, f, dm, 0);
    ref_matmul_nt(h3, x, w3, n, f, dm, 0);
    ref_swiglu_forward(h1, h1, h3, (size_t)n * f);
    ref_matmul_nt(o, h1, w2, n, dm, f, 0);
    for (size_t i = 0; i < (size_t)n * dm; i++) y[i] += scale * o[i];
    free(h1), free(h3), free(o);
}

// Loss of tokens/targets [B*T] under parameters `p` (a double arena laid out by `pt`).
static ref_model_result ref_model_forward(const mo_param_table *pt, const double *p, const int *tokens,
                                          const int *targets, const int *forced, double router_ce_coef,
                                          int targets_only, int B, int T, mo_rng *noise) {
    const mo_config *c = &pt->cfg;
    const int N = B * T, d = c->d_model, V = c->vocab_size, nh = c->n_heads, nkv = c->n_kv_heads;
    const int hd = c->head_dim, qd = nh * hd, kvd = nkv * hd, E = c->n_experts, k = c->top_k;
    const double eps = c->norm_eps;
#define RP(id) (p + pt->t[(id)].offset)
    ref_model_result res = {0, 0, 0, 0, 0, INFINITY};
    double *h = malloc((size_t)N * d * sizeof *h), *a = malloc((size_t)N * d * sizeof *a);
    double *rstd = malloc((size_t)N * sizeof *rstd), *q = malloc((size_t)N * qd * sizeof *q);
    double *kk = malloc((size_t)N * kvd * sizeof *kk), *v = malloc((size_t)N * kvd * sizeof *v);
    double *o = malloc((size_t)N * qd * sizeof *o), *att = malloc((size_t)B * nh * T * T * sizeof *att);
    double *y = malloc((size_t)N * d * sizeof *y), *ye = malloc((size_t)d * sizeof *ye);
    double *logits = malloc((size_t)N * (V > E ? V : E) * sizeof *logits);
    double *probs = malloc((size_t)N * (E > 0 ? E : 1) * sizeof *probs), *lse = malloc((size_t)N * sizeof *lse);
    double *losses = malloc((size_t)N * sizeof *losses), *val = malloc((size_t)(E > 0 ? E : 1) * sizeof *val);
    int *pos = malloc((size_t)N * sizeof *pos), *idx = malloc((size_t)(E > 0 ? E : 1) * sizeof *idx);
    double *counts = calloc((size_t)(E > 0 ? E : 1), sizeof *counts), *pmean = calloc((size_t)(E > 0 ? E : 1), 8);
    double *key = malloc((size_t)(E > 0 ? E : 1) * sizeof *key), *used = malloc((size_t)(E > 0 ? E : 1) * 8);
    double *gate = malloc((size_t)N * (k > 0 ? k : 1) * sizeof *gate);
    int *sel = malloc((size_t)N * (k > 0 ? k : 1) * sizeof *sel);
    for (int i = 0; i < N; i++) pos[i] = i % T;
    ref_embedding_forward(h, tokens, RP(pt->tok_embeddings), N, d);
    int n_moe = 0;
    for (int l = 0; l < c->n_layers; l++) {
        const mo_layer_ids *id = &pt->layer[l];
        ref_rmsnorm_forward(a, rstd, h, RP(id->attn_norm), N, d, eps);
        ref_matmul_nt(q, a, RP(id->wq), N, qd, d, 0);
        ref_matmul_nt(kk, a, RP(id->wk), N, kvd, d, 0);
        ref_matmul_nt(v, a, RP(id->wv), N, kvd, d, 0);
        ref_rope_forward(q, pos, N, nh, hd, c->rope_theta);
        ref_rope_forward(kk, pos, N, nkv, hd, c->rope_theta);
        ref_attention_forward(&(ref_attention){B, T, nh, nkv, hd, q, kk, v, o, att, NULL});
        ref_matmul_nt(h, o, RP(id->wo), N, d, qd, 1);  // h += o wo^T
        ref_rmsnorm_forward(a, rstd, h, RP(id->ffn_norm), N, d, eps);  // a = m
        memset(y, 0, (size_t)N * d * sizeof *y);
        if (!id->is_moe) {
            ref_model_ffn(y, a, RP(id->ffn_w1), RP(id->ffn_w3), RP(id->ffn_w2), N, c->d_ff_dense, d, 1.0);
        } else {
            n_moe++;
            ref_matmul_nt(logits, a, RP(id->router), N, E, d, 0);
            ref_logsumexp_rows(lse, logits, N, E);  // z and router_ce: the logits without noise
            const int sig = c->router_score == MO_SCORE_SIGMOID;
            for (size_t i = 0; i < (size_t)N * E; i++) {
                double l = logits[i] + (noise ? (double)(float)(c->router_noise * mo_rng_normal(noise)) : 0.0);
                probs[i] = sig ? 1.0 / (1.0 + exp(-l)) : l;
            }
            if (!sig) ref_softmax_forward(probs, probs, N, E);
            memset(counts, 0, (size_t)E * sizeof *counts);
            memset(pmean, 0, (size_t)E * sizeof *pmean);
            double z = 0, rce = 0;
            int n_forced = 0;
            // Selection and gates per token (sel -1: a slot top-p leaves unused), then capacity.
            for (int i = 0; i < N; i++) {
                const double *pi = probs + (size_t)i * E;
                for (int e = 0; e < E; e++) key[e] = pi[e] + RP(id->router_bias)[e];
                ref_topk_forward(idx, val, key, 1, E, E);  // every expert, by descending s + b
                int *si = sel + (size_t)i * k;
                double *gi = gate + (size_t)i * k;
                int taken = k;
                double cum = 0;
                for (int j = 0; j < k; j++) {
                    if (c->router_top_p > 0 && j > 0 && cum >= c->router_top_p) {
                        taken = j;
                        break;
                    }
                    cum += pi[idx[j]];
                    if (c->router_top_p > 0 && j < k - 1) res.min_margin = fmin(res.min_margin, fabs(cum - c->router_top_p));
                }
                if (forced && forced[i] >= 0) {
                    rce += lse[i] - logits[(size_t)i * E + forced[i]];
                    n_forced++;
                }
                if (forced && forced[i] >= 0 && !targets_only) {
                    si[0] = forced[i], gi[0] = 1.0;
                    for (int j = 1; j < k; j++) si[j] = -1, gi[j] = 0;
                } else {
                    if (k < E) res.min_margin = fmin(res.min_margin, val[k - 1] - val[k]);
                    for (int j = 0; j + 1 < k; j++) res.min_margin = fmin(res.min_margin, val[j] - val[j + 1]);
                    double s = 0;
                    for (int j = 0; j < taken; j++) s += pi[idx[j]];
                    for (int j = 0; j < k; j++) {
                        si[j] = j < taken ? idx[j] : -1;
                        gi[j] = j < taken ? (c->norm_topk ? pi[idx[j]] / s : pi[idx[j]]) * c->routed_scale : 0.0;
                    }
                }
                for (int j = 0; j < k; j++)
                    if (si[j] >= 0) counts[si[j]] += 1;  // f_e: the router's choices, before capacity
                double t = 0;
                for (int e = 0; e < E; e++) t += pi[e];
                for (int e = 0; e < E; e++) pmean[e] += (sig ? pi[e] / t : pi[e]) / N;
                z += lse[i] * lse[i] / N;
            }
            if (c->capacity_factor > 0) {
                const double cap = ceil(c->capacity_factor * N * k / E);
                memset(used, 0, (size_t)E * sizeof *used);
                for (int j = 0; j < k; j++)
                    for (int i = 0; i < N; i++) {
                        int e = sel[(size_t)i * k + j];
                        if (e < 0) continue;
                        if (used[e] < cap) used[e] += 1;
                        else gate[(size_t)i * k + j] = 0.0;  // dropped: the other gates keep their values
                    }
            }
            for (int i = 0; i < N; i++)
                for (int j = 0; j < k; j++) {
                    int e = sel[(size_t)i * k + j];
                    double g = gate[(size_t)i * k + j];
                    if (e < 0 || g == 0.0) continue;
                    size_t w13 = (size_t)e * c->d_ff * d;
                    memset(ye, 0, (size_t)d * sizeof *ye);
                    ref_model_ffn(ye, a + (size_t)i * d, RP(id->w1) + w13, RP(id->w3) + w13, RP(id->w2) + w13, 1,
                                  c->d_ff, d, 1.0);
                    for (int cc = 0; cc < d; cc++) y[(size_t)i * d + cc] += g * ye[cc];
                }
            double aux = 0;
            for (int e = 0; e < E; e++) aux += counts[e] / ((double)N * k) * pmean[e];
            res.aux += E * aux;
            res.z += z;
            if (n_forced) res.router_ce += rce / n_forced;
            int sh = c->n_shared_experts * c->d_ff_shared;
            if (sh) ref_model_ffn(y, a, RP(id->shared_w1), RP(id->shared_w3), RP(id->shared_w2), N, sh, d, 1.0);
        }
        for (size_t i = 0; i < (size_t)N * d; i++) h[i] += y[i];
    }
    ref_rmsnorm_forward(a, rstd, h, RP(pt->norm), N, d, eps);
    ref_matmul_nt(logits, a, RP(pt->output), N, V, d, 0);
    ref_cross_entropy_forward(losses, logits, targets, N, V);
    for (int i = 0; i < N; i++) res.ce += losses[i] / N;
    if (n_moe) res.aux /= n_moe, res.z /= n_moe, res.router_ce /= n_moe;
    res.loss = res.ce + c->aux_coef * res.aux + c->z_coef * res.z + router_ce_coef * res.router_ce;
#undef RP
    void *bufs[] = {h,      a,   rstd, q,      kk,     v,     o,   att,  y,   ye,   logits, probs,
                    lse,    losses, val, pos, idx,   counts, pmean, key, used, gate, sel};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    return res;
}

#endif
