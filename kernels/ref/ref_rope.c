// ref_rope.c: oracle for kernels/rope.c; angles computed directly from pos and theta.
#include "kernels/ref/ref.h"

#include <math.h>

// sign = +1 rotates by +a (forward), -1 by -a (the inverse, which is the transpose).
static void rotate(double *x, const int *pos, int n, int n_heads, int head_dim, double theta, double sign) {
    for (int r = 0; r < n; r++)
        for (int h = 0; h < n_heads; h++) {
            double *v = x + ((size_t)r * n_heads + h) * head_dim;
            for (int i = 0; i < head_dim / 2; i++) {
                double a = sign * pos[r] * pow(theta, -2.0 * i / head_dim);
                double x0 = v[2 * i], x1 = v[2 * i + 1];
                v[2 * i] = x0 * cos(a) - x1 * sin(a);
                v[2 * i + 1] = x0 * sin(a) + x1 * cos(a);
            }
        }
}

void ref_rope_forward(double *x, const int *pos, int n, int n_heads, int head_dim, double theta) {
    rotate(x, pos, n, n_heads, head_dim, theta, 1.0);
}

void ref_rope_backward(double *dx, const int *pos, int n, int n_heads, int head_dim, double theta) {
    rotate(dx, pos, n, n_heads, head_dim, theta, -1.0);
}
