// kernels_bf16.c: bf16 rounding bit for bit against kernels/ref at every SIMD level
// (ties, subnormals, overflow, NaN, odd lengths, the threaded path, the streaming form at
// every alignment), the exact way back,
// and the bf16 products (dense and grouped, every form, acc 0 and 1, empty shapes and
// blocks, each grouped strategy, inside a parallel region) against ref_matmul_* of the
// rounded inputs in double.
#include "kernels/bf16.h"
#include "kernels/matmul.h"
#include "kernels/ref/ref.h"
#include "kernels/simd.h"
#include "tests/grouped_check.h"
#include "tests/testutil.h"

#define TOL_BF16 2e-6  // normalized error against double of the same bf16 inputs (fp32 accumulation)

// The bf16 the oracle gives for x (NaN: any quiet NaN with x's sign).
static void check_round(const float *x, const mo_bf16 *got, size_t n, const char *lvl) {
    for (size_t i = 0; i < n; i++) {
        if (isnan(x[i])) {
            uint32_t g = (uint32_t)got[i] << 16;
            ck_assert_msg(isnan(tu_from_bits(g)) && (g & 0x00400000u), "%s: NaN %08x -> %04x not a quiet NaN", lvl,
                          tu_bits(x[i]), got[i]);
            continue;
        }
        float want = (float)ref_bf16_round((double)x[i]);
        ck_assert_msg((tu_bits(want) & 0xffffu) == 0, "oracle gave a non-bf16 value for %08x", tu_bits(x[i]));
        ck_assert_msg(got[i] == (mo_bf16)(tu_bits(want) >> 16), "%s: x=%08x (%g) element %zu: got %04x, want %04x", lvl,
                      tu_bits(x[i]), x[i], i, got[i], tu_bits(want) >> 16);
    }
}

static const uint32_t specials[] = {
    0x00000000, 0x80000000, 0x3f800000, 0x3f808000 /* tie, even below */, 0x3f818000 /* tie, odd below */,
    0x3f808001, 0x3f80ffff, 0xbf818000, 0x00000001 /* smallest subnormal */, 0x00008000, 0x00018000,
    0x007fffff, 0x00800000, 0x7f7fffff /* FLT_MAX: rounds to inf */, 0x7f7f7fff, 0x7f7f8000 /* tie to inf */,
    0xff7fffff, 0x7f800000, 0xff800000, 0x7fc00000, 0x7f800001 /* signalling NaN */, 0xffffffff, 0x47ffff80,
};
#define N_SPECIALS (sizeof specials / sizeof specials[0])

START_TEST(test_round_matches_ref_every_level) {
    const size_t n_big = ((size_t)1 << 17) + 13;  // past the threading threshold, odd tail
    float *x = malloc(n_big * 4);
    mo_bf16 *b = malloc(n_big * 2);
    // random magnitudes over the whole exponent range, plus raw random bit patterns
    uint64_t st = 12345;
    for (size_t i = 0; i < n_big; i++) {
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        uint32_t r = (uint32_t)(st >> 32);
        x[i] = (i & 1) ? tu_from_bits(r) : ldexpf((float)(r & 0xffff) / 65536.0f - 0.5f, (int)(r >> 24) % 260 - 140);
    }
    for (size_t i = 0; i < N_SPECIALS; i++) x[i] = tu_from_bits(specials[i]);
    for (int lvl = SIMD_SCALAR; lvl <= (int)simd_best(); lvl++) {
        ck_assert_int_eq(simd_set((simd_level)lvl), 0);
        const char *ln = simd_name((simd_level)lvl);
        for (size_t n = 0; n <= 67; n++) {  // every tail length of every level
            memset(b, 0xab, 70 * 2);
            bf16_from_f32(b, x, n);
            check_round(x, b, n, ln);
            ck_assert_msg(b[n] == 0xabab, "%s: wrote past n = %zu", ln, n);
        }
        bf16_from_f32(b, x, n_big);
        check_round(x, b, n_big, ln);
        for (size_t at = 0; at < 17; at++)  // the streaming form: every alignment of dst, every tail
            for (size_t n = 0; n <= 67; n += at % 2 ? 1 : 5) {
                memset(b, 0xab, 90 * 2);
                bf16_from_f32_stream(b + at, x, n);
                check_round(x, b + at, n, ln);
                for (size_t i = 0; i < at; i++) ck_assert_msg(b[i] == 0xabab, "%s: stream wrote before dst", ln);
                ck_assert_msg(b[at + n] == 0xabab, "%s: stream wrote past n = %zu (at %zu)", ln, n, at);
            }
        bf16_from_f32_stream(b, x, n_big);
        check_round(x, b, n_big, ln);
        const float scales[3] = {1.0f, -0.37f, 3e20f};  // the scaled form: s x in float32, then rounded
        for (int k = 0; k < 3; k++)
            for (size_t n = 0; n <= 67; n += 3) {
                memset(b, 0xab, 70 * 2);
                bf16_from_f32_scaled(b, x, scales[k], n);
                for (size_t i = 0; i < n; i++) {
                    float want = scales[k] * x[i];
                    check_round(&want, b + i, 1, ln);
                }
                ck_assert_msg(b[n] == 0xabab, "%s: scaled wrote past n = %zu", ln, n);
            }
    }
    simd_set(simd_best());
    free(x), free(b);
}
END_TEST

