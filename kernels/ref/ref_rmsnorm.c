// ref_rmsnorm.c: oracle for kernels/rmsnorm.c, written from the chain rule:
// y_j = x_j r w_j with r = (mean(x^2) + eps)^(-1/2), dr/dx_k = -r^3 x_k / d.
#include "kernels/ref/ref.h"

#include <math.h>

void ref_rmsnorm_forward(double *out, double *rstd, const double *x, const double *w, int n, int d, double eps) {
    for (int i = 0; i < n; i++) {
        const double *xr = x + (size_t)i * d;
        double ss = 0;
        for (int j = 0; j < d; j++) ss += xr[j] * xr[j];
        double r = 1.0 / sqrt(ss / d + eps);
        rstd[i] = r;
        for (int j = 0; j < d; j++) out[(size_t)i * d + j] = xr[j] * r * w[j];
    }
}

void ref_rmsnorm_backward(double *dx, double *dw, const double *dout, const double *x, const double *w,
                          const double *rstd, int n, int d) {
    for (int i = 0; i < n; i++) {
        const double *xr = x + (size_t)i * d, *g = dout + (size_t)i * d;
        double r = rstd[i], c = 0;
        for (int j = 0; j < d; j++) c += g[j] * w[j] * xr[j];
        for (int k = 0; k < d; k++) {
            dx[(size_t)i * d + k] += g[k] * w[k] * r - c * r * r * r * xr[k] / d;
            if (dw) dw[k] += g[k] * xr[k] * r;
        }
    }
}
