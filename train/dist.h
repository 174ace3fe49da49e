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
    size_t numel;               // the arena
    size_t *bounds;             // [size + 1] shard edges (shard mode; plain: 0, numel)
    size_t lo, hi;              // this rank's shard ([0, numel) when plain)
    const train_mask *mask;
    size_t r0, r1;              // the mask ranges in [lo, hi): mask->r[r0 .. r1)
    adamw_range *own;           // those ranges with offsets relative to lo
    double *partial;            // [mask->n] per-range sums of squares
    float *m, *v;               // AdamW moments of [lo, hi)
} dist_opt;

// Sets up for the communicator's ranks over `mask`'s trainable ranges of an arena of
// `numel` floats; allocates m and v for the own shard (zeros). Returns 0 or -1.
int dist_opt_init(dist_opt *d, size_t numel, const train_mask *mask, int shard);
void dist_opt_free(dist_opt *d);

// Floats of m (and of v) this rank keeps.
size_t dist_opt_moment_numel(const dist_opt *d);

// Sums the gradient arena over ranks (all of it, or the own shard when sharded).
int dist_sync_grads(dist_opt *d, float *grads);

// The global norm of the synchronized gradients; clips them to max_norm (0: no clip)
// where this rank updates. Returns the norm (NaN/Inf passes through), or -1 on a
// communication error with mo_error set (*err = 1).
double dist_clip(dist_opt *d, float *grads, double max_norm, int *err);

// AdamW on this rank's ranges, then (sharded) the all-gather of the parameters.
int dist_apply(dist_opt *d, float *params, const float *grads, const adamw_step *s);

// The moments as whole arenas on rank 0 (m_all, v_all: numel floats there, may be NULL
// elsewhere; plain mode copies). Called by every rank.
int dist_gather_moments(const dist_opt *d, float *m_all, float *v_all);
// Takes this rank's part of whole-arena moments (read from a checkpoint by every rank).
void dist_load_moments(dist_opt *d, const float *m_all, const float *v_all);

#endif
