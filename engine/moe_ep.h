// moe_ep.h: expert parallelism, the routed experts' rows moving to the rank that owns their
// expert and back (docs/design.md section 7.7, docs/distributed.md).
//
// Within a group of G ranks (engine/comm.h, comm_expert_groups), rank r of the group owns
// experts r*L .. r*L + L - 1 of every MoE layer, L = E / G. Each rank routes its own
// tokens as without expert parallelism (router.h, moe_dispatch_build), so its (token,
// slot) rows sit sorted by expert and the rows for owner q are one contiguous block,
// offs[q*L] .. offs[(q+1)*L]. Then
//
//   moe_ep_dispatch   row counts per (source, local expert) with one all-to-all of ints,
//                     then the rows with one all-to-all-v into the owner's receive layout:
//                     source-major, source s's rows of its local experts 0..L-1 in order;
//   (the owner runs the grouped FFN once per source block, moe_ep_block, so every GEMM has
//    the rows and the shape one process gives that micro-batch: the same numbers)
//   moe_ep_return     the outputs back along the same route, into the sorted order.
//
// Backward mirrors it: the rows' gradients go out with moe_ep_send (counts already known),
// the input gradients come back with moe_ep_return. Dropped slots (expert -1) have no
// sorted row and never travel. The exchanges are collective over the group: every rank
// calls them the same number of times in the same order (every MoE layer, every forward
// and backward, evaluation included).
#ifndef MONOLITH_MOE_EP_H
#define MONOLITH_MOE_EP_H

typedef struct {
    int size;   // G ranks in the expert group (1: no expert parallelism)
    int rank;   // this rank's place in it
    int local;  // experts per rank, E / G; this rank owns experts rank*local .. rank*local + local - 1
} mo_ep;

// The group of engine/comm.h for a model of E experts. Returns 0, or -1 with a message when
// E is not divisible by the group's size.
int moe_ep_setup(mo_ep *ep, int E);

// Sends each rank's sorted rows xs [offs[E], dm] to their experts' owners; xr receives this
// rank's rows in the receive layout and counts[G*L] the rows per (source, local expert).
// Returns 0, or -1 with a message (a communication error, or more than INT_MAX floats).
int moe_ep_dispatch(const mo_ep *ep, float *xr, int *counts, const float *xs, const int *offs, int dm);
// As moe_ep_dispatch with counts known (from the forward's dispatch): backward's row gradients.
int moe_ep_send(const mo_ep *ep, float *xr, const int *counts, const float *xs, const int *offs, int dm);
// The reverse: rows of yr (receive layout) back to their sources, into ys [offs[E], dm] (sorted).
int moe_ep_return(const mo_ep *ep, float *ys, const float *yr, const int *counts, const int *offs, int dm);

// Source s's block of the receive layout: returns its first row and fills o[L+1] with its
// local experts' row offsets relative to that row (o[0] = 0), the offs of a grouped FFN.
int moe_ep_block(const mo_ep *ep, const int *counts, int s, int *o);
// Rows received in all (the sum of counts).
int moe_ep_rows(const mo_ep *ep, const int *counts);

#endif
