// router.c: softmax top-k routing with Switch load balance and z-loss, forward and
// backward (see router.h for the math).
#include "engine/router.h"

#include "kernels/matmul.h"
#include "kernels/softmax.h"
#include "kernels/topk.h"

#include <math.h>
#include <string.h>

void router_forward(const mo_config *c, mo_router_acts *a, mo_router_stats *st, const float *x, const float *w,
                    int N, const int *forced) {
    const int E = c->n_experts, k = c->top_k, d = c->d_model;
    matmul_nt(a->logits, x, w, N, E, d, 0);
    logsumexp_rows(a->lse, a->logits, N, E);
    softmax_forward(a->probs, a->logits, N, E);
    router_select(c, a->probs, N, k, a->experts, a->topv, a->gates);
    a->forced = forced;

    memset(st->counts, 0, (size_t)E * sizeof *st->counts);
    double ent = 0, z = 0, rce = 0;
    int n_forced = 0;
    for (int i = 0; i < N; i++) {
        int *ei = a->experts + (size_t)i * k;
        float *vi = a->topv + (size_t)i * k, *gi = a->gates + (size_t)i * k;
        if (forced && forced[i] >= 0) {
            ei[0] = forced[i], vi[0] = a->probs[(size_t)i * E + forced[i]], gi[0] = 1.0f;
            for (int j = 1; j < k; j++) ei[j] = -1, vi[j] = 0.0f, gi[j] = 0.0f;
            // -log p from the logits (finite even where p underflows to 0).
            rce += (double)a->lse[i] - (double)a->logits[(size_t)i * E + forced[i]];
            n_forced++;
        }
        for (int j = 0; j < k; j++)
            if (ei[j] >= 0) st->counts[ei[j]]++;
        const float *pi = a->probs + (size_t)i * E;
        for (int e = 0; e < E; e++)
            if (pi[e] > 0) ent -= (double)pi[e] * log((double)pi[e]);
        z += (double)a->lse[i] * a->lse[i];
    }
    // aux = E * sum_e f_e P_e with f_e = counts_e / (N k) and P_e = mean_i p_ie.
    double aux = 0;
    for (int e = 0; e < E; e++) {
        double P = 0;
        for (int i = 0; i < N; i++) P += a->probs[(size_t)i * E + e];
        aux += (double)st->counts[e] / ((double)N * k) * (P / N);
    }
    st->aux = E * aux;
    st->z = z / N;
    st->entropy = ent / N;
    st->router_ce = n_forced ? rce / n_forced : 0.0;
    st->n_forced = n_forced;
}

void router_select(const mo_config *c, const float *p, int N, int k, int *experts, float *topv, float *gates) {
    topk_forward(experts, topv, p, N, c->n_experts, k);
    for (int i = 0; i < N; i++) {
        const float *vi = topv + (size_t)i * k;
        float *gi = gates + (size_t)i * k, s = 0;
        for (int j = 0; j < k; j++) s += vi[j];
        for (int j = 0; j < k; j++) gi[j] = c->norm_topk ? vi[j] / s : vi[j];
    }
}

void router_backward(const mo_config *c, const mo_router_acts *a, const mo_router_stats *st, const float *dgates,
                     double daux, double dz, double dce, float *dlogits, const float *x, const float *w, float *dw,
                     float *dx, int N) {
    const int E = c->n_experts, k = c->top_k, d = c->d_model;
    // d loss / d p into dlogits first (softmax backward then runs in place).
    // aux: d/dp_ie of E * sum_e f_e P_e = E f_e / N = E counts_e / (N k N), the same for every row.
    const double aux_scale = daux * E / ((double)N * k * N);
    for (int i = 0; i < N; i++) {
        float *dp = dlogits + (size_t)i * E;
        for (int e = 0; e < E; e++) dp[e] = (float)(aux_scale * (double)st->counts[e]);
        const int *ei = a->experts + (size_t)i * k;
        const float *vi = a->topv + (size_t)i * k, *gi = a->gates + (size_t)i * k, *dg = dgates + (size_t)i * k;
        if (a->forced && a->forced[i] >= 0) continue;  // a forced gate is the constant 1: nothing flows
        // Gates from probabilities over the live slots: g_j = v_j / S (norm_topk) or v_j.
        if (c->norm_topk) {
            float s = 0, dot = 0;
            for (int j = 0; j < k; j++)
                if (ei[j] >= 0) s += vi[j], dot += dg[j] * gi[j];
            for (int j = 0; j < k; j++)
                if (ei[j] >= 0) dp[ei[j]] += (dg[j] - dot) / s;
        } else {
            for (int j = 0; j < k; j++)
                if (ei[j] >= 0) dp[ei[j]] += dg[j];
        }
    }
    softmax_backward(dlogits, dlogits, a->probs, N, E);
    if (dz != 0) {
        // d/dlogit_ie of mean_i lse_i^2 = 2 lse_i p_ie / N
        for (int i = 0; i < N; i++) {
            float s = (float)(dz * 2.0 * a->lse[i] / N);
            float *dl = dlogits + (size_t)i * E;
            const float *pi = a->probs + (size_t)i * E;
            for (int e = 0; e < E; e++) dl[e] += s * pi[e];
        }
    }
    if (dce != 0 && a->forced && st->n_forced) {
        // d/dlogit_ie of mean over forced rows of (lse_i - logit_i,f) = (p_ie - [e == f]) / n_forced
        const float s = (float)(dce / st->n_forced);
        for (int i = 0; i < N; i++) {
            const int f = a->forced[i];
            if (f < 0) continue;
            float *dl = dlogits + (size_t)i * E;
            const float *pi = a->probs + (size_t)i * E;
            for (int e = 0; e < E; e++) dl[e] += s * pi[e];
            dl[f] -= s;
        }
    }
    if (dw) matmul_tn(dw, dlogits, x, E, d, N, 1);  // NULL: a frozen router
    matmul_nn(dx, dlogits, w, N, d, E, 1);
}
