// ref_embedding.c: oracle for kernels/embedding.c.
#include "kernels/ref/ref.h"

void ref_embedding_forward(double *out, const int *tokens, const double *table, int n, int d) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < d; j++) out[(size_t)i * d + j] = table[(size_t)tokens[i] * d + j];
}

void ref_embedding_backward(double *dtable, const double *dout, const int *tokens, int n, int d) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < d; j++) dtable[(size_t)tokens[i] * d + j] += dout[(size_t)i * d + j];
}
