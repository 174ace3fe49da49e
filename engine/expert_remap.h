// expert_remap.h: checkpoints with a different number of experts (expert add, remove,
// compose): a new checkpoint whose expert axis is re-indexed from another's, and the
// pieces that build one.
#ifndef MONOLITH_EXPERT_REMAP_H
#define MONOLITH_EXPERT_REMAP_H

#include "engine/checkpoint.h"

#include <stdint.h>

// A new checkpoint `dst` from `src` with E_new experts per MoE layer: expert j of dst is
// expert map[j] of src (weights, router row, /experts strings, and the optimizer state
// when sm/sv are given, into *dm/*dv newly allocated), or zeros named "expert<j>" when
// map[j] < 0. top_k is kept and must stay <= E_new. Everything else (other tensors,
// tokenizer) is copied. Returns 0, or -1 (top_k too large, no MoE layer, out of memory).
int expert_remap(const mo_checkpoint *src, const float *sm, const float *sv, const int *map, int E_new,
                 mo_checkpoint *dst, float **dm, float **dv);

// A checkpoint of config `c` (finalized) with all parameters zero, experts named
// "expert<e>" with provenance "{}" and no tokenizer. Returns 0, or -1 (out of memory).
int expert_ckpt_alloc(mo_checkpoint *ck, const mo_config *c);
// A deep copy of a tokenizer blob (`o` empty when `t` is absent). Returns 0 or -1.
int expert_tokenizer_copy(const mo_tokenizer_blob *t, mo_tokenizer_blob *o);

// Fills expert e of `ck` with the initialization of docs/design.md section 6 (normal std 0.02, w2 std
// 0.02/sqrt(2 n_layers), router row std 0.02) drawn from `seed`.
void expert_init_random(mo_checkpoint *ck, int e, uint64_t seed);

#endif
