// topk.h: top-k selection per row (the router's expert choice).
//
// Ties go to the lower index, as the router needs (docs/design.md section 4). Forward caches idx for backward;
// backward scatters the value gradients back and accumulates (+=).
#ifndef MONOLITH_TOPK_H
#define MONOLITH_TOPK_H

// For each row of x[n, E]: idx[n, k] and val[n, k], the k largest in descending order.
void topk_forward(int *idx, float *val, const float *x, int n, int E, int k);
// dx[i, idx[i, j]] += dval[i, j]
void topk_backward(float *dx, const float *dval, const int *idx, int n, int E, int k);

#endif
