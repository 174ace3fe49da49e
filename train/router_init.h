// router_init.h: where the router rows of new experts start (`expert add --router-init`,
// the plug stage of `pipeline plug`).
//
// A new row drawn at random (std 0.02) gives logits near 0, which beat the trained rows'
// logits for most tokens' second choice: the new expert enters the top-k of every domain
// before it is trained. Two data-driven starts instead, from the router inputs (each MoE
// layer's ffn_norm output) of training windows of every domain:
//
//   below  (one or more new rows beside trained ones) row = -g u, u the unit mean router
//          input of the old domains' tokens (those routed to trained experts), g the
//          smallest value that puts the row's logit at least `margin` below the k-th largest
//          trained logit for every sampled old-domain token whose input has a positive u
//          component. The new expert takes no sampled token until it is trained; fitting
//          the row (the router term on the mixture, `--train router=E`) raises it where its
//          domain's tokens are.
//   mean   (any rows; all rows new in the plug stage) row = margin v / |v|^2 with
//          v = mu_d - mu_rest: mu_d the mean router input of the row's domain, mu_rest the
//          mean of the other domains' means. The row's logit is `margin` higher at its
//          domain's mean than at the others'.
//   fit    (rows beside trained ones) a regularised logistic fit of the row on the sampled
//          inputs: `margin` above the largest trained logit on its domain's tokens, `margin`
//          below the k-th largest on every other domain's, each domain weighed equally, an
//          L2 penalty keeping the row's logits within the trained rows' range. Where neither
//          bound can hold (a near-uniform top-k router), it trades the two off instead of
//          growing without bound as below does.
//
// Each new row needs a domain in the data: the domain whose route (train/route_map.h: the
// /experts domain, else name, else position) is that expert. Rows are set layer by layer,
// the layer's inputs computed with the rows of the layers below already set.
#ifndef MONOLITH_ROUTER_INIT_H
#define MONOLITH_ROUTER_INIT_H

#include "data/loader.h"
#include "engine/checkpoint.h"

#include <stdint.h>

typedef enum { ROUTER_INIT_BELOW, ROUTER_INIT_MEAN, ROUTER_INIT_FIT } router_init_mode;

typedef struct {
    router_init_mode mode;
    const loader_spec *data;  // the domains (train splits are sampled)
    int n_data;
    int batch, seq;           // windows per forward pass and their length (seq 0: min(max_seq_len, 256))
    int batches;              // forward passes per domain (0: 8 for fit, else 2)
    double margin;            // logit margin (0: 1.0)
    uint64_t seed;            // of the sampled windows
    int every_domain_old;     // below: every domain's tokens count as old ones, those of domains routed
                              // to a new row too (plugging new experts beside a MoE's: none takes a
                              // sampled token until the router is trained)
} router_init_opts;

#define ROUTER_INIT_MAX_OFF 64

typedef struct {
    int n_domains;
    char names[LOADER_MAX_DOMAINS][128];
    int is_new_domain[LOADER_MAX_DOMAINS];  // 1: routed to a new row
    // Share of each domain's sampled tokens whose top-k includes a new expert, averaged
    // over the MoE layers, measured with the rows just set.
    double new_share[LOADER_MAX_DOMAINS];
    // fit: the (layer, expert) pairs left out because the row did not separate there
    // (router_bias -1); n_off may exceed ROUTER_INIT_MAX_OFF, the lists hold the first ones.
    int n_off;
    int off_layer[ROUTER_INIT_MAX_OFF], off_expert[ROUTER_INIT_MAX_OFF];
} router_init_report;

// Sets row e of every MoE layer's router for each e with is_new[e] (n_experts entries),
// `ck_name` naming the checkpoint in messages. Returns 0, or -1 with a one-line message
// (no MoE layer, a new row without a domain in the data, below with no trained row, data
// with another tokenizer).
int router_init_rows(mo_checkpoint *ck, const char *ck_name, const unsigned char *is_new, const router_init_opts *o,
                     router_init_report *rep);

// Parses "below", "mean" or "fit". Returns 0, or -1 with a message naming `flag`.
int router_init_parse(const char *s, const char *flag, router_init_mode *mode);

#endif
