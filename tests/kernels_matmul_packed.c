// kernels_matmul_packed.c: the products over oneDNN-packed weights (kernels/matmul_packed.h)
// against kernels/ref (row counts around the 16-row step and the 512-row chunk, acc 0 and
// 1); a row's bits whatever rows share its call, inside a parallel region or not; a weight
// changed after matmul_packed_stale() is packed again; a call failing midway leaves only
// the rows after it to BLAS. On a CPU without oneDNN's brgemm kernels the products do no
// rows and the callers keep BLAS: checked too. Each test runs twice: the weights read in
// place (_i = 0, MONOLITH_PACKED=1) and from packed copies (_i = 1, MONOLITH_PACKED=copy).
#include "kernels/matmul.h"
#include "kernels/matmul_packed.h"
#include "kernels/ref/ref.h"
#include "tests/testutil.h"

#include <omp.h>

#define TOL_F32 2e-6  // normalized error against the double oracle, as kernels_matmul.c

typedef int (*packed_fn)(float *, const float *, const float *, int, int, int, int);
typedef void (*dense_ref)(double *, const double *, const double *, int, int, int, int);
typedef void (*weight_fn)(int, float *, const float *, const float *, int, int, int, int);
typedef void (*blas_fn)(float *, const float *, const float *, int, int, int, int);
static const struct {
    const char *name;
    packed_fn f;
    dense_ref r;
    weight_fn w;  // what the model calls: packed, BLAS for what it did not do
    blas_fn blas;
} forms[] = {{"nt", matmul_packed_nt, ref_matmul_nt, matmul_weight_nt, matmul_nt},
             {"nn", matmul_packed_nn, ref_matmul_nn, matmul_weight_nn, matmul_nn}};

START_TEST(test_packed_matches_ref) {
    matmul_packed_set_mode(_i ? MATMUL_PACKED_COPY : MATMUL_PACKED_IN_PLACE);
    if (!matmul_packed_available()) {
        float C = 0, A = 1, W = 1;
        ck_assert_int_eq(matmul_packed_nt(&C, &A, &W, 1, 1, 1, 0), 0);
        ck_assert(C == 0);
        return;
    }
    static const int rows[] = {1, 15, 16, 17, 100, 512, 513, 1100};
    static const int nk[][2] = {{64, 48}, {33, 129}, {256, 80}};
    for (size_t s = 0; s < sizeof nk / sizeof nk[0]; s++)
        for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
            const int M = rows[i], N = nk[s][0], K = nk[s][1];
            const size_t na = (size_t)M * K, nb = (size_t)K * N, nc = (size_t)M * N;
            float *A = malloc(na * 4), *B = malloc(nb * 4), *C = malloc(nc * 4);
            double *A64 = malloc(na * 8), *B64 = malloc(nb * 8), *C64 = malloc(nc * 8);
            tu_fill(A, na, 10 + i, 1.0f), tu_fill(B, nb, 20 + s, 1.0f);
            tu_to_f64(A64, A, na), tu_to_f64(B64, B, nb);
            matmul_packed_stale();  // B is new memory each time: its address may repeat
            for (size_t f = 0; f < 2; f++)
                for (int acc = 0; acc <= 1; acc++) {
                    tu_prefill(C, C64, nc, acc, 30 + i);
                    ck_assert_int_eq(forms[f].f(C, A, B, M, N, K, acc), M);
                    forms[f].r(C64, A64, B64, M, N, K, acc);
                    double e = tu_rel_err_f64(C, C64, nc);
                    ck_assert_msg(e < TOL_F32, "%s M=%d N=%d K=%d acc=%d: err %.3g", forms[f].name, M, N, K, acc, e);
                }
            free(A), free(B), free(C), free(A64), free(B64), free(C64);
        }
    ck_assert(_i ? matmul_packed_bytes() > 0 : matmul_packed_bytes() == 0);  // copies only when asked
    matmul_packed_release();
    ck_assert(matmul_packed_bytes() == 0);
}
END_TEST

