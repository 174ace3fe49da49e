// checkpoint.h: the HDF5 checkpoint of docs/design.md section 11.2 (format "monolith-checkpoint",
// format_version 1): root attributes, /config, /model/<tensor>, /experts and an optional
// /tokenizer.
//
// The pieces are exposed so that the training issue adds /optim/m, /optim/v and /train
// the same way: ckpt_create() writes everything a model needs and returns the open file;
// the caller writes more groups (ckpt_write_tensors(f, "optim/m", ...)) and calls
// h5_finish() (atomic rename) or h5_abort().
//
// A file from before router_bias existed (no /model/layers/L/moe/router_bias) loads with
// the bias 0, which is how it routed.
//
// Reads refuse, with one line naming the file and the tensor or attribute: a missing
// file, a truncated or non-HDF5 file, another format, a newer format_version, a tensor
// whose shape disagrees with /config, and NaN or Inf weights.
#ifndef MONOLITH_CHECKPOINT_H
#define MONOLITH_CHECKPOINT_H

#include "engine/config.h"
#include "engine/params.h"

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

#define MO_CKPT_FORMAT "monolith-checkpoint"
#define MO_CKPT_VERSION 1

// /experts: three strings per expert index (E of them). provenance is free text, by
// convention one JSON object.
typedef struct {
    int n;
    char **name, **domain, **provenance;
} mo_experts_meta;

// /tokenizer, stored and loaded verbatim (the data layer parses it): the exact bytes of
// the .tiktoken file and the special tokens.
typedef struct {
    int present;
    uint8_t *tiktoken;
    size_t tiktoken_len;
    int n_special;
    char **special_names;
    int64_t *special_ids;
} mo_tokenizer_blob;

// Ranges of an arena that a process does not hold in memory (zeros there): a fine-tune's
// frozen weights kept as bf16 only, or the Adam moments of what it does not train
// (docs/design.md section 10.1). A writer takes their values from the same tensors of the
// checkpoint file `from`, which must hold what the process read when it dropped them:
// `hash` (mo_hash of each range's float32 values, range after range) is compared while
// they are copied, so a file replaced in between is refused, never half copied. Without
// a file the ranges are zeros (moments never written), written without reading the arena.
typedef struct {
    char *from;         // the file, or NULL: the ranges are zeros
    size_t *off, *len;  // sorted, disjoint, each inside one tensor
    size_t n, cap;
    uint64_t hash;
} mo_absent;

// Appends [off, off + len) (after every range before it), hashing `values` (its len
// floats as read; NULL for a list of zeros). Returns 0 or -1 (out of memory).
int ckpt_absent_add(mo_absent *a, size_t off, size_t len, const float *values);
// Sets the file the absent values are copied from (copied string). Returns 0 or -1.
int ckpt_absent_source(mo_absent *a, const char *path);
void ckpt_absent_free(mo_absent *a);

// A loaded model: config, its parameter table and arena, and the metadata groups.
typedef struct {
    mo_param_table table;  // table.cfg is the config
    float *params;         // arena of table.numel floats
    int sparse;            // params is params_arena_alloc_sparse's (ckpt_load_meta)
    mo_absent absent;      // ranges of params not held; /model writes copy them (mo_absent)
    mo_experts_meta experts;
    mo_tokenizer_blob tokenizer;
} mo_checkpoint;

// A new model from a finalized config: table built, parameters initialized with
// params_init(seed), experts named "expert<e>" with empty domain and `provenance` (may
// be NULL: "{}"). Returns 0, or -1 (out of memory).
int ckpt_new(mo_checkpoint *ck, const mo_config *c, uint64_t seed, const char *provenance);
void ckpt_free(mo_checkpoint *ck);

// Writes the whole checkpoint atomically to `path`. Returns 0 or -1.
int ckpt_save(const char *path, const mo_checkpoint *ck);
// Creates PATH.tmp and writes root attributes, /config, /model, /experts and /tokenizer
// (if present). Returns the open file for the caller to add groups and h5_finish(), or
// -1 (PATH.tmp removed).
hid_t ckpt_create(const char *path, const mo_checkpoint *ck);

