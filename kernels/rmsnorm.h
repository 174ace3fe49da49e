// rmsnorm.h: RMSNorm, out = x / sqrt(mean(x^2) + eps) * w, per row of d elements.
//
// Forward caches rstd[n] = 1 / sqrt(mean(x^2) + eps) for backward. Backward ACCUMULATES
// (+=) into dx (x is the residual stream, whose gradient sums over every reader) and
// into dw (a parameter gradient); dw may be NULL when the weight is frozen.
#ifndef MONOLITH_RMSNORM_H
#define MONOLITH_RMSNORM_H

// out[n,d], rstd[n] from x[n,d], w[d]. out may not alias x.
void rmsnorm_forward(float *out, float *rstd, const float *x, const float *w, int n, int d, float eps);
// dx[n,d] += d out / d x . dout;  dw[d] += sum over rows of dout * x * rstd
void rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x, const float *w, const float *rstd,
                      int n, int d);

#endif
