// ref_bf16.c: oracle for kernels/bf16.c's rounding, from the definition of the format.
#include "kernels/ref/ref.h"

#include <math.h>

// bf16 keeps 8 significant bits: a value m 2^e (m in [0.5, 1)) lies on a grid of
// spacing 2^(e-8); below float's smallest normal (e < -125) the grid stays 2^-133 (the
// subnormals). nearbyint rounds half to even in the default rounding mode. Past the
// largest bf16 the result is an infinity, like a float overflow.
double ref_bf16_round(double x) {
    if (isnan(x) || isinf(x) || x == 0) return x;
    int e;
    frexp(x, &e);
    if (e < -125) e = -125;
    double scale = ldexp(1.0, e - 8), r = nearbyint(x / scale) * scale;
    return fabs(r) >= 0x1p128 ? copysign(INFINITY, x) : r;
}