// Loads `path` into `ck` (zeroed first; free with ckpt_free). Returns 0, or -1 with a
// one-line message naming the file and what is wrong.
int ckpt_load(const char *path, mo_checkpoint *ck);
// Opens `path` with the format and version checks, for callers that read more groups
// (e.g. /optim). Returns a file id or -1.
hid_t ckpt_open(const char *path);
// Loads from an open checkpoint file.
int ckpt_load_from(hid_t f, mo_checkpoint *ck);
// ckpt_load_from without reading /model's values (their shapes and storage are checked):
// ck->params is a zero arena whose pages take memory only when written (ck->sparse), for a
// caller that reads the tensors one at a time (ckpt_read_tensors_each) and keeps some of
// them elsewhere. Returns 0 or -1 naming the file.
int ckpt_load_meta_from(hid_t f, mo_checkpoint *ck);
// ckpt_load_from plus the optimizer state of a training checkpoint: *m and *v newly
// allocated arenas read from /optim/m and /optim/v (free with free()), or both NULL when
// the file has no /optim. On failure nothing stays allocated. Returns 0 or -1.
int ckpt_load_optim_from(hid_t f, mo_checkpoint *ck, float **m, float **v);
// ckpt_load_optim_from on the file at `path` (engine/checkpoint_optim.c): *m and *v are
// NULL for a model checkpoint. Returns 0, or -1 naming the file.
int ckpt_load_optim(const char *path, mo_checkpoint *ck, float **m, float **v);
// Writes ck (and /optim/m, /optim/v when m and v are given) atomically to `path`; when
// `train_from` is not NULL its /train group is copied verbatim (what --resume needs stays
// with a checkpoint whose shapes did not change). Returns 0 or -1.
int ckpt_save_optim(const char *path, const mo_checkpoint *ck, const float *m, const float *v, const char *train_from);

// Writes every tensor of `pt` from `arena` as float32 datasets `<group>/<name>` (/model,
// and /optim/m, /optim/v, where router_bias's moments are zeros). Reading a group without
// router_bias (a file from before it) gives zeros.
int ckpt_write_tensors(hid_t f, const char *group, const mo_param_table *pt, const float *arena);
// The same for a gradient arena, without the buffers (router_bias: no gradient).
int ckpt_write_grads(hid_t f, const char *group, const mo_param_table *pt, const float *grads);
// Checks, reading no data, that every tensor `<group>/<name>` of `pt` exists with exactly
// the table's shape and has its data stored: call it before allocating arenas for a
// file, so a corrupt header never makes us allocate what it claims. Returns 0 or -1.
int ckpt_check_tensors(hid_t f, const char *group, const mo_param_table *pt);
// Reads every tensor `<group>/<name>` of `pt` into `arena` (checking them first as
// ckpt_check_tensors does) and refuses NaN/Inf. Returns 0, or -1 naming the file and
// the tensor.
int ckpt_read_tensors(hid_t f, const char *group, const mo_param_table *pt, float *arena);
// ckpt_read_tensors calling each(ctx, i) right after tensor i is read and checked (each
// NULL: none); a non-zero return stops the read with that error.
int ckpt_read_tensors_each(hid_t f, const char *group, const mo_param_table *pt, float *arena,
                           int (*each)(void *ctx, int i), void *ctx);
// ckpt_write_tensors taking the ranges `a` lists (NULL or none: as ckpt_write_tensors)
// from group `group` of a->from instead of `arena` (engine/checkpoint_absent.c). Returns
// 0, or -1 naming both files when the source cannot be read or no longer holds the values
// it held (a->hash).
int ckpt_write_tensors_from(hid_t f, const char *group, const mo_param_table *pt, const float *arena,
                            const mo_absent *a);
// Adam's moments as read from `path`: every m finite, every v finite and >= 0 (a mean of
// squares; a negative one makes the update's sqrt NaN). Returns 0, or -1 naming the file
// and the first bad element.
int ckpt_check_moments(const char *path, const float *m, const float *v, size_t n);

int ckpt_write_experts(hid_t f, const mo_experts_meta *m);
int ckpt_read_experts(hid_t f, mo_experts_meta *m, int n_experts);
void ckpt_experts_free(mo_experts_meta *m);
// Sets expert e's strings (copies them; NULL leaves a field as it is). Returns 0 or -1.
int ckpt_experts_set(mo_experts_meta *m, int e, const char *name, const char *domain, const char *provenance);

int ckpt_write_tokenizer(hid_t f, const mo_tokenizer_blob *t);
// Reads /tokenizer if the file has one (t->present = 0 if not).
int ckpt_read_tokenizer(hid_t f, mo_tokenizer_blob *t);
void ckpt_tokenizer_free(mo_tokenizer_blob *t);

#endif
