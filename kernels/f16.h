// f16.h: IEEE binary16 (half precision) storage, for the F16 tensors of interchange
// formats (safetensors, GGUF). monolith never computes in f16; it only converts.
//
// binary16: 1 sign bit, 5 exponent bits (bias 15), 10 mantissa bits; largest finite value
// 65504, smallest normal 2^-14, smallest subnormal 2^-24.
#ifndef MONOLITH_F16_H
#define MONOLITH_F16_H

#include <stddef.h>
#include <stdint.h>

typedef uint16_t mo_f16;

// The half nearest to f, ties to even: values from 65520 up become infinity, subnormal
// halves are produced (not flushed), NaN stays a quiet NaN of the same sign.
mo_f16 f16_from_f32_one(float f);
// The float of h (exact: every half is a float).
float f16_to_f32_one(mo_f16 h);

void f16_from_f32(mo_f16 *dst, const float *x, size_t n);
void f16_to_f32(float *dst, const mo_f16 *x, size_t n);

#endif
