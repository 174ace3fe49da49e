// router.h: the MoE router of one layer, forward and backward (docs/design.md section 4, with
// section 4.1 for the routing variants' exact math; losses section 5).
//
//   l      = x router^T                         [N, E] logits (kept without noise)
//   l'     = l + router_noise * n               training only (n standard normal from the
//                                               run's RNG); l' = l otherwise
//   s      = softmax(l') or sigmoid(l')         router_score, fp32
//   S      = top_k of (s + b) per row, ties to the lower expert index, in descending order;
//            b = router_bias [E] (a buffer, no gradient). With router_top_p > 0 (softmax
//            only) a row keeps S's first experts until their s sum reaches top_p (at
//            least one, at most k); the other slots are unused (-1).
//   g_j    = routed_scale * s_j / sum_{S} s  (norm_topk 1)   or   routed_scale * s_j
//   capacity_factor > 0: at most C = ceil(cf * N * k / E) slots per expert, granted first
//            choices first (all rows in order), then second choices, ...; a refused slot
//            is dropped (expert -1, gate 0, the other gates keep their values).
//   aux    = E * sum_e f_e P_e   f_e = share of the N*k slots the router chose for e
//            (before capacity; no gradient), P_e = mean p_e (softmax) or mean s_e / sum_j s_j
//   z      = mean over tokens of logsumexp(l)^2       (no noise in it)
//
// The output is k (expert, gate) slots per token; an expert of -1 marks a slot that runs
// nothing (gate 0): unused by top-p, refused by capacity, or left by forced routing.
//
// Forced routing (DEMix, `monolith train --route-by-domain`): when `forced` is given and
// forced[i] >= 0, token i goes to expert forced[i] alone with gate 1 (its other k-1 slots
// are dropped). A forced gate is a constant, so the language-model loss teaches the
// router nothing about such tokens; the router is taught by a supervision term instead,
//   router_ce = mean over the forced rows F of -log softmax(l)_{i, forced[i]}
//             = mean_{i in F} (lse_i - l_{i, forced[i]})
// (0 when no row is forced), with d/dl_ie = (softmax(l)_ie - [e == forced[i]]) / |F|. It is
// a loss term only under forced routing (engine/model.h weighs it); aux and z are
// computed as usual.
//
// Bias balancing (balance = bias) changes b between optimizer steps, outside the
// gradient: router_bias_update below, from the slot counts of the whole step.
#ifndef MONOLITH_ROUTER_H
#define MONOLITH_ROUTER_H

#include "engine/base/rng.h"
#include "engine/config.h"

#include <stdint.h>

// One layer's router activations, pointers into the model's activation arena.
typedef struct {
    float *logits;  // [N, E] router logits l (without noise)
    float *probs;   // [N, E] scores s: softmax or sigmoid of l' (l plus the training noise)
    float *lse;     // [N] logsumexp of l (z-loss, router_ce)
    float *key;     // [N, E] scratch (l', then the selection keys s + b); may be shared by layers
    int *sel;       // [N, k] experts the router chose, before capacity; -1 = unused slot
    int *experts;   // [N, k] experts that run: sel with the slots capacity refused set to -1
    float *topv;    // [N, k] the chosen scores s (0 for an unused slot)
    float *gates;   // [N, k] g (0 for an unused or dropped slot)
    const int *forced;  // [N] the forced expert per row given to the last forward, or NULL
    int targets_only;   // forced experts are router_ce's targets only: the rows keep the router's top-k
    int noisy;          // the last forward added noise
} mo_router_acts;

// Routing statistics of one layer and batch, for metrics, the aux loss and bias balancing.
typedef struct {
    int64_t *counts;  // [E] slots each expert ran (after capacity): c_e of bias balancing
    int64_t *chosen;  // [E] slots the router chose for each expert (before capacity): f_e of aux
    int64_t n_chosen; // sum of chosen
    int64_t n_dropped;  // chosen slots refused by capacity
    double entropy;   // mean over tokens of -sum_e q_e log q_e, q = s / sum s, in nats
    double aux;       // E * sum_e f_e P_e
    double z;         // mean lse^2
    double router_ce; // forced routing: mean over forced rows of -log softmax(l)_forced (0: none forced)
    int n_forced;     // rows with forced[i] >= 0 in the last forward
} mo_router_stats;

// s = softmax or sigmoid of the rows of l [N, E] (router_score); s may alias l.
void router_scores(const mo_config *c, const float *l, float *s, int N);

// Selection and gates of N rows from their scores s [N, E], shared by training and
// inference: top-k of s + bias (bias NULL: zeros; experts with allowed[e] == 0 never
// chosen, allowed NULL: all), top-p when configured, gates. `k` slots per row (<= top_k;
// inference restricted to fewer experts passes fewer). key [N, E] is scratch. Writes
// experts, topv, gates [N, k] (-1 / 0 / 0 for an unused slot). No capacity: that is a
// property of a batch (router_forward).
void router_choose(const mo_config *c, const float *bias, const unsigned char *allowed, const float *s, float *key,
                   int N, int k, int *experts, float *topv, float *gates);

// Forward for N rows x[N, d] with router weights w[E, d] and bias b[E] (NULL: zeros).
// Fills `a` and `st`. `forced` may be NULL (normal routing) or hold one expert per row
// (-1: route this row normally); with `targets_only` the forced experts are only the
// targets of router_ce and every row keeps the router's own top-k (supervised routing).
// `noise` is the run's RNG when this is a training forward (router_noise draws N*E
// normals from it, row by row), else NULL: no noise.
void router_forward(const mo_config *c, mo_router_acts *a, mo_router_stats *st, const float *x, const float *w,
                    const float *b, int N, const int *forced, int targets_only, mo_rng *noise);

// Backward. dgates[N, k] is d loss / d g (0 where a slot is dropped); daux, dz and dce
// are the weights of this layer's aux, z and router_ce in the loss (aux_coef /
// n_moe_layers times the loss scale, likewise z and the router cross-entropy; dce acts
// only on forced rows). dlogits[N, E] is scratch. ACCUMULATES into dw[E, d] (NULL: frozen,
// skipped) and dx[N, d] (NULL: not wanted, skipped). Nothing flows into the bias.
void router_backward(const mo_config *c, const mo_router_acts *a, const mo_router_stats *st, const float *dgates,
                     double daux, double dz, double dce, float *dlogits, const float *x, const float *w, float *dw,
                     float *dx, int N);

// Bias balancing, once after an optimizer step: b_e += fl32(rate) * sign(mean_j c_j - c_e),
// in float32, where counts[E] = c are the slots each expert ran in that step's whole
// global batch (every micro-batch, and under distributed training every rank).
void router_bias_update(float *b, const int64_t *counts, int E, double rate);

#endif
