// testutil.h: helpers shared by the Check suites (header-only; each suite is one file).
//
// - tu_fill: seeded random inputs.
// - tu_rel_err: normalized error ||a - b|| / ||b||, the comparison for an optimized kernel
//   against its kernels/ref oracle.
// - tu_fd_check: central finite differences in double of a scalar function of a double
//   array, compared element by element with an analytic gradient.
// - tu_scratch_make / tu_scratch / tu_scratch_path: the suite's scratch folder and files in it.
// - tu_run_suite: a suite's main, run and cleaned up.
// - tu_read_all: a whole file into memory.
// - tu_monolith: the monolith binary run with arguments, its output and errors captured.
// - tu_bits / tu_from_bits: a float's bit pattern and back; tu_all_finite.
// - tu_prefill: a product's output before an assign (NaN) or accumulate (random) call.
#ifndef MONOLITH_TESTUTIL_H
#define MONOLITH_TESTUTIL_H

#include "engine/base/rng.h"

#include <check.h>
#include <stdint.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

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

static inline uint32_t tu_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float tu_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline int tu_all_finite(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

// C (and the oracle's C64) before a product: NaN for acc = 0 (assign must not read it),
// random for acc = 1.
static inline void tu_prefill(float *C, double *C64, size_t n, int acc, uint64_t seed) {
    if (acc) {
        tu_fill(C, n, seed, 1.0f);
        tu_to_f64(C64, C, n);
    } else {
        for (size_t i = 0; i < n; i++) C[i] = NAN, C64[i] = NAN;
    }
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

// The suite's scratch folder: "" until tu_scratch_make(TAG) makes /tmp/mono_TAG_XXXXXX
// (in main or an unchecked fixture, before the tests fork, so that the folder is removed
// once at the end: tu_run_suite or a teardown does it).
static inline char *tu_scratch(void) {
    static char dir[64];  // /tmp/mono_TAG_XXXXXX with a short tag
    return dir;
}

static inline const char *tu_scratch_make(const char *tag) {
    char *dir = tu_scratch();
    snprintf(dir, 64, "/tmp/mono_%s_XXXXXX", tag);
    if (!mkdtemp(dir)) {
        fprintf(stderr, "cannot make a scratch folder %s\n", dir);
        dir[0] = 0;
        return NULL;
    }
    return dir;
}

// scratch/name, in one of 8 buffers used in turn (so that a call may take a few paths).
static inline const char *tu_scratch_path(const char *name) {
    static char buf[8][512];
    static int k;
    char *b = buf[k++ % 8];
    snprintf(b, sizeof buf[0], "%s/%s", tu_scratch(), name);
    return b;
}

// Removes the scratch folder and all in it (nothing when none was made); 0 when it is gone.
static inline int tu_scratch_remove(void) {
    char *dir = tu_scratch(), cmd[300];
    if (!dir[0]) return 0;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "could not remove %s\n", dir);
        return -1;
    }
    dir[0] = 0;
    return 0;
}

// Runs the suite (fs: CK_FORK_GETENV, Check's default, or CK_NOFORK where the tests share
// state or OpenMP's thread pool, which does not survive a fork), removes the scratch
// folder, and returns main's exit status: 0 when every test passed.
static inline int tu_run_suite(Suite *s, enum fork_status fs) {
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, fs);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return tu_scratch_remove() == 0 && failed == 0 ? 0 : 1;
}

// Runs `$MONOLITH_BIN ARGS` (ARGS printf-style) in the scratch folder: its stdout (the
// first 64 KB) into *out and its stderr (the first 8 KB) into *err, malloc'd and
// NUL-terminated (NULL: dropped). Returns the exit code, -1 when a signal ended it.
static inline int tu_monolith(char **out, char **err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static inline int tu_monolith(char **out, char **err, const char *fmt, ...) {
    const char *bin = getenv("MONOLITH_BIN");
    ck_assert_msg(bin != NULL, "MONOLITH_BIN is not set (run through ctest)");
    char args[4096], cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    const char *ef = tu_scratch_path("stderr.txt");
    snprintf(cmd, sizeof cmd, "cd '%s' && %s %s 2>'%s'", tu_scratch(), bin, args, ef);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    size_t cap = 1 << 16, n = 0, k;
    char *o = malloc(cap), chunk[4096];
    while ((k = fread(chunk, 1, sizeof chunk, p)) > 0)  // read to the end, so that the child never blocks
        if (n + k < cap) memcpy(o + n, chunk, k), n += k;
    o[n] = 0;
    int st = pclose(p);
    FILE *f = fopen(ef, "r");
    char *e = calloc(1, 8192);
    if (f) {
        e[fread(e, 1, 8191, f)] = 0;
        fclose(f);
    }
    if (out) *out = o;
    else free(o);
    if (err) *err = e;
    else free(e);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}


// The whole file, NUL-terminated (*n excludes the NUL); fails the test naming the path and
// `hint` (how to get the file, or "") when it cannot be read.
static inline uint8_t *tu_read_all(const char *path, size_t *n, const char *hint) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "%s missing%s", path, hint);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)len + 1);
    ck_assert(buf != NULL && fread(buf, 1, (size_t)len, f) == (size_t)len);
    fclose(f);
    buf[len] = 0;
    *n = (size_t)len;
    return buf;
}

#endif
