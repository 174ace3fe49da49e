// swiglu.c: SiLU and SwiGLU, scalar and SIMD (AVX2, AVX-512), forward and backward.
// Each SIMD version handles whole vectors and hands the tail to the scalar version;
// large calls run on every thread (below).
#include "kernels/swiglu.h"

#include "kernels/bf16_round.h"
#include "kernels/simd.h"
#include "kernels/threads.h"
#include "kernels/simd_math.h"

#include <math.h>

// ---------------------------------------------------------------------------- scalar

static inline float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

static void silu_fwd_scalar(float *out, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = x[i] * sigmoidf(x[i]);
}

static void silu_bwd_scalar(float *dx, const float *dout, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float s = sigmoidf(x[i]);
        dx[i] = dout[i] * s * (1.0f + x[i] * (1.0f - s));
    }
}

static void swiglu_fwd_scalar(float *out, const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = a[i] * sigmoidf(a[i]) * b[i];
}

static void swiglu_bwd_scalar(float *da, float *db, const float *dout, const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float s = sigmoidf(a[i]);
        float dai = dout[i] * b[i] * s * (1.0f + a[i] * (1.0f - s));
        float dbi = dout[i] * a[i] * s;
        da[i] = dai;
        db[i] = dbi;
    }
}

// The bf16 outputs: the float results above, rounded (bf16_round.h). Through a small
// float block, so that every element is computed by the same code as in the float call.
#define BF16_BLOCK 64

static void swiglu_fwd_bf16_scalar(mo_bf16 *out, const float *a, const float *b, size_t n) {
    float t[BF16_BLOCK];
    for (size_t i = 0; i < n; i += BF16_BLOCK) {
        size_t m = n - i < BF16_BLOCK ? n - i : BF16_BLOCK;
        swiglu_fwd_scalar(t, a + i, b + i, m);
        for (size_t j = 0; j < m; j++) out[i + j] = bf16_round_one(t[j]);
    }
}

static void swiglu_bwd_bf16_scalar(mo_bf16 *da, mo_bf16 *db, const float *dout, const float *a, const float *b,
                                   size_t n) {
    float ta[BF16_BLOCK], tb[BF16_BLOCK];
    for (size_t i = 0; i < n; i += BF16_BLOCK) {
        size_t m = n - i < BF16_BLOCK ? n - i : BF16_BLOCK;
        swiglu_bwd_scalar(ta, tb, dout + i, a + i, b + i, m);
        for (size_t j = 0; j < m; j++) da[i + j] = bf16_round_one(ta[j]), db[i + j] = bf16_round_one(tb[j]);
    }
}

#if MO_HAVE_X86
// ---------------------------------------------------------------------------- AVX-512

static inline MO_TARGET_AVX512 __m512 sigmoid512(__m512 x) {
    __m512 one = _mm512_set1_ps(1.0f);
    return _mm512_div_ps(one, _mm512_add_ps(one, mo_exp512(_mm512_sub_ps(_mm512_setzero_ps(), x))));
}

static MO_TARGET_AVX512 void silu_fwd_avx512(float *out, const float *x, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_loadu_ps(x + i);
        _mm512_storeu_ps(out + i, _mm512_mul_ps(v, sigmoid512(v)));
    }
    silu_fwd_scalar(out + i, x + i, n - i);
}

static MO_TARGET_AVX512 void silu_bwd_avx512(float *dx, const float *dout, const float *x, size_t n) {
    __m512 one = _mm512_set1_ps(1.0f);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_loadu_ps(x + i), s = sigmoid512(v);
        __m512 d = _mm512_mul_ps(s, _mm512_fmadd_ps(v, _mm512_sub_ps(one, s), one));
        _mm512_storeu_ps(dx + i, _mm512_mul_ps(_mm512_loadu_ps(dout + i), d));
    }
    silu_bwd_scalar(dx + i, dout + i, x + i, n - i);
}

static inline MO_TARGET_AVX512 __m512 swiglu_fwd16(const float *a, const float *b) {
    __m512 va = _mm512_loadu_ps(a);
    return _mm512_mul_ps(_mm512_mul_ps(va, sigmoid512(va)), _mm512_loadu_ps(b));
}

// da, db of 16 elements.
static inline MO_TARGET_AVX512 void swiglu_bwd16(__m512 *da, __m512 *db, const float *dout, const float *a,
                                                 const float *b) {
    __m512 one = _mm512_set1_ps(1.0f);
    __m512 va = _mm512_loadu_ps(a), vb = _mm512_loadu_ps(b), g = _mm512_loadu_ps(dout);
    __m512 s = sigmoid512(va);
    __m512 dsilu = _mm512_mul_ps(s, _mm512_fmadd_ps(va, _mm512_sub_ps(one, s), one));
    *da = _mm512_mul_ps(_mm512_mul_ps(g, vb), dsilu);
    *db = _mm512_mul_ps(g, _mm512_mul_ps(va, s));
}

