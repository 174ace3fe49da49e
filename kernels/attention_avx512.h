// attention_avx512.h: the AVX-512 heads of kernels/attention.c (private to kernels/).
//
// One (batch, head) of the fused causal attention, computed with register-tiled AVX-512
// products instead of per-tile sgemm calls, for head sizes hd that are a multiple of 16 and
// at most ATT_AVX512_MAX_HD. Same contract as the generic heads of attention.c: forward
// writes out[T, hd] (leading dimension ldq) and lse[T]; backward assigns dq and adds into
// dk, dv (leading dimension ldkv). docs/kernels.md describes the layout.
#ifndef MONOLITH_ATTENTION_AVX512_H
#define MONOLITH_ATTENTION_AVX512_H

#define ATT_AVX512_MAX_HD 128
#define ATT_QB 64  // queries per block: 4 vectors of 16 lanes
#ifndef ATT_KT
#define ATT_KT 64  // keys per tile (a multiple of 16, so a tile never starts past a block's first query)
#endif

// The first 16-query vector of block r0 that sees key c0 + j (its last query, r0 + 16 v +
// 15, at or after the key); the vectors before it are skipped for that key.
static inline int att_first_vector(int c0, int j, int r0) {
    int first = c0 + j - r0;
    return first > 0 ? first / 16 : 0;
}

// The instances of a register tile: n1 (keys or rows) and n2 (vectors) from 1 to 4 each,
// picked at run time.
#define ATT_CASES(F, ...)                                                                                 \
    switch ((n1 - 1) * 4 + (n2 - 1)) {                                                                \
    case 0: F(__VA_ARGS__, 1, 1); break;                                                               \
    case 1: F(__VA_ARGS__, 1, 2); break;                                                               \
    case 2: F(__VA_ARGS__, 1, 3); break;                                                               \
    case 3: F(__VA_ARGS__, 1, 4); break;                                                               \
    case 4: F(__VA_ARGS__, 2, 1); break;                                                               \
    case 5: F(__VA_ARGS__, 2, 2); break;                                                               \
    case 6: F(__VA_ARGS__, 2, 3); break;                                                               \
    case 7: F(__VA_ARGS__, 2, 4); break;                                                               \
    case 8: F(__VA_ARGS__, 3, 1); break;                                                               \
    case 9: F(__VA_ARGS__, 3, 2); break;                                                               \
    case 10: F(__VA_ARGS__, 3, 3); break;                                                              \
    case 11: F(__VA_ARGS__, 3, 4); break;                                                              \
    case 12: F(__VA_ARGS__, 4, 1); break;                                                              \
    case 13: F(__VA_ARGS__, 4, 2); break;                                                              \
    case 14: F(__VA_ARGS__, 4, 3); break;                                                              \
    default: F(__VA_ARGS__, 4, 4); break;                                                              \
    }

// Whether the AVX-512 heads take this head size (and the CPU and the active SIMD level
// allow them).
int attention_avx512_takes(int hd);

// bf16 = 1: the products in bf16 with fp32 accumulation (attention_bf16.h; the caller
// checks att_bf16_cpu()), the softmax and every output in fp32.
void attention_forward_head_avx512(float *out, float *lse, const float *q, const float *k, const float *v, int T,
                                   int ldq, int ldkv, int hd, float scale, int bf16);
void attention_backward_head_avx512(float *dq, float *dk, float *dv, const float *dout, const float *out,
                                    const float *lse, const float *q, const float *k, const float *v, int T, int ldq,
                                    int ldkv, int hd, float scale, int bf16);

#endif
