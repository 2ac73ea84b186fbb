/* A small, fully specified random number generator (SplitMix64 seeding a
 * xoshiro256** stream), identical on every machine and compiler, so that
 * initialization, data order and sampling depend only on the seed. Its state
 * is four words, which checkpoints save to resume a run exactly. */
#ifndef CLLM_BASE_RNG_H
#define CLLM_BASE_RNG_H

#include <math.h>
#include <stdint.h>

typedef struct {
    uint64_t s[4];
} cllm_rng;

static inline uint64_t cllm_splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline void cllm_rng_seed(cllm_rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = cllm_splitmix64(&seed);
}

static inline uint64_t cllm_rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static inline uint64_t cllm_rng_next(cllm_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = cllm_rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = cllm_rotl64(s[3], 45);
    return result;
}

/* Uniform in [0, 1) with 24 random bits: exact in float. */
static inline float cllm_rng_uniform(cllm_rng *r) { return (float)(cllm_rng_next(r) >> 40) * (1.0f / 16777216.0f); }

/* Uniform integer in [0, n), n > 0 (multiply-shift; bias is below 2^-32 for n < 2^32). */
static inline uint64_t cllm_rng_below(cllm_rng *r, uint64_t n) {
    return (uint64_t)(((unsigned __int128)cllm_rng_next(r) * n) >> 64);
}

/* Standard normal by Box-Muller in double, one value per call (the pair's
 * second value is discarded so that the state advances identically always). */
static inline float cllm_rng_normal(cllm_rng *r) {
    double u1 = ((double)(cllm_rng_next(r) >> 11) + 1.0) * (1.0 / 9007199254740993.0);
    double u2 = (double)(cllm_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

#endif
