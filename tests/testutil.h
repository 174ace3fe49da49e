// testutil.h: helpers shared by the Check suites (header-only; each suite is one file).
//
// - tu_fill: seeded random inputs.
// - tu_rel_err: normalized error ||a - b|| / ||b||, the comparison for an optimized kernel
//   against its kernels/ref oracle.
// - tu_fd_check: central finite differences in double of a scalar function of a double
//   array, compared element by element with an analytic gradient.
#ifndef MONOLITH_TESTUTIL_H
#define MONOLITH_TESTUTIL_H

#include "engine/base/rng.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline void tu_fill(float *x, size_t n, uint64_t seed, float scale) {
    mo_rng r;
    mo_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) x[i] = (float)(scale * (2.0 * mo_rng_uniform(&r) - 1.0));
}

static inline void tu_fill_f64(double *x, size_t n, uint64_t seed, double scale) {
    mo_rng r;
    mo_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) x[i] = scale * (2.0 * mo_rng_uniform(&r) - 1.0);
}

static inline void tu_to_f64(double *dst, const float *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = src[i];
}

static inline void tu_to_f32(float *dst, const double *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = (float)src[i];
}

// ||a - b|| / max(||b||, 1e-30), in double.
static inline double tu_rel_err(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return sqrt(num) / fmax(sqrt(den), 1e-30);
}

static inline double tu_rel_err_f64(const float *a, const double *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += b[i] * b[i];
    }
    return sqrt(num) / fmax(sqrt(den), 1e-30);
}

// A scalar function of the test's current inputs, evaluated in double.
typedef double (*tu_scalar_fn)(void *ctx);

// Checks grad[i] against (f(x+h e_i) - f(x-h e_i)) / 2h for up to `max_elems` indices of
// x spread over the array (all of them if n <= max_elems). x is perturbed in place and
// restored. Fails the current Check test naming the first bad element when
// |fd - grad| > tol * max(1, |fd|, |grad|). Returns the worst such relative error.
static inline double tu_fd_check(const char *what, tu_scalar_fn f, void *ctx, double *x, const double *grad,
                                 size_t n, size_t max_elems, double h, double tol) {
    size_t step = n <= max_elems ? 1 : n / max_elems;
    double worst = 0;
    for (size_t i = 0; i < n; i += step) {
        double x0 = x[i];
        x[i] = x0 + h;
        double fp = f(ctx);
        x[i] = x0 - h;
        double fm = f(ctx);
        x[i] = x0;
        double fd = (fp - fm) / (2 * h);
        double err = fabs(fd - grad[i]) / fmax(1.0, fmax(fabs(fd), fabs(grad[i])));
        if (err > worst) worst = err;
        ck_assert_msg(err <= tol, "%s: d/dx[%zu]: finite difference %.10g, analytic %.10g (err %.3g > tol %.3g)",
                      what, i, fd, grad[i], err, tol);
    }
    return worst;
}

// Path of a file in the source tree (tests run from the build folder).
static inline const char *tu_source_path(const char *rel) {
    static char buf[4096];
    const char *root = getenv("MONOLITH_SOURCE_DIR");
    snprintf(buf, sizeof buf, "%s/%s", root ? root : "..", rel);
    return buf;
}

#endif
