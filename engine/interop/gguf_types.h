// gguf_types.h: the tensor encodings of GGUF files monolith reads and writes.
//
//   F32   as is
//   F16   IEEE half, rounded to nearest even (kernels/f16.h)
//   BF16  the top half of the float, rounded to nearest even (kernels/bf16.h)
//   Q8_0  blocks of 32 weights: d = max|x| / 127 stored as F16, then q = round(x / d) as
//         int8 (34 bytes a block); a weight reads back as F16(d) * q. This is ggml's
//         reference quantizer (quantize_row_q8_0_ref), so llama.cpp sees the same numbers.
#ifndef MONOLITH_GGUF_TYPES_H
#define MONOLITH_GGUF_TYPES_H

#include <stddef.h>
#include <stdint.h>

// n floats of x in `type` (malloc'd, *nbytes set). NULL with mo_error() for a type
// monolith does not write, n not a multiple of 32 for Q8_0, or out of memory.
void *ggml_encode(uint32_t type, const float *x, size_t n, size_t *nbytes);
// n floats from src in `type` into dst. Returns 0, or -1 for an unsupported type, or
// (with `what` naming the tensor) a NaN or infinity in the values.
int ggml_decode(float *dst, uint32_t type, const void *src, size_t n, const char *what);

#endif
