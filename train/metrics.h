// metrics.h: the run folder's metrics.jsonl, one JSON object per line, flushed as written
// so a plot or `tail -f` sees every step.
//
//   {"type": "train", "step": 12, "loss": .., "ce": .., "aux": .., "z": .., "router_ce": .., "lr": ..,
//    "grad_norm": .., "tokens_per_s": .., "tokens_seen": .., "elapsed_s": ..,
//    "expert_tokens": {"0": [n_0, .., n_E-1], "1": [...]},      (key: MoE layer index)
//    "dropped": {"0": fraction, ...}, "experts_per_token": {"0": mean, ...}}
//   {"type": "eval", "step": 100, "val": {"code": {"loss": .., "ppl": .., "tokens": ..}, ...},
//    "routing": {"code": {"0": [slots per expert], ...}, ...},   (key: MoE layer index)
//    "dropped": {"code": {"0": fraction, ...}, ...}, "experts_per_token": {"code": {"0": mean, ...}, ...}}
// `dropped` is the share of the slots the routers chose that capacity refused (0 when
// dropless); `experts_per_token` the routers' chosen slots per token (top_k, or less under
// top-p).
//
// `step` counts completed optimizer steps (1 after the first update). A resumed run first
// drops the lines after its checkpoint's step, so the file never shows a step twice.
#ifndef MONOLITH_METRICS_H
#define MONOLITH_METRICS_H

#include <stdint.h>
#include <stdio.h>

typedef struct {
    FILE *f;
} metrics_log;

typedef struct {
    int64_t step, tokens_seen;
    double loss, ce, aux, z, lr, grad_norm, tokens_per_s, elapsed_s;
    double router_ce;        // route-by-domain: router cross-entropy against the forced experts (0 otherwise)
    int n_moe;               // MoE layers reported
    const int *moe_layer;    // [n_moe] their layer indices
    int n_experts;
    const int64_t *counts;   // [n_moe, n_experts] routed slots per expert in this step
    const int64_t *drops;    // [n_moe, 2] slots chosen by the routers, and of those dropped by capacity
    int64_t tokens;          // tokens of the step (experts per token = chosen / tokens)
} metrics_step;

// Opens DIR/metrics.jsonl: a new file when keep_until < 0, else the existing one cut
// after the last line whose step is <= keep_until. Returns 0 or -1.
int metrics_open(metrics_log *m, const char *dir, int64_t keep_until);
int metrics_write_step(metrics_log *m, const metrics_step *s);
// Per-domain validation loss (mean ce in nats; ppl = exp(loss)), tokens scored, and the
// routed slots counts[n, n_moe, n_experts] (NULL: no "routing").
typedef struct {
    int64_t step;
    int n;
    const char *const *names;
    const double *loss;
    const int64_t *tokens;
    int n_moe, n_experts;
    const int *moe_layer;
    const int64_t *counts;
    const int64_t *drops;    // [n, n_moe, 2] chosen and dropped slots per domain and layer (NULL: none)
} metrics_eval;
int metrics_write_eval(metrics_log *m, const metrics_eval *e);
void metrics_close(metrics_log *m);

#endif