START_TEST(test_to_f32_is_exact) {
    const size_t n = 65536 + 5;  // every bf16 pattern, then a tail
    mo_bf16 *b = malloc(n * 2);
    float *f = malloc(n * 4);
    for (size_t i = 0; i < n; i++) b[i] = (mo_bf16)i;
    for (int lvl = SIMD_SCALAR; lvl <= (int)simd_best(); lvl++) {
        ck_assert_int_eq(simd_set((simd_level)lvl), 0);
        bf16_to_f32(f, b, n);
        for (size_t i = 0; i < n; i++)
            ck_assert_msg(tu_bits(f[i]) == (uint32_t)b[i] << 16, "%s: %04x -> %08x", simd_name((simd_level)lvl), b[i],
                          tu_bits(f[i]));
    }
    simd_set(simd_best());
    free(b), free(f);
}
END_TEST

// x rounded to bf16, as bf16 and as the double the oracle multiplies.
static void make_operand(void *b, double *d, size_t n, uint64_t seed) {
    float *x = malloc((n + 1) * 4);
    tu_fill(x, n, seed, 1.0f);
    bf16_from_f32(b, x, n);
    for (size_t i = 0; i < n; i++) d[i] = ref_bf16_round(x[i]);
    free(x);
}

typedef void (*bf_fn)(float *, const mo_bf16 *, const mo_bf16 *, int, int, int, int);
typedef void (*ref_fn)(double *, const double *, const double *, int, int, int, int);

START_TEST(test_dense_matches_ref) {
    static const int shapes[][3] = {{1, 1, 1},     {1, 7, 3},     {5, 1, 9},  {4, 6, 1},  {17, 33, 65},
                                    {64, 64, 64},  {3, 129, 31},  {100, 37, 250}, {0, 5, 7}, {5, 0, 7},
                                    {5, 7, 0},     {200, 96, 512}};
    static const struct {
        const char *name;
        bf_fn f;
        ref_fn r;
    } forms[] = {{"nn", matmul_bf16_nn, ref_matmul_nn}, {"nt", matmul_bf16_nt, ref_matmul_nt},
                 {"tn", matmul_bf16_tn, ref_matmul_tn}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        size_t na = (size_t)M * K, nb = (size_t)K * N, nc = (size_t)M * N;
        mo_bf16 *A = malloc((na + 1) * 2), *B = malloc((nb + 1) * 2);
        double *A64 = malloc((na + 1) * 8), *B64 = malloc((nb + 1) * 8), *C64 = malloc((nc + 1) * 8);
        float *C = malloc((nc + 1) * 4);
        make_operand(A, A64, na, 10 + s), make_operand(B, B64, nb, 20 + s);
        for (size_t f = 0; f < 3; f++)
            for (int acc = 0; acc <= 1; acc++) {
                tu_prefill(C, C64, nc, acc, 30 + s);
                forms[f].f(C, A, B, M, N, K, acc);
                forms[f].r(C64, A64, B64, M, N, K, acc);
                ck_assert_msg(tu_all_finite(C, nc), "%s M=%d N=%d K=%d acc=%d: non-finite", forms[f].name, M, N, K, acc);
                double e = nc ? tu_rel_err_f64(C, C64, nc) : 0;
                ck_assert_msg(e < TOL_BF16, "%s M=%d N=%d K=%d acc=%d: err %.3g", forms[f].name, M, N, K, acc, e);
            }
        free(A), free(B), free(C), free(A64), free(B64), free(C64);
    }
}
END_TEST

#define G GC_G

static void nt(float *C, const void *A, const void *B, const int *o, int g, int N, int K, int acc) {
    matmul_bf16_grouped_nt(C, A, B, o, g, N, K, acc);
}
static void nn(float *C, const void *A, const void *B, const int *o, int g, int N, int K, int acc) {
    matmul_bf16_grouped_nn(C, A, B, o, g, N, K, acc);
}
static void tn(float *C, const void *A, const void *B, const int *o, int g, int N, int K, int acc) {
    matmul_bf16_grouped_tn(C, A, B, o, g, N, K, acc);
}

START_TEST(test_grouped_matches_ref) {
    gc_check(&(gc_forms){sizeof(mo_bf16), make_operand, nt, nn, tn, TOL_BF16, 300, {{7, 13}, {64, 96}, {1, 1}}});
}
END_TEST

// Called from inside our own parallel region (oneDNN must then run on the calling thread).
START_TEST(test_grouped_inside_parallel_region) {
    const int offs[G + 1] = {0, 40, 41, 41, 100, 130}, N = 24, K = 40, R = 4;
    size_t na = (size_t)130 * K, nb = (size_t)G * N * K, nc = (size_t)130 * N;
    mo_bf16 *A = malloc(na * 2), *B = malloc(nb * 2);
    double *A64 = malloc(na * 8), *B64 = malloc(nb * 8), *C64 = malloc(nc * 8);
    float *C = malloc(R * nc * 4);
    make_operand(A, A64, na, 70), make_operand(B, B64, nb, 71);
    ref_matmul_grouped_nt(C64, A64, B64, offs, G, N, K, 0);
#pragma omp parallel for
    for (int r = 0; r < R; r++) matmul_bf16_grouped_nt(C + r * nc, A, B, offs, G, N, K, 0);
    for (int r = 0; r < R; r++)
        ck_assert_msg(tu_rel_err_f64(C + r * nc, C64, nc) < TOL_BF16, "copy %d differs from the oracle", r);
    free(A), free(B), free(C), free(A64), free(B64), free(C64);
}
END_TEST

int main(void) {
    Suite *s = suite_create("kernels_bf16");
    TCase *tc = tcase_create("bf16");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_round_matches_ref_every_level);
    tcase_add_test(tc, test_to_f32_is_exact);
    tcase_add_test(tc, test_dense_matches_ref);
    tcase_add_test(tc, test_grouped_matches_ref);
    tcase_add_test(tc, test_grouped_inside_parallel_region);
    suite_add_tcase(s, tc);
    return tu_run_suite(s, CK_FORK_GETENV);
}
