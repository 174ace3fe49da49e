// ref_swiglu.c: oracle for kernels/swiglu.c.
#include "kernels/ref/ref.h"

#include <math.h>

static double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

void ref_silu_forward(double *out, const double *x, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = x[i] * sigmoid(x[i]);
}

void ref_silu_backward(double *dx, const double *dout, const double *x, size_t n) {
    for (size_t i = 0; i < n; i++) {
        double s = sigmoid(x[i]);
        dx[i] = dout[i] * s * (1.0 + x[i] * (1.0 - s));
    }
}

void ref_swiglu_forward(double *out, const double *a, const double *b, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = a[i] * sigmoid(a[i]) * b[i];
}

void ref_swiglu_backward(double *da, double *db, const double *dout, const double *a, const double *b, size_t n) {
    for (size_t i = 0; i < n; i++) {
        double s = sigmoid(a[i]);
        double dai = dout[i] * b[i] * s * (1.0 + a[i] * (1.0 - s));
        double dbi = dout[i] * a[i] * s;
        da[i] = dai;
        db[i] = dbi;
    }
}

void ref_swiglu_forward_bf16(double *out, const double *a, const double *b, size_t n) {
    ref_swiglu_forward(out, a, b, n);
    for (size_t i = 0; i < n; i++) out[i] = ref_bf16_round(out[i]);
}

void ref_swiglu_backward_bf16(double *da, double *db, const double *dout, const double *a, const double *b, size_t n) {
    ref_swiglu_backward(da, db, dout, a, b, n);
    for (size_t i = 0; i < n; i++) da[i] = ref_bf16_round(da[i]), db[i] = ref_bf16_round(db[i]);
}
