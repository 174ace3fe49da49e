// rng.h: the project's one random number generator (xoshiro256**, seeded by splitmix64).
//
// Every random choice (initialization, data sampling, sampling tokens, tests) draws from
// an mo_rng, whose whole state is four integers, so checkpoints save it and a resumed
// run continues the same stream.
#ifndef MONOLITH_RNG_H
#define MONOLITH_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t s[4];
} mo_rng;

void mo_rng_seed(mo_rng *r, uint64_t seed);
uint64_t mo_rng_u64(mo_rng *r);
// Uniform in [0, 1) with 53 random bits.
double mo_rng_uniform(mo_rng *r);
// Uniform integer in [0, n), n > 0, without modulo bias.
uint64_t mo_rng_below(mo_rng *r, uint64_t n);
// Standard normal (Box-Muller; uses two uniforms per call, caches nothing).
double mo_rng_normal(mo_rng *r);

#endif
