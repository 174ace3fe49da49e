// clip.c: global-norm gradient clipping, deterministic for any thread count.
#include "train/clip.h"

#include "kernels/simd.h"
#include "kernels/sumsq.h"

#include <math.h>

// Each range's sum in the fixed lane order of kernels/sumsq.h (not one running sum:
// that loop waited on every add), so the same bits for any thread count and SIMD level.
double grad_global_norm(const float *grads, const adamw_range *ranges, size_t n_ranges, double *partial) {
    simd_active();  // decide the level before the threads read it
#pragma omp parallel for schedule(dynamic, 1)
    for (size_t r = 0; r < n_ranges; r++) partial[r] = sumsq_f64(grads + ranges[r].offset, ranges[r].length);
    double total = 0;
    for (size_t r = 0; r < n_ranges; r++) total += partial[r];
    return sqrt(total);
}

float grad_clip_factor(double norm, double max_norm) {
    if (!(max_norm > 0) || !isfinite(norm) || norm <= max_norm) return 1.0f;
    return (float)(max_norm / (norm + 1e-6));
}

void grad_scale(float *grads, const adamw_range *ranges, size_t n_ranges, float scale) {
    if (scale == 1.0f) return;
#pragma omp parallel for schedule(dynamic, 1)
    for (size_t r = 0; r < n_ranges; r++) {
        float *g = grads + ranges[r].offset;
        for (size_t i = 0; i < ranges[r].length; i++) g[i] *= scale;
    }
}

double grad_clip(float *grads, const adamw_range *ranges, size_t n_ranges, double max_norm, double *partial) {
    double norm = grad_global_norm(grads, ranges, n_ranges, partial);
    grad_scale(grads, ranges, n_ranges, grad_clip_factor(norm, max_norm));
    return norm;
}
