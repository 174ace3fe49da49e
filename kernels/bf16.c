// bf16.c: float32 <-> bfloat16 conversion (scalar, AVX2, AVX-512) and bf16 GEMMs over
// oneDNN's dnnl_gemm_bf16bf16f32 (see bf16.h).
//
// The rounding is done on the bit patterns (kernels/bf16_round.h), the same at every
// level, rather than with AVX512_BF16's vcvtneps2bf16, which flushes subnormal inputs to
// zero: conversion is memory bound, so the integer form costs nothing and the result
// never depends on the CPU.
#include "kernels/bf16.h"

#include "kernels/bf16_round.h"
#include "kernels/matmul.h"
#include "kernels/simd.h"

#include <dnnl.h>
#include <omp.h>
#include <string.h>

#if MO_HAVE_X86
#include <immintrin.h>
#endif

// oneDNN exports this row-major bf16 GEMM (C API, DNNL_API) but its 2.x headers do not
// declare it; oneDNN's own tests declare it the same way.
dnnl_status_t dnnl_gemm_bf16bf16f32(char transa, char transb, dnnl_dim_t M, dnnl_dim_t N, dnnl_dim_t K, float alpha,
                                    const mo_bf16 *A, dnnl_dim_t lda, const mo_bf16 *B, dnnl_dim_t ldb, float beta,
                                    float *C, dnnl_dim_t ldc);

int bf16_supported(void) {
    static int cached = -1;
    if (cached < 0) {
        dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
        cached = ((unsigned)isa & (unsigned)dnnl_cpu_isa_avx512_core_bf16) == (unsigned)dnnl_cpu_isa_avx512_core_bf16;
    }
    return cached;
}

// ---------------------------------------------------------------------------- conversion

#define BF16_PAR_MIN ((size_t)1 << 16)  // elements below which one thread converts
#define BF16_CHUNK ((size_t)1 << 14)    // elements per parallel chunk

static void from_f32_scalar(mo_bf16 *dst, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = bf16_round_one(x[i]);
}

static void scaled_scalar(mo_bf16 *dst, const float *x, float s, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = bf16_round_one(s * x[i]);
}

static void to_f32_scalar(float *dst, const mo_bf16 *x, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)x[i] << 16;
        memcpy(dst + i, &u, sizeof u);
    }
}

#if MO_HAVE_X86
static MO_TARGET_AVX512 void from_f32_avx512(mo_bf16 *dst, const float *x, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) bf16_store16_avx512(dst + i, _mm512_loadu_ps(x + i));
    from_f32_scalar(dst + i, x + i, n - i);
}

static MO_TARGET_AVX512 void scaled_avx512(mo_bf16 *dst, const float *x, float s, size_t n) {
    const __m512 vs = _mm512_set1_ps(s);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) bf16_store16_avx512(dst + i, _mm512_mul_ps(vs, _mm512_loadu_ps(x + i)));
    scaled_scalar(dst + i, x + i, s, n - i);
}

static MO_TARGET_AVX512 void to_f32_avx512(float *dst, const mo_bf16 *x, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(x + i)));
        _mm512_storeu_si512((void *)(dst + i), _mm512_slli_epi32(w, 16));
    }
    to_f32_scalar(dst + i, x + i, n - i);
}

static MO_TARGET_AVX2 void from_f32_avx2(mo_bf16 *dst, const float *x, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i a = bf16_round_lanes256(_mm256_loadu_si256((const __m256i *)(x + i)));
        __m256i b = bf16_round_lanes256(_mm256_loadu_si256((const __m256i *)(x + i + 8)));
        // packus works per 128-bit lane: a0 b0 a1 b1 -> reorder the 64-bit quarters to a0 a1 b0 b1
        __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(a, b), 0xd8);
        _mm256_storeu_si256((__m256i *)(dst + i), p);
    }
    from_f32_scalar(dst + i, x + i, n - i);
}

static MO_TARGET_AVX2 void scaled_avx2(mo_bf16 *dst, const float *x, float s, size_t n) {
    const __m256 vs = _mm256_set1_ps(s);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) bf16_store8_avx2(dst + i, _mm256_mul_ps(vs, _mm256_loadu_ps(x + i)));
    scaled_scalar(dst + i, x + i, s, n - i);
}

static MO_TARGET_AVX2 void to_f32_avx2(float *dst, const mo_bf16 *x, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(x + i)));
        _mm256_storeu_si256((__m256i *)(dst + i), _mm256_slli_epi32(w, 16));
    }
    to_f32_scalar(dst + i, x + i, n - i);
}
#endif

// The same rounding with non-temporal stores (bf16_from_f32_stream): scalar up to the
// first aligned vector, then whole aligned vectors, then the tail.
static void stream_scalar(mo_bf16 *dst, const float *x, size_t n) { from_f32_scalar(dst, x, n); }

#if MO_HAVE_X86
static MO_TARGET_AVX512 void stream_avx512(mo_bf16 *dst, const float *x, size_t n) {
    size_t i = 0;
    for (; i < n && ((uintptr_t)(dst + i) & 31); i++) dst[i] = bf16_round_one(x[i]);
    for (; i + 16 <= n; i += 16) {
        __m512i u = _mm512_castps_si512(_mm512_loadu_ps(x + i));
        _mm256_stream_si256((__m256i *)(dst + i), _mm512_cvtepi32_epi16(bf16_round_lanes512(u)));
    }
    from_f32_scalar(dst + i, x + i, n - i);
    _mm_sfence();  // the streamed stores are seen before anything this thread does next
}

