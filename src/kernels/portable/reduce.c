/* Portable `#pragma omp simd` reduction kernels, bitwise equal to the
 * scalar reference (see include/cllm/kernels/kernels.h for why). */
#include "../reduce_internal.h"

/* d[i] = srcs[0][start + i] + ... for i < len, sources added in order. The
 * block is small enough to stay in L1 while later sources are added. */
static void sum_block_omp(float *d, const float *const *srcs, int k, size_t start, size_t len) {
    const float *a = srcs[0] + start;
    if (k == 1) {
#pragma omp simd
        for (size_t i = 0; i < len; i++) d[i] = a[i];
        return;
    }
    const float *b = srcs[1] + start;
#pragma omp simd
    for (size_t i = 0; i < len; i++) d[i] = a[i] + b[i];
    for (int j = 2; j < k; j++) {
        const float *s = srcs[j] + start;
#pragma omp simd
        for (size_t i = 0; i < len; i++) d[i] += s[i];
    }
}

void cllm_sum_omp(float *dst, const float *const *srcs, int k, size_t n) {
    for (size_t start = 0; start < n; start += 1024)
        sum_block_omp(dst + start, srcs, k, start, n - start < 1024 ? n - start : 1024);
}

void cllm_sum_sq_omp(float *dst, const float *const *srcs, int k, size_t n, double *sq) {
    for (size_t start = 0; start < n; start += CLLM_SQ_CHUNK) {
        size_t len = n - start < CLLM_SQ_CHUNK ? n - start : CLLM_SQ_CHUNK;
        float *d = dst + start;
        sum_block_omp(d, srcs, k, start, len);
        double lanes[CLLM_SQ_LANES] = {0};
        size_t full = len / CLLM_SQ_LANES * CLLM_SQ_LANES;
        for (size_t g = 0; g < full; g += CLLM_SQ_LANES) {
#pragma omp simd
            for (int j = 0; j < CLLM_SQ_LANES; j++) lanes[j] += (double)d[g + (size_t)j] * (double)d[g + (size_t)j];
        }
        for (size_t j = full; j < len; j++) lanes[j % CLLM_SQ_LANES] += (double)d[j] * (double)d[j];
        sq[start / CLLM_SQ_CHUNK] = sq_lanes_total(lanes);
    }
}

void cllm_sum_adamw_omp(float *params, float *m, float *v, const float *const *srcs, int k, float grad_scale,
                         size_t n, const cllm_adamw_step *h, int decay) {
    adamw_consts c = adamw_consts_make(h, decay);
    /* The gradient of a block first (k sources in order), then the update:
     * two simple loops the compiler vectorises. */
    enum { BLOCK = 1024 };
    float g[BLOCK];
    for (size_t start = 0; start < n; start += BLOCK) {
        size_t len = n - start < BLOCK ? n - start : BLOCK;
        const float *s0 = srcs[0] + start;
#pragma omp simd
        for (size_t i = 0; i < len; i++) g[i] = s0[i];
        for (int j = 1; j < k; j++) {
            const float *sj = srcs[j] + start;
#pragma omp simd
            for (size_t i = 0; i < len; i++) g[i] += sj[i];
        }
        float *p = params + start, *mm = m + start, *vv = v + start;
#pragma omp simd
        for (size_t i = 0; i < len; i++) adamw_element(&c, g[i] * grad_scale, &p[i], &mm[i], &vv[i]);
    }
}
