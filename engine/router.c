// router.c: the router of one MoE layer: scores (softmax or sigmoid), biased top-k or
// top-p selection, gates, capacity, Switch load balance and z-loss, forward and backward;
// the bias balancing rule (see router.h and docs/design.md, "Routing", for the math).
#include "engine/router.h"

#include "kernels/matmul.h"
#include "kernels/softmax.h"
#include "kernels/topk.h"

#include <math.h>
#include <string.h>

void router_scores(const mo_config *c, const float *l, float *s, int N) {
    const int E = c->n_experts;
    if (c->router_score == MO_SCORE_SOFTMAX) {
        softmax_forward(s, l, N, E);
        return;
    }
    for (size_t i = 0; i < (size_t)N * E; i++) s[i] = 1.0f / (1.0f + expf(-l[i]));
}

void router_choose(const mo_config *c, const float *bias, const unsigned char *allowed, const float *s, float *key,
                   int N, int k, int *experts, float *topv, float *gates) {
    const int E = c->n_experts;
    const float scale = (float)c->routed_scale;
    const float *sel_from = s;
    if (bias || allowed) {
        for (int i = 0; i < N; i++) {
            const float *si = s + (size_t)i * E;
            float *ki = key + (size_t)i * E;
            for (int e = 0; e < E; e++)
                ki[e] = allowed && !allowed[e] ? -INFINITY : bias ? si[e] + bias[e] : si[e];
        }
        sel_from = key;
    }
    topk_forward(experts, topv, sel_from, N, E, k);  // topv: the keys for now
    for (int i = 0; i < N; i++) {
        int *ei = experts + (size_t)i * k;
        float *vi = topv + (size_t)i * k, *gi = gates + (size_t)i * k;
        const float *si = s + (size_t)i * E;
        // Top-p: the first experts until their probabilities reach top_p (float32 sum).
        int taken = k;
        float cum = 0;
        for (int j = 0; j < k; j++) {
            if (c->router_top_p > 0 && j > 0 && (double)cum >= c->router_top_p) {
                taken = j;
                break;
            }
            cum += si[ei[j]];
        }
        float sum = 0;
        for (int j = 0; j < k; j++) {
            if (j < taken) {
                vi[j] = si[ei[j]];
                sum += vi[j];
            } else {
                ei[j] = -1, vi[j] = 0.0f;
            }
        }
        for (int j = 0; j < k; j++) gi[j] = j < taken ? (c->norm_topk ? vi[j] / sum : vi[j]) * scale : 0.0f;
    }
}

// Capacity: C slots per expert, granted by slot rank then row order (GShard's priority);
// the refused slots of sel become -1 in experts with gate 0.
static int64_t apply_capacity(const mo_config *c, mo_router_acts *a, int N, int64_t *used) {
    const int E = c->n_experts, k = c->top_k;
    const double cap = ceil(c->capacity_factor * N * k / E);
    int64_t dropped = 0;
    memset(used, 0, (size_t)E * sizeof *used);
    for (int j = 0; j < k; j++)
        for (int i = 0; i < N; i++) {
            const size_t s = (size_t)i * k + j;
            const int e = a->sel[s];
            if (e < 0) continue;
            if ((double)used[e] < cap) {
                used[e]++;
            } else {
                a->experts[s] = -1;
                a->gates[s] = 0.0f;
                dropped++;
            }
        }
    return dropped;
}

