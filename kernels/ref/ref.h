// ref.h: the oracles. Plain, obviously-correct versions of every kernel, in double,
// written from the math and nothing else: no SIMD, no blocking, no tricks. Tests compare
// the optimized float kernels against these and check these against finite differences.
// Never deleted, never optimized. Same argument order and accumulate/assign rules as the
// optimized kernel of the same name (see that kernel's header).
#ifndef MONOLITH_REF_H
#define MONOLITH_REF_H

#include <stddef.h>

// swiglu.h
void ref_silu_forward(double *out, const double *x, size_t n);
void ref_silu_backward(double *dx, const double *dout, const double *x, size_t n);
void ref_swiglu_forward(double *out, const double *a, const double *b, size_t n);
void ref_swiglu_backward(double *da, double *db, const double *dout, const double *a, const double *b, size_t n);

#endif
