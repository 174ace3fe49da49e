// expert_module.h: one expert in memory, taken out of a checkpoint's slot or put into one
// (docs/design.md section 11.5). Its file is engine/expert_file.h, what it fits
// engine/expert_key.h, its fingerprints engine/expert_hash.h, and re-indexing a
// checkpoint's expert axis (add, remove) engine/expert_remap.h.
//
// In memory a module is one float array, layer after layer, each layer w1, w3, w2, the
// router row and the router bias entry back to back (layer_numel = 3 d_ff d + d + 1
// floats), with m and v in the same layout (the bias has no optimizer state: zeros).
#ifndef MONOLITH_EXPERT_MODULE_H
#define MONOLITH_EXPERT_MODULE_H

#include "engine/checkpoint.h"
#include "engine/expert_hash.h"
#include "engine/expert_key.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    mo_shape_key key;
    int n_moe;                 // layers with a slice
    int layer[MO_MAX_LAYERS];  // their model layer indices, ascending
    size_t layer_numel;        // 3 d_ff d + d + 1
    float *w;                  // [n_moe * layer_numel]
    float *m, *v;              // same layout, or NULL: no optimizer state
    int has_router;            // 0: the router rows are placeholders (an FFN of a dense model)
    char *name, *domain, *provenance;
    char data_hash[MO_HASH_HEX];    // of the data that trained it ("" if unknown)
    char parent_hash[MO_HASH_HEX];  // of the parameters of the checkpoint it came from
    char seed_hash[MO_HASH_HEX];    // trunk hash (expert_trunk_hash) of that checkpoint: the trunk it
                                    // was trained in ("" if unknown)
    int64_t steps_trained;
} mo_expert;

// Pointers to layer i's (i-th MoE layer of the module) pieces inside an array of the
// module layout (w, m or v).
static inline float *expert_w1(const mo_expert *x, float *a, int i) { return a + (size_t)i * x->layer_numel; }
static inline float *expert_w3(const mo_expert *x, float *a, int i) {
    return expert_w1(x, a, i) + (size_t)x->key.d_ff * x->key.d_model;
}
static inline float *expert_w2(const mo_expert *x, float *a, int i) {
    return expert_w1(x, a, i) + 2 * (size_t)x->key.d_ff * x->key.d_model;
}
static inline float *expert_router(const mo_expert *x, float *a, int i) {
    return expert_w1(x, a, i) + 3 * (size_t)x->key.d_ff * x->key.d_model;
}
static inline float *expert_router_bias(const mo_expert *x, float *a, int i) {
    return expert_router(x, a, i) + x->key.d_model;
}

// The pieces of one expert in one layer, in layout order: w1, w3, w2, the router row, the
// router bias entry.
#define MO_EXPERT_PIECES 5
// Floats of piece k.
static inline size_t expert_piece_numel(const mo_shape_key *key, int k) {
    return k < 3 ? (size_t)key->d_ff * key->d_model : k == 3 ? (size_t)key->d_model : 1;
}
// Piece k of layer i inside a (w, m or v).
static inline float *expert_piece(const mo_expert *x, float *a, int i, int k) {
    float *p = expert_w1(x, a, i);
    for (int j = 0; j < k; j++) p += expert_piece_numel(&x->key, j);
    return p;
}

// Sizes x from x->key (n_moe, layer, layer_numel) and allocates w zeroed, and m and v
// when `optim`. Returns 0, or -1 (no MoE layer in the key, out of memory).
int expert_alloc(mo_expert *x, int optim);
void expert_free(mo_expert *x);

// Copies expert e of `ck` (and its slices of m and v when both are given) into a new
// module, with the expert's /experts strings. For a model with no MoE layers, e must be 0
// and the module is every dense layer's FFN (has_router = 0, router rows zero).
// data_hash and steps_trained are the caller's (it knows the run). Returns 0, or -1
// naming the expert when it is out of range.
int expert_extract(const mo_checkpoint *ck, const float *m, const float *v, int e, mo_expert *out);

// Overwrites slot e of `ck` with module x: weights, router rows (unless x has none: then
// the slot's router rows are kept), /experts strings, and when `m` and `v` are given the
// slot's optimizer state (x's, or zeros when x carries none). The shape keys must match
// (expert_key_check, naming ck_name and x_name). Returns 0 or -1.
int expert_insert(mo_checkpoint *ck, float *m, float *v, int e, const mo_expert *x, const char *ck_name,
                  const char *x_name);

// Refuses module x in checkpoint(s) whose trunk differs from the one it was trained in:
// its seed_hash must be "" or equal the trunk hash of one of bases[0..n). Returns 0, or -1
// with "MOD and BASE disagree on seed_hash: ...".
int expert_seed_check(const mo_expert *x, const char *x_name, const mo_checkpoint *bases, const char *const *base_names,
                      int n);

// Steps carried in a provenance string: its top-level "steps_trained" when it is a JSON
// object that has one, else 0.
int64_t expert_provenance_steps(const char *prov);
// The provenance with "steps_trained" set to `steps` (a JSON object keeps its other
// members; other text becomes {"steps_trained": N, "provenance": "TEXT"}). malloc'd, or
// NULL (out of memory).
char *expert_provenance_with_steps(const char *prov, int64_t steps);

#endif
