// moe.h: the dropless MoE data path (docs/design.md sections 3.5 and 10.2, the megablocks way on a CPU) and
// the SwiGLU feed-forward it runs per expert.
//
// Forward, for N tokens routed to k slots each (router.h):
//   moe_dispatch_build   counting-sort the N*k (token, slot) pairs by expert: expert e's
//                        rows are sorted positions offs[e] .. offs[e+1]-1, in token order
//   moe_gather           xs[p] = x[token of p]                             [R, d]
//   ffn_forward          h1 = xs w1_e^T, h3 = xs w3_e^T, ys = swiglu(h1, h3) w2_e^T, one
//                        GEMM per expert and weight (matmul_grouped_*)     [R, d_ff], [R, d]
//   moe_combine          y[i] += sum_j g_ij ys[pos(i, j)]                  [N, d]
// Backward mirrors it: moe_combine_backward gives dys and the gate gradients,
// ffn_backward the expert weight gradients and dxs, moe_scatter sums dxs back per token.
//
// A dense FFN (dense layers, shared experts) is the same ffn_forward/ffn_backward with
// one group holding every row (offs = {0, N}).
//
// Sorted positions are assigned in (token, slot) order, so the result does not depend on
// the thread count. Dropped slots (expert -1) get no position.
#ifndef MONOLITH_MOE_H
#define MONOLITH_MOE_H

#include "kernels/bf16.h"

// Where each (token, slot) pair sits in expert-sorted order. Arrays are caller-owned
// (activation arena): offs[E+1], perm[N*k], pos[N*k].
typedef struct {
    int *offs;  // [E+1] expert e's rows are offs[e] .. offs[e+1]-1; offs[E] = live slots R
    int *perm;  // [N*k] sorted position -> slot id (token*k + j); entries >= R unused
    int *pos;   // [N*k] slot id -> sorted position, -1 for a dropped slot
} mo_dispatch;

// Counting sort of experts[N, k] (-1 = dropped) into `d`.
void moe_dispatch_build(mo_dispatch *d, const int *experts, int N, int k, int E);

// xs[p, :] = x[perm[p] / k, :] for the R = offs[E] live rows; the same for bf16 rows.
void moe_gather(float *xs, const float *x, const mo_dispatch *d, int E, int k, int dm);
void moe_gather_bf16(mo_bf16 *xs, const mo_bf16 *x, const mo_dispatch *d, int E, int k, int dm);
// y[i, :] += sum_j gates[i, j] * ys[pos[i*k+j], :], over live slots.
void moe_combine(float *y, const float *ys, const float *gates, const mo_dispatch *d, int N, int k, int dm);
// dys[pos, :] = gates[i, j] * dy[i, :]; dgates[i, j] = dy[i, :] . ys[pos, :] (0 for a dropped slot).
void moe_combine_backward(float *dys, float *dgates, const float *dy, const float *ys, const float *gates,
                          const mo_dispatch *d, int N, int k, int dm);
// The same with dys rounded to bf16 (bf16 compute, where only the products read dys):
// the bits of moe_combine_backward then bf16_from_f32, without the float32 dys.
void moe_combine_backward_bf16(mo_bf16 *dys, float *dgates, const float *dy, const float *ys, const float *gates,
                               const mo_dispatch *d, int N, int k, int dm);
// dx[i, :] = sum_j dxs[pos[i*k+j], :] (assigns; 0 for a token with no live slot).
void moe_scatter(float *dx, const float *dxs, const mo_dispatch *d, int N, int k, int dm);

