// dist.h: the optimizer step of data-parallel training (engine/comm.h underneath), with
// or without the sharded optimizer (ZeRO stage 1, `--shard-optimizer`).
//
// Every rank has the whole parameter and gradient arenas. After the micro-batches of a
// step each rank's gradient arena holds its share of the global batch's mean gradient
// (backward with loss_scale 1 / (ranks x grad_accum)); then
//
//   plain:  all-reduce the arena in place (buckets of COMM_BUCKET floats), global norm,
//           clip, AdamW over every trainable range: every rank does the same update on the
//           same numbers, so the parameters stay identical;
//   shard:  reduce-scatter the arena in place (rank r keeps the summed gradient of its
//           shard), norm from per-range partials (each range lies in one shard: an
//           all-reduce of partials that are 0 off the owner is exact), clip and AdamW on
//           the own shard with m and v of that shard only, all-gather the parameters.
//
// Expert parallel (`--expert-parallel G`, engine/moe_ep.h): the mask's ranges are split
// at every expert slice's edges and each range has an owner: -1 (replicated: every rank
// trains it) or the place in the group of the rank whose experts it holds. Then
//
//   ep:     all-reduce the replicated ranges over all ranks and each owned expert range
//           over the rank's peers (the same place in the other groups; nothing when the
//           world is one group); global norm from per-range partials that are 0 except on
//           the owner (replicated ranges: the group's rank 0), summed over the group; AdamW
//           on the rank's own ranges. A rank's gradient and m, v arenas are touched only
//           there (the expert slices of other ranks never take memory).
//
// Shards are contiguous, FREEZE_CHUNK-aligned slices of the arena of about numel / N
// each. The global norm is the sum, in range order, of the per-range sums of squares in
// double, the same numbers in both modes and on any number of ranks, so `--shard-optimizer`
// makes exactly the update plain data parallel makes (the per-element sums of the
// gradient over ranks are the only reduction MPI does; for 2 ranks a + b is exact to
// order).
#ifndef MONOLITH_DIST_H
#define MONOLITH_DIST_H

#include "train/adamw.h"
#include "train/freeze.h"

#include <stddef.h>

typedef struct {
    int rank, size, shard;      // shard: --shard-optimizer
    int ep, ep_rank, ep_local;  // expert parallel: group size (1: off), place in the group, experts per rank
    train_mask split;           // ep: the mask split at expert slice edges (owned); mask points here
    int *owner;                 // ep: [split.n] the group place owning each range, -1 replicated
    size_t numel;               // the arena
    size_t *bounds;             // [size + 1] shard edges (shard mode; plain: 0, numel)
    size_t lo, hi;              // this rank's shard ([0, numel) when plain)
    const train_mask *mask;
    size_t r0, r1;              // the mask ranges in [lo, hi): mask->r[r0 .. r1)
    adamw_range *own;           // those ranges (ep: of them, this rank's) with offsets relative to lo
    size_t n_own;
    double *partial;            // [mask->n] per-range sums of squares
    float *m, *v;               // AdamW moments of [lo, hi)
} dist_opt;

// Sets up for the communicator's ranks over `mask`'s trainable ranges of pt's arena;
// allocates m and v for the own shard (zeros). ep: the expert group's size (engine/comm.h
// comm_expert_groups; 1: off; not with shard). Returns 0 or -1.
int dist_opt_init(dist_opt *d, const mo_param_table *pt, const train_mask *mask, int shard, int ep);
void dist_opt_free(dist_opt *d);

// Floats of m (and of v) this rank keeps.
size_t dist_opt_moment_numel(const dist_opt *d);

// Sums the gradient arena over ranks (all of it, or the own shard when sharded).
int dist_sync_grads(dist_opt *d, float *grads);

// The global norm of the synchronized gradients and, in *scale, the factor that clips
// them to max_norm (0: no clip; grad_clip_factor), which AdamW applies in its own pass
// (adamw_step.grad_scale): the gradients are not rewritten. Returns the norm (NaN/Inf
// passes through), or -1 on a communication error with mo_error set (*err = 1).
double dist_clip(dist_opt *d, const float *grads, double max_norm, float *scale, int *err);

// AdamW on this rank's ranges, then (sharded) the all-gather of the parameters. `wb`
// (one rank only, else NULL): the model's bf16 copy of the weights, which AdamW's pass
// then writes too (adamw_apply_bf16; model_bf16_weights in engine/model.h).
int dist_apply(dist_opt *d, float *params, const float *grads, mo_bf16 *wb, const adamw_step *s);

// Zeroes the gradients this rank writes (its ranges of the mask; train_mask_zero).
void dist_zero_grads(const dist_opt *d, float *grads);

// Expert parallel: brings the trained expert slices of the first group's other ranks to
// rank 0, into its own whole arenas (e.g. the parameters, m and v for a checkpoint: then
// rank 0 holds the whole state, and no other rank more than its own experts). Called by
// every rank (a no-op without expert parallelism).
int dist_gather_experts(const dist_opt *d, float *const *arenas, int n);

// The moments as whole arenas on rank 0 (m_all, v_all: numel floats there, may be NULL
// elsewhere; plain mode copies). Called by every rank.
int dist_gather_moments(const dist_opt *d, float *m_all, float *v_all);
// Takes this rank's part of whole-arena moments (read from a checkpoint by every rank).
void dist_load_moments(dist_opt *d, const float *m_all, const float *v_all);

#endif
