#include "nn_ref.h"

void linear_backward(const cllm_kernel_table *k, float *dinp, float *dweight, float *dbias, const float *dout,
                     const float *inp, const float *weight, const uint16_t *weight_bf16, int N, int n_in, int n_out,
                     linear_layout layout) {
    linear_backward_beta(k, dinp, 1.0f, dweight, dbias, 1.0f, dout, inp, weight, weight_bf16, N, n_in, n_out,
                         layout);
}

void attention_backward(const cllm_kernel_table *k, float *dqkv, float *scratch, const float *dout, const float *qkv,
                        const float *att, int B, int T, int C, int NH) {
    attention_backward_beta(k, ATTENTION_FP32, dqkv, 1.0f, scratch, 1, dout, qkv, att, B, T, C, NH);
}

void gelu_backward(const cllm_kernel_table *k, float *dinp, const float *inp, const float *dout, int n) {
    k->gelu_backward(dinp, inp, dout, n);
}

void gelu_backward_overwrite(const cllm_kernel_table *k, float *dinp, const float *inp, const float *dout, int n) {
    k->gelu_backward_set(dinp, inp, dout, n);
}

void residual_backward(float *da, float *db, const float *dout, int n) {
    for (int i = 0; i < n; i++) {
        da[i] += dout[i];
        db[i] += dout[i];
    }
}
