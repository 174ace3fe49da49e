// matmul.c: dense and grouped (per-expert) products over cblas_sgemm, row-major.
//
// Empty products never reach BLAS: a zero M or N leaves nothing to write, and a zero K
// (an empty inner dimension, e.g. an expert that got no tokens in the weight gradient)
// means C (+)= 0, so C is zeroed (acc = 0) or left alone (acc = 1). BLAS would reject
// the leading dimension 0 that a zero K gives in row-major layout.
//
// Threading (docs/threading.md): a dense product is one BLAS call, which uses every
// thread when made outside a parallel region and one thread inside. The grouped products
// pick between one BLAS call per block made one after the other (BLAS-parallel) and the
// blocks spread over the threads with a serial BLAS call each (block-parallel), by the
// rule in grouped_use_blocks() below, which was chosen by `monolith bench kernels`.
#include "kernels/matmul.h"

#include <cblas.h>
#include <omp.h>
#include <string.h>

#define GROUPED_SKEW_LIMIT 1.5

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

// Block-parallel when there are threads to spread over and no block is so large that it
// alone would leave the other threads idle for most of the call: the largest block must
// be at most 1/threads + 1/8 of all rows... (see docs/threading.md for the measurements).
static int grouped_use_blocks(const int *offs, int G) {
    if (grouped_strategy != MATMUL_GROUPED_AUTO) return grouped_strategy == MATMUL_GROUPED_BLOCK_PARALLEL;
    int nt = omp_get_max_threads();
    if (nt <= 1 || omp_in_parallel()) return 0;
    int total = offs[G] - offs[0], largest = 0, nonempty = 0;
    for (int g = 0; g < G; g++) {
        int n = offs[g + 1] - offs[g];
        if (n > largest) largest = n;
        nonempty += n > 0;
    }
    if (nonempty < nt) return 0;
    return (double)largest * nt <= GROUPED_SKEW_LIMIT * (double)total;
}

void matmul_grouped_nt(float *C, const float *A, const float *B, const int *offs, int G, int N, int K, int acc) {
    const size_t n = (size_t)N, k = (size_t)K;
#pragma omp parallel for schedule(dynamic, 1) if (grouped_use_blocks(offs, G))
    for (int g = 0; g < G; g++) {
        size_t r0 = (size_t)offs[g];
        matmul_nt(C + r0 * n, A + r0 * k, B + (size_t)g * n * k, offs[g + 1] - offs[g], N, K, acc);
    }
}

void matmul_grouped_nn(float *C, const float *A, const float *B, const int *offs, int G, int N, int K, int acc) {
    const size_t n = (size_t)N, k = (size_t)K;
#pragma omp parallel for schedule(dynamic, 1) if (grouped_use_blocks(offs, G))
    for (int g = 0; g < G; g++) {
        size_t r0 = (size_t)offs[g];
        matmul_nn(C + r0 * n, A + r0 * k, B + (size_t)g * k * n, offs[g + 1] - offs[g], N, K, acc);
    }
}

void matmul_grouped_tn(float *C, const float *A, const float *B, const int *offs, int G, int M, int N, int acc) {
    const size_t m = (size_t)M, n = (size_t)N;
#pragma omp parallel for schedule(dynamic, 1) if (grouped_use_blocks(offs, G))
    for (int g = 0; g < G; g++) {
        size_t r0 = (size_t)offs[g];
        // An empty block has K = 0: gemm() zeroes C_g (acc = 0) or leaves it (acc = 1).
        matmul_tn(C + (size_t)g * m * n, A + r0 * m, B + r0 * n, M, N, offs[g + 1] - offs[g], acc);
    }
}