static MO_TARGET_AVX512 void swiglu_fwd_avx512(float *out, const float *a, const float *b, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(out + i, swiglu_fwd16(a + i, b + i));
    swiglu_fwd_scalar(out + i, a + i, b + i, n - i);
}

static MO_TARGET_AVX512 void swiglu_bwd_avx512(float *da, float *db, const float *dout, const float *a,
                                               const float *b, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 x, y;
        swiglu_bwd16(&x, &y, dout + i, a + i, b + i);
        _mm512_storeu_ps(da + i, x);
        _mm512_storeu_ps(db + i, y);
    }
    swiglu_bwd_scalar(da + i, db + i, dout + i, a + i, b + i, n - i);
}

static MO_TARGET_AVX512 void swiglu_fwd_bf16_avx512(mo_bf16 *out, const float *a, const float *b, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) bf16_store16_avx512(out + i, swiglu_fwd16(a + i, b + i));
    swiglu_fwd_bf16_scalar(out + i, a + i, b + i, n - i);
}

static MO_TARGET_AVX512 void swiglu_bwd_bf16_avx512(mo_bf16 *da, mo_bf16 *db, const float *dout, const float *a,
                                                    const float *b, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 x, y;
        swiglu_bwd16(&x, &y, dout + i, a + i, b + i);
        bf16_store16_avx512(da + i, x);
        bf16_store16_avx512(db + i, y);
    }
    swiglu_bwd_bf16_scalar(da + i, db + i, dout + i, a + i, b + i, n - i);
}

// ---------------------------------------------------------------------------- AVX2

static inline MO_TARGET_AVX2 __m256 sigmoid256(__m256 x) {
    __m256 one = _mm256_set1_ps(1.0f);
    return _mm256_div_ps(one, _mm256_add_ps(one, mo_exp256(_mm256_sub_ps(_mm256_setzero_ps(), x))));
}

static MO_TARGET_AVX2 void silu_fwd_avx2(float *out, const float *x, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        _mm256_storeu_ps(out + i, _mm256_mul_ps(v, sigmoid256(v)));
    }
    silu_fwd_scalar(out + i, x + i, n - i);
}

static MO_TARGET_AVX2 void silu_bwd_avx2(float *dx, const float *dout, const float *x, size_t n) {
    __m256 one = _mm256_set1_ps(1.0f);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i), s = sigmoid256(v);
        __m256 d = _mm256_mul_ps(s, _mm256_fmadd_ps(v, _mm256_sub_ps(one, s), one));
        _mm256_storeu_ps(dx + i, _mm256_mul_ps(_mm256_loadu_ps(dout + i), d));
    }
    silu_bwd_scalar(dx + i, dout + i, x + i, n - i);
}

static inline MO_TARGET_AVX2 __m256 swiglu_fwd8(const float *a, const float *b) {
    __m256 va = _mm256_loadu_ps(a);
    return _mm256_mul_ps(_mm256_mul_ps(va, sigmoid256(va)), _mm256_loadu_ps(b));
}

static inline MO_TARGET_AVX2 void swiglu_bwd8(__m256 *da, __m256 *db, const float *dout, const float *a,
                                              const float *b) {
    __m256 one = _mm256_set1_ps(1.0f);
    __m256 va = _mm256_loadu_ps(a), vb = _mm256_loadu_ps(b), g = _mm256_loadu_ps(dout);
    __m256 s = sigmoid256(va);
    __m256 dsilu = _mm256_mul_ps(s, _mm256_fmadd_ps(va, _mm256_sub_ps(one, s), one));
    *da = _mm256_mul_ps(_mm256_mul_ps(g, vb), dsilu);
    *db = _mm256_mul_ps(g, _mm256_mul_ps(va, s));
}

static MO_TARGET_AVX2 void swiglu_fwd_avx2(float *out, const float *a, const float *b, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, swiglu_fwd8(a + i, b + i));
    swiglu_fwd_scalar(out + i, a + i, b + i, n - i);
}

static MO_TARGET_AVX2 void swiglu_bwd_avx2(float *da, float *db, const float *dout, const float *a, const float *b,
                                           size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x, y;
        swiglu_bwd8(&x, &y, dout + i, a + i, b + i);
        _mm256_storeu_ps(da + i, x);
        _mm256_storeu_ps(db + i, y);
    }
    swiglu_bwd_scalar(da + i, db + i, dout + i, a + i, b + i, n - i);
}

