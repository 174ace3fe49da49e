// simd.c: which SIMD level the elementwise kernels use.
#include "kernels/simd.h"

#include <stdlib.h>
#include <string.h>

static int active = -1;

simd_level simd_best(void) {
#if MO_HAVE_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
        return SIMD_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return SIMD_AVX2;
#endif
    return SIMD_SCALAR;
}

static int parse_level(const char *s) {
    if (!s || !*s || !strcmp(s, "auto")) return -1;
    if (!strcmp(s, "scalar")) return SIMD_SCALAR;
    if (!strcmp(s, "avx2")) return SIMD_AVX2;
    if (!strcmp(s, "avx512")) return SIMD_AVX512;
    return -1;
}

simd_level simd_active(void) {
    if (active < 0) {
        simd_level best = simd_best();
        int want = parse_level(getenv("MONOLITH_SIMD"));
        if (want < 0) want = parse_level(MONOLITH_SIMD_FORCE);
        active = (want >= 0 && want <= (int)best) ? want : (int)best;
    }
    return (simd_level)active;
}

int simd_set(simd_level level) {
    if ((int)level > (int)simd_best()) return -1;
    active = (int)level;
    return 0;
}

const char *simd_name(simd_level level) {
    switch (level) {
    case SIMD_AVX512: return "avx512";
    case SIMD_AVX2: return "avx2";
    default: return "scalar";
    }
}
