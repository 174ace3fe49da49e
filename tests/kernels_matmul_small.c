// kernels_matmul_small.c: the small-dimension sgemm (kernels/matmul_small.h) against
// kernels/ref at every SIMD level over shapes that hit every tile edge (rows not a
// multiple of 6, columns not a multiple of 16 or 64, K = 0 and 1, the 16 x 16 transpose's
// edges), acc 0 and 1; the AVX-512 kernel and the scalar one giving the same bits; the
// same bits from 1 or 2 threads and inside a parallel region; the grouped products
// routing their small blocks here; the fused forms of the expert FFN and their
// rows read through the dispatch's map. Its NN and TN forms as the gradients of a linear
// layer against finite differences: kernels_matmul.c.
#include "kernels/matmul.h"
#include "kernels/matmul_small.h"
#include "kernels/ref/ref.h"
#include "kernels/simd.h"
#include "tests/testutil.h"

#include <omp.h>

#define TOL_F32 2e-6  // as kernels_matmul.c: float sums against the double oracle

typedef void (*small_fn)(float *, const float *, const float *, int, int, int, int);
typedef void (*ref_fn)(double *, const double *, const double *, int, int, int, int);
static const struct {
    const char *name;
    small_fn f;
    ref_fn r;
} forms[] = {{"nt", matmul_small_nt, ref_matmul_nt},
             {"nn", matmul_small_nn, ref_matmul_nn},
             {"tn", matmul_small_tn, ref_matmul_tn}};

// {M, N, K}
static const int shapes[][3] = {{1, 1, 1},    {6, 16, 16},  {7, 17, 33},  {5, 64, 64},  {13, 65, 100},
                                {12, 130, 3}, {37, 200, 70}, {4, 48, 0},  {0, 9, 4},   {9, 0, 4},
                                {25, 31, 129}, {2, 256, 17}};
#define N_SHAPES (sizeof shapes / sizeof shapes[0])

typedef struct {
    float *A, *B, *C;
    double *A64, *B64, *C64;
    size_t nc;
} bufs;

static bufs alloc_bufs(int M, int N, int K, uint64_t seed) {
    size_t na = (size_t)M * K + 1, nb = (size_t)N * K + 1, nc = (size_t)M * N + 1;
    bufs b = {malloc(na * 4), malloc(nb * 4), malloc(nc * 4), malloc(na * 8), malloc(nb * 8), malloc(nc * 8), nc - 1};
    tu_fill(b.A, na, seed, 1.0f), tu_fill(b.B, nb, seed + 1, 1.0f);
    tu_to_f64(b.A64, b.A, na), tu_to_f64(b.B64, b.B, nb);
    return b;
}

static void free_bufs(bufs *b) { free(b->A), free(b->B), free(b->C), free(b->A64), free(b->B64), free(b->C64); }

START_TEST(test_matches_ref_every_level) {
    for (int level = SIMD_SCALAR; level <= (int)simd_best(); level++) {
        ck_assert_int_eq(simd_set((simd_level)level), 0);
        for (size_t s = 0; s < N_SHAPES; s++) {
            const int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
            bufs b = alloc_bufs(M, N, K, 10 + s);
            for (size_t f = 0; f < 3; f++)
                for (int acc = 0; acc <= 1; acc++) {
                    tu_prefill(b.C, b.C64, b.nc, acc, 30 + s);
                    forms[f].f(b.C, b.A, b.B, M, N, K, acc);
                    forms[f].r(b.C64, b.A64, b.B64, M, N, K, acc);
                    ck_assert_msg(tu_all_finite(b.C, b.nc), "%s %s M=%d N=%d K=%d acc=%d: non-finite output",
                                  simd_name((simd_level)level), forms[f].name, M, N, K, acc);
                    double e = b.nc ? tu_rel_err_f64(b.C, b.C64, b.nc) : 0;
                    ck_assert_msg(e < TOL_F32, "%s %s M=%d N=%d K=%d acc=%d: err %.3g", simd_name((simd_level)level),
                                  forms[f].name, M, N, K, acc, e);
                }
            free_bufs(&b);
        }
    }
    simd_set(simd_best());
}
END_TEST

