// gemv.h: matrix-vector products for single-token decode, with fp32 or 8-bit weights.
//
// A decode step at batch 1 multiplies each weight matrix W[rows, cols] (row-major, the
// `[out, in]` layout of every linear weight) by one vector: the time is the time to
// stream W from memory once. These kernels read each weight once, with SIMD
// accumulators over the columns (x stays in L1); the AVX-512 kernels read two rows far
// apart side by side (r and r + rows/2), prefetching ahead in both. Each row is summed as it would be alone, so a row's result
// does not depend on which rows it is computed with. gemv_run splits the
// rows of several products over the threads in ONE parallel region, so that e.g. the
// gate and up projections of both chosen experts cost one fork/join.
//
// 8-bit weights (q8): each row is cut into blocks of Q8_BLOCK columns (the last one may
// be shorter); a block stores int8 values q and one float scale s = max|w| / 127, and
// stands for w ~= s * q (round to nearest; an all-zero block has s = 0). Memory per
// weight: 1 + 4/32 bytes. The product first rounds x to 16-bit integers per block of 32
// (q8_quantize_x: x ~= xs * x16, xs = max|x| / 32767 of the block, an error of at most
// xs/2 per element, 1.5e-5 of the block's largest, far below the weights' own rounding),
// so that each block's sum of q * x16 is an exact integer sum (vpmaddwd), multiplied by
// the two blocks' scales in float: about 2.4x the rate of converting every weight to
// float, which had made 8-bit decode compute-bound.
#ifndef MONOLITH_GEMV_H
#define MONOLITH_GEMV_H

#include <stddef.h>
#include <stdint.h>

#define Q8_BLOCK 32

// Blocks per row of `cols` columns.
static inline int q8_blocks(int cols) { return (cols + Q8_BLOCK - 1) / Q8_BLOCK; }

// A weight matrix: fp32 `f`, or (f NULL) 8-bit `q[rows, cols]` with `scale[rows,
// q8_blocks(cols)]`. Rows are contiguous, so rows r0.. of a matrix is gemv_w_rows().
typedef struct {
    const float *f;
    const int8_t *q;
    const float *scale;
} gemv_w;

// The view of W starting at row r0 (cols columns per row).
static inline gemv_w gemv_w_rows(gemv_w w, size_t r0, int cols) {
    gemv_w o = w;
    if (w.f) o.f = w.f + r0 * (size_t)cols;
    else o.q = w.q + r0 * (size_t)cols, o.scale = w.scale + r0 * (size_t)q8_blocks(cols);
    return o;
}

// Columns of x quantized at a time (a buffer on the stack of the 8-bit products).
#define GEMV_X16_COLS 4096

// x[cols] rounded as the 8-bit products round it: per block b of Q8_BLOCK columns,
// xs[b] = max|x| / 32767 over the block and x16 = round(x / xs[b]) (to nearest even; an
// all-zero block has xs 0). Returns 0, or -1 when x holds an inf or NaN.
int q8_quantize_x(int16_t *x16, float *xs, const float *x, int cols);

// Quantizes W[rows, cols] to q[rows, cols], scale[rows, q8_blocks(cols)] as above.
void q8_quantize(int8_t *q, float *scale, const float *W, size_t rows, int cols);
// W[rows, cols] = scale * q, the fp32 matrix the 8-bit one stands for.
void q8_dequantize(float *W, const int8_t *q, const float *scale, size_t rows, int cols);

// y[r] = (acc ? y[r] : 0) + alpha * sum_c W[r, c] x[c] for r < rows, on the calling
// thread (8-bit: with x as q8_quantize_x rounds it; an inf or NaN in x makes every y[r]
// NaN). y must not overlap W or x.
void gemv(float *y, gemv_w W, const float *x, int rows, int cols, float alpha, int acc);

// gemv, and while it reads the last GEMV_NEXT_BYTES of W's rows it prefetches the first
// GEMV_NEXT_BYTES at `next` (NULL: none): the rows the calling thread reads next, in
// another matrix or another part of this one. A product's stream then starts with its
// first lines on their way instead of waiting for the hardware prefetcher to notice it,
// which costs every short stream (docs/benchmarks.md, "Decode's stream starts"). Only
// the AVX-512 fp32 rows prefetch (contiguous rows, as gemv's); y is gemv's to the bit.
#define GEMV_NEXT_BYTES 8192
void gemv_next(float *y, gemv_w W, const float *x, int rows, int cols, float alpha, int acc, const void *next);

// How the AVX-512 fp32 products read their rows: 1 (the default), rows r and r + rows/2
// side by side, each prefetched 2 KB ahead, as the 8-bit products read; 0
// (MONOLITH_GEMV_PAIRS=0), one row after the other, one stream a thread, as a plain read.
// Read once from the environment. Either way each row's sum is the same (the same bits),
// so this is a benchmark switch, not a numerical one (docs/benchmarks.md). gemv_set_f32_pairs sets it
// for the process (tests; not while products run).
int gemv_f32_pairs(void);
void gemv_set_f32_pairs(int on);

// The same over a column slice: rows r of W start ld elements apart (ld >= cols), as
// W = gemv_w_cols(M, c0, ld) views columns c0 .. c0+cols-1 of a matrix M[rows, ld]. For
// 8-bit weights c0 must be a multiple of Q8_BLOCK, and cols too unless the slice ends
// the row (blocks are not split).
void gemv_ld(float *y, gemv_w W, size_t ld, const float *x, int rows, int cols, float alpha, int acc);

// The view of W[rows, ld] starting at column c0 of row 0 (for gemv_ld).
static inline gemv_w gemv_w_cols(gemv_w w, int c0) {
    gemv_w o = w;
    if (w.f) o.f = w.f + c0;
    else o.q = w.q + c0, o.scale = w.scale + c0 / Q8_BLOCK;
    return o;
}

// One term of a gemv_task: alpha * W[rows, cols] x.
typedef struct {
    gemv_w w;
    const float *x;
    int cols;
    float alpha;
} gemv_term;

#define GEMV_MAX_TERMS 4
// y[rows] (+)= the sum of n_terms products (1 <= n_terms <= GEMV_MAX_TERMS), e.g. the
// down projections of the chosen experts, each weighted by its gate.
typedef struct {
    float *y;
    int rows, acc, n_terms;
    gemv_term t[GEMV_MAX_TERMS];
} gemv_task;

// Runs the tasks, their rows split over the threads in proportion to the bytes of
// weights each row reads (one parallel region; serial below 64 KiB of weights, or when
// called from inside a parallel region). Each y row is written by one thread, so the
// outputs of different tasks must not overlap. Results do not depend on the thread
// count (each row is computed the same way wherever it runs).
void gemv_run(const gemv_task *tasks, int n_tasks);

#endif