void router_forward(const mo_config *c, mo_router_acts *a, mo_router_stats *st, const float *x, const float *w,
                    const float *b, int N, const int *forced, int targets_only, mo_rng *noise) {
    const int E = c->n_experts, k = c->top_k, d = c->d_model;
    const int sigmoid = c->router_score == MO_SCORE_SIGMOID;
    matmul_nt(a->logits, x, w, N, E, d, 0);
    logsumexp_rows(a->lse, a->logits, N, E);
    a->noisy = noise && c->router_noise > 0;
    if (a->noisy) {
        // l' = l + fl32(router_noise * n), n drawn row by row from the run's stream.
        for (size_t i = 0; i < (size_t)N * E; i++)
            a->key[i] = a->logits[i] + (float)(c->router_noise * mo_rng_normal(noise));
        router_scores(c, a->key, a->probs, N);
    } else {
        router_scores(c, a->logits, a->probs, N);
    }
    router_choose(c, b, NULL, a->probs, a->key, N, k, a->sel, a->topv, a->gates);
    a->forced = forced;
    a->targets_only = forced && targets_only;

    double rce = 0;
    int n_forced = 0;
    if (forced)
        for (int i = 0; i < N; i++) {
            if (forced[i] < 0) continue;
            if (!a->targets_only) {
                int *ei = a->sel + (size_t)i * k;
                float *vi = a->topv + (size_t)i * k, *gi = a->gates + (size_t)i * k;
                ei[0] = forced[i], vi[0] = a->probs[(size_t)i * E + forced[i]], gi[0] = 1.0f;
                for (int j = 1; j < k; j++) ei[j] = -1, vi[j] = 0.0f, gi[j] = 0.0f;
            }
            // -log softmax(l) from the logits (finite even where p underflows to 0).
            rce += (double)a->lse[i] - (double)a->logits[(size_t)i * E + forced[i]];
            n_forced++;
        }
    memcpy(a->experts, a->sel, (size_t)N * k * sizeof *a->experts);
    memset(st->chosen, 0, (size_t)E * sizeof *st->chosen);
    st->n_chosen = 0;
    for (size_t s = 0; s < (size_t)N * k; s++)
        if (a->sel[s] >= 0) st->chosen[a->sel[s]]++, st->n_chosen++;
    if (c->capacity_factor > 0) {
        st->n_dropped = apply_capacity(c, a, N, st->counts);
    } else {
        st->n_dropped = 0;
        memcpy(st->counts, st->chosen, (size_t)E * sizeof *st->counts);
    }

    double ent = 0, z = 0;
    for (int i = 0; i < N; i++) {
        const float *pi = a->probs + (size_t)i * E;
        double tot = 1.0;
        if (sigmoid) {
            tot = 0;
            for (int e = 0; e < E; e++) tot += pi[e];
        }
        for (int e = 0; e < E; e++)
            if (pi[e] > 0) {
                double q = sigmoid ? pi[e] / tot : pi[e];
                ent -= q * log(q);
            }
        z += (double)a->lse[i] * a->lse[i];
    }
    // aux = E * sum_e f_e P_e with f_e = chosen_e / (N k), P_e = mean_i p_ie (softmax) or
    // mean_i s_ie / sum_j s_ij (sigmoid).
    double aux = 0;
    for (int e = 0; e < E; e++) {
        double P = 0;
        for (int i = 0; i < N; i++) {
            const float *pi = a->probs + (size_t)i * E;
            if (sigmoid) {
                float t = 0;
                for (int j = 0; j < E; j++) t += pi[j];
                P += pi[e] / t;
            } else {
                P += pi[e];
            }
        }
        aux += (double)st->chosen[e] / ((double)N * k) * (P / N);
    }
    st->aux = E * aux;
    st->z = z / N;
    st->entropy = ent / N;
    st->router_ce = n_forced ? rce / n_forced : 0.0;
    st->n_forced = n_forced;
}

// softmax(l) of row i: the scores themselves when they are exactly that (softmax, no
// noise), else exp(l - lse) (z-loss and router_ce are on the clean logits).
static float clean_p(const mo_config *c, const mo_router_acts *a, int i, int e) {
    const size_t at = (size_t)i * c->n_experts + e;
    if (c->router_score == MO_SCORE_SOFTMAX && !a->noisy) return a->probs[at];
    return expf(a->logits[at] - a->lse[i]);
}