// Every level sums each element over k in ascending order with fused multiply-adds: the
// AVX-512 kernel and the scalar one agree to the bit.
START_TEST(test_avx512_bits_equal_scalar) {
    if (simd_best() < SIMD_AVX512) return;  // nothing to compare on this CPU
    for (size_t s = 0; s < N_SHAPES; s++) {
        const int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        bufs b = alloc_bufs(M, N, K, 50 + s);
        float *C1 = malloc((b.nc + 1) * 4);
        for (size_t f = 0; f < 3; f++)
            for (int acc = 0; acc <= 1; acc++) {
                tu_prefill(b.C, b.C64, b.nc, acc, 60 + s);
                memcpy(C1, b.C, b.nc * 4);
                simd_set(SIMD_SCALAR);
                forms[f].f(C1, b.A, b.B, M, N, K, acc);
                simd_set(SIMD_AVX512);
                forms[f].f(b.C, b.A, b.B, M, N, K, acc);
                ck_assert_msg(!memcmp(C1, b.C, b.nc * 4), "%s M=%d N=%d K=%d acc=%d: avx512 and scalar differ",
                              forms[f].name, M, N, K, acc);
            }
        free(C1);
        free_bufs(&b);
    }
    simd_set(simd_best());
}
END_TEST

// Big enough to split its rows over the threads outside a parallel region; one thread,
// two threads and a call from inside a parallel region give the same bits.
START_TEST(test_threads_same_bits) {
    const int M = 301, N = 70, K = 129;
    bufs b = alloc_bufs(M, N, K, 70);
    float *C1 = malloc(b.nc * 4), *C2 = malloc(b.nc * 4);
    const int nt0 = omp_get_max_threads();
    for (size_t f = 0; f < 3; f++) {
        omp_set_num_threads(1);
        forms[f].f(C1, b.A, b.B, M, N, K, 0);
        omp_set_num_threads(2);
        forms[f].f(b.C, b.A, b.B, M, N, K, 0);
        ck_assert_msg(!memcmp(C1, b.C, b.nc * 4), "%s: 1 and 2 threads differ", forms[f].name);
#pragma omp parallel num_threads(2)
        {
#pragma omp single
            forms[f].f(C2, b.A, b.B, M, N, K, 0);
        }
        ck_assert_msg(!memcmp(C1, C2, b.nc * 4), "%s: inside a parallel region differs", forms[f].name);
    }
    omp_set_num_threads(nt0);
    free(C1), free(C2);
    free_bufs(&b);
}
END_TEST

// The grouped products take this kernel for a small d_ff (matmul_small_use) and give the
// reference's result, empty blocks included; a block's rows get the bits they get alone.
START_TEST(test_grouped_uses_small) {
    enum { G = 4 };
    const int offs[G + 1] = {0, 37, 37, 100, 161}, f = 64, dm = 96, R = 161;
    float *x = malloc((size_t)R * dm * 4), *w = malloc((size_t)G * f * dm * 4), *h = malloc((size_t)R * f * 4);
    float *h1 = malloc((size_t)R * f * 4);
    double *x64 = malloc((size_t)R * dm * 8), *w64 = malloc((size_t)G * f * dm * 8), *h64 = malloc((size_t)R * f * 8);
    tu_fill(x, (size_t)R * dm, 80, 1.0f), tu_fill(w, (size_t)G * f * dm, 81, 1.0f);
    tu_to_f64(x64, x, (size_t)R * dm), tu_to_f64(w64, w, (size_t)G * f * dm);
    ck_assert_int_eq(matmul_small_use(MATMUL_SMALL_NT, 37, f, dm), simd_active() == SIMD_AVX512);
    ck_assert_int_eq(matmul_small_use(MATMUL_SMALL_NT, 512, 1024, 512), 0);  // bench-S's d_ff stays with BLAS
    matmul_grouped_nt(h, x, w, offs, G, f, dm, 0);
    ref_matmul_grouped_nt(h64, x64, w64, offs, G, f, dm, 0);
    ck_assert_msg(tu_rel_err_f64(h, h64, (size_t)R * f) < TOL_F32, "grouped nt err");
    for (int g = 0; g < G; g++)  // block g alone, as expert parallelism or a dump would run it
        matmul_small_nt(h1 + (size_t)offs[g] * f, x + (size_t)offs[g] * dm, w + (size_t)g * f * dm,
                        offs[g + 1] - offs[g], f, dm, 0);
    if (simd_active() == SIMD_AVX512) ck_assert_msg(!memcmp(h, h1, (size_t)R * f * 4), "grouped != per block");
    free(x), free(w), free(h), free(h1), free(x64), free(w64), free(h64);
}
END_TEST

