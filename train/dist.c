// dist.c: the data-parallel optimizer step, plain or sharded (train/dist.h).
#include "train/dist.h"

#include "engine/base/error.h"
#include "engine/base/huge.h"
#include "engine/comm.h"
#include "train/clip.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// Which place of the expert group owns arena offset `at`: -1 outside expert slices.
static int owner_of(const mo_param_table *pt, size_t at, int local, size_t *slice_end) {
    for (int i = 0; i < pt->n; i++) {
        const mo_tensor *t = &pt->t[i];
        if (at < t->offset || at >= t->offset + t->numel) continue;
        if (!t->n_experts) return *slice_end = t->offset + t->numel, -1;
        size_t e = (at - t->offset) / t->expert_numel;
        *slice_end = t->offset + (e + 1) * t->expert_numel;
        return (int)(e / (size_t)local);
    }
    return *slice_end = at + 1, -1;
}

// The mask's ranges cut at expert slice edges, with their owners.
static int split_at_experts(dist_opt *d, const mo_param_table *pt, const train_mask *mask) {
    const int local = pt->cfg.n_experts / d->ep;
    size_t cap = mask->n + 16, n = 0;
    d->split.r = malloc(cap * sizeof *d->split.r);
    d->owner = malloc(cap * sizeof *d->owner);
    if (!d->split.r || !d->owner) return mo_errorf("out of memory");
    for (size_t i = 0; i < mask->n; i++)
        for (size_t at = mask->r[i].offset, end = at + mask->r[i].length; at < end;) {
            size_t slice_end, stop;
            int who = owner_of(pt, at, local, &slice_end);
            stop = slice_end < end ? slice_end : end;
            if (n == cap) {
                cap *= 2;
                adamw_range *r = realloc(d->split.r, cap * sizeof *r);
                int *o = r ? realloc(d->owner, cap * sizeof *o) : NULL;
                if (r) d->split.r = r;
                if (!r || !o) return mo_errorf("out of memory");
                d->owner = o;
            }
            d->split.r[n] = (adamw_range){at, stop - at, mask->r[i].decay};
            d->owner[n++] = who;
            at = stop;
        }
    d->split.n = n, d->split.numel = mask->numel;
    return 0;
}

static int mine(const dist_opt *d, size_t i) { return d->owner[i] < 0 || d->owner[i] == d->ep_rank; }

int dist_opt_init(dist_opt *d, const mo_param_table *pt, const train_mask *mask, int shard, int ep) {
    memset(d, 0, sizeof *d);
    const size_t numel = pt->numel;
    d->rank = comm_rank(), d->size = comm_size(), d->numel = numel, d->mask = mask;
    d->shard = shard && d->size > 1;
    d->ep = ep > 1 ? ep : 1, d->ep_rank = comm_group_rank();
    if (d->ep > 1) {
        if (d->shard) return mo_errorf("--shard-optimizer and --expert-parallel cannot be combined yet");
        d->ep_local = pt->cfg.n_experts / d->ep;
        if (split_at_experts(d, pt, mask)) return -1;
        d->mask = mask = &d->split;
    }
    d->bounds = calloc((size_t)d->size + 1, sizeof *d->bounds);
    d->partial = calloc(mask->n + 1, sizeof *d->partial);  // mask: the split one under ep
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
    // Streamed by every AdamW step: huge pages from their first write (still only where
    // something trains: calloc's pages stay unwritten elsewhere).
    mo_advise_huge(d->m, n * sizeof *d->m, 0), mo_advise_huge(d->v, n * sizeof *d->v, 0);
    size_t n_own = 0;
    for (size_t i = d->r0; i < d->r1; i++) {
        if (d->ep > 1 && !mine(d, i)) continue;
        d->own[n_own] = mask->r[i];
        d->own[n_own++].offset -= d->lo;
    }
    d->n_own = n_own;
    return 0;
}

void dist_opt_free(dist_opt *d) {
    free(d->bounds), free(d->partial), free(d->own), free(d->m), free(d->v), free(d->owner);
    if (d->ep > 1) train_mask_free(&d->split);
    memset(d, 0, sizeof *d);
}

size_t dist_opt_moment_numel(const dist_opt *d) { return d->hi - d->lo; }

void dist_zero_grads(const dist_opt *d, float *grads) {
    if (d->ep <= 1) {
        train_mask_zero(d->mask, grads);
        return;
    }
    for (size_t i = 0; i < d->n_own; i++)
        memset(grads + d->lo + d->own[i].offset, 0, d->own[i].length * sizeof *grads);
}