void router_backward(const mo_config *c, const mo_router_acts *a, const mo_router_stats *st, const float *dgates,
                     double daux, double dz, double dce, float *dlogits, const float *x, const float *w, float *dw,
                     float *dx, int N) {
    const int E = c->n_experts, k = c->top_k, d = c->d_model;
    const int sigmoid = c->router_score == MO_SCORE_SIGMOID;
    const float scale = (float)c->routed_scale;
    // d loss / d s into dlogits first (the score backward then runs in place).
    // aux: d/dq_ie of E * sum_e f_e mean_i q_ie = E f_e / N = E chosen_e / (N k N), the same
    // for every row (q = p for softmax; q = s / sum s for sigmoid, chained below).
    const double aux_scale = daux * E / ((double)N * k * N);
    for (int i = 0; i < N; i++) {
        float *dp = dlogits + (size_t)i * E;
        for (int e = 0; e < E; e++) dp[e] = (float)(aux_scale * (double)st->chosen[e]);
        if (sigmoid && daux != 0) {
            // q_e = s_e / T: d/ds_c = (a_c - sum_e a_e q_e) / T
            const float *si = a->probs + (size_t)i * E;
            float t = 0, dot = 0;
            for (int e = 0; e < E; e++) t += si[e];
            for (int e = 0; e < E; e++) dot += dp[e] * (si[e] / t);
            for (int e = 0; e < E; e++) dp[e] = (dp[e] - dot) / t;
        }
        const int *ei = a->sel + (size_t)i * k;
        const float *vi = a->topv + (size_t)i * k, *gi = a->gates + (size_t)i * k, *dg = dgates + (size_t)i * k;
        // A forced gate is the constant 1: nothing flows (targets only: the router's own gates).
        if (a->forced && !a->targets_only && a->forced[i] >= 0) continue;
        // Gates over the chosen slots S (a slot capacity dropped is in S's sum, with gate
        // and dg 0): g_j = scale v_j / sum_S v (norm_topk) or scale v_j.
        if (c->norm_topk) {
            float s = 0, dot = 0;
            for (int j = 0; j < k; j++)
                if (ei[j] >= 0) s += vi[j], dot += dg[j] * gi[j];
            for (int j = 0; j < k; j++)
                if (ei[j] >= 0) dp[ei[j]] += (scale * dg[j] - dot) / s;
        } else {
            for (int j = 0; j < k; j++)
                if (ei[j] >= 0) dp[ei[j]] += scale * dg[j];
        }
    }
    if (sigmoid) {
        for (size_t i = 0; i < (size_t)N * E; i++) dlogits[i] *= a->probs[i] * (1.0f - a->probs[i]);
    } else {
        softmax_backward(dlogits, dlogits, a->probs, N, E);
    }
    if (dz != 0) {
        // d/dl_ie of mean_i lse_i^2 = 2 lse_i softmax(l)_ie / N
        for (int i = 0; i < N; i++) {
            float s = (float)(dz * 2.0 * a->lse[i] / N);
            float *dl = dlogits + (size_t)i * E;
            for (int e = 0; e < E; e++) dl[e] += s * clean_p(c, a, i, e);
        }
    }
    if (dce != 0 && a->forced && st->n_forced) {
        // d/dl_ie of mean over forced rows of (lse_i - l_i,f) = (softmax(l)_ie - [e == f]) / n_forced
        const float s = (float)(dce / st->n_forced);
        for (int i = 0; i < N; i++) {
            const int f = a->forced[i];
            if (f < 0) continue;
            float *dl = dlogits + (size_t)i * E;
            for (int e = 0; e < E; e++) dl[e] += s * clean_p(c, a, i, e);
            dl[f] -= s;
        }
    }
    if (dw) matmul_tn(dw, dlogits, x, E, d, N, 1);  // NULL: a frozen router
    if (dx) matmul_nn(dx, dlogits, w, N, d, E, 1);  // NULL: nothing below needs it
}

void router_bias_update(float *b, const int64_t *counts, int E, double rate) {
    double mean = 0;
    for (int e = 0; e < E; e++) mean += (double)counts[e];
    mean /= E;
    const float r = (float)rate;
    for (int e = 0; e < E; e++) {
        const double c = (double)counts[e];
        b[e] += mean > c ? r : mean < c ? -r : 0.0f;
    }
}
