// adamw.h: the AdamW optimizer over flat float ranges.
//
// The update is PyTorch's torch.optim.AdamW (single-tensor path), step t counted from 1:
//
//     g  = g * grad_scale                          # the clip factor (train/clip.h), 1 when not clipped
//     p  = p * (1 - lr * wd)                       # decoupled weight decay (only if `decay`)
//     m  = m + (1 - beta1) * (g - m)               # torch: exp_avg.lerp_(g, 1 - beta1)
//     v  = beta2 * v + (1 - beta2) * g * g
//     p  = p - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
//
// The scalars (lr, bias corrections) are computed in double once per step, the
// elementwise work in float. It runs over any contiguous range, so one call can cover a
// whole tensor or one expert's slice of a stacked [E, ...] tensor; adamw_apply() runs a
// list of such ranges in parallel. Elementwise, so the result does not depend on the
// thread count.
//
// Weight decay policy (the caller's `decay` flag, set per tensor by train/freeze.c):
// every matrix (rank >= 2: embeddings, attention, router, experts, output) decays; the
// RMSNorm gains (rank 1) do not, since pulling a gain toward 0 only fights the norm.
#ifndef MONOLITH_ADAMW_H
#define MONOLITH_ADAMW_H

#include "kernels/bf16.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    double lr;            // learning rate of this step (from train/lr_schedule.h)
    double beta1, beta2;  // defaults 0.9, 0.95
    double eps;           // default 1e-8
    double weight_decay;  // default 0.1; applied only to ranges with decay = 1
    int64_t t;            // the step being taken, 1-based (bias correction)
    float grad_scale;     // every gradient is multiplied by it first (in float: the bits of scaling the
                          // arena beforehand); the clip factor of train/clip.h, default 1
} adamw_step;

// The defaults above (grad_scale 1), with lr and t left for the caller.
adamw_step adamw_defaults(void);

// One contiguous range of the parameter arena (and of the gradient, m and v arenas,
// which share its layout): [offset, offset + length), with its weight decay flag.
typedef struct {
    size_t offset, length;
    int decay;
} adamw_range;

// Updates p, m and v in place from g over n elements, as above. Uses the best SIMD level
// of the CPU (kernels/simd.h). No allocation, no failure.
void adamw_update(float *p, const float *g, float *m, float *v, size_t n, int decay, const adamw_step *s);

// Runs adamw_update on every range, in parallel (OpenMP, dynamic schedule over ranges:
// split big tensors into ranges of a few tens of thousands of floats for balance, as
// freeze_ranges() does). Elements outside the ranges are not touched.
void adamw_apply(float *params, const float *grads, float *m, float *v, const adamw_range *ranges,
                 size_t n_ranges, const adamw_step *s);

// adamw_apply that also writes bf16_from_f32 of every updated parameter into `wb` (same
// offsets as `params`; NULL: none), in the same pass, chunk by chunk while the chunk is in
// cache: under --precision bf16 the forward then need not round the weights again
// (model_bf16_weights_current in engine/model.h). The same bits as adamw_apply, then
// bf16_from_f32 over each range.
void adamw_apply_bf16(float *params, const float *grads, float *m, float *v, mo_bf16 *wb,
                      const adamw_range *ranges, size_t n_ranges, const adamw_step *s);

#endif
