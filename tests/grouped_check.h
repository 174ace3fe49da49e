// grouped_check.h: the three grouped GEMM forms of one operand type (fp32 in
// kernels_matmul.c, bf16 in kernels_bf16.c) against kernels/ref's oracle, over block
// boundaries for 5 groups (even, skewed, empty at the ends and in the middle, all empty,
// one row each, all rows in the last group), three sizes, every threading strategy and
// acc 0 and 1. The outputs start as NaN (acc 0: assign must not read them) or random
// (acc 1); the tn form's empty blocks must give zeros (acc 0) or keep C_g (acc 1).
#ifndef MONOLITH_GROUPED_CHECK_H
#define MONOLITH_GROUPED_CHECK_H

#include "kernels/matmul.h"
#include "kernels/ref/ref.h"
#include "tests/testutil.h"

#define GC_G 5

typedef void (*gc_fn)(float *C, const void *A, const void *B, const int *offs, int G, int N, int K, int acc);

typedef struct {
    size_t elem;                                                  // bytes of an operand element
    void (*make)(void *x, double *x64, size_t n, uint64_t seed);  // random operand x and the values it stands for
    gc_fn nt, nn, tn;                                             // the forms under test
    double tol;                                                   // normalized error against the oracle
    int last_rows;                                                // rows of the all-in-the-last-group case
    int dims[3][2];                                               // {N, K} (for tn: {M, N})
} gc_forms;

static void gc_check(const gc_forms *g) {
    const int offsets[][GC_G + 1] = {{0, 20, 40, 60, 80, 100}, {0, 91, 93, 97, 98, 100}, {0, 0, 30, 30, 77, 77},
                                     {0, 0, 0, 0, 0, 0},       {0, 1, 2, 3, 4, 5},       {0, 0, 0, 0, 0, g->last_rows}};
    static const matmul_grouped_strategy strategies[] = {MATMUL_GROUPED_AUTO, MATMUL_GROUPED_BLAS_PARALLEL,
                                                         MATMUL_GROUPED_BLOCK_PARALLEL};
    static const char *names[] = {"auto", "blas-parallel", "block-parallel"};
    const gc_fn forms[3] = {g->nt, g->nn, g->tn};
    void (*const refs[3])(double *, const double *, const double *, const int *, int, int, int, int) = {
        ref_matmul_grouped_nt, ref_matmul_grouped_nn, ref_matmul_grouped_tn};
    for (size_t o = 0; o < sizeof offsets / sizeof offsets[0]; o++)
        for (size_t d = 0; d < 3; d++) {
            const int *offs = offsets[o], rows = offs[GC_G], N = g->dims[d][0], K = g->dims[d][1];
            size_t big = (size_t)GC_G * N * K + (size_t)(rows + 1) * (N + K) + 1;  // room for any operand
            void *A = malloc(big * g->elem), *B = malloc(big * g->elem);
            double *A64 = malloc(big * 8), *B64 = malloc(big * 8), *C64 = malloc(big * 8);
            float *C = malloc(big * 4);
            g->make(A, A64, big, 40 + o), g->make(B, B64, big, 50 + d);
            for (size_t st = 0; st < 3; st++) {
                matmul_grouped_set_strategy(strategies[st]);
                for (int acc = 0; acc <= 1; acc++)
                    for (int f = 0; f < 3; f++) {  // nt, nn: C [rows, N]; tn: C [G, M=N, N=K]
                        size_t nc = f < 2 ? (size_t)rows * N : (size_t)GC_G * N * K;
                        tu_prefill(C, C64, nc, acc, 60 + f);
                        forms[f](C, A, B, offs, GC_G, N, K, acc);
                        refs[f](C64, A64, B64, offs, GC_G, N, K, acc);
                        ck_assert_msg(tu_all_finite(C, nc), "grouped %s offs#%zu acc=%d %s: non-finite",
                                      f == 0 ? "nt" : f == 1 ? "nn" : "tn", o, acc, names[st]);
                        double e = nc ? tu_rel_err_f64(C, C64, nc) : 0;
                        ck_assert_msg(e < g->tol, "grouped %s offs#%zu %d x %d acc=%d %s: err %.3g",
                                      f == 0 ? "nt" : f == 1 ? "nn" : "tn", o, N, K, acc, names[st], e);
                    }
            }
            free(A), free(B), free(C), free(A64), free(B64), free(C64);
        }
    matmul_grouped_set_strategy(MATMUL_GROUPED_AUTO);
}

#endif
