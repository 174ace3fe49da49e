// kernels_embedding.c: embedding lookup and scatter-add against kernels/ref at every
// SIMD level (repeated tokens add up, backward accumulates), and the reference backward
// against central finite differences in double.
#include "kernels/embedding.h"
#include "kernels/ref/ref.h"
#include "kernels/simd.h"
#include "tests/testutil.h"

#include <omp.h>

// Widths around every vector width so the SIMD tails of the scatter-add run.
// The last width with n = 37 tokens moves >= 2^17 elements: the threaded paths run.
static const int dims[] = {1, 7, 8, 9, 15, 16, 17, 33, 100, 515, 3547};
#define N_DIMS (sizeof dims / sizeof dims[0])
#define TOL_F32 2e-7  // sums of a few float rows, normalized

// n tokens in [0, V) with repeats (V < n) so the scatter-add sums into shared rows.
static void fill_tokens(int *tok, int n, int V, uint64_t seed) {
    mo_rng r;
    mo_rng_seed(&r, seed);
    for (int i = 0; i < n; i++) tok[i] = (int)mo_rng_below(&r, (uint64_t)V);
}

START_TEST(test_matches_ref_every_level) {
    const int V = 11, n = 37;
    int tok[37];
    for (int level = SIMD_SCALAR; level <= (int)simd_best(); level++) {
        ck_assert_int_eq(simd_set((simd_level)level), 0);
        const char *lv = simd_name((simd_level)level);
        for (size_t s = 0; s < N_DIMS; s++) {
            int d = dims[s];
            size_t nt = (size_t)V * d, no = (size_t)n * d;
            float *table = malloc(nt * 4), *dtable = malloc(nt * 4), *out = malloc(no * 4), *g = malloc(no * 4);
            double *table64 = malloc(nt * 8), *dtable64 = malloc(nt * 8);
            double *out64 = malloc(no * 8), *g64 = malloc(no * 8);
            fill_tokens(tok, n, V, 5 + s);
            tu_fill(table, nt, 10 + s, 1.0f), tu_fill(g, no, 20 + s, 1.0f);
            tu_fill(dtable, nt, 30 + s, 1.0f);  // backward accumulates into what is there
            tu_to_f64(table64, table, nt), tu_to_f64(g64, g, no), tu_to_f64(dtable64, dtable, nt);

            embedding_forward(out, tok, table, n, d);
            ref_embedding_forward(out64, tok, table64, n, d);
            ck_assert_msg(tu_rel_err_f64(out, out64, no) == 0, "fwd %s d=%d", lv, d);
            embedding_backward(dtable, g, tok, n, d);
            ref_embedding_backward(dtable64, g64, tok, n, d);
            ck_assert_msg(tu_rel_err_f64(dtable, dtable64, nt) < TOL_F32, "bwd %s d=%d: %g", lv, d,
                          tu_rel_err_f64(dtable, dtable64, nt));
            free(table), free(dtable), free(out), free(g), free(table64), free(dtable64), free(out64), free(g64);
        }
    }
    simd_set(simd_best());
}
END_TEST

START_TEST(test_repeats_accumulate) {
    // Token 2 three times, token 0 once: row 2 gets the three dout rows plus its old value.
    const int d = 19, tok[4] = {2, 0, 2, 2};
    float dtable[3 * 19], g[4 * 19];
    for (int i = 0; i < 3 * d; i++) dtable[i] = 1.0f;
    for (int i = 0; i < 4 * d; i++) g[i] = (float)(i / d + 1);  // row i of dout is all i+1
    embedding_backward(dtable, g, tok, 4, d);
    for (int j = 0; j < d; j++) {
        ck_assert_float_eq(dtable[0 * d + j], 1.0f + 2.0f);
        ck_assert_float_eq(dtable[1 * d + j], 1.0f);
        ck_assert_float_eq(dtable[2 * d + j], 1.0f + 1.0f + 3.0f + 4.0f);
    }
}
END_TEST

START_TEST(test_thread_count_independent) {
    // Columns split over threads: the same bits on 1 and 2 threads.
    enum { V = 5, N = 64, D = 2063 };  // N * D >= 2^17
    int tok[N];
    float *g = malloc((size_t)N * D * 4), *dt[2];
    fill_tokens(tok, N, V, 9);
    tu_fill(g, (size_t)N * D, 4, 1.0f);
    int saved = omp_get_max_threads();
    for (int t = 0; t < 2; t++) {
        omp_set_num_threads(t + 1);
        dt[t] = calloc((size_t)V * D, 4);
        embedding_backward(dt[t], g, tok, N, D);
    }
    omp_set_num_threads(saved);
    ck_assert(memcmp(dt[0], dt[1], (size_t)V * D * 4) == 0);
    free(g), free(dt[0]), free(dt[1]);
}
END_TEST

typedef struct {
    double *table, *w, *out;
    const int *tok;
    int n, d;
} fd_ctx;

static double embedding_loss(void *p) {
    fd_ctx *c = p;
    ref_embedding_forward(c->out, c->tok, c->table, c->n, c->d);
    double L = 0;
    for (int i = 0; i < c->n * c->d; i++) L += c->w[i] * c->out[i];
    return L;
}

START_TEST(test_ref_backward_finite_differences) {
    const int V = 7, n = 13, d = 9;
    int tok[13];
    double table[7 * 9], dtable[7 * 9] = {0}, w[13 * 9], out[13 * 9];
    fill_tokens(tok, n, V, 3);
    tu_fill_f64(table, V * d, 1, 1.0), tu_fill_f64(w, n * d, 2, 1.0);
    fd_ctx c = {table, w, out, tok, n, d};
    ref_embedding_backward(dtable, w, tok, n, d);
    tu_fd_check("embedding dtable", embedding_loss, &c, table, dtable, V * d, V * d, 1e-5, 1e-8);
}
END_TEST

int main(void) {
    Suite *s = suite_create("kernels_embedding");
    TCase *tc = tcase_create("embedding");
    tcase_add_test(tc, test_matches_ref_every_level);
    tcase_add_test(tc, test_repeats_accumulate);
    tcase_add_test(tc, test_thread_count_independent);
    tcase_add_test(tc, test_ref_backward_finite_differences);
    suite_add_tcase(s, tc);
    return tu_run_suite(s, CK_FORK_GETENV);
}
