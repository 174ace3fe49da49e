// softmax.h: row softmax and log-sum-exp (router probabilities, router z-loss).
//
// Forward caches its output (backward needs only that). Backward assigns.
#ifndef MONOLITH_SOFTMAX_H
#define MONOLITH_SOFTMAX_H

// out[rows, cols] = softmax of each row of x, max-subtracted. out may alias x.
void softmax_forward(float *out, const float *x, int rows, int cols);
// dx = out * (dout - sum_j dout_j out_j), per row. dx may alias dout.
void softmax_backward(float *dx, const float *dout, const float *out, int rows, int cols);
// p[n] = softmax(p[n]) in place: one row, on the calling thread (for callers that run
// rows in their own parallel loops: attention's causal rows, a decode step's scores).
void softmax_row(float *p, int n);
// lse[rows] = log sum_j exp(x[r, j]), max-subtracted.
void logsumexp_rows(float *lse, const float *x, int rows, int cols);

#endif
