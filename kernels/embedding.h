// embedding.h: token embedding lookup and its scatter-add backward.
//
// Forward caches nothing (backward needs only the token ids). Backward accumulates (+=)
// into the table gradient; repeated tokens add up.
#ifndef MONOLITH_EMBEDDING_H
#define MONOLITH_EMBEDDING_H

// out[n,d] = table[tokens[i], :]. Ids must be in [0, V): callers validate them.
void embedding_forward(float *out, const int *tokens, const float *table, int n, int d);
// dtable[tokens[i], :] += dout[i, :]
void embedding_backward(float *dtable, const float *dout, const int *tokens, int n, int d);

#endif
