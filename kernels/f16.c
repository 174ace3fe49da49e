// f16.c: float32 <-> binary16 conversion on the bit patterns (see f16.h).
//
// Rounding a normal result: move the exponent from bias 127 to bias 15, add half an ulp
// of the half minus one (0xfff) plus the lowest kept bit (ties to even), drop the low 13
// bits; a carry out of the mantissa correctly bumps the exponent. Subnormal results are
// rounded by the FPU: adding 0.5 makes the float's ulp 2^-24, exactly the half's
// subnormal step, so the sum's low mantissa bits are the half's bits (default rounding
// mode, ties to even).
#include "kernels/f16.h"

#include <string.h>

static inline uint32_t f_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}
static inline float bits_f(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

mo_f16 f16_from_f32_one(float f) {
    uint32_t u = f_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    u &= 0x7fffffffu;
    if (u > 0x7f800000u) return (mo_f16)(sign | 0x7e00u | ((u >> 13) & 0x3ffu));  // NaN, quiet
    if (u >= 0x477ff000u) return (mo_f16)(sign | 0x7c00u);                       // >= 65520: infinity
    if (u < 0x38800000u) {                                                        // below 2^-14: subnormal
        float s = bits_f(u) + 0.5f;
        return (mo_f16)(sign | (uint16_t)(f_bits(s) - f_bits(0.5f)));
    }
    uint32_t odd = (u >> 13) & 1u;
    u += ((uint32_t)(15 - 127) << 23) + 0xfffu + odd;
    return (mo_f16)(sign | (uint16_t)(u >> 13));
}

float f16_to_f32_one(mo_f16 h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
    if (exp == 0) {  // zero or subnormal: mant * 2^-24, exact in float
        float v = (float)mant * bits_f(0x33800000u);
        return bits_f(f_bits(v) | sign);
    }
    if (exp == 31) return bits_f(sign | 0x7f800000u | (mant << 13));
    return bits_f(sign | ((exp + 112u) << 23) | (mant << 13));
}

void f16_from_f32(mo_f16 *dst, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = f16_from_f32_one(x[i]);
}

void f16_to_f32(float *dst, const mo_f16 *x, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = f16_to_f32_one(x[i]);
}
