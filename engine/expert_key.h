// expert_key.h: the shape key, which decides what an expert module can go into
// (docs/design.md section 11.5): the same d_model, d_ff, n_layers, vocab_size, vocabulary
// (vocab_hash: FNV-1a 64 of the checkpoint's /tokenizer bytes, "" when it has none: then
// only vocab_size is compared) and MoE layer pattern. A mismatch is refused naming both
// files and the field.
#ifndef MONOLITH_EXPERT_KEY_H
#define MONOLITH_EXPERT_KEY_H

#include "engine/checkpoint.h"
#include "engine/expert_hash.h"

typedef struct {
    int d_model, d_ff, n_layers, vocab_size;
    int moe_layers[MO_MAX_LAYERS];  // 1 where the expert has a slice (the model's MoE layers)
    char vocab_hash[MO_HASH_HEX];   // "" when the checkpoint carried no tokenizer
} mo_shape_key;

// 1 when the checkpoint's model has no MoE layer: its one "expert" is the dense FFNs.
int expert_dense_model(const mo_config *c);
// The shape key of a checkpoint (its MoE layers; for a model without MoE layers, its
// dense layers with d_ff = d_ff_dense, the key of its FFN taken as one expert).
void expert_key_of(const mo_checkpoint *ck, mo_shape_key *k);
// Compares two keys. Returns 0, or -1 with "A and B disagree on FIELD: x in A, y in B"
// and what fits what, `a_name`/`b_name` naming the files.
int expert_key_check(const mo_shape_key *a, const char *a_name, const mo_shape_key *b, const char *b_name);

#endif
