// expert_hash.h: the fingerprints that say where an expert module comes from and what it
// fits (docs/design.md section 11.5): FNV-1a 64 over bytes, written as 16 hex digits.
// They are stored in module and checkpoint files, so their bytes must never change (the
// word-wise engine/base/hash.h is a different, faster hash for run-time checks only).
#ifndef MONOLITH_EXPERT_HASH_H
#define MONOLITH_EXPERT_HASH_H

#include "engine/checkpoint.h"

#define MO_HASH_HEX 17

// FNV-1a 64 (hex) of the checkpoint's parameter arena and of its tokenizer ("" when none).
void expert_params_hash(const mo_checkpoint *ck, char out[MO_HASH_HEX]);
void expert_vocab_hash(const mo_tokenizer_blob *t, char out[MO_HASH_HEX]);
// The trunk hash: FNV-1a 64 over the name and values of every tensor that is not an FFN
// or router (embeddings, attention, norms, shared experts, output), in table order. A
// dense seed and the MoE made from it by plugging its FFN modules share it; training only
// experts or the router keeps it.
void expert_trunk_hash(const mo_checkpoint *ck, char out[MO_HASH_HEX]);
// FNV-1a 64 (hex) over the bytes of files paths[0..n) in order (a file that cannot be
// read counts by its path); "" when n is 0.
void expert_files_hash(const char *const *paths, int n, char out[MO_HASH_HEX]);

#endif
