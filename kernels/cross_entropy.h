// cross_entropy.h: next-token cross-entropy fused with the softmax over the vocabulary.
//
// loss_i = logsumexp(logits_i) - logits_i[target_i]. A target < 0 marks a position to
// ignore (loss 0, gradient 0). Forward caches nothing; backward recomputes the softmax
// from the logits and assigns dlogits, which may alias logits (in place, saving a
// [n, V] buffer).
#ifndef MONOLITH_CROSS_ENTROPY_H
#define MONOLITH_CROSS_ENTROPY_H

// losses[n] from logits[n, V] and targets[n].
void cross_entropy_forward(float *losses, const float *logits, const int *targets, int n, int V);
// dlogits[n, V] = dloss[i] * (softmax(logits_i) - onehot(target_i))
void cross_entropy_backward(float *dlogits, const float *logits, const int *targets, const float *dloss, int n,
                            int V);

#endif