// One call over 1100 rows against the same rows cut into blocks of 7, 300, 16, 777 rows,
// run one after the other and then as the blocks of a parallel loop: the same bits.
START_TEST(test_packed_rows_independent) {
    matmul_packed_set_mode(_i ? MATMUL_PACKED_COPY : MATMUL_PACKED_IN_PLACE);
    if (!matmul_packed_available()) return;
    const int M = 1100, N = 192, K = 320, cut[] = {0, 7, 307, 323, 1100};
    const size_t nc = (size_t)M * N;
    float *A = malloc((size_t)M * K * 4), *W = malloc((size_t)N * K * 4);
    float *C = malloc(nc * 4), *Cb = malloc(nc * 4), *Cp = malloc(nc * 4);
    tu_fill(A, (size_t)M * K, 1, 1.0f), tu_fill(W, (size_t)N * K, 2, 1.0f);
    matmul_packed_stale();
    for (size_t f = 0; f < 2; f++)
        for (int acc = 0; acc <= 1; acc++) {
            tu_fill(C, nc, 3, 1.0f), tu_fill(Cb, nc, 3, 1.0f), tu_fill(Cp, nc, 3, 1.0f);
            ck_assert_int_eq(forms[f].f(C, A, W, M, N, K, acc), M);
            for (int b = 0; b < 4; b++)
                ck_assert_int_eq(forms[f].f(Cb + (size_t)cut[b] * N, A + (size_t)cut[b] * K, W, cut[b + 1] - cut[b],
                                            N, K, acc),
                                 cut[b + 1] - cut[b]);
            int bad = 0;
#pragma omp parallel for schedule(dynamic, 1) num_threads(2) reduction(+ : bad)
            for (int b = 3; b >= 0; b--)
                bad += forms[f].f(Cp + (size_t)cut[b] * N, A + (size_t)cut[b] * K, W, cut[b + 1] - cut[b], N, K,
                                  acc) != cut[b + 1] - cut[b];
            ck_assert_int_eq(bad, 0);
            ck_assert_msg(!memcmp(C, Cb, nc * 4), "%s acc=%d: blocks one after the other differ", forms[f].name, acc);
            ck_assert_msg(!memcmp(C, Cp, nc * 4), "%s acc=%d: blocks on threads differ", forms[f].name, acc);
        }
    free(A), free(W), free(C), free(Cb), free(Cp);
    matmul_packed_release();
}
END_TEST

// W changed in place: after matmul_packed_stale() the product is the new W's (packed
// again, or read in place).
START_TEST(test_packed_stale_repacks) {
    matmul_packed_set_mode(_i ? MATMUL_PACKED_COPY : MATMUL_PACKED_IN_PLACE);
    if (!matmul_packed_available()) return;
    const int M = 40, N = 48, K = 64;
    float *A = malloc(M * K * 4), *W = malloc(N * K * 4), *C = malloc(M * N * 4);
    double *A64 = malloc(M * K * 8), *W64 = malloc(N * K * 8), *C64 = malloc(M * N * 8);
    tu_fill(A, M * K, 5, 1.0f), tu_fill(W, N * K, 6, 1.0f);
    matmul_packed_stale();
    ck_assert_int_eq(matmul_packed_nt(C, A, W, M, N, K, 0), M);
    for (int i = 0; i < N * K; i++) W[i] = -2.0f * W[i];
    matmul_packed_stale();
    ck_assert_int_eq(matmul_packed_nt(C, A, W, M, N, K, 0), M);
    tu_to_f64(A64, A, M * K), tu_to_f64(W64, W, N * K);
    ref_matmul_nt(C64, A64, W64, M, N, K, 0);
    ck_assert(tu_rel_err_f64(C, C64, M * N) < TOL_F32);
    free(A), free(W), free(C), free(A64), free(W64), free(C64);
    matmul_packed_release();
}
END_TEST

