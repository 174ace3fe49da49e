// expert_module.h: one expert as a file of its own (docs/design.md section 11.5, format
// "monolith-expert"), and the slot operations on a checkpoint that move experts in and out:
// extract, insert, and re-indexing the expert axis (add, remove).
//
// File layout (h5py reads it as is):
//   /                          attrs: format = "monolith-expert", format_version = 1, created_by,
//                                     name, domain, provenance (the checkpoint's /experts strings,
//                                     verbatim), data_hash, parent_hash, seed_hash (optional: ""
//                                     when absent), steps_trained, has_router,
//                                     and the shape key: d_model, d_ff, n_layers, vocab_size,
//                                     vocab_hash, moe_layers (int64 [n_layers], 1 where the
//                                     module has a slice)
//   /layers/L/w1, w3           [d_ff, d]   L = the model's layer index, every MoE layer
//   /layers/L/w2               [d, d_ff]
//   /layers/L/router_row       [d]         (zeros when has_router = 0: extracted from a dense FFN)
//   /optim/m/layers/L/...      the same four per layer: the expert's slices of Adam's m and v,
//   /optim/v/layers/L/...      present when it was extracted from a training checkpoint
//
// The shape key decides what a module can go into: the same d_model, d_ff, n_layers,
// vocab_size, vocabulary (vocab_hash: FNV-1a 64 of the checkpoint's /tokenizer bytes, ""
// when it has none: then only vocab_size is compared) and MoE layer pattern. A mismatch is
// refused naming both files and the field.
//
// In memory a module is one float array, layer after layer, each layer w1, w3, w2 and the
// router row back to back (layer_numel = 3 d_ff d + d floats), with m and v in the same
// layout.
#ifndef MONOLITH_EXPERT_MODULE_H
#define MONOLITH_EXPERT_MODULE_H

#include "engine/checkpoint.h"

#include <stddef.h>
#include <stdint.h>

#define MO_EXPERT_FORMAT "monolith-expert"
#define MO_EXPERT_VERSION 1
#define MO_HASH_HEX 17

typedef struct {
    int d_model, d_ff, n_layers, vocab_size;
    int moe_layers[MO_MAX_LAYERS];  // 1 where the expert has a slice (the model's MoE layers)
    char vocab_hash[MO_HASH_HEX];   // "" when the checkpoint carried no tokenizer
} mo_shape_key;

typedef struct {
    mo_shape_key key;
    int n_moe;                 // layers with a slice
    int layer[MO_MAX_LAYERS];  // their model layer indices, ascending
    size_t layer_numel;        // 3 d_ff d + d
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

void expert_free(mo_expert *x);

// The shape key of a checkpoint (its MoE layers; for a model without MoE layers, its
// dense layers with d_ff = d_ff_dense, the key of its FFN taken as one expert).
void expert_key_of(const mo_checkpoint *ck, mo_shape_key *k);
// Compares two keys. Returns 0, or -1 with "A and B disagree on FIELD: x in A, y in B"
// and what fits what, `a_name`/`b_name` naming the files.
int expert_key_check(const mo_shape_key *a, const char *a_name, const mo_shape_key *b, const char *b_name);

// FNV-1a 64 (hex) of the checkpoint's parameter arena and of its tokenizer ("" when none).
void expert_params_hash(const mo_checkpoint *ck, char out[MO_HASH_HEX]);
void expert_vocab_hash(const mo_tokenizer_blob *t, char out[MO_HASH_HEX]);
// The trunk hash: FNV-1a 64 over the name and values of every tensor that is not an FFN
// or router (embeddings, attention, norms, shared experts, output), in table order. A
// dense seed and the MoE made from it by plugging its FFN modules share it; training only
// experts or the router keeps it.
void expert_trunk_hash(const mo_checkpoint *ck, char out[MO_HASH_HEX]);
// Refuses module x in checkpoint(s) whose trunk differs from the one it was trained in:
// its seed_hash must be "" or equal the trunk hash of one of bases[0..n). Returns 0, or -1
// with "MOD and BASE disagree on seed_hash: ...".
int expert_seed_check(const mo_expert *x, const char *x_name, const mo_checkpoint *bases, const char *const *base_names,
                      int n);
// FNV-1a 64 (hex) over the bytes of files paths[0..n) in order (a file that cannot be
// read counts by its path); "" when n is 0.
void expert_files_hash(const char *const *paths, int n, char out[MO_HASH_HEX]);

// Steps carried in a provenance string: its top-level "steps_trained" when it is a JSON
// object that has one, else 0.
int64_t expert_provenance_steps(const char *prov);
// The provenance with "steps_trained" set to `steps` (a JSON object keeps its other
// members; other text becomes {"steps_trained": N, "provenance": "TEXT"}). malloc'd, or
// NULL (out of memory).
char *expert_provenance_with_steps(const char *prov, int64_t steps);

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

// Writes module x to PATH atomically. Returns 0 or -1.
int expert_save(const char *path, const mo_expert *x);
// Reads a module, checking the format, the attributes and every dataset's shape against
// its own key, and refusing NaN/Inf. Returns 0, or -1 naming the file and what is wrong.
int expert_load(const char *path, mo_expert *x);

// A checkpoint with its optimizer state when it has one: *m and *v are newly allocated
// arenas from /optim (free with free()), or NULL for a model checkpoint. Returns 0, or
// -1 naming the file.
int expert_ckpt_load(const char *path, mo_checkpoint *ck, float **m, float **v);
// Writes ck (and /optim/m, /optim/v when m and v are given) atomically to `path`; when
// `train_from` is not NULL its /train group is copied verbatim (what --resume needs stays
// with a checkpoint whose shapes did not change). Returns 0 or -1.
int expert_ckpt_save(const char *path, const mo_checkpoint *ck, const float *m, const float *v,
                     const char *train_from);

#endif
