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

// Whether the AVX-512 heads take this head size (and the CPU and the active SIMD level
// allow them).
int attention_avx512_takes(int hd);

void attention_forward_head_avx512(float *out, float *lse, const float *q, const float *k, const float *v, int T,
                                   int ldq, int ldkv, int hd, float scale);
void attention_backward_head_avx512(float *dq, float *dk, float *dv, const float *dout, const float *out,
                                    const float *lse, const float *q, const float *k, const float *v, int T, int ldq,
                                    int ldkv, int hd, float scale);

#endif
