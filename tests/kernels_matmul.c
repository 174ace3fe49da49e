// kernels_matmul.c: dense and grouped matmul against kernels/ref over a sweep of shapes
// (ones, zeros, odd sizes; empty and skewed groups; acc 0 and 1; both grouped threading
// strategies), and the three forms checked as the gradients of a linear layer by central
// finite differences of the reference in double, and matmul_small's NN/TN forms as well.
#include "kernels/matmul.h"
#include "kernels/matmul_small.h"
#include "kernels/ref/ref.h"
#include "tests/grouped_check.h"
#include "tests/testutil.h"

#define TOL_F32 2e-6  // normalized error of float sgemm against the double oracle (worst seen 2.9e-7)

typedef void (*dense_fn)(float *, const float *, const float *, int, int, int, int);
typedef void (*dense_ref)(double *, const double *, const double *, int, int, int, int);

static const struct {
    const char *name;
    dense_fn f;
    dense_ref r;
} dense[] = {{"nn", matmul_nn, ref_matmul_nn}, {"nt", matmul_nt, ref_matmul_nt}, {"tn", matmul_tn, ref_matmul_tn}};

// {M, N, K}
static const int shapes[][3] = {{1, 1, 1},  {1, 7, 3},   {5, 1, 9},    {4, 6, 1},    {17, 33, 65},
                                {64, 64, 64}, {3, 129, 31}, {100, 37, 250}, {0, 5, 7},  {5, 0, 7},
                                {5, 7, 0},  {0, 0, 0}};
#define N_SHAPES (sizeof shapes / sizeof shapes[0])

START_TEST(test_dense_matches_ref) {
    for (size_t s = 0; s < N_SHAPES; s++) {
        int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        size_t na = (size_t)M * K, nb = (size_t)K * N, nc = (size_t)M * N;
        // +1 so that zero-sized shapes still get valid pointers
        float *A = malloc((na + 1) * 4), *B = malloc((nb + 1) * 4), *C = malloc((nc + 1) * 4);
        double *A64 = malloc((na + 1) * 8), *B64 = malloc((nb + 1) * 8), *C64 = malloc((nc + 1) * 8);
        tu_fill(A, na, 10 + s, 1.0f), tu_fill(B, nb, 20 + s, 1.0f);
        tu_to_f64(A64, A, na), tu_to_f64(B64, B, nb);
        for (size_t f = 0; f < 3; f++)
            for (int acc = 0; acc <= 1; acc++) {
                tu_prefill(C, C64, nc, acc, 30 + s);
                dense[f].f(C, A, B, M, N, K, acc);
                dense[f].r(C64, A64, B64, M, N, K, acc);
                ck_assert_msg(tu_all_finite(C, nc), "%s M=%d N=%d K=%d acc=%d: non-finite output", dense[f].name, M, N,
                              K, acc);
                double e = nc ? tu_rel_err_f64(C, C64, nc) : 0;
                ck_assert_msg(e < TOL_F32, "%s M=%d N=%d K=%d acc=%d: err %.3g", dense[f].name, M, N, K, acc, e);
            }
        free(A), free(B), free(C), free(A64), free(B64), free(C64);
    }
}
END_TEST

#define G GC_G

static void nt(float *C, const void *A, const void *B, const int *o, int g, int N, int K, int acc) {
    matmul_grouped_nt(C, A, B, o, g, N, K, acc);
}
static void nn(float *C, const void *A, const void *B, const int *o, int g, int N, int K, int acc) {
    matmul_grouped_nn(C, A, B, o, g, N, K, acc);
}
static void tn(float *C, const void *A, const void *B, const int *o, int g, int N, int K, int acc) {
    matmul_grouped_tn(C, A, B, o, g, N, K, acc);
}
static void make(void *x, double *x64, size_t n, uint64_t seed) {
    tu_fill(x, n, seed, 1.0f);
    tu_to_f64(x64, x, n);
}

START_TEST(test_grouped_matches_ref) {
    gc_check(&(gc_forms){sizeof(float), make, nt, nn, tn, TOL_F32, 64, {{7, 13}, {32, 17}, {1, 1}}});
}
END_TEST

// The grouped forms called from inside our own parallel region (the expert layer may
// be), where BLAS must run serially per thread and the result must not change.
START_TEST(test_grouped_inside_parallel_region) {
    const int offs[G + 1] = {0, 40, 41, 41, 100, 130}, N = 24, K = 40, R = 4;
    size_t na = (size_t)130 * K, nb = (size_t)G * N * K, nc = (size_t)130 * N;
    float *A = malloc(na * 4), *B = malloc(nb * 4), *C = malloc(R * nc * 4), *C1 = malloc(nc * 4);
    tu_fill(A, na, 70, 1.0f), tu_fill(B, nb, 71, 1.0f);
    matmul_grouped_nt(C1, A, B, offs, G, N, K, 0);
#pragma omp parallel for
    for (int r = 0; r < R; r++) matmul_grouped_nt(C + r * nc, A, B, offs, G, N, K, 0);
    for (int r = 0; r < R; r++) ck_assert_msg(tu_rel_err(C + r * nc, C1, nc) < 1e-6, "copy %d differs", r);
    free(A), free(B), free(C), free(C1);
}
END_TEST

