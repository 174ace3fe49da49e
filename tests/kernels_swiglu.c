// kernels_swiglu.c: SiLU and SwiGLU against kernels/ref at every SIMD level, the same
// bits on 1, 2 and 3 threads for calls large enough to be split over them, and the
// reference backward against central finite differences in double; the bf16-output
// forms against the float ones rounded (bit for bit) and against their reference.
#include "kernels/bf16.h"
#include "kernels/ref/ref.h"
#include "kernels/simd.h"
#include "kernels/swiglu.h"
#include "tests/testutil.h"

#include <omp.h>

// Sizes around every vector width so the SIMD tails run.
// The last is split over the threads (SWIGLU_PAR_MIN), into ranges that leave a tail.
static const size_t sizes[] = {1, 7, 8, 9, 15, 16, 17, 31, 33, 100, 1000, 4099, 200003};
#define N_SIZES (sizeof sizes / sizeof sizes[0])
#define TOL_F32 2e-6  // normalized error of a float kernel against the double oracle

typedef struct {
    float *a, *b, *g, *out, *da, *db;
    double *a64, *b64, *g64, *out64, *da64, *db64;
} bufs;

static bufs alloc_bufs(size_t n, uint64_t seed) {
    bufs B;
    float **f[] = {&B.a, &B.b, &B.g, &B.out, &B.da, &B.db};
    double **d[] = {&B.a64, &B.b64, &B.g64, &B.out64, &B.da64, &B.db64};
    for (int i = 0; i < 6; i++) *f[i] = calloc(n, sizeof(float)), *d[i] = calloc(n, sizeof(double));
    tu_fill(B.a, n, seed, 6.0f);  // wide enough to reach the flat parts of the sigmoid
    tu_fill(B.b, n, seed + 1, 2.0f);
    tu_fill(B.g, n, seed + 2, 1.0f);
    tu_to_f64(B.a64, B.a, n), tu_to_f64(B.b64, B.b, n), tu_to_f64(B.g64, B.g, n);
    return B;
}

static void free_bufs(bufs *B) {
    float *f[] = {B->a, B->b, B->g, B->out, B->da, B->db};
    double *d[] = {B->a64, B->b64, B->g64, B->out64, B->da64, B->db64};
    for (int i = 0; i < 6; i++) free(f[i]), free(d[i]);
}

START_TEST(test_matches_ref_every_level) {
    for (int level = SIMD_SCALAR; level <= (int)simd_best(); level++) {
        ck_assert_int_eq(simd_set((simd_level)level), 0);
        for (size_t s = 0; s < N_SIZES; s++) {
            size_t n = sizes[s];
            bufs B = alloc_bufs(n, 100 + s);
            const char *lv = simd_name((simd_level)level);

            silu_forward(B.out, B.a, n);
            ref_silu_forward(B.out64, B.a64, n);
            ck_assert_msg(tu_rel_err_f64(B.out, B.out64, n) < TOL_F32, "silu fwd %s n=%zu", lv, n);
            silu_backward(B.da, B.g, B.a, n);
            ref_silu_backward(B.da64, B.g64, B.a64, n);
            ck_assert_msg(tu_rel_err_f64(B.da, B.da64, n) < TOL_F32, "silu bwd %s n=%zu", lv, n);

            swiglu_forward(B.out, B.a, B.b, n);
            ref_swiglu_forward(B.out64, B.a64, B.b64, n);
            ck_assert_msg(tu_rel_err_f64(B.out, B.out64, n) < TOL_F32, "swiglu fwd %s n=%zu", lv, n);
            swiglu_backward(B.da, B.db, B.g, B.a, B.b, n);
            ref_swiglu_backward(B.da64, B.db64, B.g64, B.a64, B.b64, n);
            ck_assert_msg(tu_rel_err_f64(B.da, B.da64, n) < TOL_F32, "swiglu bwd da %s n=%zu", lv, n);
            ck_assert_msg(tu_rel_err_f64(B.db, B.db64, n) < TOL_F32, "swiglu bwd db %s n=%zu", lv, n);
            free_bufs(&B);
        }
    }
    simd_set(simd_best());
}
END_TEST

START_TEST(test_in_place) {
    // The model runs swiglu in place over the gate buffer and its backward over both.
    size_t n = 77;
    bufs B = alloc_bufs(n, 7);
    float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
    memcpy(a, B.a, n * sizeof *a);
    memcpy(b, B.b, n * sizeof *b);
    swiglu_forward(B.out, B.a, B.b, n);
    swiglu_forward(a, a, b, n);
    ck_assert(memcmp(a, B.out, n * sizeof *a) == 0);
    memcpy(a, B.a, n * sizeof *a);
    swiglu_backward(B.da, B.db, B.g, B.a, B.b, n);
    swiglu_backward(a, b, B.g, a, b, n);
    ck_assert(memcmp(a, B.da, n * sizeof *a) == 0 && memcmp(b, B.db, n * sizeof *b) == 0);
    free(a), free(b);
    free_bufs(&B);
}
END_TEST

// Finite differences of L = sum_i w_i * swiglu(a, b)_i with respect to a and b.
typedef struct {
    double *a, *b, *w, *out;
    size_t n;
} fd_ctx;

static double swiglu_loss(void *p) {
    fd_ctx *c = p;
    ref_swiglu_forward(c->out, c->a, c->b, c->n);
    double L = 0;
    for (size_t i = 0; i < c->n; i++) L += c->w[i] * c->out[i];
    return L;
}

static double silu_loss(void *p) {
    fd_ctx *c = p;
    ref_silu_forward(c->out, c->a, c->n);
    double L = 0;
    for (size_t i = 0; i < c->n; i++) L += c->w[i] * c->out[i];
    return L;
}

