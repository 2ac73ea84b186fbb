/* Gradient reduction kernels: "sum k sources into a destination", the same
 * with per-chunk sums of squares (for global-norm clipping), and the fused
 * "sum + AdamW" on a range.
 *
 * Every variant (scalar reference, #pragma omp simd, AVX2, AVX-512F) gives
 * BITWISE the same result as the scalar reference, for any length and any
 * alignment:
 *  - sums add the sources in source order, ((s0 + s1) + s2) + ..., and the
 *    kernel files are compiled with -ffp-contract=off;
 *  - sums of squares are taken in double, where the square of a float is
 *    exact, over a fixed lane pattern (element j of a chunk goes to lane
 *    j % 16, lanes are added 0..15 in order) that vector and scalar code both
 *    follow;
 *  - AdamW uses no FMA and only IEEE-correctly-rounded sqrt and division, in
 *    the operation order of cllm_adamw_update_ref (src/train/adamw.c).
 * So the AdamW error bound against the reference is 0 ulp, and the tests
 * assert bitwise equality for all three kernels.
 *
 * Pointers are already offset to the range: element i of the range is
 * dst[i], srcs[j][i]. dst may alias srcs[0] (in-place fold) but no other
 * source. k >= 1. */
#ifndef CLLM_PARALLEL_KERNELS_H
#define CLLM_PARALLEL_KERNELS_H

#include <stddef.h>

#include "cllm/parallel/simd.h"
#include "cllm/train/adamw.h"

/* Floats per sum-of-squares partial. Partials are taken per chunk, not per
 * call, so that the global norm (chunk partials added in chunk order) does
 * not depend on how the vector was split into segments, i.e. on the thread
 * count. Callers that want that property split on multiples of it. */
#define CLLM_SQ_CHUNK 256
#define CLLM_SQ_LANES 16

/* dst[i] = srcs[0][i] + ... + srcs[k-1][i] for i in [0, n). */
typedef void (*cllm_sum_fn)(float *dst, const float *const *srcs, int k, size_t n);

/* Same sum, and sq[c] = sum of dst[i]^2 over chunk c (elements
 * [c*CLLM_SQ_CHUNK, (c+1)*CLLM_SQ_CHUNK) of the range), for
 * c < cllm_sq_chunks(n). */
typedef void (*cllm_sum_sq_fn)(float *dst, const float *const *srcs, int k, size_t n, double *sq);

/* g = grad_scale * (srcs[0][i] + ... + srcs[k-1][i]), then the AdamW update
 * of params/m/v exactly as cllm_adamw_update_ref. */
typedef void (*cllm_sum_adamw_fn)(float *params, float *m, float *v, const float *const *srcs, int k,
                                  float grad_scale, size_t n, const cllm_adamw_step *h, int decay);

typedef struct {
    cllm_simd simd;
    cllm_sum_fn sum;
    cllm_sum_sq_fn sum_sq;
    cllm_sum_adamw_fn sum_adamw;
} cllm_kernels;

/* The kernels of path s, or NULL when this CPU or build cannot run it. */
const cllm_kernels *cllm_kernels_for(cllm_simd s);

/* The kernels of cllm_simd_active(). */
const cllm_kernels *cllm_kernels_active(void);

/* Number of sum-of-squares chunks of a range of n floats. */
static inline size_t cllm_sq_chunks(size_t n) { return (n + CLLM_SQ_CHUNK - 1) / CLLM_SQ_CHUNK; }

#endif
