// sample.h: choosing the next token from a row of logits.
//
// The pipeline, in order (the order llama.cpp and Hugging Face use):
//   1. repetition penalty: every distinct token already in the history has its logit
//      divided by `repetition_penalty` if positive, multiplied by it if negative (CTRL);
//   2. greedy: temperature 0 or top-p 0 picks the largest logit (ties -> lower id);
//   3. otherwise softmax(logits / temperature), keep the `top_k` most likely (0 = all),
//      keep the smallest set of the most likely whose probability reaches `top_p`
//      (nucleus; 1 = all), renormalize, draw one token with the sampler's own RNG.
//
// The RNG is seeded once, so the same seed, logits and history give the same tokens.
// A sampler owns all its scratch memory: sampling allocates nothing.
#ifndef MONOLITH_SAMPLE_H
#define MONOLITH_SAMPLE_H

#include "engine/base/rng.h"

#include <stdint.h>

typedef struct {
    float temperature;         // >= 0; 0 = greedy
    int top_k;                 // >= 0; 0 = no limit
    float top_p;               // in [0, 1]; 1 = no limit, 0 = greedy
    float repetition_penalty;  // > 0; 1 = off
    uint64_t seed;
} sample_params;

// Defaults: temperature 1, top_k 0, top_p 1, repetition_penalty 1, seed 0.
sample_params sample_params_default(void);

// Returns 0 if every field is usable, else -1 with a one-line error naming the flag
// (--temperature, --top-k, --top-p, --repetition-penalty) and its valid range.
int sample_params_check(const sample_params *p);

// One candidate token: its unnormalized probability and its id.
typedef struct {
    double p;
    int id;
} sample_cand;

typedef struct {
    sample_params p;
    int vocab;
    mo_rng rng;
    sample_cand *cand;    // [vocab] scratch: the candidates still in the running
    unsigned char *seen;  // [vocab] scratch: marks for the repetition penalty
} sampler;

// Prepares a sampler for rows of `vocab` logits. Returns 0, or -1 with an error if the
// parameters are invalid (sample_params_check) or memory runs out.
int sampler_init(sampler *s, const sample_params *p, int vocab);
void sampler_free(sampler *s);

// Picks the next token from logits[vocab], which it modifies (penalty, scaling).
// history[n_history] are the tokens so far (prompt and generated) for the repetition
// penalty; it may be NULL when n_history is 0. Ids outside [0, vocab) in the history
// are ignored. Returns a token id in [0, vocab).
int sampler_next(sampler *s, float *logits, const int *history, int n_history);

// The index of the largest of x[n] (ties -> lower index; NaNs are never chosen unless
// everything is NaN, then 0).
int sample_argmax(const float *x, int n);

#endif
