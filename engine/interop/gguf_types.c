// gguf_types.c: F16, BF16 and Q8_0 encodings of float tensors.
#include "engine/interop/gguf_types.h"

#include "engine/base/error.h"
#include "engine/interop/gguf.h"
#include "kernels/bf16.h"
#include "kernels/f16.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void q8_0_encode(uint8_t *dst, const float *x, size_t n) {
    for (size_t b = 0; b < n / 32; b++, x += 32, dst += 34) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
        float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        uint16_t dh = f16_from_f32_one(d);
        memcpy(dst, &dh, 2);
        for (int j = 0; j < 32; j++) dst[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
    }
}

static void q8_0_decode(float *dst, const uint8_t *src, size_t n) {
    for (size_t b = 0; b < n / 32; b++, src += 34) {
        uint16_t dh;
        memcpy(&dh, src, 2);
        float d = f16_to_f32_one(dh);
        for (int j = 0; j < 32; j++) *dst++ = d * (float)(int8_t)src[2 + j];
    }
}

void *ggml_encode(uint32_t type, const float *x, size_t n, size_t *nbytes) {
    size_t nb = ggml_type_nbytes(type, n);
    if (!nb) {
        mo_errorf("cannot encode %zu values as %s", n, ggml_type_name(type));
        return NULL;
    }
    uint8_t *p = malloc(nb);
    if (!p) {
        mo_errorf("out of memory for a %zu-byte tensor", nb);
        return NULL;
    }
    switch (type) {
    case GGML_T_F32: memcpy(p, x, nb); break;
    case GGML_T_F16: f16_from_f32((mo_f16 *)p, x, n); break;
    case GGML_T_BF16: bf16_from_f32((mo_bf16 *)p, x, n); break;
    case GGML_T_Q8_0: q8_0_encode(p, x, n); break;
    }
    *nbytes = nb;
    return p;
}

int ggml_decode(float *dst, uint32_t type, const void *src, size_t n, const char *what) {
    const uint8_t *s = src;
    switch (type) {
    case GGML_T_F32: memcpy(dst, s, n * 4); break;
    case GGML_T_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            dst[i] = f16_to_f32_one(h);
        }
        break;
    case GGML_T_BF16:
        for (size_t i = 0; i < n; i++) {  // the source may be unaligned inside the file
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            uint32_t u = (uint32_t)h << 16;
            memcpy(&dst[i], &u, 4);
        }
        break;
    case GGML_T_Q8_0: q8_0_decode(dst, s, n); break;
    default: return mo_errorf("%s: tensor type %s (%u) is not read by monolith (F32, F16, BF16, Q8_0 are)", what,
                              ggml_type_name(type), type);
    }
    for (size_t i = 0; i < n; i++)
        if (!isfinite(dst[i])) return mo_errorf("%s: value %zu is %f", what, i, (double)dst[i]);
    return 0;
}
