// evaluate.h: validation loss and routing per domain, for `monolith eval` and the
// evaluations inside `monolith train`.
//
// A domain's validation loss is the mean next-token cross-entropy (nats) over its first
// `max_batches` batches of B val windows (data/loader.h: the same windows every time; 0
// = the whole val split). The routing matrix counts, per domain and MoE layer, the
// routing slots (k per token) that went to each expert; share = count / row sum.
#ifndef MONOLITH_EVALUATE_H
#define MONOLITH_EVALUATE_H

#include "data/loader.h"
#include "engine/checkpoint.h"
#include "engine/model.h"

#include <stdint.h>

// The buffers one evaluation pass uses (the trainer lends its own).
typedef struct {
    mo_model *model;
    const float *params;
    const loader *ld;
    int *window;         // [B*(T+1)]
    int *tokens, *targets;
    int *forced;         // [B*T] or NULL: route-by-domain (rows of domain d go to expert expert_of[d])
    const int *expert_of;  // [n_domains] (train/route_map.h), or NULL: domain d -> expert d
} eval_bufs;

// Evaluates domain d. Writes the mean loss (NaN if the val split has no window) and the
// number of tokens scored; ADDS the routed slots per expert into counts[n_moe * E] (MoE
// layers in order; may be NULL) and the slots the routers chose and those capacity dropped
// into drops[n_moe * 2] (may be NULL). Returns 0, or -1 with a message.
int eval_domain(const eval_bufs *b, int d, int64_t max_batches, double *loss, int64_t *n_tokens, int64_t *counts,
                int64_t *drops);

typedef struct {
    int n_domains, n_moe, n_experts;
    char names[LOADER_MAX_DOMAINS][128];
    int moe_layer[MO_MAX_LAYERS];
    double loss[LOADER_MAX_DOMAINS];
    int64_t tokens[LOADER_MAX_DOMAINS];
    int64_t *counts;  // [n_domains, n_moe, n_experts]
    int seq;              // the window length used
    const char *seq_from; // where it came from: "--seq", "the run's --seq (/train)", "max_seq_len"
    int64_t *drops;   // [n_domains, n_moe, 2] chosen slots, of which dropped by capacity
} eval_report;

typedef struct {
    const char *checkpoint;
    const loader_spec *data;
    int n_data;
    int batch, seq;        // seq 0: the --seq the checkpoint was trained with (its /train run
                           // options), else its max_seq_len, at most 256
    int64_t max_batches;   // per domain; 0: the whole val split
    int route_by_domain;
} eval_opts;

// Opens token sets for checkpoint `ck` (`ck_name` for messages): each must carry the
// hash of its /tokenizer, when it has one, and fit its vocabulary. NULL with a message.
loader *eval_loader_open(const mo_checkpoint *ck, const char *ck_name, const loader_spec *data, int n_data, int batch,
                         int seq, uint64_t seed);

// Loads the checkpoint (its /tokenizer hash, when present, must match the token sets')
// and evaluates every domain. Returns 0, or -1 with a one-line message.
int eval_checkpoint(const eval_opts *o, eval_report *r);
void eval_report_free(eval_report *r);
// The share of domain d's routing slots that went to expert e in MoE layer l (an index
// into moe_layer, 0..n_moe-1), or its mean over the MoE layers when l == n_moe. A layer
// where the domain routed nothing counts 0.
double eval_routing_share(const eval_report *r, int d, int l, int e);

#endif
