// swiglu.h: SiLU and the SwiGLU gate of the experts, forward and backward.
//
//   silu(x)      = x * sigmoid(x)
//   swiglu(a, b) = silu(a) * b        a = x w1^T (gate), b = x w3^T (up), elementwise
//
// Shapes are flat: n elements. Forward caches nothing (backward recomputes sigmoid from
// its inputs, which backward needs anyway). Backward assigns (=) its outputs.
#ifndef MONOLITH_SWIGLU_H
#define MONOLITH_SWIGLU_H

#include "kernels/bf16.h"

#include <stddef.h>

// out[n] = silu(x[n]). out may alias x.
void silu_forward(float *out, const float *x, size_t n);
// dx[n] = dout * silu'(x). dx may alias dout.
void silu_backward(float *dx, const float *dout, const float *x, size_t n);

// out[n] = silu(a) * b. out may alias a or b.
void swiglu_forward(float *out, const float *a, const float *b, size_t n);
// da[n] = dout * b * silu'(a), db[n] = dout * silu(a). da and db may alias a and b
// (in-place backward over the forward's inputs), not dout.
void swiglu_backward(float *da, float *db, const float *dout, const float *a, const float *b, size_t n);

// The same with bf16 outputs, for bf16 compute, where they only feed products: each the
// float result of the call above rounded (bf16_from_f32's rounding), bit for bit, without
// writing the floats and reading them back. The outputs alias no input.
void swiglu_forward_bf16(mo_bf16 *out, const float *a, const float *b, size_t n);
void swiglu_backward_bf16(mo_bf16 *da, mo_bf16 *db, const float *dout, const float *a, const float *b, size_t n);

#endif
