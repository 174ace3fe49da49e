// model.h: the MoE transformer of docs/design.md section 3, forward and backward over a batch of
// B sequences of T tokens (N = B*T rows).
//
// model_alloc() sizes one activation arena from (config, B, T) and carves every buffer
// out of it; forward and backward never allocate. Parameters, gradients (and the
// optimizer's state) are arenas laid out by the parameter table (params.h); the model
// reads parameters from, and accumulates gradients into, whatever arenas it is given.
//
// Per layer l (shapes per row; x_attn of layer l+1 is the output of layer l):
//   a = rmsnorm(x_attn, attn_norm); q, k, v = a wq^T, a wk^T, a wv^T; rope(q), rope(k)
//   o = attention(q, k, v); x_ffn = x_attn + o wo^T
//   m = rmsnorm(x_ffn, ffn_norm); x_attn[l+1] = x_ffn + ffn(m)
// where ffn is the routed experts (router.h, moe.h) plus shared experts in a MoE layer,
// or one SwiGLU FFN in a dense layer. Then logits = rmsnorm(x_attn[L], norm) output^T.
//
// Losses: ce (mean over rows with a target >= 0), aux and z (averaged over MoE layers),
// loss = ce + aux_coef aux + z_coef z. Under forced routing (model_set_forced_experts)
// with a router cross-entropy weight (model_set_router_ce), also + router_ce_coef
// router_ce: the router's cross-entropy against the forced experts (engine/router.h),
// averaged over MoE layers. A forced gate is the constant 1, so without it the router
// learns nothing about the forced tokens; with normal routing the loss is ce + aux + z (docs/design.md section 5).
#ifndef MONOLITH_MODEL_H
#define MONOLITH_MODEL_H

#include "engine/moe.h"
#include "engine/moe_ep.h"
#include "engine/params.h"
#include "engine/router.h"

#include <stddef.h>
#include <stdint.h>

// One layer's activations: what backward needs, kept from forward.
typedef struct {
    float *x_attn;   // [N, d] residual stream entering the layer
    float *a;        // [N, d] attn_norm output
    float *a_rstd;   // [N]
    float *q;        // [N, nh*hd] after RoPE
    float *k, *v;    // [N, nkv*hd] (k after RoPE)
    float *lse;      // [B, nh, T] log-sum-exp of each query's attention scores (kernels/attention.h)
    float *o;        // [N, nh*hd] attention output, before wo
    float *x_ffn;    // [N, d] residual stream after attention
    float *m;        // [N, d] ffn_norm output
    float *m_rstd;   // [N]
    float *h1, *h3;  // [R, f] expert hidden pre-activations: R = N*k rows sorted by expert, f = d_ff
                     //   (MoE), or R = N, f = d_ff_dense (dense); expert parallel: the rows this rank's
                     //   experts received, up to G*N*k, in the receive layout (engine/moe_ep.h)
    float *xr;       // expert parallel: [G*N*k, d] the rows received for this rank's experts
    int *ep_counts;  // expert parallel: [E] rows per (source rank, local expert)
    float *ys;       // [N*k, d] routed expert outputs before the gates (MoE)
    float *sh1, *sh3;  // [N, n_shared*d_ff_shared] shared experts' hidden pre-activations
    mo_router_acts r;  // MoE
    mo_router_stats stats;
    mo_dispatch disp;
    // bf16 compute (model_set_precision; NULL in fp32): GEMM inputs rounded in forward and
    // kept for backward's weight gradients instead of rounded (and, for the experts,
    // gathered and recomputed) again: a and o [N, d], [N, nh*hd]; routed experts' input
    // rows xb [N*k, d] and SwiGLU output actb [N*k, d_ff] (NULL under expert parallelism).
    mo_bf16 *ab, *ob, *xb, *actb;
} mo_layer_acts;

