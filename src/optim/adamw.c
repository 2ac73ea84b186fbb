#include "cllm/optim/adamw.h"

#include <math.h>

cllm_adamw_config cllm_adamw_defaults(void) {
    /* beta2 0.95 rather than 0.999: the usual choice for small GPTs, where
     * a long v memory makes early spikes linger. */
    return (cllm_adamw_config){.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1};
}

cllm_adamw_step cllm_adamw_step_make(const cllm_adamw_config *cfg, double lr, int64_t t) {
    cllm_adamw_step h;
    h.lr = (float)lr;
    h.beta1 = (float)cfg->beta1;
    h.beta2 = (float)cfg->beta2;
    h.eps = (float)cfg->eps;
    h.weight_decay = (float)cfg->weight_decay;
    /* pow in double: beta^t underflows gracefully and 1 - beta^t keeps its
     * precision for small t, where it matters most. */
    h.bias_correction1 = (float)(1.0 - pow(cfg->beta1, (double)t));
    h.bias_correction2 = (float)(1.0 - pow(cfg->beta2, (double)t));
    return h;
}

void cllm_adamw_update_ref(float *params, float *m, float *v, const float *const *srcs, int k, float grad_scale,
                           size_t n, const cllm_adamw_step *h, int decay) {
    const float decay_factor = decay ? h->lr * h->weight_decay : 0.0f;
    for (size_t i = 0; i < n; i++) {
        float g = 0.0f;
        for (int s = 0; s < k; s++) g += srcs[s][i];
        g *= grad_scale;
        float p = params[i] - decay_factor * params[i];
        float mi = h->beta1 * m[i] + (1.0f - h->beta1) * g;
        float vi = h->beta2 * v[i] + (1.0f - h->beta2) * g * g;
        float m_hat = mi / h->bias_correction1;
        float v_hat = vi / h->bias_correction2;
        params[i] = p - h->lr * m_hat / (sqrtf(v_hat) + h->eps);
        m[i] = mi;
        v[i] = vi;
    }
}
