// ref_matmul.c: oracle for kernels/matmul.c (triple loops in double).
#include "kernels/ref/ref.h"

#include <stddef.h>

void ref_matmul_nn(double *C, const double *A, const double *B, int M, int N, int K, int acc) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int p = 0; p < K; p++) s += A[(size_t)i * K + p] * B[(size_t)p * N + j];
            C[(size_t)i * N + j] = (acc ? C[(size_t)i * N + j] : 0.0) + s;
        }
}

void ref_matmul_nt(double *C, const double *A, const double *B, int M, int N, int K, int acc) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int p = 0; p < K; p++) s += A[(size_t)i * K + p] * B[(size_t)j * K + p];
            C[(size_t)i * N + j] = (acc ? C[(size_t)i * N + j] : 0.0) + s;
        }
}

void ref_matmul_tn(double *C, const double *A, const double *B, int M, int N, int K, int acc) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int p = 0; p < K; p++) s += A[(size_t)p * M + i] * B[(size_t)p * N + j];
            C[(size_t)i * N + j] = (acc ? C[(size_t)i * N + j] : 0.0) + s;
        }
}

void ref_matmul_grouped_nt(double *C, const double *A, const double *B, const int *offs, int G, int N, int K,
                           int acc) {
    for (int g = 0; g < G; g++) {
        size_t r0 = (size_t)offs[g];
        ref_matmul_nt(C + r0 * N, A + r0 * K, B + (size_t)g * N * K, offs[g + 1] - offs[g], N, K, acc);
    }
}

void ref_matmul_grouped_nn(double *C, const double *A, const double *B, const int *offs, int G, int N, int K,
                           int acc) {
    for (int g = 0; g < G; g++) {
        size_t r0 = (size_t)offs[g];
        ref_matmul_nn(C + r0 * N, A + r0 * K, B + (size_t)g * K * N, offs[g + 1] - offs[g], N, K, acc);
    }
}

void ref_matmul_grouped_tn(double *C, const double *A, const double *B, const int *offs, int G, int M, int N,
                           int acc) {
    for (int g = 0; g < G; g++) {
        size_t r0 = (size_t)offs[g];
        ref_matmul_tn(C + (size_t)g * M * N, A + r0 * M, B + r0 * N, M, N, offs[g + 1] - offs[g], acc);
    }
}
