// topk.c: top-k per row by insertion into a sorted list of k (the router's rows are
// short, E <= a few hundred, and k small, so O(E k) beats a heap or a partial sort).
// Scanning in index order and inserting only past entries >= the new value keeps ties
// in index order: of equal values, the lower index ranks first and wins the last slot.
// Comparisons only, no arithmetic: the result is the same at every SIMD level.
#include "kernels/topk.h"

#include "kernels/threads.h"

#include <stddef.h>

void topk_forward(int *idx, float *val, const float *x, int n, int E, int k) {
    if (k <= 0) return;
    MO_PAR_ROWS((size_t)n * E >= ((size_t)1 << 16),
    for (int r = 0; r < n; r++) {
        const float *xr = x + (size_t)r * E;
        int *ir = idx + (size_t)r * k;
        float *vr = val + (size_t)r * k;
        int cnt = 0;
        for (int j = 0; j < E; j++) {
            float v = xr[j];
            if (cnt == k && !(v > vr[k - 1])) continue;  // not strictly better than the last kept
            int p = cnt < k ? cnt++ : k - 1;
            while (p > 0 && vr[p - 1] < v) {  // strict: an equal earlier entry stays ahead
                vr[p] = vr[p - 1];
                ir[p] = ir[p - 1];
                p--;
            }
            vr[p] = v;
            ir[p] = j;
        }
    });
}

void topk_backward(float *dx, const float *dval, const int *idx, int n, int E, int k) {
    for (int r = 0; r < n; r++)
        for (int j = 0; j < k; j++) dx[(size_t)r * E + idx[(size_t)r * k + j]] += dval[(size_t)r * k + j];
}