// y = x W^T (nt) with L = sum w_ij y_ij: dL/dx = w W (nn), dL/dW = w^T x (tn).
typedef struct {
    double *x, *W, *wt, *y;
    int T, in, out;
} lin_ctx;

static double lin_loss(void *p) {
    lin_ctx *c = p;
    ref_matmul_nt(c->y, c->x, c->W, c->T, c->out, c->in, 0);
    double L = 0;
    for (int i = 0; i < c->T * c->out; i++) L += c->wt[i] * c->y[i];
    return L;
}

START_TEST(test_ref_linear_layer_finite_differences) {
    int T = 5, in = 7, out = 3;
    double *x = malloc(T * in * 8), *W = malloc(out * in * 8), *wt = malloc(T * out * 8), *y = malloc(T * out * 8);
    double *dx = malloc(T * in * 8), *dW = malloc(out * in * 8);
    tu_fill_f64(x, T * in, 1, 1.0), tu_fill_f64(W, out * in, 2, 1.0), tu_fill_f64(wt, T * out, 3, 1.0);
    lin_ctx c = {x, W, wt, y, T, in, out};
    ref_matmul_nn(dx, wt, W, T, in, out, 0);
    tu_fill_f64(dW, out * in, 4, 1.0);  // acc = 1 onto a known start: subtract it after
    double *dW0 = malloc(out * in * 8);
    memcpy(dW0, dW, out * in * 8);
    ref_matmul_tn(dW, wt, x, out, in, T, 1);
    for (int i = 0; i < out * in; i++) dW[i] -= dW0[i];
    tu_fd_check("linear dx", lin_loss, &c, x, dx, T * in, T * in, 1e-5, 1e-8);
    tu_fd_check("linear dW", lin_loss, &c, W, dW, out * in, out * in, 1e-5, 1e-8);
    free(x), free(W), free(wt), free(y), free(dx), free(dW), free(dW0);
}
END_TEST

// The same gradients from kernels/matmul_small.h's NN and TN forms (the fine-grained
// experts' backward), at odd sizes, in float, against the differences in double.
START_TEST(test_small_linear_layer_finite_differences) {
    const int T = 13, in = 19, out = 33;
    const size_t nx = (size_t)T * in, nw = (size_t)out * in, ny = (size_t)T * out;
    float *x = malloc(nx * 4), *W = malloc(nw * 4), *wt = malloc(ny * 4), *dx = malloc(nx * 4), *dW = malloc(nw * 4);
    double *x64 = malloc(nx * 8), *W64 = malloc(nw * 8), *wt64 = malloc(ny * 8), *y64 = malloc(ny * 8);
    double *dx64 = malloc(nx * 8), *dW64 = malloc(nw * 8);
    tu_fill(x, nx, 90, 1.0f), tu_fill(W, nw, 91, 1.0f), tu_fill(wt, ny, 92, 1.0f);
    tu_to_f64(x64, x, nx), tu_to_f64(W64, W, nw), tu_to_f64(wt64, wt, ny);
    matmul_small_nn(dx, wt, W, T, in, out, 0);
    memset(dW, 0, nw * 4);
    matmul_small_tn(dW, wt, x, out, in, T, 1);
    tu_to_f64(dx64, dx, nx), tu_to_f64(dW64, dW, nw);
    lin_ctx c = {x64, W64, wt64, y64, T, in, out};
    tu_fd_check("small linear dx", lin_loss, &c, x64, dx64, nx, nx, 1e-5, 1e-5);
    tu_fd_check("small linear dW", lin_loss, &c, W64, dW64, nw, nw, 1e-5, 1e-5);
    free(x), free(W), free(wt), free(dx), free(dW), free(x64), free(W64), free(wt64), free(y64), free(dx64), free(dW64);
}
END_TEST

int main(void) {
    Suite *s = suite_create("kernels_matmul");
    TCase *tc = tcase_create("matmul");
    tcase_add_test(tc, test_dense_matches_ref);
    tcase_add_test(tc, test_grouped_matches_ref);
    tcase_add_test(tc, test_grouped_inside_parallel_region);
    tcase_add_test(tc, test_ref_linear_layer_finite_differences);
    tcase_add_test(tc, test_small_linear_layer_finite_differences);
    suite_add_tcase(s, tc);
    return tu_run_suite(s, CK_FORK_GETENV);
}