// Expert parallel: replicated runs over all ranks, this rank's expert runs over its peers
// (consecutive ranges of one kind go in one call).
static int sync_ep(dist_opt *d, float *grads) {
    const adamw_range *r = d->split.r;
    for (size_t i = 0, j; i < d->split.n; i = j) {
        size_t end = r[i].offset + r[i].length;
        for (j = i + 1; j < d->split.n && r[j].offset == end && (d->owner[j] < 0) == (d->owner[i] < 0) &&
                        (d->owner[i] < 0 || mine(d, j) == mine(d, i));
             j++)
            end += r[j].length;
        int rc = d->owner[i] < 0      ? comm_allreduce_f32(grads + r[i].offset, end - r[i].offset)
                 : mine(d, i)         ? comm_allreduce_f32_peers(grads + r[i].offset, end - r[i].offset)
                                      : 0;
        if (rc) return -1;
    }
    return 0;
}

int dist_sync_grads(dist_opt *d, float *grads) {
    if (d->ep > 1) return sync_ep(d, grads);
    if (d->size == 1) return 0;
    return d->shard ? comm_reduce_scatter_f32(grads, d->bounds) : comm_allreduce_f32(grads, d->numel);
}

double dist_clip(dist_opt *d, const float *grads, double max_norm, float *scale, int *err) {
    *err = 0, *scale = 1.0f;
    const train_mask *k = d->mask;
    if (!d->shard && d->ep <= 1) {
        double norm = grad_global_norm(grads, k->r, k->n, d->partial);
        *scale = grad_clip_factor(norm, max_norm);
        return norm;
    }
    if (d->ep > 1) {
        // Each range's sum of squares once in the group: on its owner, replicated ones on place 0.
        grad_global_norm(grads, k->r, k->n, d->partial);
        for (size_t i = 0; i < k->n; i++)
            if (d->owner[i] < 0 ? d->ep_rank != 0 : !mine(d, i)) d->partial[i] = 0;
    } else {
        // Own ranges' partials, zeros elsewhere; the all-reduce adds only zeros to each.
        memset(d->partial, 0, k->n * sizeof *d->partial);
        grad_global_norm(grads, k->r + d->r0, d->r1 - d->r0, d->partial + d->r0);
    }
    if (d->ep > 1 ? comm_allreduce_f64_group(d->partial, k->n) : comm_allreduce_f64(d->partial, k->n)) {
        *err = 1;
        return -1;
    }
    double total = 0;
    for (size_t r = 0; r < k->n; r++) total += d->partial[r];
    double norm = sqrt(total);
    *scale = grad_clip_factor(norm, max_norm);
    return norm;
}

int dist_apply(dist_opt *d, float *params, const float *grads, mo_bf16 *wb, const adamw_step *s) {
    if (wb && d->size > 1) return mo_errorf("internal: AdamW's bf16 copy of the weights with %d ranks", d->size);
    adamw_apply_bf16(params + d->lo, grads + d->lo, d->m, d->v, wb, d->own, d->n_own, s);
    return d->shard ? comm_allgather_f32(params, d->bounds) : 0;
}

int dist_gather_experts(const dist_opt *d, float *const *arenas, int n) {
    if (d->ep <= 1 || d->rank >= d->ep) return 0;  // only the first group's places 1.. send to rank 0
    for (size_t i = 0; i < d->split.n; i++) {
        const adamw_range *r = &d->split.r[i];
        int q = d->owner[i];
        if (q <= 0 || (d->rank != 0 && d->rank != q)) continue;
        for (int a = 0; a < n; a++) {
            float *x = arenas[a] + r->offset;
            if (d->rank == 0 ? comm_recv_f32(x, r->length, q) : comm_send_f32(x, r->length, 0)) return -1;
        }
    }
    return 0;
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
    if (d->ep > 1) {  // only the own ranges: the others' slices never take memory here
        for (size_t i = 0; i < d->n_own; i++) {
            const adamw_range *r = &d->own[i];
            memcpy(d->m + r->offset, m_all + r->offset, r->length * sizeof *d->m);
            memcpy(d->v + r->offset, v_all + r->offset, r->length * sizeof *d->v);
        }
        return;
    }
    memcpy(d->m, m_all + d->lo, (d->hi - d->lo) * sizeof *d->m);
    memcpy(d->v, v_all + d->lo, (d->hi - d->lo) * sizeof *d->v);
}
