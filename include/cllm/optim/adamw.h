/* AdamW with decoupled weight decay (Loshchilov & Hutter), as in PyTorch's
 * torch.optim.AdamW:
 *
 *   p <- p - lr * wd * p                      (decoupled decay; skipped when decay == 0)
 *   m <- beta1 * m + (1 - beta1) * g
 *   v <- beta2 * v + (1 - beta2) * g^2
 *   p <- p - lr * (m / bc1) / (sqrt(v / bc2) + eps)
 *
 * with bc1 = 1 - beta1^t, bc2 = 1 - beta2^t for the 1-based step t.
 *
 * This file holds the scalar reference: the engine's fused sum+AdamW SIMD
 * kernels are tested against it, and the trainer falls back to it. */
#ifndef CLLM_OPTIM_ADAMW_H
#define CLLM_OPTIM_ADAMW_H

#include <stddef.h>
#include <stdint.h>

#include "cllm/kernels/kernels.h"

typedef struct {
    double beta1, beta2, eps, weight_decay; /* defaults: 0.9, 0.95, 1e-8, 0.1 */
} cllm_adamw_config;

/* cllm_adamw_step, the step's hyper-parameters as the kernels take them,
 * is declared with the kernels (include/cllm/kernels/kernels.h). */

cllm_adamw_config cllm_adamw_defaults(void);

/* The step's hyper-parameters for learning rate lr at 1-based step t (t >= 1). */
cllm_adamw_step cllm_adamw_step_make(const cllm_adamw_config *cfg, double lr, int64_t t);

/* Reference update of n elements: g[i] = grad_scale * (srcs[0][i] + ... +
 * srcs[k-1][i]), summed in source order; decay = 0 skips weight decay (biases,
 * LayerNorm weights, embeddings). */
void cllm_adamw_update_ref(float *params, float *m, float *v, const float *const *srcs, int k, float grad_scale,
                           size_t n, const cllm_adamw_step *h, int decay);

#endif
