// clip.h: the global gradient norm and clipping to a maximum norm.
//
// The norm is over the trainable ranges only (a frozen parameter's gradient neither
// counts nor changes), summed in double. Each range's sum of squares is computed in
// parallel into `partial[r]` and the partials are added in range order, so the result
// is the same for any thread count (and SIMD level: kernels/sumsq.h fixes the order
// of each range's sum).
#ifndef MONOLITH_CLIP_H
#define MONOLITH_CLIP_H

#include "train/adamw.h"

#include <stddef.h>

// sqrt(sum over the ranges of g^2), in double. `partial` is scratch of n_ranges doubles.
// Returns NaN or Inf when a gradient is (the caller's NaN/Inf guard).
double grad_global_norm(const float *grads, const adamw_range *ranges, size_t n_ranges, double *partial);

// Computes the norm as above and, when max_norm > 0 and the norm exceeds it, scales the
// gradients in the ranges by max_norm / norm (norm + 1e-6, as PyTorch's
// clip_grad_norm_). A non-finite norm leaves the gradients as they are. Returns the norm
// before clipping.
// The clip factor max_norm / (norm + 1e-6) when max_norm > 0 and a finite norm exceeds
// it, else 1.
float grad_clip_factor(double norm, double max_norm);

// Multiplies the gradients in the ranges by scale (nothing when scale is 1).
void grad_scale(float *grads, const adamw_range *ranges, size_t n_ranges, float scale);

double grad_clip(float *grads, const adamw_range *ranges, size_t n_ranges, double max_norm, double *partial);

#endif
