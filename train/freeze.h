// freeze.h: which parameters a run trains (`--train MASK`), as a list of ranges of the
// parameter arena (docs/design.md sections 7.4 and 10.1: a freeze mask is a list of slices).
//
// MASK is a comma-separated list of items; the union of what they select is trained and
// everything else is frozen (no update, no change of its Adam m and v):
//
//   all          every parameter
//   attention    attn/wq, wk, wv, wo
//   norms        attn_norm, ffn_norm and the final norm
//   embeddings   tok_embeddings and output (the input and output embeddings)
//   router       moe/router of every MoE layer
//   shared       moe/shared_w1, w3, w2 (shared experts)
//   dense        ffn/w1, w3, w2 of the dense layers
//   experts      every routed expert (moe/w1, w3, w2) and its router row
//   experts=LIST routed experts LIST only, e.g. experts=3,5 or experts=0-2,7: expert e's
//                slice [e] of moe/w1, w3, w2 and row e of moe/router
//   router=LIST  rows LIST of moe/router alone (fitting a new expert's router row)
//
// Any item may end with @layers=LIST (e.g. experts=3@layers=0-3, attention@layers=5):
// only those layers; tok_embeddings, output and norm belong to no layer and are left
// out. Numbers in LIST are single indices or inclusive ranges a-b; a comma followed by a
// number continues the list before it, so "experts=3,5,router" is experts 3 and 5 plus
// the router.
#ifndef MONOLITH_FREEZE_H
#define MONOLITH_FREEZE_H

#include "engine/params.h"
#include "train/adamw.h"

#include <stddef.h>

// Ranges are split at every multiple of this arena offset, so that parallel loops over
// ranges balance and no range crosses a shard edge of the sharded optimizer.
#define FREEZE_CHUNK ((size_t)1 << 15)

typedef struct {
    adamw_range *r;     // sorted by offset, disjoint, each inside one tensor (decay = !is_norm)
    size_t n;           // and inside one FREEZE_CHUNK-aligned chunk of the arena
    size_t numel;       // trainable parameters in all
} train_mask;

// Parses MASK against the table. Returns 0, or -1 with a one-line message naming
// --train for an unknown word, a bad number, an expert or layer out of range, or a mask
// that selects nothing (e.g. router on a model without MoE layers).
int freeze_parse(const mo_param_table *pt, const char *spec, train_mask *out);
void train_mask_free(train_mask *m);

// 1 if arena element `i` is trainable under the mask (binary search), else 0.
int train_mask_has(const train_mask *m, size_t i);

// 1 if any element of [offset, offset + length) is trainable, else 0. Takes the mask as
// void * to serve as model_set_trainable's callback (engine/model.h).
int train_mask_any(void *mask, size_t offset, size_t length);

// Zeroes the mask's ranges of a gradient arena (and nothing else: a sparse arena's
// frozen pages stay untouched). Same zeros as a memset of the whole arena where it
// matters: only trained gradients are read.
void train_mask_zero(const train_mask *m, float *grads);

// True if the mask trains every parameter of the table (every tensor but the buffers,
// no_grad, which no mask holds).
int train_mask_is_all(const train_mask *m, const mo_param_table *pt);

#endif
