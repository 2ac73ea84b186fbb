/* The scalar reference reduction kernels: the specification the other
 * builds equal bit for bit (see include/cllm/kernels/kernels.h for why). */
#include "../reduce_internal.h"

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
