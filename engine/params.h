// params.h: the parameter table. One float arena holds every parameter; a table of named
// tensors says where each one lives (docs/design.md section 10.1).
//
// A tensor's name is its HDF5 path under /model ("layers/0/moe/w1"). Gradients and the
// optimizer's m and v are arenas of the same size with the same offsets, so one table
// serves them all: zeroing gradients is one memset, AdamW is one flat loop, checkpoints,
// freeze masks and weight-decay masks iterate the table.
//
// Offsets are contiguous in table order (tensor i+1 starts where tensor i ends). Expert
// weights are stacked [E, ...] per layer and kind, so expert e of a tensor is the
// contiguous slice [offset + e*expert_numel, offset + (e+1)*expert_numel).
//
// Table order: tok_embeddings; per layer attn_norm, attn/wq, wk, wv, wo, ffn_norm, then
// moe/router, moe/router_bias, moe/w1, w3, w2, moe/shared_w1, shared_w3, shared_w2 (if any) for a MoE
// layer or ffn/w1, w3, w2 for a dense one; then norm, output.
#ifndef MONOLITH_PARAMS_H
#define MONOLITH_PARAMS_H

#include "engine/config.h"

#include <stddef.h>
#include <stdint.h>

typedef enum {
    PK_TOK_EMBEDDINGS,
    PK_NORM,
    PK_OUTPUT,
    PK_ATTN_NORM,
    PK_WQ,
    PK_WK,
    PK_WV,
    PK_WO,
    PK_FFN_NORM,
    PK_ROUTER,
    PK_W1,  // routed experts, [E, d_ff, d]
    PK_W3,
    PK_W2,  // [E, d, d_ff]
    PK_SHARED_W1,
    PK_SHARED_W3,
    PK_SHARED_W2,
    PK_DENSE_W1,  // ffn/ of a dense layer
    PK_DENSE_W3,
    PK_DENSE_W2,
    PK_ROUTER_BIAS,  // moe/router_bias [E]: selection bias of bias balancing; a buffer (no gradient)
    PK_COUNT
} mo_param_kind;

#define MO_NAME_MAX 64

typedef struct {
    char name[MO_NAME_MAX];  // path under /model, e.g. "layers/0/attn/wq"
    mo_param_kind kind;
    int layer;               // -1 for tok_embeddings, norm, output
    int rank;
    int64_t shape[3];
    size_t offset;           // into the arena, in floats
    size_t numel;
    int is_norm;             // an RMSNorm weight: no weight decay, initialized to 1
    int n_experts;           // E when shape[0] is the expert axis (w1, w3, w2 of a MoE layer), else 0
    size_t expert_numel;     // numel / E for expert-stacked tensors, else 0
    int no_grad;             // a buffer, not a parameter (router_bias): no gradient, no optimizer, not
                             //   counted as a parameter; changed only by its own rule (router.h)
} mo_tensor;

// Table indices of one layer's tensors; -1 where the layer has none.
typedef struct {
    int is_moe;
    int attn_norm, wq, wk, wv, wo, ffn_norm;
    int router, w1, w3, w2, shared_w1, shared_w3, shared_w2;  // MoE layer
    int router_bias;                                          // MoE layer: [E] float32, zeros at init
    int ffn_w1, ffn_w3, ffn_w2;                               // dense layer
} mo_layer_ids;

typedef struct {
    mo_config cfg;
    mo_tensor *t;
    int n;
    size_t numel;  // arena size in floats
    int tok_embeddings, norm, output;
    mo_layer_ids layer[MO_MAX_LAYERS];
} mo_param_table;

// Builds the table of a finalized config. Returns 0, or -1 (out of memory).
int params_table_build(mo_param_table *pt, const mo_config *c);
void params_table_free(mo_param_table *pt);

// The index of the tensor called `name` (a path under /model), or -1.
int params_find(const mo_param_table *pt, const char *name);
// Tensor i's data inside `arena` (a parameter, gradient or optimizer-state arena).
static inline float *params_at(const mo_param_table *pt, float *arena, int i) {
    return i < 0 ? NULL : arena + pt->t[i].offset;
}
static inline const float *params_at_c(const mo_param_table *pt, const float *arena, int i) {
    return i < 0 ? NULL : arena + pt->t[i].offset;
}

// A zero-filled, 64-byte aligned arena of pt->numel floats (free with free()), or NULL
// with a message.
float *params_arena_alloc(const mo_param_table *pt);

// A zero arena of pt->numel floats whose pages the OS backs only when first written
// (an anonymous mapping, page aligned): the gradients and Adam moments of a run that
// trains a part of the model, whose frozen ranges are never written and so never take
// memory (docs/design.md section 10.1). Reading an untouched range gives zeros. Free with
// params_arena_free_sparse, not free(). NULL with a message.
float *params_arena_alloc_sparse(const mo_param_table *pt);
void params_arena_free_sparse(const mo_param_table *pt, float *a);

// Gives the memory of the whole pages inside [offset, offset + n) of an arena (either kind)
// back to the OS: they read as zeros afterwards and take memory again only when written.
// The partial pages at the ends keep their contents. For an expert-parallel rank's copy
// of the experts it does not hold (train/trainer_open.c).
void params_arena_release(float *a, size_t offset, size_t n);

// The initialization of docs/design.md section 6: normal with std 0.02 drawn from mo_rng seeded with `seed`,
// tensor by tensor in table order; wo, w2, shared_w2 and the dense ffn/w2 (the
// projections back into the residual stream) with std 0.02/sqrt(2*n_layers); norms 1;
// router_bias 0 (drawing nothing, so the other tensors' values are those of before it).
void params_init(const mo_param_table *pt, float *arena, uint64_t seed);
// params_init calling each(ctx, i) right after tensor i is written (each NULL: none), for
// a caller that keeps some tensors elsewhere (engine/model.h model_bf16_hold_frozen).
void params_init_each(const mo_param_table *pt, float *arena, uint64_t seed, void (*each)(void *ctx, int i),
                      void *ctx);

// Total parameters, and the parameters one token uses: everything except, in each MoE
// layer, the weights of the E - k routed experts it does not visit. Buffers (no_grad:
// router_bias) are not parameters and are not counted.
size_t params_count_total(const mo_param_table *pt);
size_t params_count_active(const mo_param_table *pt);

// "[E, d_ff, d]"-style shape text of tensor i, for messages and `monolith inspect`.
void params_shape_str(const mo_param_table *pt, int i, char *buf, size_t cap);

#endif
