// ref_sumsq.c: oracle for kernels/sumsq.c.
#include "kernels/ref/ref.h"

double ref_sumsq(const double *x, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += x[i] * x[i];
    return s;
}