typedef struct {
    const mo_param_table *pt;  // not owned; its config is the model's
    int B, T, N;
    int recompute;             // activation checkpointing (mo_model_opts)
    mo_ep ep;                  // expert parallelism (mo_model_opts); size 1 without
    int n_moe;                 // MoE layers

    int *tokens, *targets, *pos;  // [N] inputs, targets (-1: no target), positions t in 0..T-1
    const int *forced;            // [N] forced expert per row (route-by-domain), or NULL
    int forced_targets_only;      // forced experts are router_ce's targets only; routing stays top-k
    double router_ce_coef;        // weight of router_ce in the loss under forced routing (0: off)
    float *rope_cos, *rope_sin;   // [T, hd/2]
    mo_layer_acts layer[MO_MAX_LAYERS + 1];  // layer[n_layers] holds only x_attn: the final stream
    float *x_final;               // [N, d] x_attn[L], the last residual stream (alias)
    float *hf;                    // [N, d] final rmsnorm output
    float *hf_rstd;               // [N]
    float *logits;                // [N, V]; model_backward overwrites it with d loss / d logits (fp32)
    float *losses;                // [N] per-row cross-entropy
    float *ce_stats;              // [2N] each row's logit max and sum of exps (cross_entropy_forward)

    // Scratch shared by the layers.
    float *xs, *dxs;      // [N*k, d] gathered rows, their gradient (also d ys); [G*N*k, d] expert parallel
    int *ep_offs;         // expert parallel: [E+1] one source block's expert offsets
    float *act, *dact;    // [max rows x width of any FFN] SwiGLU outputs and their gradient
    float *dres;          // [N, d] gradient of the residual stream
    float *dnorm;         // [N, d] gradient of a norm's output
    float *dq, *dk, *dv, *dout;  // [N, nh*hd], [N, nkv*hd] x2, [N, nh*hd]
    float *drouter;       // [N, E]
    float *rkey;          // [N, E] the routers' forward scratch (noisy logits, selection keys)
    mo_rng *noise;        // the run's RNG for router_noise in training forwards, or NULL (model_set_noise)
    mo_rng noise_at[MO_MAX_LAYERS];  // recompute: the RNG state before layer l's draw, replayed by backward
    float *dgates;        // [N, k]
    float *dloss;         // [N]

    // What trains (model_set_trainable); NULL trains: everything.
    unsigned char *trains;         // [pt->n] 1 if any element of tensor i trains
    unsigned char *expert_trains;  // [pt->n * E]: of an expert-stacked tensor, 1 per expert slice that trains
    unsigned char *need_attn, *need_ffn;  // [n_layers]: the block's backward is needed (it or a block below trains)
    int wb_frozen_ready;           // bf16: the frozen tensors' bf16 copies are current
    int wb_current;                // bf16: the next forward uses wb as it is (model_bf16_weights_current)
    int dw_set;                    // inside model_backward_first: GEMM weight gradients are written, not added
    int packed;                    // fp32 products read weights packed by oneDNN (kernels/matmul_packed.h)

    double ce, aux, z, loss;  // of the last forward
    double router_ce;         // of the last forward: mean over MoE layers of router_ce (0: none forced)
    int n_targets;            // rows with a target in the last forward

    void *arena;
    size_t arena_bytes;

    // bf16 compute (model_set_precision): NULL/0 in fp32.
    int bf16;
    mo_bf16 *wb;         // [pt->numel] bf16 copy of the parameters used in GEMMs, refreshed by each forward
                         //   (or by the optimizer: model_bf16_weights_current)
    mo_bf16 *bx, *bg;    // GEMM inputs rounded to bf16: activations [N*max(k,1)*max(d, nh*hd)],
                         //   gradients and FFN hidden rows [N*max(V, d, nh*hd, widest FFN hidden)]
    mo_bf16 *bh;         // the FFN's second hidden rows in bf16 (dh3 beside dh1) [N*widest FFN hidden]
    void *bf16_arena;
    size_t bf16_bytes;
} mo_model;

typedef enum { MO_PRECISION_FP32 = 0, MO_PRECISION_BF16 = 1 } mo_precision;

// Parses "fp32" or "bf16". Returns 0, or -1 with a message naming `flag` and the choices.
int model_precision_parse(const char *s, const char *flag, mo_precision *p);

