/* Private to src/kernels, shared between the reduction builds: the
 * per-element AdamW step and the lane-order combination of sums of squares,
 * so that the scalar tails of the vector variants do exactly what the
 * reference does. */
#ifndef CLLM_KERNELS_REDUCE_INTERNAL_H
#define CLLM_KERNELS_REDUCE_INTERNAL_H

#include <math.h>

#include "cllm/kernels/kernels.h"

/* The constants of one AdamW call, in the float values the reference uses. */
typedef struct {
    float decay_factor, beta1, one_minus_beta1, beta2, one_minus_beta2, bc1, bc2, lr, eps;
} adamw_consts;

static inline adamw_consts adamw_consts_make(const cllm_adamw_step *h, int decay) {
    adamw_consts c;
    c.decay_factor = decay ? h->lr * h->weight_decay : 0.0f;
    c.beta1 = h->beta1;
    c.one_minus_beta1 = 1.0f - h->beta1;
    c.beta2 = h->beta2;
    c.one_minus_beta2 = 1.0f - h->beta2;
    c.bc1 = h->bias_correction1;
    c.bc2 = h->bias_correction2;
    c.lr = h->lr;
    c.eps = h->eps;
    return c;
}

/* One element, in the reference's operation order (no FMA: the kernel files
 * are built with -ffp-contract=off). */
static inline void adamw_element(const adamw_consts *c, float g, float *p, float *m, float *v) {
    float x = *p;
    float decayed = x - c->decay_factor * x;
    float mi = c->beta1 * *m + c->one_minus_beta1 * g;
    float vi = c->beta2 * *v + c->one_minus_beta2 * g * g;
    float m_hat = mi / c->bc1;
    float v_hat = vi / c->bc2;
    *p = decayed - c->lr * m_hat / (sqrtf(v_hat) + c->eps);
    *m = mi;
    *v = vi;
}

static inline float sum_element(const float *const *srcs, int k, size_t i) {
    float acc = srcs[0][i];
    for (int j = 1; j < k; j++) acc += srcs[j][i];
    return acc;
}

/* The fixed lane order every variant ends with. */
static inline double sq_lanes_total(const double lanes[CLLM_SQ_LANES]) {
    double total = lanes[0];
    for (int j = 1; j < CLLM_SQ_LANES; j++) total += lanes[j];
    return total;
}

void cllm_sum_scalar(float *dst, const float *const *srcs, int k, size_t n);
void cllm_sum_sq_scalar(float *dst, const float *const *srcs, int k, size_t n, double *sq);
void cllm_sum_adamw_scalar(float *params, float *m, float *v, const float *const *srcs, int k, float grad_scale,
                           size_t n, const cllm_adamw_step *h, int decay);

void cllm_sum_omp(float *dst, const float *const *srcs, int k, size_t n);
void cllm_sum_sq_omp(float *dst, const float *const *srcs, int k, size_t n, double *sq);
void cllm_sum_adamw_omp(float *params, float *m, float *v, const float *const *srcs, int k, float grad_scale,
                        size_t n, const cllm_adamw_step *h, int decay);

#if defined(__x86_64__)
void cllm_sum_avx2(float *dst, const float *const *srcs, int k, size_t n);
void cllm_sum_sq_avx2(float *dst, const float *const *srcs, int k, size_t n, double *sq);
void cllm_sum_adamw_avx2(float *params, float *m, float *v, const float *const *srcs, int k, float grad_scale,
                         size_t n, const cllm_adamw_step *h, int decay);
void cllm_sum_avx512(float *dst, const float *const *srcs, int k, size_t n);
void cllm_sum_sq_avx512(float *dst, const float *const *srcs, int k, size_t n, double *sq);
void cllm_sum_adamw_avx512(float *params, float *m, float *v, const float *const *srcs, int k, float grad_scale,
                           size_t n, const cllm_adamw_step *h, int decay);
#endif

#endif