static MO_TARGET_AVX2 void stream_avx2(mo_bf16 *dst, const float *x, size_t n) {
    size_t i = 0;
    for (; i < n && ((uintptr_t)(dst + i) & 15); i++) dst[i] = bf16_round_one(x[i]);
    for (; i + 8 <= n; i += 8) {
        __m256i r = bf16_round_lanes256(_mm256_loadu_si256((const __m256i *)(x + i)));
        _mm_stream_si128((__m128i *)(dst + i), _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1)));
    }
    from_f32_scalar(dst + i, x + i, n - i);
    _mm_sfence();
}
#endif

void bf16_from_f32_stream(mo_bf16 *dst, const float *x, size_t n) { MO_SIMD_DISPATCH(stream, dst, x, n); }

void bf16_from_f32_scaled(mo_bf16 *dst, const float *x, float s, size_t n) { MO_SIMD_DISPATCH(scaled, dst, x, s, n); }

static void from_f32_run(mo_bf16 *dst, const float *x, size_t n) { MO_SIMD_DISPATCH(from_f32, dst, x, n); }
static void to_f32_run(float *dst, const mo_bf16 *x, size_t n) { MO_SIMD_DISPATCH(to_f32, dst, x, n); }

void bf16_from_f32(mo_bf16 *dst, const float *x, size_t n) {
    if (n < BF16_PAR_MIN || omp_in_parallel()) {
        from_f32_run(dst, x, n);
        return;
    }
    simd_active();  // decide the level before the threads read it
    const long long chunks = (long long)((n + BF16_CHUNK - 1) / BF16_CHUNK);
#pragma omp parallel for schedule(static)
    for (long long c = 0; c < chunks; c++) {
        size_t o = (size_t)c * BF16_CHUNK;
        from_f32_run(dst + o, x + o, n - o < BF16_CHUNK ? n - o : BF16_CHUNK);
    }
}

void bf16_to_f32(float *dst, const mo_bf16 *x, size_t n) {
    if (n < BF16_PAR_MIN || omp_in_parallel()) {
        to_f32_run(dst, x, n);
        return;
    }
    simd_active();
    const long long chunks = (long long)((n + BF16_CHUNK - 1) / BF16_CHUNK);
#pragma omp parallel for schedule(static)
    for (long long c = 0; c < chunks; c++) {
        size_t o = (size_t)c * BF16_CHUNK;
        to_f32_run(dst + o, x + o, n - o < BF16_CHUNK ? n - o : BF16_CHUNK);
    }
}

// ---------------------------------------------------------------------------- products

// C[M,N] (+)= op(A) op(B), row-major; an empty inner dimension zeroes C (acc = 0) or
// leaves it, as matmul.c does. oneDNN threads the call over OpenMP unless it is made
// inside a parallel region, where it runs on the calling thread alone.
static void gemm_bf16(char ta, char tb, float *C, const mo_bf16 *A, int lda, const mo_bf16 *B, int ldb, int M, int N,
                      int K, int acc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        if (!acc) memset(C, 0, (size_t)M * (size_t)N * sizeof *C);
        return;
    }
    dnnl_gemm_bf16bf16f32(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, acc ? 1.0f : 0.0f, C, N);
}

void matmul_bf16_nn(float *C, const mo_bf16 *A, const mo_bf16 *B, int M, int N, int K, int acc) {
    gemm_bf16('N', 'N', C, A, K, B, N, M, N, K, acc);
}

void matmul_bf16_nt(float *C, const mo_bf16 *A, const mo_bf16 *B, int M, int N, int K, int acc) {
    gemm_bf16('N', 'T', C, A, K, B, K, M, N, K, acc);
}

void matmul_bf16_tn(float *C, const mo_bf16 *A, const mo_bf16 *B, int M, int N, int K, int acc) {
    gemm_bf16('T', 'N', C, A, M, B, N, M, N, K, acc);
}

static void bf_nt(float *C, const void *A, const void *B, int M, int N, int K, int acc) {
    matmul_bf16_nt(C, A, B, M, N, K, acc);
}
static void bf_nn(float *C, const void *A, const void *B, int M, int N, int K, int acc) {
    matmul_bf16_nn(C, A, B, M, N, K, acc);
}
static void bf_tn(float *C, const void *A, const void *B, int M, int N, int K, int acc) {
    matmul_bf16_tn(C, A, B, M, N, K, acc);
}
static const matmul_dense_ops bf_ops = {bf_nt, bf_nn, bf_tn, sizeof(mo_bf16)};

void matmul_bf16_grouped_nt(float *C, const mo_bf16 *A, const mo_bf16 *B, const int *offs, int G, int N, int K,
                            int acc) {
    matmul_grouped(&bf_ops, MATMUL_NT, C, A, B, offs, G, N, K, acc);
}

void matmul_bf16_grouped_nn(float *C, const mo_bf16 *A, const mo_bf16 *B, const int *offs, int G, int N, int K,
                            int acc) {
    matmul_grouped(&bf_ops, MATMUL_NN, C, A, B, offs, G, N, K, acc);
}

void matmul_bf16_grouped_tn(float *C, const mo_bf16 *A, const mo_bf16 *B, const int *offs, int G, int M, int N,
                            int acc) {
    matmul_grouped(&bf_ops, MATMUL_TN, C, A, B, offs, G, M, N, acc);
}

void matmul_bf16_grouped_nn_some(float *C, const mo_bf16 *A, const mo_bf16 *B, const int *offs, int G, int N, int K,
                                 int acc, const unsigned char *on) {
    matmul_grouped_some(&bf_ops, MATMUL_NN, C, A, B, offs, G, N, K, acc, on);
}

void matmul_bf16_grouped_tn_some(float *C, const mo_bf16 *A, const mo_bf16 *B, const int *offs, int G, int M, int N,
                                 int acc, const unsigned char *on) {
    matmul_grouped_some(&bf_ops, MATMUL_TN, C, A, B, offs, G, M, N, acc, on);
}
