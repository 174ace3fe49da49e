// ref_softmax.c: oracle for kernels/softmax.c.
#include "kernels/ref/ref.h"

#include <math.h>

static double row_max(const double *x, int n) {
    double m = -INFINITY;
    for (int j = 0; j < n; j++) m = fmax(m, x[j]);
    return m;
}

void ref_softmax_forward(double *out, const double *x, int rows, int cols) {
    for (int r = 0; r < rows; r++) {
        const double *xr = x + (size_t)r * cols;
        double *o = out + (size_t)r * cols;
        double m = row_max(xr, cols), s = 0;
        for (int j = 0; j < cols; j++) s += exp(xr[j] - m);
        for (int j = 0; j < cols; j++) o[j] = exp(xr[j] - m) / s;
    }
}

void ref_softmax_backward(double *dx, const double *dout, const double *out, int rows, int cols) {
    for (int r = 0; r < rows; r++) {
        const double *g = dout + (size_t)r * cols, *y = out + (size_t)r * cols;
        double dot = 0;
        for (int j = 0; j < cols; j++) dot += g[j] * y[j];
        for (int j = 0; j < cols; j++) dx[(size_t)r * cols + j] = y[j] * (g[j] - dot);
    }
}

void ref_logsumexp_rows(double *lse, const double *x, int rows, int cols) {
    for (int r = 0; r < rows; r++) {
        const double *xr = x + (size_t)r * cols;
        double m = row_max(xr, cols), s = 0;
        for (int j = 0; j < cols; j++) s += exp(xr[j] - m);
        lse[r] = m + log(s);
    }
}
