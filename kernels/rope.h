// rope.h: rotary position embedding, adjacent-pairs convention (llama.cpp "NORM" mode).
//
// Pair i of each head, (x[2i], x[2i+1]), at position pos is rotated by
// a = pos * theta^(-2i/head_dim):  x0' = x0 cos a - x1 sin a,  x1' = x0 sin a + x1 cos a.
// Angles come from tables computed once in double. Both directions work in place;
// backward applies the inverse rotation (assigns: the rotated buffer is overwritten).
#ifndef MONOLITH_ROPE_H
#define MONOLITH_ROPE_H

// cos_tab, sin_tab: [max_seq, head_dim/2]
void rope_tables(float *cos_tab, float *sin_tab, int max_seq, int head_dim, double theta);
// x[n, n_heads, head_dim], in place; row r sits at position pos[r] (< max_seq).
void rope_forward(float *x, const int *pos, const float *cos_tab, const float *sin_tab, int n, int n_heads,
                  int head_dim);
// dx[n, n_heads, head_dim], in place: the gradient w.r.t. the unrotated input.
void rope_backward(float *dx, const int *pos, const float *cos_tab, const float *sin_tab, int n, int n_heads,
                   int head_dim);

#endif