// The fused forms give each output exactly the plain forms' bits (nt2, tn2) or the sum
// of the two products within float rounding (nn_sum, one rounding fewer), grouped and
// not, with empty groups, a NULL output, and the tn2 `on` mask leaving unmarked groups.
START_TEST(test_fused_forms) {
    enum { G = 4 };
    const int offs[G + 1] = {0, 37, 37, 100, 161}, f = 70, dm = 96, R = 161;
    const size_t nx = (size_t)R * dm, nw = (size_t)G * f * dm, nh = (size_t)R * f;
    float *x = malloc(nx * 4), *w1 = malloc(nw * 4), *w3 = malloc(nw * 4), *h1 = malloc(nh * 4), *h3 = malloc(nh * 4);
    float *e1 = malloc(nh * 4), *e3 = malloc(nh * 4), *dx = malloc(nx * 4), *dw1 = malloc(nw * 4), *dw3 = malloc(nw * 4);
    float *f1 = malloc(nw * 4), *f3 = malloc(nw * 4);
    double *x64 = malloc(nx * 8), *w64 = malloc(nw * 8), *h64 = malloc(nh * 8), *dx64 = malloc(nx * 8);
    tu_fill(x, nx, 100, 1.0f), tu_fill(w1, nw, 101, 1.0f), tu_fill(w3, nw, 102, 1.0f);
    for (int level = SIMD_SCALAR; level <= (int)simd_best(); level++) {
        ck_assert_int_eq(simd_set((simd_level)level), 0);
        const char *lv = simd_name((simd_level)level);
        // nt2 = two nt, grouped and per block
        matmul_small_grouped_nt2(h1, h3, x, NULL, w1, w3, offs, G, f, dm, 0);
        for (int g = 0; g < G; g++) {
            const int r0 = offs[g], n = offs[g + 1] - offs[g];
            matmul_small_nt(e1 + (size_t)r0 * f, x + (size_t)r0 * dm, w1 + (size_t)g * f * dm, n, f, dm, 0);
            matmul_small_nt(e3 + (size_t)r0 * f, x + (size_t)r0 * dm, w3 + (size_t)g * f * dm, n, f, dm, 0);
        }
        ck_assert_msg(!memcmp(h1, e1, nh * 4) && !memcmp(h3, e3, nh * 4), "%s: nt2 != nt", lv);
        tu_to_f64(x64, x, nx), tu_to_f64(w64, w3, nw);
        ref_matmul_grouped_nt(h64, x64, w64, offs, G, f, dm, 0);
        ck_assert_msg(tu_rel_err_f64(h3, h64, nh) < TOL_F32, "%s: grouped nt2 against ref", lv);
        // nn_sum: dx = h1 w1 + h3 w3 against the reference's two products
        tu_fill(dx, nx, 103, 1.0f);
        tu_to_f64(dx64, dx, nx);
        matmul_small_grouped_nn_sum(dx, h1, w1, h3, w3, offs, G, dm, f, 1);
        double *hh = malloc(nh * 8);
        tu_to_f64(hh, h1, nh), tu_to_f64(w64, w1, nw);
        ref_matmul_grouped_nn(dx64, hh, w64, offs, G, dm, f, 1);
        tu_to_f64(hh, h3, nh), tu_to_f64(w64, w3, nw);
        ref_matmul_grouped_nn(dx64, hh, w64, offs, G, dm, f, 1);
        ck_assert_msg(tu_rel_err_f64(dx, dx64, nx) < TOL_F32, "%s: grouped nn_sum against ref", lv);
        free(hh);
        // tn2 = two tn, with groups 0 and 3 marked only: 1 and 2 keep their NaN
        const unsigned char on[G] = {1, 0, 0, 1};
        for (size_t i = 0; i < nw; i++) dw1[i] = dw3[i] = f1[i] = f3[i] = NAN;
        matmul_small_grouped_tn2_some(dw1, dw3, h1, h3, x, NULL, offs, G, f, dm, 0, on);
        for (int g = 0; g < G; g++) {
            if (!on[g]) continue;
            const int r0 = offs[g], n = offs[g + 1] - offs[g];
            const size_t o = (size_t)g * f * dm;
            matmul_small_tn(f1 + o, h1 + (size_t)r0 * f, x + (size_t)r0 * dm, f, dm, n, 0);
            matmul_small_tn(f3 + o, h3 + (size_t)r0 * f, x + (size_t)r0 * dm, f, dm, n, 0);
        }
        ck_assert_msg(!memcmp(dw1, f1, nw * 4) && !memcmp(dw3, f3, nw * 4), "%s: tn2 != tn", lv);
        ck_assert_msg(isnan(dw1[(size_t)1 * f * dm]) && isnan(dw3[(size_t)2 * f * dm]), "%s: unmarked group written",
                      lv);
        // a NULL second output: nt2 as nt, tn2 as tn of the other
        matmul_small_nt2(e1, NULL, x, NULL, w1, NULL, R, f, dm, 0);
        matmul_small_nt(e3, x, w1, R, f, dm, 0);
        ck_assert_msg(!memcmp(e1, e3, nh * 4), "%s: nt2 with one output", lv);
        matmul_small_tn2(NULL, f3, h1, h3, x, NULL, f, dm, R, 0);
        matmul_small_tn(f1, h3, x, f, dm, R, 0);
        ck_assert_msg(!memcmp(f1, f3, (size_t)f * dm * 4), "%s: tn2 with one output", lv);
    }
    simd_set(simd_best());
    free(x), free(w1), free(w3), free(h1), free(h3), free(e1), free(e3), free(dx), free(dw1), free(dw3), free(f1);
    free(f3), free(x64), free(w64), free(h64), free(dx64);
}
END_TEST

