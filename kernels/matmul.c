// matmul.c: dense and grouped (per-expert) products over cblas_sgemm, row-major.
//
// Empty products never reach BLAS: a zero M or N leaves nothing to write, and a zero K
// (an empty inner dimension, e.g. an expert that got no tokens in the weight gradient)
// means C (+)= 0, so C is zeroed (acc = 0) or left alone (acc = 1). BLAS would reject
// the leading dimension 0 that a zero K gives in row-major layout.
//
// Threading (docs/threading.md): a dense product is one BLAS call, which uses every
// thread when made outside a parallel region and one thread inside. The grouped products
// choose between one BLAS call per block made one after the other (BLAS-parallel) and the
// blocks spread over the threads with a serial BLAS call each (block-parallel), or mix
// the two (AUTO, grouped_run() below), as measured by `monolith bench kernels`.
#include "kernels/matmul.h"

#include "kernels/matmul_small.h"

#include <cblas.h>
#include <omp.h>
#include <string.h>

static matmul_grouped_strategy grouped_strategy = MATMUL_GROUPED_AUTO;

void matmul_grouped_set_strategy(matmul_grouped_strategy s) { grouped_strategy = s; }

// One row-major sgemm C[M,N] (+)= op(A) op(B) with the inner dimension K, or the
// equivalent without BLAS when the product is empty.
static void gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, float *C, const float *A, int lda, const float *B,
                 int ldb, int M, int N, int K, int acc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        if (!acc) memset(C, 0, (size_t)M * (size_t)N * sizeof *C);
        return;
    }
    cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, 1.0f, A, lda, B, ldb, acc ? 1.0f : 0.0f, C, N);
}

void matmul_nn(float *C, const float *A, const float *B, int M, int N, int K, int acc) {
    gemm(CblasNoTrans, CblasNoTrans, C, A, K, B, N, M, N, K, acc);
}

void matmul_nt(float *C, const float *A, const float *B, int M, int N, int K, int acc) {
    gemm(CblasNoTrans, CblasTrans, C, A, K, B, K, M, N, K, acc);
}

void matmul_tn(float *C, const float *A, const float *B, int M, int N, int K, int acc) {
    gemm(CblasTrans, CblasNoTrans, C, A, M, B, N, M, N, K, acc);
}

// ---------------------------------------------------------------------------- grouped

typedef struct {
    const matmul_dense_ops *ops;
    matmul_form form;
    float *C;
    const char *A, *B;  // bytes: elements of ops->elem
    const int *offs;
    int N, K;  // for TN: M and N of each C_g
    int acc;
} grouped_args;

// The product of block g alone.
static void grouped_block(const void *ctx, int g) {
    const grouped_args *a = ctx;
    const size_t n = (size_t)a->N, k = (size_t)a->K, r0 = (size_t)a->offs[g], e = a->ops->elem;
    const int rows = a->offs[g + 1] - a->offs[g];
    switch (a->form) {
    case MATMUL_NT: a->ops->nt(a->C + r0 * n, a->A + r0 * k * e, a->B + g * n * k * e, rows, a->N, a->K, a->acc); break;
    case MATMUL_NN: a->ops->nn(a->C + r0 * n, a->A + r0 * k * e, a->B + g * k * n * e, rows, a->N, a->K, a->acc); break;
    // C_g[M,N] with M = a->N, N = a->K; an empty block has K = 0: the product zeroes C_g
    // (acc = 0) or leaves it (acc = 1).
    case MATMUL_TN: a->ops->tn(a->C + g * n * k, a->A + r0 * n * e, a->B + r0 * k * e, a->N, a->K, rows, a->acc); break;
    }
}

#define GROUPED_ORDER_MAX 1024  // more blocks than this are taken in index order

// order[0..G) sorted by rows descending, ties by index (an insertion sort: G is the
// number of experts, and the order only decides which thread runs a block, never its bits).
static void sort_by_rows(int *order, int G, const int *offs) {
    for (int i = 1; i < G; i++) {
        const int g = order[i], rows = offs[g + 1] - offs[g];
        int j = i;
        for (; j > 0 && offs[order[j - 1] + 1] - offs[order[j - 1]] < rows; j--) order[j] = order[j - 1];
        order[j] = g;
    }
}

// AUTO: a block with more than its share (1/threads) of the rows runs alone with every
// thread inside BLAS, so that one big expert cannot leave the other threads idle; the
// rest are spread over the threads, one serial BLAS call each, which avoids BLAS's
// per-call thread start-up on many small blocks. Measured in docs/threading.md.
// `on` (NULL: all) marks the blocks to run; whether a block is big counts all G, so a
// block runs exactly as it would among all of them (same bits).
static matmul_grouped_strategy strategy_here(void) {
    // One thread, or inside a parallel region: a plain loop either way.
    return omp_get_max_threads() <= 1 || omp_in_parallel() ? MATMUL_GROUPED_BLAS_PARALLEL : grouped_strategy;
}

// AUTO's big block: more than its share of the rows.
static int grouped_big(matmul_grouped_strategy s, int nt, const int *offs, int G, int g) {
    return s == MATMUL_GROUPED_AUTO && (long long)(offs[g + 1] - offs[g]) * nt > offs[G] - offs[0];
}

