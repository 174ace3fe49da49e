// prefill_bf16.h: bf16 compute for the many-row products of inference (infer_set_precision).
//
// A pf_bf16 holds bf16 copies of the weights of every product tensor (attention
// projections, routed, shared and dense FFNs, output; not the embedding table, the norms
// or the routers), rounded once when it is made, plus a scratch buffer for the
// activations. Each product it runs rounds its activations into that scratch and
// multiplies bf16 x bf16 with fp32 accumulation and output (kernels/bf16.h), so it
// computes y = bf16(x) bf16(W)^T to fp32 accuracy. Used by infer/decode.c for the
// products that would otherwise go through sgemm (prefill, batched decode); the
// single-row GEMV path of decode does not use it.
#ifndef MONOLITH_PREFILL_BF16_H
#define MONOLITH_PREFILL_BF16_H

#include "engine/params.h"
#include "kernels/gemv.h"

typedef struct pf_bf16 pf_bf16;

// bf16 copies of the product tensors of table pt whose weights w[pt->n] hold them (fp32
// views, or 8-bit copies: those are dequantized, then rounded, so bf16 compute multiplies
// by bf16 of the weights the 8-bit ones stand for), with activation scratch for products
// of up to max_rows token rows of the model (max_rows * top_k for the grouped experts).
// Returns NULL with a one-line message when the CPU has no AVX512_BF16 (bf16_supported)
// or when out of memory.
pf_bf16 *pf_bf16_new(const mo_param_table *pt, const gemv_w *w, int max_rows);
void pf_bf16_free(pf_bf16 *b);

// y[rows, out] (+)= bf16(x[rows, in]) bf16(W)^T, W[out, in] a view (gemv_w_rows) of one
// of the tensors w held at pf_bf16_new. Returns 1 when computed, 0 (y untouched) when W
// has no bf16 copy (a router) or the product is larger than the scratch: the caller
// then runs it in fp32.
int pf_bf16_linear(pf_bf16 *b, float *y, const float *x, gemv_w W, int rows, int out, int in, int acc);

// The grouped form over the rows of x grouped by expert (offs[E+1]), W[E, out, in]:
// y[offs[e]..offs[e+1]) = bf16(x rows) bf16(W[e])^T. Same returns as pf_bf16_linear.
int pf_bf16_grouped(pf_bf16 *b, float *y, const float *x, gemv_w W, const int *offs, int E, int out, int in);

// Bytes of the bf16 weight copies.
size_t pf_bf16_weight_bytes(const pf_bf16 *b);

#endif
