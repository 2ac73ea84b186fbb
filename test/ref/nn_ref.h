/* Test oracles over the kernel table: layer variants the product does not
 * call (it uses the *_overwrite and *_write forms), kept for the tests that
 * check the product's forms against them. Compiled into the tests only. */
#ifndef CLLM_TEST_REF_NN_REF_H
#define CLLM_TEST_REF_NN_REF_H

#include "cllm/nn/layers.h"

/* dinp += dout · Wᵀ, dweight += inpᵀ · dout, dbias += column sums of dout
 * (dinp and dbias may be NULL). */
void linear_backward(const cllm_kernel_table *k, float *dinp, float *dweight, float *dbias, const float *dout,
                     const float *inp, const float *weight, const uint16_t *weight_bf16, int N, int n_in, int n_out,
                     linear_layout layout);
/* dqkv += the attention gradient; scratch T*T floats. */
void attention_backward(const cllm_kernel_table *k, float *dqkv, float *scratch, const float *dout, const float *qkv,
                        const float *att, int B, int T, int C, int NH);
/* dinp += gelu'(inp) * dout, and the overwriting form (dinp may alias dout). */
void gelu_backward(const cllm_kernel_table *k, float *dinp, const float *inp, const float *dout, int n);
void gelu_backward_overwrite(const cllm_kernel_table *k, float *dinp, const float *inp, const float *dout, int n);
/* da += dout, db += dout. */
void residual_backward(float *da, float *db, const float *dout, int n);

#endif