START_TEST(test_ref_backward_finite_differences) {
    size_t n = 257;
    bufs B = alloc_bufs(n, 42);
    fd_ctx c = {B.a64, B.b64, B.g64, B.out64, n};
    ref_swiglu_backward(B.da64, B.db64, B.g64, B.a64, B.b64, n);
    tu_fd_check("swiglu da", swiglu_loss, &c, B.a64, B.da64, n, n, 1e-5, 1e-8);
    tu_fd_check("swiglu db", swiglu_loss, &c, B.b64, B.db64, n, n, 1e-5, 1e-8);
    ref_silu_backward(B.da64, B.g64, B.a64, n);
    tu_fd_check("silu dx", silu_loss, &c, B.a64, B.da64, n, n, 1e-5, 1e-8);
    free_bufs(&B);
}
END_TEST

// Each op on 1 thread, then on 2 and 3 (split into ranges): the same bits, at every level.
START_TEST(test_same_bits_any_threads) {
    const size_t n = 200003;
    const int threads[] = {1, 2, 3}, before = omp_get_max_threads();
    for (int level = SIMD_SCALAR; level <= (int)simd_best(); level++) {
        ck_assert_int_eq(simd_set((simd_level)level), 0);
        bufs B = alloc_bufs(n, 7);
        float *want = malloc(5 * n * sizeof *want), *got = malloc(5 * n * sizeof *got);
        for (int t = 0; t < 3; t++) {
            omp_set_num_threads(threads[t]);
            float *o = t ? got : want;
            silu_forward(o, B.a, n);
            silu_backward(o + n, B.g, B.a, n);
            swiglu_forward(o + 2 * n, B.a, B.b, n);
            memcpy(B.da, B.a, n * sizeof(float)), memcpy(B.db, B.b, n * sizeof(float));
            swiglu_backward(B.da, B.db, B.g, B.da, B.db, n);  // in place, as the experts' backward runs it
            memcpy(o + 3 * n, B.da, n * sizeof(float)), memcpy(o + 4 * n, B.db, n * sizeof(float));
            if (t)
                ck_assert_msg(!memcmp(got, want, 5 * n * sizeof *got), "%s, %d threads: not the bits of one",
                              simd_name((simd_level)level), threads[t]);
        }
        free(want), free(got);
        free_bufs(&B);
    }
    omp_set_num_threads(before);
    simd_set(simd_best());
}
END_TEST

// n bf16 values as floats.
static float *widen(const mo_bf16 *x, size_t n) {
    float *f = malloc(n * sizeof *f);
    bf16_to_f32(f, x, n);
    return f;
}

// swiglu_forward_bf16 / swiglu_backward_bf16 give the float kernels' results rounded by
// bf16_from_f32, bit for bit, at every level and size (tails included) and on 1, 2 and 3
// threads (the large size is split), and stay within a bf16 rounding of the reference.
START_TEST(test_bf16_outputs) {
    const int threads[] = {1, 2, 3}, before = omp_get_max_threads();
    for (int level = SIMD_SCALAR; level <= (int)simd_best(); level++) {
        ck_assert_int_eq(simd_set((simd_level)level), 0);
        const char *lv = simd_name((simd_level)level);
        for (size_t s = 0; s < N_SIZES; s++) {
            const size_t n = sizes[s];
            bufs B = alloc_bufs(n, 300 + s);
            mo_bf16 *want = malloc(3 * n * sizeof *want), *got = malloc(3 * n * sizeof *got);
            swiglu_forward(B.out, B.a, B.b, n);
            bf16_from_f32(want, B.out, n);
            swiglu_backward(B.da, B.db, B.g, B.a, B.b, n);
            bf16_from_f32(want + n, B.da, n), bf16_from_f32(want + 2 * n, B.db, n);
            for (int t = 0; t < 3; t++) {
                omp_set_num_threads(threads[t]);
                memset(got, 0xff, 3 * n * sizeof *got);
                swiglu_forward_bf16(got, B.a, B.b, n);
                swiglu_backward_bf16(got + n, got + 2 * n, B.g, B.a, B.b, n);
                ck_assert_msg(!memcmp(got, want, n * sizeof *got), "swiglu fwd bf16 %s n=%zu, %d threads", lv, n,
                              threads[t]);
                ck_assert_msg(!memcmp(got + n, want + n, 2 * n * sizeof *got), "swiglu bwd bf16 %s n=%zu, %d threads",
                              lv, n, threads[t]);
            }
            omp_set_num_threads(before);
            ref_swiglu_forward_bf16(B.out64, B.a64, B.b64, n);
            ref_swiglu_backward_bf16(B.da64, B.db64, B.g64, B.a64, B.b64, n);
            const double *ref[3] = {B.out64, B.da64, B.db64};
            for (int k = 0; k < 3; k++) {  // a float result and the double one may round to neighbouring bf16s
                float *f = widen(got + k * n, n);
                ck_assert_msg(tu_rel_err_f64(f, ref[k], n) < 4e-3, "bf16 output %d %s n=%zu: %g", k, lv, n,
                              tu_rel_err_f64(f, ref[k], n));
                free(f);
            }
            free(want), free(got);
            free_bufs(&B);
        }
    }
    simd_set(simd_best());
}
END_TEST

int main(void) {
    Suite *s = suite_create("kernels_swiglu");
    TCase *tc = tcase_create("swiglu");
    tcase_add_test(tc, test_matches_ref_every_level);
    tcase_add_test(tc, test_in_place);
    tcase_add_test(tc, test_same_bits_any_threads);
    tcase_add_test(tc, test_ref_backward_finite_differences);
    tcase_add_test(tc, test_bf16_outputs);
    suite_add_tcase(s, tc);
    return tu_run_suite(s, CK_FORK_GETENV);
}