// A primitive call failing after earlier chunks of the product were done (1100 rows: calls
// of 512, 512, 64 and the padded last 12; each call in turn fails). The product reports
// the rows before the failed call, with their result, and leaves the rest of C as it was;
// matmul_weight_* finishes exactly those rows with BLAS: with acc, rows done by oneDNN
// are added once (the defect this guards against redid the whole product and added them
// twice). Against the clean packed product, BLAS on the rest, and the double oracle.
START_TEST(test_packed_failure_midway) {
    matmul_packed_set_mode(_i ? MATMUL_PACKED_COPY : MATMUL_PACKED_IN_PLACE);
    if (!matmul_packed_available()) return;
    const int M = 1100, N = 48, K = 80, done_at[] = {0, 512, 1024, 1088};
    const size_t nc = (size_t)M * N;
    float *A = malloc((size_t)M * K * 4), *W = malloc((size_t)N * K * 4), *C0 = malloc(nc * 4);
    float *Cok = malloc(nc * 4), *Cexp = malloc(nc * 4), *C = malloc(nc * 4);
    double *A64 = malloc((size_t)M * K * 8), *W64 = malloc((size_t)N * K * 8), *C64 = malloc(nc * 8);
    tu_fill(A, (size_t)M * K, 7, 1.0f), tu_fill(W, (size_t)N * K, 8, 1.0f);
    tu_to_f64(A64, A, (size_t)M * K), tu_to_f64(W64, W, (size_t)N * K);
    matmul_packed_stale();
    for (size_t f = 0; f < 2; f++)
        for (int acc = 0; acc <= 1; acc++) {
            tu_prefill(C0, C64, nc, acc, 9);
            forms[f].r(C64, A64, W64, M, N, K, acc);
            memcpy(Cok, C0, nc * 4);
            ck_assert_int_eq(forms[f].f(Cok, A, W, M, N, K, acc), M);
            for (int k = 0; k < 4; k++) {
                const int d = done_at[k];
                const size_t head = (size_t)d * N;
                memcpy(C, C0, nc * 4);
                matmul_packed_fail_after(k);
                ck_assert_int_eq(forms[f].f(C, A, W, M, N, K, acc), d);
                ck_assert_msg(!memcmp(C, Cok, head * 4), "%s acc=%d call %d: rows done differ", forms[f].name, acc, k);
                ck_assert_msg(!memcmp(C + head, C0 + head, (nc - head) * 4), "%s acc=%d call %d: rest touched",
                              forms[f].name, acc, k);
                memcpy(Cexp, Cok, head * 4), memcpy(Cexp + head, C0 + head, (nc - head) * 4);
                forms[f].blas(Cexp + head, A + (size_t)d * K, W, M - d, N, K, acc);
                memcpy(C, C0, nc * 4);
                matmul_packed_fail_after(k);
                forms[f].w(1, C, A, W, M, N, K, acc);
                ck_assert_msg(!memcmp(C, Cexp, nc * 4), "%s acc=%d call %d: not packed rows + BLAS rest", forms[f].name,
                              acc, k);
                double e = tu_rel_err_f64(C, C64, nc);
                ck_assert_msg(e < TOL_F32, "%s acc=%d call %d: err %.3g", forms[f].name, acc, k, e);
            }
        }
    matmul_packed_fail_after(-1);
    free(A), free(W), free(C0), free(Cok), free(Cexp), free(C), free(A64), free(W64), free(C64);
    matmul_packed_release();
}
END_TEST

// Off (MONOLITH_PACKED=0, and the default on Intel): no rows, the callers keep BLAS.
START_TEST(test_packed_off) {
    matmul_packed_set_mode(MATMUL_PACKED_OFF);
    ck_assert_int_eq(matmul_packed_available(), 0);
    float C = 0, A = 1, W = 1;
    ck_assert_int_eq(matmul_packed_nt(&C, &A, &W, 1, 1, 1, 0), 0);
    ck_assert(C == 0);
    matmul_weight_nt(1, &C, &A, &W, 1, 1, 1, 0);
    ck_assert(C == 1);
}
END_TEST

int main(void) {
    Suite *s = suite_create("kernels_matmul_packed");
    TCase *tc = tcase_create("matmul_packed");
    tcase_add_loop_test(tc, test_packed_matches_ref, 0, 2);
    tcase_add_loop_test(tc, test_packed_rows_independent, 0, 2);
    tcase_add_loop_test(tc, test_packed_stale_repacks, 0, 2);
    tcase_add_loop_test(tc, test_packed_failure_midway, 0, 2);
    tcase_add_test(tc, test_packed_off);
    suite_add_tcase(s, tc);
    return tu_run_suite(s, CK_FORK_GETENV);
}