// Chooses the precision of the model's big GEMMs (attention projections, experts, dense
// and shared FFNs, the output layer). fp32 (the default) is the reference. bf16 rounds
// both inputs of each of those GEMMs to bf16 and accumulates in fp32: the parameters
// stay fp32 (the optimizer's master weights) and each forward rounds them into a bf16
// copy, so a forward after an optimizer step always sees the new weights (or the
// optimizer wrote that copy itself: model_bf16_weights_current). Norms, router,
// attention scores, softmax, losses and every gradient buffer stay fp32. Allocates
// pt->numel bf16 + scratch (freed by model_free). Returns 0, or -1 with a message when
// this CPU has no AVX512_BF16 (the products would be emulated, slower than fp32) or
// memory runs out.
int model_set_precision(mo_model *m, mo_precision p);

// The bf16 copy of the weights (same offsets as the parameter arena), or NULL in fp32:
// for an optimizer that writes the rounding of what it updates in its own pass
// (adamw_apply_bf16 in train/adamw.h) instead of the next forward rounding every
// trainable weight again. Writing into it anything but bf16_from_f32 of the parameters
// is a bug.
mo_bf16 *model_bf16_weights(mo_model *m);
// Says that model_bf16_weights holds bf16_from_f32 of every trainable parameter as it is
// now: the next model_forward (only that one) uses the copy without rounding them.
void model_bf16_weights_current(mo_model *m);

// Frozen weights kept as bf16 only (docs/design.md section 10.1): under bf16 compute
// and model_set_trainable, a frozen GEMM weight (a whole tensor, or a frozen expert's
// slice of moe/w1, w3, w2 whose tensor trains in part) is read by forward and backward
// only through its bf16 copy. model_bf16_only says whether that part of tensor i
// (expert slice e, or e < 0: the whole tensor) is such a weight; 0 in fp32, without a
// mask, for the fp32-only kinds (norms, router, tok_embeddings) and for what trains.
int model_bf16_only(const mo_model *m, int i, int e);
// The parameters a bf16 model whose trainable set is `any` (as model_set_trainable
// takes it) holds as bf16 only (model_bf16_only), in all; computed from the table alone,
// so a caller can size a run before making its model.
size_t model_bf16_frozen_numel(const mo_param_table *pt, int (*any)(void *ctx, size_t offset, size_t length),
                               void *ctx);
// Rounds the bf16-only parts of tensor i from params into the bf16 copy now, and gives
// their fp32 pages back to the OS (params_arena_release: `params` must be an arena whose
// released pages read as zeros, such as params_arena_alloc_sparse's). From then on those
// fp32 values are never read again: forwards do not round them. For a caller that
// fills the arena tensor by tensor, so the frozen fp32 weights never take memory all at
// once; call it for every tensor (after model_set_trainable and model_set_precision)
// before the next forward, and call model_set_trainable or model_set_precision no more
// (either would round the copy again from the dropped values). Trained parameters and
// their results are bit for bit those of the model that keeps every fp32 weight.
void model_bf16_hold_frozen(mo_model *m, float *params, int i);

// Sizes and allocates the activations for batches of B sequences of T tokens (T <=
// max_seq_len). `pt` must outlive the model. Returns 0, or -1 with a message.
int model_alloc(mo_model *m, const mo_param_table *pt, int B, int T);
// Options of model_alloc_opts.
typedef struct {
    // Activation checkpointing per layer: forward keeps only each layer's input (x_attn)
    // and its routing (r.experts, r.gates, stats); the rest of a layer's activations live in one set of
    // buffers per kind of layer (dense, MoE), and backward redoes each layer's forward
    // into them before its backward (docs/design.md, "Recomputation"). Same losses and
    // gradients (the recomputed forward is the same arithmetic on the same inputs), about
    // one more forward of time, activations of about L x [N, d] + one layer instead of L
    // layers.
    int recompute;
    // Expert parallelism over the communicator's expert group (engine/comm.h,
    // engine/moe_ep.h; 0 or 1: off): this rank computes only its E/G experts of every MoE
    // layer, for the rows every rank of the group sends it. Reads and trains only those
    // experts' slices of the parameter and gradient arenas (the others are never touched);
    // everything else is as without it. Each rank's own routing, losses and outputs are
    // those one process computes for that rank's batch. Forward and backward are then
    // collective over the group. Costs per MoE layer up to G x the routed rows' hidden
    // activations ([G*N*k, d_ff] x 2) and the received rows ([G*N*k, d]).
    int expert_parallel;
} mo_model_opts;

