// sumsq.h: the sum of squares of a float array, in double, in a fixed order.
//
// The gradient norm (train/clip.h) reads every gradient once a step. A plain loop of
// `s += g*g` in double waits on one add after another (4 cycles each), which made it
// a compute-bound pass over 117M gradients (about 0.08 s of a 1.9 s bench-S step at
// two threads). Here the sum is split over SUMSQ_LANES interleaved accumulators: lane
// j adds the squares of the elements i with i % SUMSQ_LANES == j, in increasing i,
// and the lanes are then added in order 0, 1, ..., SUMSQ_LANES - 1. Every SIMD level
// computes exactly that (each square of a float is exact in double, so a fused
// multiply-add rounds as the separate add does): the same bits at every level.
#ifndef MONOLITH_SUMSQ_H
#define MONOLITH_SUMSQ_H

#include <stddef.h>

#define SUMSQ_LANES 16

// sum over i < n of (double)x[i]^2, in the order above. NaN or Inf if an element is.
double sumsq_f64(const float *x, size_t n);

#endif
