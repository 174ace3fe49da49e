// ref_gemv.c: oracles of the decode kernels (kernels/gemv.h, kernels/attention_decode.h), in double.
#include "kernels/ref/ref.h"

#include "kernels/gemv.h"

#include <math.h>
#include <stdlib.h>

void ref_gemv(double *y, const double *W, const double *x, int rows, int cols, double alpha, int acc) {
    for (int r = 0; r < rows; r++) {
        double s = 0;
        for (int c = 0; c < cols; c++) s += W[(size_t)r * cols + c] * x[c];
        y[r] = (acc ? y[r] : 0.0) + alpha * s;
    }
}

// x is rounded as the 8-bit products round it (q8_quantize_x, the format's definition),
// the rest is exact.
void ref_gemv_q8(double *y, const signed char *q, const float *scale, const double *x, int rows, int cols,
                 double alpha, int acc) {
    const int nb = q8_blocks(cols);
    float *xf = malloc(sizeof(float) * (size_t)(cols > 0 ? cols : 1));
    int16_t *x16 = malloc(sizeof(int16_t) * (size_t)(cols > 0 ? cols : 1));
    float *xs = malloc(sizeof(float) * (size_t)(nb > 0 ? nb : 1));
    for (int c = 0; c < cols; c++) xf[c] = (float)x[c];
    q8_quantize_x(x16, xs, xf, cols);
    for (int r = 0; r < rows; r++) {
        double s = 0;
        for (int c = 0; c < cols; c++)
            s += (double)scale[(size_t)r * nb + c / Q8_BLOCK] * q[(size_t)r * cols + c] * xs[c / Q8_BLOCK] * x16[c];
        y[r] = (acc ? y[r] : 0.0) + alpha * s;
    }
    free(xf), free(x16), free(xs);
}

void ref_attention_decode_head(double *out, const double *q, const double *K, const double *V, int n, int hd) {
    double *p = malloc(sizeof(double) * (size_t)n), m = -INFINITY, sum = 0;
    for (int j = 0; j < n; j++) {
        double s = 0;
        for (int i = 0; i < hd; i++) s += q[i] * K[(size_t)j * hd + i];
        p[j] = s / sqrt((double)hd);
        m = p[j] > m ? p[j] : m;
    }
    for (int j = 0; j < n; j++) sum += (p[j] = exp(p[j] - m));
    for (int i = 0; i < hd; i++) {
        double o = 0;
        for (int j = 0; j < n; j++) o += p[j] / sum * V[(size_t)j * hd + i];
        out[i] = o;
    }
    free(p);
}
