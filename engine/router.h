// router.h: the MoE router of one layer, forward and backward (docs/design.md section 4; losses section 5).
//
//   logits = x router^T                     [N, E]
//   p      = softmax(logits), fp32          [N, E]
//   S      = top_k(p), ties to the lower expert index, in descending order
//   g_e    = p_e / sum_{j in S} p_j  (norm_topk 1)   or   p_e  (norm_topk 0)
//   aux    = E * sum_e f_e P_e   f_e = share of the N*k slots routed to e (no gradient), P_e = mean p_e
//   z      = mean over tokens of logsumexp(logits)^2
//
// The router is one module so that later variants (capacity factor, sigmoid gating,
// expert choice, bias balancing) are one more case of router_forward/router_backward
// chosen by config. Its output is a list of k (expert, gate) slots per token; an expert
// of -1 marks a dropped slot (no expert runs, gate 0), which both a capacity factor and
// forced routing use.
//
// Forced routing (DEMix, `monolith train --route-by-domain`): when `forced` is given and
// forced[i] >= 0, token i goes to expert forced[i] alone with gate 1 (its other k-1 slots
// are dropped). A forced gate is a constant, so the language-model loss teaches the
// router nothing about such tokens; the router is taught by a supervision term instead,
//   router_ce = mean over the forced rows F of -log p_{i, forced[i]}
//             = mean_{i in F} (lse_i - logit_{i, forced[i]})
// (0 when no row is forced), with d/dlogit_ie = (p_ie - [e == forced[i]]) / |F|. It is a
// loss term only under forced routing (engine/model.h weighs it); p, aux and z are
// computed as usual.
#ifndef MONOLITH_ROUTER_H
#define MONOLITH_ROUTER_H

#include "engine/config.h"

#include <stdint.h>

// One layer's router activations, pointers into the model's activation arena.
typedef struct {
    float *logits;  // [N, E] router logits
    float *probs;   // [N, E] softmax of the logits
    float *lse;     // [N] logsumexp of the logits (z-loss)
    int *experts;   // [N, k] chosen experts, descending probability; -1 = dropped slot
    float *topv;    // [N, k] the chosen probabilities p_e (0 for a dropped slot)
    float *gates;   // [N, k] g_e (0 for a dropped slot)
    const int *forced;  // [N] the forced expert per row given to the last forward, or NULL
} mo_router_acts;

// Routing statistics of one layer and batch, for metrics and the aux loss.
typedef struct {
    int64_t *counts;  // [E] routed slots per expert (tokens per expert, counting each of k slots)
    double entropy;   // mean over tokens of -sum_e p_e log p_e, in nats
    double aux;       // E * sum_e f_e P_e
    double z;         // mean logsumexp^2
    double router_ce; // forced routing: mean over forced rows of -log p_forced (0: none forced)
    int n_forced;     // rows with forced[i] >= 0 in the last forward
} mo_router_stats;

// Forward for N rows x[N, d] with router weights w[E, d]. Fills `a` and `st`. `forced`
// may be NULL (normal routing) or hold one expert per row (-1: route this row normally).
void router_forward(const mo_config *c, mo_router_acts *a, mo_router_stats *st, const float *x, const float *w,
                    int N, const int *forced);

// The choice and gate step on its own, for N rows of probabilities p[N, E] (inference
// calls it after restricting p): experts[N, k] = the top k, descending, ties to the lower
// index; topv[N, k] their probabilities; gates[N, k] = topv / their sum (norm_topk 1) or
// topv. gates may be topv (computed in place). router_forward uses it for normal rows.
void router_select(const mo_config *c, const float *p, int N, int k, int *experts, float *topv, float *gates);

// Backward. dgates[N, k] is d loss / d g (0 where a slot is dropped); daux, dz and dce
// are the weights of this layer's aux, z and router_ce in the loss (aux_coef /
// n_moe_layers times the loss scale, likewise z and the router cross-entropy; dce acts
// only on forced rows). dlogits[N, E] is scratch. ACCUMULATES into dw[E, d] (NULL: frozen,
// skipped) and dx[N, d].
void router_backward(const mo_config *c, const mo_router_acts *a, const mo_router_stats *st, const float *dgates,
                     double daux, double dz, double dce, float *dlogits, const float *x, const float *w, float *dw,
                     float *dx, int N);

#endif
