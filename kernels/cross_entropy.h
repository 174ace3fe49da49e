// cross_entropy.h: next-token cross-entropy fused with the softmax over the vocabulary.
//
// loss_i = logsumexp(logits_i) - logits_i[target_i]. A target < 0 marks a position to
// ignore (loss 0, gradient 0). Forward may keep each row's max and sum of exp(x - max)
// (`stats`, 2 floats a row); backward takes them (or recomputes them from the logits
// when NULL: the same values, as long as the logits are unchanged) and assigns dlogits,
// which may alias logits (in place, saving a [n, V] buffer). With the stats backward is
// one pass over the logits instead of three (max, sum of exps, then the gradient).
#ifndef MONOLITH_CROSS_ENTROPY_H
#define MONOLITH_CROSS_ENTROPY_H

#include "kernels/bf16.h"

// losses[n] from logits[n, V] and targets[n]; `stats` [2n] (or NULL): row i's max and
// sum of exps at 2i, 2i + 1 (not written where the target is ignored).
void cross_entropy_forward(float *losses, float *stats, const float *logits, const int *targets, int n, int V);
// dlogits[n, V] = dloss[i] * (softmax(logits_i) - onehot(target_i)); `stats`: forward's
// of these logits, or NULL. The same bits either way.
void cross_entropy_backward(float *dlogits, const float *logits, const float *stats, const int *targets,
                            const float *dloss, int n, int V);
// The same dlogits rounded to bf16 (bf16_from_f32's rounding, bit for bit), for bf16
// compute, where only the output layer's products read them: no [n, V] float gradient
// written and read back. dlogits does not alias logits.
void cross_entropy_backward_bf16(mo_bf16 *dlogits, const float *logits, const float *stats, const int *targets,
                                 const float *dloss, int n, int V);

#endif
