// ref_cross_entropy.c: oracle for kernels/cross_entropy.c.
#include "kernels/ref/ref.h"

#include <math.h>

static double row_lse(const double *x, int V) {
    double m = -INFINITY, s = 0;
    for (int j = 0; j < V; j++) m = fmax(m, x[j]);
    for (int j = 0; j < V; j++) s += exp(x[j] - m);
    return m + log(s);
}

void ref_cross_entropy_forward(double *losses, const double *logits, const int *targets, int n, int V) {
    for (int i = 0; i < n; i++) {
        const double *x = logits + (size_t)i * V;
        losses[i] = targets[i] < 0 ? 0.0 : row_lse(x, V) - x[targets[i]];
    }
}

void ref_cross_entropy_backward(double *dlogits, const double *logits, const int *targets, const double *dloss, int n,
                                int V) {
    for (int i = 0; i < n; i++) {
        const double *x = logits + (size_t)i * V;
        double *d = dlogits + (size_t)i * V;
        int t = targets[i];
        double lse = t < 0 ? 0.0 : row_lse(x, V);
        for (int j = 0; j < V; j++) d[j] = t < 0 ? 0.0 : dloss[i] * (exp(x[j] - lse) - (j == t ? 1.0 : 0.0));
    }
}

void ref_cross_entropy_backward_bf16(double *dlogits, const double *logits, const int *targets, const double *dloss,
                                     int n, int V) {
    ref_cross_entropy_backward(dlogits, logits, targets, dloss, n, V);
    for (size_t i = 0; i < (size_t)n * (size_t)V; i++) dlogits[i] = ref_bf16_round(dlogits[i]);
}