int matmul_grouped_alone(const int *offs, int G, int g) {
    const matmul_grouped_strategy s = strategy_here();
    return s == MATMUL_GROUPED_BLAS_PARALLEL || grouped_big(s, omp_get_max_threads(), offs, G, g);
}

void matmul_grouped_schedule(const int *offs, int G, const unsigned char *on, void (*block)(const void *ctx, int g),
                             const void *ctx) {
    const matmul_grouped_strategy s = strategy_here();  // before the parallel region below
    const int nt = omp_get_max_threads();
    if (s == MATMUL_GROUPED_BLAS_PARALLEL) {
        for (int g = 0; g < G; g++)
            if (!on || on[g]) block(ctx, g);
        return;
    }
#define GROUPED_BIG(g) grouped_big(s, nt, offs, G, (g))
    for (int g = 0; g < G; g++)
        if ((!on || on[g]) && GROUPED_BIG(g)) block(ctx, g);
    // The threads take the blocks largest first, so that the last ones taken, which
    // decide how long the others wait at the end, are the smallest.
    int order_buf[GROUPED_ORDER_MAX], *order = G <= GROUPED_ORDER_MAX ? order_buf : NULL;
    if (order) {
        for (int g = 0; g < G; g++) order[g] = g;
        sort_by_rows(order, G, offs);
    }
#pragma omp parallel for schedule(dynamic, 1)
    for (int i = 0; i < G; i++) {
        const int g = order ? order[i] : i;
        if ((!on || on[g]) && !GROUPED_BIG(g)) block(ctx, g);
    }
#undef GROUPED_BIG
}

void matmul_grouped_some(const matmul_dense_ops *ops, matmul_form form, float *C, const void *A, const void *B,
                         const int *offs, int G, int N, int K, int acc, const unsigned char *on) {
    grouped_args a = {ops, form, C, A, B, offs, N, K, acc};
    matmul_grouped_schedule(offs, G, on, grouped_block, &a);
}

void matmul_grouped(const matmul_dense_ops *ops, matmul_form form, float *C, const void *A, const void *B,
                    const int *offs, int G, int N, int K, int acc) {
    matmul_grouped_some(ops, form, C, A, B, offs, G, N, K, acc, NULL);
}

// A product with a small dimension (fine-grained experts' d_ff, the router's n_experts)
// runs in matmul_small's kernel, the others in BLAS. The choice depends on the shape's N
// and K only, never on a block's row count, so a row gets the same bits in any grouping.
void matmul_auto_nt(float *C, const float *A, const float *B, int M, int N, int K, int acc) {
    if (matmul_small_use(MATMUL_SMALL_NT, M, N, K)) matmul_small_nt(C, A, B, M, N, K, acc);
    else matmul_nt(C, A, B, M, N, K, acc);
}
void matmul_auto_nn(float *C, const float *A, const float *B, int M, int N, int K, int acc) {
    if (matmul_small_use(MATMUL_SMALL_NN, M, N, K)) matmul_small_nn(C, A, B, M, N, K, acc);
    else matmul_nn(C, A, B, M, N, K, acc);
}
void matmul_auto_tn(float *C, const float *A, const float *B, int M, int N, int K, int acc) {
    if (matmul_small_use(MATMUL_SMALL_TN, M, N, K)) matmul_small_tn(C, A, B, M, N, K, acc);
    else matmul_tn(C, A, B, M, N, K, acc);
}
static void f32_nt(float *C, const void *A, const void *B, int M, int N, int K, int acc) {
    matmul_auto_nt(C, A, B, M, N, K, acc);
}
static void f32_nn(float *C, const void *A, const void *B, int M, int N, int K, int acc) {
    matmul_auto_nn(C, A, B, M, N, K, acc);
}
static void f32_tn(float *C, const void *A, const void *B, int M, int N, int K, int acc) {
    matmul_auto_tn(C, A, B, M, N, K, acc);
}
static const matmul_dense_ops f32_ops = {f32_nt, f32_nn, f32_tn, sizeof(float)};

void matmul_grouped_nt(float *C, const float *A, const float *B, const int *offs, int G, int N, int K, int acc) {
    matmul_grouped(&f32_ops, MATMUL_NT, C, A, B, offs, G, N, K, acc);
}

void matmul_grouped_nn(float *C, const float *A, const float *B, const int *offs, int G, int N, int K, int acc) {
    matmul_grouped(&f32_ops, MATMUL_NN, C, A, B, offs, G, N, K, acc);
}

void matmul_grouped_tn(float *C, const float *A, const float *B, const int *offs, int G, int M, int N, int acc) {
    matmul_grouped(&f32_ops, MATMUL_TN, C, A, B, offs, G, M, N, acc);
}

void matmul_grouped_nn_some(float *C, const float *A, const float *B, const int *offs, int G, int N, int K, int acc,
                            const unsigned char *on) {
    matmul_grouped_some(&f32_ops, MATMUL_NN, C, A, B, offs, G, N, K, acc, on);
}

void matmul_grouped_tn_some(float *C, const float *A, const float *B, const int *offs, int G, int M, int N, int acc,
                            const unsigned char *on) {
    matmul_grouped_some(&f32_ops, MATMUL_TN, C, A, B, offs, G, M, N, acc, on);
}
