// ref_topk.c: oracle for kernels/topk.c: k rounds of "take the largest not yet taken",
// scanning in index order with a strict comparison so ties go to the lower index.
#include "kernels/ref/ref.h"

#include <stdlib.h>

void ref_topk_forward(int *idx, double *val, const double *x, int n, int E, int k) {
    char *taken = calloc((size_t)E, 1);
    for (int r = 0; r < n; r++) {
        const double *xr = x + (size_t)r * E;
        for (int j = 0; j < E; j++) taken[j] = 0;
        for (int s = 0; s < k; s++) {
            int best = -1;
            for (int j = 0; j < E; j++)
                if (!taken[j] && (best < 0 || xr[j] > xr[best])) best = j;
            taken[best] = 1;
            idx[(size_t)r * k + s] = best;
            val[(size_t)r * k + s] = xr[best];
        }
    }
    free(taken);
}

void ref_topk_backward(double *dx, const double *dval, const int *idx, int n, int E, int k) {
    for (int r = 0; r < n; r++)
        for (int j = 0; j < k; j++) dx[(size_t)r * E + idx[(size_t)r * k + j]] += dval[(size_t)r * k + j];
}