// Rows read through a map (slot id / top_k = token, as the MoE dispatch gives) get the
// bits of the gathered copy, in nt2's A and tn2's B, grouped, at every level.
START_TEST(test_row_map_equals_gather) {
    enum { G = 3, T = 29, TOPK = 3 };
    const int f = 40, dm = 80, R = 70, offs[G + 1] = {0, 30, 30, 70};
    int slot[R];
    for (int p = 0; p < R; p++) slot[p] = (p * 37 + 11) % (T * TOPK);  // slot ids in any order, repeats allowed
    const size_t nw = (size_t)G * f * dm, nh = (size_t)R * f;
    float *x = malloc((size_t)T * dm * 4), *xs = malloc((size_t)R * dm * 4), *w1 = malloc(nw * 4), *w3 = malloc(nw * 4);
    float *a1 = malloc(nh * 4), *a3 = malloc(nh * 4), *b1 = malloc(nh * 4), *b3 = malloc(nh * 4);
    float *d1 = malloc(nw * 4), *d3 = malloc(nw * 4), *e1 = malloc(nw * 4), *e3 = malloc(nw * 4);
    tu_fill(x, (size_t)T * dm, 110, 1.0f), tu_fill(w1, nw, 111, 1.0f), tu_fill(w3, nw, 112, 1.0f);
    for (int p = 0; p < R; p++) memcpy(xs + (size_t)p * dm, x + (size_t)(slot[p] / TOPK) * dm, (size_t)dm * 4);
    const matmul_rows map = {slot, TOPK};
    for (int level = SIMD_SCALAR; level <= (int)simd_best(); level++) {
        ck_assert_int_eq(simd_set((simd_level)level), 0);
        const char *lv = simd_name((simd_level)level);
        matmul_small_grouped_nt2(a1, a3, x, &map, w1, w3, offs, G, f, dm, 0);
        matmul_small_grouped_nt2(b1, b3, xs, NULL, w1, w3, offs, G, f, dm, 0);
        ck_assert_msg(!memcmp(a1, b1, nh * 4) && !memcmp(a3, b3, nh * 4), "%s: nt2 mapped != gathered", lv);
        matmul_small_grouped_tn2_some(d1, d3, a1, a3, x, &map, offs, G, f, dm, 0, NULL);
        matmul_small_grouped_tn2_some(e1, e3, a1, a3, xs, NULL, offs, G, f, dm, 0, NULL);
        ck_assert_msg(!memcmp(d1, e1, nw * 4) && !memcmp(d3, e3, nw * 4), "%s: tn2 mapped != gathered", lv);
    }
    simd_set(simd_best());
    free(x), free(xs), free(w1), free(w3), free(a1), free(a3), free(b1), free(b3), free(d1), free(d3), free(e1), free(e3);
}
END_TEST

int main(void) {
    Suite *s = suite_create("kernels_matmul_small");
    TCase *tc = tcase_create("matmul_small");
    tcase_add_test(tc, test_matches_ref_every_level);
    tcase_add_test(tc, test_avx512_bits_equal_scalar);
    tcase_add_test(tc, test_threads_same_bits);
    tcase_add_test(tc, test_grouped_uses_small);
    tcase_add_test(tc, test_fused_forms);
    tcase_add_test(tc, test_row_map_equals_gather);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
