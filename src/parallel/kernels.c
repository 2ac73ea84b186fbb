/* Scalar reference and portable `#pragma omp simd` reduction kernels, and the
 * run-time choice among all variants. See include/cllm/parallel/kernels.h for
 * why every variant is bitwise equal to the reference. */
#include "kernels_internal.h"

#include <string.h>

void cllm_sum_scalar(float *dst, const float *const *srcs, int k, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = sum_element(srcs, k, i);
}

void cllm_sum_sq_scalar(float *dst, const float *const *srcs, int k, size_t n, double *sq) {
    for (size_t start = 0; start < n; start += CLLM_SQ_CHUNK) {
        size_t len = n - start < CLLM_SQ_CHUNK ? n - start : CLLM_SQ_CHUNK;
        double lanes[CLLM_SQ_LANES] = {0};
        for (size_t j = 0; j < len; j++) {
            float x = sum_element(srcs, k, start + j);
            dst[start + j] = x;
            lanes[j % CLLM_SQ_LANES] += (double)x * (double)x;
        }
        sq[start / CLLM_SQ_CHUNK] = sq_lanes_total(lanes);
    }
}

void cllm_sum_adamw_scalar(float *params, float *m, float *v, const float *const *srcs, int k, float grad_scale,
                           size_t n, const cllm_adamw_step *h, int decay) {
    adamw_consts c = adamw_consts_make(h, decay);
    for (size_t i = 0; i < n; i++) adamw_element(&c, sum_element(srcs, k, i) * grad_scale, &params[i], &m[i], &v[i]);
}

static void sum_omp(float *dst, const float *const *srcs, int k, size_t n) {
    if (k == 2) { /* the engine's in-place fold: let the compiler see two streams */
        const float *a = srcs[0], *b = srcs[1];
#pragma omp simd
        for (size_t i = 0; i < n; i++) dst[i] = a[i] + b[i];
        return;
    }
#pragma omp simd
    for (size_t i = 0; i < n; i++) dst[i] = sum_element(srcs, k, i);
}

static void sum_sq_omp(float *dst, const float *const *srcs, int k, size_t n, double *sq) {
    for (size_t start = 0; start < n; start += CLLM_SQ_CHUNK) {
        size_t len = n - start < CLLM_SQ_CHUNK ? n - start : CLLM_SQ_CHUNK;
        double lanes[CLLM_SQ_LANES] = {0};
        size_t full = len / CLLM_SQ_LANES * CLLM_SQ_LANES;
        for (size_t g = 0; g < full; g += CLLM_SQ_LANES) {
#pragma omp simd
            for (int j = 0; j < CLLM_SQ_LANES; j++) {
                float x = sum_element(srcs, k, start + g + (size_t)j);
                dst[start + g + (size_t)j] = x;
                lanes[j] += (double)x * (double)x;
            }
        }
        for (size_t j = full; j < len; j++) {
            float x = sum_element(srcs, k, start + j);
            dst[start + j] = x;
            lanes[j % CLLM_SQ_LANES] += (double)x * (double)x;
        }
        sq[start / CLLM_SQ_CHUNK] = sq_lanes_total(lanes);
    }
}

static void sum_adamw_omp(float *params, float *m, float *v, const float *const *srcs, int k, float grad_scale,
                          size_t n, const cllm_adamw_step *h, int decay) {
    adamw_consts c = adamw_consts_make(h, decay);
#pragma omp simd
    for (size_t i = 0; i < n; i++) adamw_element(&c, sum_element(srcs, k, i) * grad_scale, &params[i], &m[i], &v[i]);
}

static const cllm_kernels kernels_scalar = {CLLM_SIMD_SCALAR, cllm_sum_scalar, cllm_sum_sq_scalar,
                                            cllm_sum_adamw_scalar};
static const cllm_kernels kernels_omp = {CLLM_SIMD_OMP, sum_omp, sum_sq_omp, sum_adamw_omp};
#if defined(__x86_64__)
static const cllm_kernels kernels_avx2 = {CLLM_SIMD_AVX2, cllm_sum_avx2, cllm_sum_sq_avx2, cllm_sum_adamw_avx2};
static const cllm_kernels kernels_avx512 = {CLLM_SIMD_AVX512, cllm_sum_avx512, cllm_sum_sq_avx512,
                                            cllm_sum_adamw_avx512};
#endif

const cllm_kernels *cllm_kernels_for(cllm_simd s) {
    if (!cllm_simd_supported(s)) return NULL;
    switch (s) {
    case CLLM_SIMD_SCALAR: return &kernels_scalar;
    case CLLM_SIMD_OMP: return &kernels_omp;
#if defined(__x86_64__)
    case CLLM_SIMD_AVX2: return &kernels_avx2;
    case CLLM_SIMD_AVX512: return &kernels_avx512;
#else
    default: return NULL;
#endif
    }
    return NULL;
}

const cllm_kernels *cllm_kernels_active(void) {
    const cllm_kernels *k = cllm_kernels_for(cllm_simd_active());
    return k ? k : &kernels_scalar;
}
