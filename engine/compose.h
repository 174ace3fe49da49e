// compose.h: building a MoE checkpoint out of parts (`monolith compose`, `monolith
// upcycle`, and the mix stage of the BTX pipeline).
//
// compose: everything but the routed experts (embeddings, attention, norms, output, the
// FFN of layers that stay dense, shared experts) comes from one base checkpoint, or is the
// element-wise mean of several bases of identical shapes; expert j of every MoE layer is
// module j, with the module's router rows or fresh ones. The output's MoE layers, d_ff and
// n_experts are the modules'; the rest of the config is the base's. Expert j's /experts
// name and domain are module j's; its provenance is {"module": FILE, "parent_hash",
// "seed_hash", "data_hash", "steps_trained", "provenance": the module's own}.
//
// upcycle (sparse upcycling): a model without MoE layers becomes a MoE whose E experts
// are all copies of each layer's FFN (plus optional noise) with a fresh router. With no
// noise and norm_topk = 1 the gates of a token sum to 1 over identical experts, so the
// MoE computes the dense model's function (up to float rounding).
#ifndef MONOLITH_COMPOSE_H
#define MONOLITH_COMPOSE_H

#include "engine/checkpoint.h"
#include "engine/expert_module.h"

#include <stdint.h>

typedef struct {
    int fresh_router;  // 1: router rows drawn fresh (normal std 0.02) even for modules that carry rows
    int top_k;         // 0: the base's top_k when it is a MoE with top_k <= n_modules, else min(2, n_modules)
    uint64_t seed;     // for fresh router rows (and modules without rows)
    int any_seed;      // 1: skip the seed_hash check (modules trained in other trunks, e.g. BTX's averaging)
} compose_opts;

// Composes bases[0..n_bases) (names for messages) and modules[0..n_mod) into `out`.
// Refuses, naming both files and the field: bases of different shapes or tokenizers, a
// module whose seed_hash matches the trunk of no base (unless o->any_seed),
// modules with different shape keys, a module whose d_model, n_layers, vocab_size or
// vocabulary differs from the base's, a layer the modules leave dense that is MoE in the
// base, and shared experts in the base that a MoE layer of the output would lack.
// Returns 0 or -1.
int compose_checkpoint(const mo_checkpoint *bases, const char *const *base_names, int n_bases,
                       const mo_expert *modules, const char *const *module_names, int n_mod, const compose_opts *o,
                       mo_checkpoint *out);

// Upcycles `dense` (no MoE layer; `name` for messages) into a MoE of n_experts experts
// and top_k. noise > 0 adds to each expert weight a normal draw of std noise x the RMS of
// the dense tensor it copies. Returns 0, or -1 (the model has MoE layers, bad E or k).
int upcycle_checkpoint(const mo_checkpoint *dense, const char *name, int n_experts, int top_k, double noise,
                       uint64_t seed, mo_checkpoint *out);

#endif