// The weights of one SwiGLU FFN call over G groups of rows, in the precision its GEMMs
// run in: w1, w3 [G, f, dm] and w2 [G, dm, f] in fp32, and for bf16 compute
// (model_set_precision) their bf16 copies b1, b3, b2 with scratch for the rounded GEMM
// inputs, s0 [R, dm] and s1, s2 [R, f] (fp32 accumulation and outputs). b1 == NULL: fp32.
// With bf16, xk [R, dm] and ak [R, f] (both or neither) keep forward's rounded input rows
// and SwiGLU output for backward, which then reads them instead of rounding xs again and
// recomputing the SwiGLU (same bits: design.md 9); xs is not read by such a backward.
// yk: s0 already holds dys rounded (moe_combine_backward_bf16); dys is not read.
typedef struct {
    const float *w1, *w3, *w2;
    const mo_bf16 *b1, *b3, *b2;
    mo_bf16 *s0, *s1, *s2;
    mo_bf16 *xk, *ak;
    int yk;
    int packed;  // fp32: the products that read w1, w3, w2 use oneDNN's packed copies (kernels/matmul_packed.h)
} mo_ffn_weights;

// One call's rows: G groups (offs[G+1], group g uses expert g of the stacked weights) of
// width dm in and out, f hidden. Forward keeps h1, h3 [R, f] for backward, which in fp32
// overwrites them with their gradients (forward's caches are used up; in bf16 the
// SwiGLU's outputs go to s1 and s2 in bf16 only); act and dact [R, f] are scratch (dact:
// backward only; act: fp32 only).
//
// xrow (NULL: xs holds the rows, sorted) reads the rows in place instead: row p is
// xs + (xrow[p] / xdiv) * dm, e.g. the layer's input through the dispatch (perm, top_k),
// which saves gathering R x dm floats; only where ffn_reads_mapped() says so.
typedef struct {
    const int *offs;
    int G, f, dm;
    float *h1, *h3, *act, *dact;
    const int *xrow;
    int xdiv;
} mo_ffn_rows;

// 1 when ffn_forward/ffn_backward with these weights and widths can read xs through a
// row map (mo_ffn_rows.xrow): the fp32 small-d_ff kernels (kernels/matmul_small.h).
int ffn_reads_mapped(const mo_ffn_weights *w, int f, int dm);
// The same for ffn_backward (a narrower d_ff: matmul_small_use's NN/TN limit); where it
// says 0 the backward needs gathered rows (mo_ffn_rows.xrow NULL).
int ffn_backward_mapped(const mo_ffn_weights *w, int f, int dm);

// The weight gradients a backward ACCUMULATES into (or writes, dw_set): dw1, dw3, dw2 (any may be NULL:
// frozen); dw_groups[G] marks the groups whose weight gradients are wanted (NULL: all): a
// frozen expert's slices are neither computed nor written.
typedef struct {
    float *dw1, *dw3, *dw2;
    const unsigned char *dw_groups;
    int dw_set;  // 1: write the weight gradients (beta 0) instead of adding to them (model_backward_first)
} mo_ffn_grads;

// SwiGLU FFN: ys = (silu(xs w1_g^T) * (xs w3_g^T)) w2_g^T per group; writes ys[R, dm]
// (acc = 0) or adds into it (acc = 1). xs NULL: w->xk holds the rows already rounded (bf16).
void ffn_forward(float *ys, const float *xs, const mo_ffn_weights *w, const mo_ffn_rows *r, int acc);
// Backward from dys[R, dm]: accumulates the weight gradients into g, writes dxs[R, dm]
// (acc = 0) or adds into it (acc = 1). dxs may alias dys. dxs NULL: no data gradient is
// wanted (nothing below trains), so the groups g->dw_groups leaves out get no backward
// at all. The weight gradients are the same bits either way.
void ffn_backward(float *dxs, const float *dys, const float *xs, const mo_ffn_weights *w, const mo_ffn_rows *r,
                  const mo_ffn_grads *g, int acc);

// Where the products are BLAS's or oneDNN's, ffn_forward/ffn_backward schedule the
// groups' products themselves (moe.c): fp32 in phases of single products over all
// groups, bf16 each group's whole FFN as one task; the same bits as one grouped call per
// product, which ffn_set_chained(0) restores for the tests and benchmarks that compare them.
void ffn_set_chained(int on);

#endif
