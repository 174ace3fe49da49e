// simd.h: run-time choice of the SIMD level for the elementwise kernels.
//
// Every elementwise kernel has a scalar version and, on x86-64, AVX2 and AVX-512
// versions compiled with target attributes (no -march=native needed). The level is the
// best the CPU supports, unless the build forces one (-DMONOLITH_SIMD=avx2) or the
// environment does (MONOLITH_SIMD=scalar|avx2|avx512, for comparisons). Tests call
// simd_set() to run every level against kernels/ref.
#ifndef MONOLITH_SIMD_H
#define MONOLITH_SIMD_H

typedef enum { SIMD_SCALAR = 0, SIMD_AVX2 = 1, SIMD_AVX512 = 2 } simd_level;

// The level in use (decided on first call).
simd_level simd_active(void);
// The best level this CPU can run.
simd_level simd_best(void);
// Forces a level; returns -1 (and changes nothing) if the CPU cannot run it.
int simd_set(simd_level level);
const char *simd_name(simd_level level);

#if defined(__x86_64__) && defined(__GNUC__)
#define MO_HAVE_X86 1
#define MO_TARGET_AVX2 __attribute__((target("avx2,fma")))
#define MO_TARGET_AVX512 __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,fma")))
#else
#define MO_HAVE_X86 0
#endif

// Calls fn_avx512, fn_avx2 or fn_scalar (static functions of the calling file) by the
// active level: `MO_SIMD_DISPATCH(swiglu_fwd, out, a, b, n);` ends the function.
#if MO_HAVE_X86
#define MO_SIMD_DISPATCH(fn, ...)                           \
    switch (simd_active()) {                                \
    case SIMD_AVX512: fn##_avx512(__VA_ARGS__); return;     \
    case SIMD_AVX2: fn##_avx2(__VA_ARGS__); return;         \
    default: fn##_scalar(__VA_ARGS__); return;              \
    }
#else
#define MO_SIMD_DISPATCH(fn, ...) fn##_scalar(__VA_ARGS__)
#endif

#endif