static MO_TARGET_AVX2 void swiglu_fwd_bf16_avx2(mo_bf16 *out, const float *a, const float *b, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) bf16_store8_avx2(out + i, swiglu_fwd8(a + i, b + i));
    swiglu_fwd_bf16_scalar(out + i, a + i, b + i, n - i);
}

static MO_TARGET_AVX2 void swiglu_bwd_bf16_avx2(mo_bf16 *da, mo_bf16 *db, const float *dout, const float *a,
                                                const float *b, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x, y;
        swiglu_bwd8(&x, &y, dout + i, a + i, b + i);
        bf16_store8_avx2(da + i, x);
        bf16_store8_avx2(db + i, y);
    }
    swiglu_bwd_bf16_scalar(da + i, db + i, dout + i, a + i, b + i, n - i);
}
#endif

// ---------------------------------------------------------------------------- dispatch

// One of the four ops over elements [lo, lo + n) of its arrays.
typedef enum { SILU_FWD, SILU_BWD, SWIGLU_FWD, SWIGLU_BWD, SWIGLU_FWD_BF16, SWIGLU_BWD_BF16 } op_kind;
typedef struct {
    op_kind op;
    float *out, *out2;             // out, or dx / da; db
    const float *in, *in2, *in3;   // x; dout, x; a, b; dout, a, b
    mo_bf16 *bout, *bout2;         // the bf16 forms' out; da, db
} op_call;

static void run(const op_call *c, size_t lo, size_t n) {
    switch (c->op) {
    case SILU_FWD: MO_SIMD_DISPATCH(silu_fwd, c->out + lo, c->in + lo, n);
        break;
    case SILU_BWD: MO_SIMD_DISPATCH(silu_bwd, c->out + lo, c->in + lo, c->in2 + lo, n);
        break;
    case SWIGLU_FWD: MO_SIMD_DISPATCH(swiglu_fwd, c->out + lo, c->in + lo, c->in2 + lo, n);
        break;
    case SWIGLU_BWD: MO_SIMD_DISPATCH(swiglu_bwd, c->out + lo, c->out2 + lo, c->in + lo, c->in2 + lo, c->in3 + lo, n);
        break;
    case SWIGLU_FWD_BF16: MO_SIMD_DISPATCH(swiglu_fwd_bf16, c->bout + lo, c->in + lo, c->in2 + lo, n);
        break;
    case SWIGLU_BWD_BF16:
        MO_SIMD_DISPATCH(swiglu_bwd_bf16, c->bout + lo, c->bout2 + lo, c->in + lo, c->in2 + lo, c->in3 + lo, n);
        break;
    }
}

// A large call (an FFN's [rows, d_ff]: 4M elements a bench-S layer) made outside a
// parallel region runs on every OpenMP thread, one threads_split16 range each (a multiple
// of 16 elements from the call's start: every element sits at the same place in its
// vector as in one call, so the same bits for any thread count). Smaller calls, and calls
// from inside a parallel region, run on the calling thread.
#define SWIGLU_PAR_MIN ((size_t)1 << 16)

static void run_part(const void *c, size_t lo, size_t n) { run(c, lo, n); }

static void split(const op_call *c, size_t n) { threads_split16(n, SWIGLU_PAR_MIN, run_part, c); }

void silu_forward(float *out, const float *x, size_t n) { split(&(op_call){.op = SILU_FWD, .out = out, .in = x}, n); }

void silu_backward(float *dx, const float *dout, const float *x, size_t n) {
    split(&(op_call){.op = SILU_BWD, .out = dx, .in = dout, .in2 = x}, n);
}

void swiglu_forward(float *out, const float *a, const float *b, size_t n) {
    split(&(op_call){.op = SWIGLU_FWD, .out = out, .in = a, .in2 = b}, n);
}

void swiglu_backward(float *da, float *db, const float *dout, const float *a, const float *b, size_t n) {
    split(&(op_call){.op = SWIGLU_BWD, .out = da, .out2 = db, .in = dout, .in2 = a, .in3 = b}, n);
}

void swiglu_forward_bf16(mo_bf16 *out, const float *a, const float *b, size_t n) {
    split(&(op_call){.op = SWIGLU_FWD_BF16, .in = a, .in2 = b, .bout = out}, n);
}

void swiglu_backward_bf16(mo_bf16 *da, mo_bf16 *db, const float *dout, const float *a, const float *b, size_t n) {
    split(&(op_call){.op = SWIGLU_BWD_BF16, .in = dout, .in2 = a, .in3 = b, .bout = da, .bout2 = db}, n);
}
