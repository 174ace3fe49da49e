// dist.c: the data-parallel optimizer step, plain or sharded (train/dist.h).
#include "train/dist.h"

#include "engine/base/error.h"
#include "engine/comm.h"
#include "train/clip.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int dist_opt_init(dist_opt *d, size_t numel, const train_mask *mask, int shard) {
    memset(d, 0, sizeof *d);
    d->rank = comm_rank(), d->size = comm_size(), d->numel = numel, d->mask = mask;
    d->shard = shard && d->size > 1;
    d->bounds = calloc((size_t)d->size + 1, sizeof *d->bounds);
    d->partial = calloc(mask->n + 1, sizeof *d->partial);
    if (!d->bounds || !d->partial) return mo_errorf("out of memory");
    if (d->shard) {
        // Equal shares of the arena, each edge rounded to a FREEZE_CHUNK multiple.
        size_t chunks = (numel + FREEZE_CHUNK - 1) / FREEZE_CHUNK;
        for (int r = 1; r < d->size; r++) {
            size_t e = chunks * (size_t)r / (size_t)d->size * FREEZE_CHUNK;
            d->bounds[r] = e < numel ? e : numel;
        }
    } else {
        for (int r = 1; r < d->size; r++) d->bounds[r] = numel;
        d->bounds[1] = numel;
    }
    d->bounds[d->size] = numel;
    d->lo = d->shard ? d->bounds[d->rank] : 0;
    d->hi = d->shard ? d->bounds[d->rank + 1] : numel;
    d->r0 = 0;
    while (d->r0 < mask->n && mask->r[d->r0].offset < d->lo) d->r0++;
    d->r1 = d->r0;
    while (d->r1 < mask->n && mask->r[d->r1].offset < d->hi) d->r1++;
    d->own = malloc((d->r1 - d->r0 + 1) * sizeof *d->own);
    size_t n = d->hi - d->lo;
    d->m = calloc(n ? n : 1, sizeof *d->m);
    d->v = calloc(n ? n : 1, sizeof *d->v);
    if (!d->own || !d->m || !d->v) return mo_errorf("out of memory for %zu MB of optimizer state", 2 * n * 4 >> 20);
    for (size_t i = d->r0; i < d->r1; i++) {
        d->own[i - d->r0] = mask->r[i];
        d->own[i - d->r0].offset -= d->lo;
    }
    return 0;
}

void dist_opt_free(dist_opt *d) {
    free(d->bounds), free(d->partial), free(d->own), free(d->m), free(d->v);
    memset(d, 0, sizeof *d);
}

size_t dist_opt_moment_numel(const dist_opt *d) { return d->hi - d->lo; }

int dist_sync_grads(dist_opt *d, float *grads) {
    if (d->size == 1) return 0;
    return d->shard ? comm_reduce_scatter_f32(grads, d->bounds) : comm_allreduce_f32(grads, d->numel);
}

double dist_clip(dist_opt *d, float *grads, double max_norm, int *err) {
    *err = 0;
    const train_mask *k = d->mask;
    if (!d->shard) return grad_clip(grads, k->r, k->n, max_norm, d->partial);
    // Own ranges' partials, zeros elsewhere; the all-reduce adds only zeros to each.
    memset(d->partial, 0, k->n * sizeof *d->partial);
    grad_global_norm(grads, k->r + d->r0, d->r1 - d->r0, d->partial + d->r0);
    if (comm_allreduce_f64(d->partial, k->n)) {
        *err = 1;
        return -1;
    }
    double total = 0;
    for (size_t r = 0; r < k->n; r++) total += d->partial[r];
    double norm = sqrt(total);
    grad_scale(grads, k->r + d->r0, d->r1 - d->r0, grad_clip_factor(norm, max_norm));
    return norm;
}

int dist_apply(dist_opt *d, float *params, const float *grads, const adamw_step *s) {
    adamw_apply(params + d->lo, grads + d->lo, d->m, d->v, d->own, d->r1 - d->r0, s);
    return d->shard ? comm_allgather_f32(params, d->bounds) : 0;
}

int dist_gather_moments(const dist_opt *d, float *m_all, float *v_all) {
    if (!d->shard) {
        if (d->rank == 0) {
            memcpy(m_all, d->m, d->numel * sizeof *m_all);
            memcpy(v_all, d->v, d->numel * sizeof *v_all);
        }
        return 0;
    }
    return comm_gather_f32(d->m, m_all, d->bounds, 0) || comm_gather_f32(d->v, v_all, d->bounds, 0) ? -1 : 0;
}

void dist_load_moments(dist_opt *d, const float *m_all, const float *v_all) {
    memcpy(d->m, m_all + d->lo, (d->hi - d->lo) * sizeof *d->m);
    memcpy(d->v, v_all + d->lo, (d->hi - d->lo) * sizeof *d->v);
}