// model_alloc with options (o NULL: the defaults, as model_alloc).
int model_alloc_opts(mo_model *m, const mo_param_table *pt, int B, int T, const mo_model_opts *o);
size_t model_arena_bytes_opts(const mo_param_table *pt, int B, int T, const mo_model_opts *o);

// The bytes model_alloc(pt, B, T) would allocate, computed without allocating (so a
// caller can refuse a run this machine cannot hold before touching any memory). Returns
// 0 when model_alloc would refuse (B, T) anyway.
size_t model_arena_bytes(const mo_param_table *pt, int B, int T);
void model_free(mo_model *m);

// Forces the expert of each row (route-by-domain, DEMix): forced[N], -1 = route normally;
// NULL turns it off. The array is read by every later forward and must stay alive.
void model_set_forced_experts(mo_model *m, const int *forced);

// Supervised routing (`train --route-by-domain --supervise-routing`): with on = 1 the forced experts
// are only router_ce's targets, and every row keeps the router's own top-k and gates, so
// the language-model loss trains the router as without forcing and the term pulls each
// row's probability toward its domain's expert. 0 (the default) forces the rows.
void model_set_forced_targets_only(mo_model *m, int on);

// Weight of the router supervision term under forced routing: loss += coef * router_ce,
// the mean over MoE layers of each layer's mean -log p_{i, forced[i]} over the forced rows
// (engine/router.h). 0 (the default after model_alloc) leaves the loss without the term; rows that
// are not forced, and models without forced routing, never see it. coef >= 0.
void model_set_router_ce(mo_model *m, double coef);

// Tells backward what trains, so that it computes only what that needs: no weight
// gradient of a frozen tensor, none of a frozen expert's slices of moe/w1, w3, w2, and
// no backward at all below the lowest block (attention or FFN of a layer; the embedding
// below all) with a trainable parameter. any(ctx, offset, length) says whether any
// element of that range of the parameter arena trains. Gradients of frozen parameters
// are then never written (a gradient arena's frozen pages are never touched); those of
// trainable ones are bit for bit those of the full backward. Also promises that frozen
// parameters do not change between forwards (bf16 rounds them once). any NULL: all
// train (the default). Returns 0, or -1 (out of memory).
int model_set_trainable(mo_model *m, int (*any)(void *ctx, size_t offset, size_t length), void *ctx);

// Training forwards draw the router noise (router_noise > 0) from `rng`, N*E normals per
// MoE layer in layer order; NULL (the default after model_alloc: evaluation, dump,
// inference) adds none. The generator must stay alive while set.
void model_set_noise(mo_model *m, mo_rng *rng);

// Forward for tokens[B*T] (ids < vocab_size) and targets[B*T] (next tokens; < 0 means no
// target; NULL: no losses). Fills logits, the losses (m->ce, aux, z, loss) and each MoE
// layer's routing and statistics. Returns 0, or -1 naming the first token id (or forced
// expert) that is out of range.
int model_forward(mo_model *m, const float *params, const int *tokens, const int *targets);

// Backward of the last forward (which must have had targets): ACCUMULATES
// loss_scale * d loss / d params into `grads` (an arena of the parameter table), so
// gradient accumulation over micro-batches is forward/backward with loss_scale
// 1/n_micro and zeroing is one memset. Overwrites m->logits (fp32; bf16 compute writes
// their gradient to its bf16 scratch instead) and the h1/h3 caches.
// Returns 0 (the int is kept for errors a later change may add).
int model_backward(mo_model *m, const float *params, float *grads, float loss_scale);

// model_backward into an arena that holds no values yet (a step's first micro-batch):
// the same bits as zeroing `grads` and then model_backward, without the pass over the
// whole arena. The GEMMs that make the weight gradients write them (beta 0, so each
// product's zeroing happens in cache right before it) and only the other tensors (norms,
// router, embedding) are zeroed first. With a trainable mask or expert parallelism, where
// some gradients are not made here, it zeroes the whole arena first and runs model_backward.
int model_backward_first(mo_model *m, const float *params, float *grads, float loss_scale);

#endif
