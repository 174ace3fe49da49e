// residual.h: the residual add h = h + f(h).
//
// Backward accumulates (+=) into both inputs' gradients: each is read elsewhere too.
#ifndef MONOLITH_RESIDUAL_H
#define MONOLITH_RESIDUAL_H

#include <stddef.h>

// out[n] = a + b. out may alias a or b.
void residual_forward(float *out, const float *a, const float *b, size_t n);
// out[n] = a: the residual stream carried into a block's output before the block's
// products add to it (out, a disjoint). Large copies on every OpenMP thread: one thread
// alone copies a [tokens, d] array at about half the rate two do, while the other waits.
void residual_copy(float *out, const float *a, size_t n);
// da += dout, db += dout (either may be NULL to skip it).
void residual_backward(float *da, float *db, const float *dout, size_t n);

#endif
