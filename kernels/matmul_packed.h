// matmul_packed.h: fp32 products with a weight operand on oneDNN's matmul (its brgemm
// kernels; docs/design.md 10.2, "Packed weights"), reading the weight in place or from a
// copy packed once into oneDNN's own layout; or off, BLAS (matmul_packed_set_mode).
//
//   forward          C[M,N] (+)= A[M,K] W[N,K]^T     matmul_packed_nt
//   input gradient   C[M,N] (+)= A[M,K] W[K,N]       matmul_packed_nn
//
// W is a weight: the same pointer holds the same values from one matmul_packed_stale()
// to the next. With copies, W gets one packed copy, packed at its first use after the last
// matmul_packed_stale() (the model's forward calls it: the weights may have changed since
// the step before) and again when the other form is asked for: a training step packs
// each weight twice (forward's layout, then backward's), where BLAS packed it in every
// call, and holds one copy of the weights. A copy not used for a few stale() calls is freed.
// Products on the same copy from several threads at once run one after the other (read in
// place, W is only read: they run at once).
//
// The rows are cut into chunks of MATMUL_PACKED_ROWS, each one oneDNN matmul (its brgemm
// kernels); a last chunk of fewer rows runs padded to a multiple of 16 rows through a
// scratch copy, so a shape needs at most MATMUL_PACKED_ROWS / 16 primitives, made at its
// first use. A row's result depends on that row of A and on W only, never on M or on
// which rows share its call (tests/kernels_matmul_packed.c), as for the BLAS products: a
// token gets the same bits in any grouping, thread count or rank split. They are not
// BLAS's bits (another order of the same sums, within rounding).
//
// Called inside a parallel region a product runs on the calling thread; outside, on every
// thread. Thread-safe: the blocks of a grouped product may run on several threads.
#ifndef MONOLITH_MATMUL_PACKED_H
#define MONOLITH_MATMUL_PACKED_H

#include <stddef.h>

enum { MATMUL_PACKED_ROWS = 512 };

// 1 when this CPU runs oneDNN's packed fp32 matmul (brgemm; AVX-512) and the environment
// does not turn it off (MONOLITH_PACKED=0); decided once.
int matmul_packed_available(void);
// Every packed copy is out of date (call outside any parallel region); copies unused for
// the last few calls are freed.
void matmul_packed_stale(void);
// The products. Return the leading rows of C done: M (0 when M <= 0), or fewer when
// oneDNN failed (out of memory) or does not run here, the rows after them untouched: the
// caller runs those with BLAS, as matmul_weight_nt / _nn do.
int matmul_packed_nt(float *C, const float *A, const float *W, int M, int N, int K, int acc);
int matmul_packed_nn(float *C, const float *A, const float *W, int M, int N, int K, int acc);
// The same products where `packed` is set and oneDNN runs them, else BLAS's matmul_nt /
// matmul_nn (kernels/matmul.h): what a caller holding a weight calls.
void matmul_weight_nt(int packed, float *C, const float *A, const float *W, int M, int N, int K, int acc);
void matmul_weight_nn(int packed, float *C, const float *A, const float *W, int M, int N, int K, int acc);
// Off (BLAS), weights read in place, or packed copies. Decided at the first
// matmul_packed_available() unless set before: MONOLITH_PACKED=0 / 1 / copy, else by the
// CPU (the copies on AMD, off on Intel: matmul_packed.c). Tests set each. The two oneDNN
// modes give different bits (another order of the same sums).
enum { MATMUL_PACKED_OFF = 0, MATMUL_PACKED_IN_PLACE = 1, MATMUL_PACKED_COPY = 2 };
void matmul_packed_set_mode(int mode);
// Bytes of packed weights held now.
size_t matmul_packed_bytes(void);
// Test hook: after `calls` more primitive calls (chunks of a product), the next one fails
// as oneDNN out of memory would, once; -1 turns it off.
void matmul_packed_fail_after(int calls);
// Frees every packed copy and primitive (outside any parallel region; e.g. before exit).
void matmul_packed_release(void);

#endif
