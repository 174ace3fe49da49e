// moe_ep.c: the expert-parallel row exchange (engine/moe_ep.h); the MPI calls are in engine/comm.c.
#include "engine/moe_ep.h"

#include "engine/base/error.h"
#include "engine/comm.h"

#include <limits.h>

int moe_ep_setup(mo_ep *ep, int E) {
    ep->size = comm_group_size(), ep->rank = comm_group_rank();
    if (E % ep->size)
        return mo_errorf("--expert-parallel %d: the model's %d experts per MoE layer do not split evenly over %d "
                         "ranks; use a group size that divides %d",
                         ep->size, E, ep->size, E);
    ep->local = E / ep->size;
    return 0;
}

int moe_ep_rows(const mo_ep *ep, const int *counts) {
    int n = 0;
    for (int i = 0; i < ep->size * ep->local; i++) n += counts[i];
    return n;
}

int moe_ep_block(const mo_ep *ep, const int *counts, int s, int *o) {
    int first = 0;
    for (int i = 0; i < s * ep->local; i++) first += counts[i];
    o[0] = 0;
    for (int e = 0; e < ep->local; e++) o[e + 1] = o[e] + counts[s * ep->local + e];
    return first;
}

// The all-to-all-v between the sorted layout (rows for owner q at offs[q*L] ..) and the
// receive layout (source s's rows at moe_ep_block(s)), in either direction.
static int exchange(const mo_ep *ep, float *to, const float *from, const int *counts, const int *offs, int dm,
                    int to_owner) {
    const int G = ep->size, L = ep->local;
    int sorted_n[G], sorted_off[G], block_n[G], block_off[G];
    long long at = 0;
    for (int r = 0; r < G; r++) {
        long long rows = 0;
        for (int e = 0; e < L; e++) rows += counts[r * L + e];
        long long a = (long long)offs[r * L] * dm, b = (long long)offs[(r + 1) * L] * dm;
        if (b > INT_MAX || (at + rows) * dm > INT_MAX)
            return mo_errorf("expert parallel: more than %d floats in one all-to-all; lower --batch", INT_MAX);
        sorted_off[r] = (int)a, sorted_n[r] = (int)(b - a);
        block_off[r] = (int)(at * dm), block_n[r] = (int)(rows * dm);
        at += rows;
    }
    return to_owner ? comm_alltoallv_f32(from, sorted_n, sorted_off, to, block_n, block_off)
                    : comm_alltoallv_f32(from, block_n, block_off, to, sorted_n, sorted_off);
}

int moe_ep_dispatch(const mo_ep *ep, float *xr, int *counts, const float *xs, const int *offs, int dm) {
    const int G = ep->size, L = ep->local;
    int mine[G * L];
    for (int e = 0; e < G * L; e++) mine[e] = offs[e + 1] - offs[e];  // rows for expert e, grouped by owner
    if (comm_alltoall_int(mine, counts, L)) return -1;
    return moe_ep_send(ep, xr, counts, xs, offs, dm);
}

int moe_ep_send(const mo_ep *ep, float *xr, const int *counts, const float *xs, const int *offs, int dm) {
    return exchange(ep, xr, xs, counts, offs, dm, 1);
}

int moe_ep_return(const mo_ep *ep, float *ys, const float *yr, const int *counts, const int *offs, int dm) {
    return exchange(ep, ys, yr, counts, offs, dm, 0);
}
