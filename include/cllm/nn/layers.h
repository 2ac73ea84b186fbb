/* GPT-2 layers as plain *_forward / *_backward functions over a kernel table.
 *
 * Conventions shared by every function:
 *  - The first argument is the kernel table (include/cllm/kernels/kernels.h)
 *    whose gemm and row kernels do the arithmetic: the caller chose it once
 *    (a model keeps it in gpt2_model.kernels); nothing here picks a path.
 *  - N is the number of token positions (B*T), C the channel width; all
 *    arrays are row-major and contiguous, one row per position.
 *  - Backward functions ACCUMULATE (+=) into every gradient they produce,
 *    parameters and inputs alike, so callers can sum micro-batches and a
 *    residual stream's gradient can be shared by its skip and its branch. The
 *    one exception is softmax_crossentropy_backward, the start of the chain,
 *    which writes (and may overwrite the logits in place).
 *  - Where a model's backward would otherwise zero a scratch buffer only to
 *    accumulate into it once, an *_overwrite variant writes the input
 *    gradient instead (never reading it, so it may hold garbage) and still
 *    accumulates every parameter gradient. Saves a memset and a read of the
 *    buffer per layer.
 *  - Nothing here allocates or keeps state: each call touches only its
 *    arguments, so threads may run layers on their own buffers.
 *  - Each layer splits its work over the calling thread's team
 *    (include/cllm/nn/team.h: nn_team_size() threads, one nested OpenMP
 *    region per call) so that every element gets the same kernel calls as
 *    on one thread: results are bitwise the same for any team size. */
#ifndef CLLM_NN_LAYERS_H
#define CLLM_NN_LAYERS_H

#include <stdint.h>

#include "cllm/kernels/kernels.h"

/* out[b,t,:] = wte[tokens[b,t],:] + wpe[t,:]. tokens in [0, V). */
void embedding_forward(float *out, const int32_t *tokens, const float *wte, const float *wpe, int B, int T, int C);
void embedding_backward(float *dwte, float *dwpe, const float *dout, const int32_t *tokens, int B, int T, int C);
/* The same, but dwpe rows [0, T) are written (sequence 0 writes, the others
 * add, so the bits equal embedding_backward onto zeros); rows from T on are
 * not touched. dwte still accumulates. */
void embedding_backward_write_wpe(float *dwte, float *dwpe, const float *dout, const int32_t *tokens, int B, int T,
                                  int C);

/* out = (inp - mean) * rstd * weight + bias per row; mean and rstd [N] are
 * saved for the backward. */
void layernorm_forward(const cllm_kernel_table *k, float *out, float *mean, float *rstd, const float *inp,
                       const float *weight, const float *bias, int N, int C);
/* Fused residual + LayerNorm, for the stream between sub-blocks:
 * res = a + (b + b_bias) (b_bias per column, may be NULL; res may alias a or
 * b), then out = layernorm(res) with mean and rstd saved, as
 * layernorm_forward. Equal to residual_forward + layernorm_forward (with the
 * bias added by the product) but each row is read once while in L1. */
void residual_layernorm_forward(const cllm_kernel_table *k, float *res, float *out, float *mean, float *rstd,
                                const float *a, const float *b, const float *b_bias, const float *weight,
                                const float *bias, int N, int C);
void layernorm_backward(const cllm_kernel_table *k, float *dinp, float *dweight, float *dbias, const float *dout,
                        const float *inp, const float *weight, const float *mean, const float *rstd, int N, int C);
/* The same with dweight and dbias written (dinp still accumulates). */
void layernorm_backward_write(const cllm_kernel_table *k, float *dinp, float *dweight, float *dbias,
                              const float *dout, const float *inp, const float *weight, const float *mean,
                              const float *rstd, int N, int C);

/* Weight layouts a linear layer may read. GPT-2's Conv1D stores [in, out];
 * the tied LM head reads wte as [out, in] (nn.Linear layout). */
typedef enum { LINEAR_W_IN_OUT = 0, LINEAR_W_OUT_IN = 1 } linear_layout;

/* Precision of the products: weight_bf16 == NULL runs them in fp32 (k->gemm);
 * otherwise it is the weight's bf16 copy (same layout as weight) and all
 * three products (forward, dinp, dweight) take bf16 operands and accumulate
 * in fp32 (k->gemm_bf16, include/cllm/kernels/bf16.h): the weight from the
 * copy, activations and gradients rounded to nearest-even while packing.
 * weight itself is then not read. */

/* out[N, n_out] = inp[N, n_in] · W + bias (bias may be NULL). */
void linear_forward(const cllm_kernel_table *k, float *out, const float *inp, const float *weight,
                    const uint16_t *weight_bf16, const float *bias, int N, int n_in, int n_out, linear_layout layout);
/* dinp = dout · Wᵀ + dinp_beta * dinp, dweight = inpᵀ · dout (in the
 * weight's layout) + dparam_beta * dweight, dbias = column sums of dout +
 * dparam_beta * dbias; each beta is 1 (accumulate) or 0 (write: the old
 * value is never read). dinp and dbias may be NULL (not wanted). */
void linear_backward_beta(const cllm_kernel_table *k, float *dinp, float dinp_beta, float *dweight, float *dbias,
                          float dparam_beta, const float *dout, const float *inp, const float *weight,
                          const uint16_t *weight_bf16, int N, int n_in, int n_out, linear_layout layout);
/* dinp = dout · Wᵀ overwritten (dinp must not be NULL), dweight and dbias accumulated. */
void linear_backward_overwrite(const cllm_kernel_table *k, float *dinp, float *dweight, float *dbias,
                               const float *dout, const float *inp, const float *weight, const uint16_t *weight_bf16,
                               int N, int n_in, int n_out, linear_layout layout);
/* Everything written, nothing read: dinp, dweight (beta = 0 product) and
 * dbias. For a backward whose gradient buffer holds garbage; the bits equal
 * linear_backward_overwrite onto zeroed dweight and dbias. */
void linear_backward_write(const cllm_kernel_table *k, float *dinp, float *dweight, float *dbias, const float *dout,
                           const float *inp, const float *weight, const uint16_t *weight_bf16, int N, int n_in,
                           int n_out, linear_layout layout);

/* The precision of attention's own products (activations by activations:
 * Q·Kᵀ, P·V and their gradients): fp32 (k->gemm), or bf16 operands rounded
 * while packing and accumulated in fp32 (k->gemm_bf16), the 1/sqrt(hs)
 * scale applied in fp32 around the products. bf16 mode uses the second. */
typedef enum { ATTENTION_FP32 = 0, ATTENTION_BF16 = 1 } attention_precision;

/* Causal multi-head self-attention. qkv [B,T,3C] holds q, k, v side by side
 * per position, head h in channels [h*hs, (h+1)*hs) of each (hs = C/NH), as
 * Hugging Face splits c_attn. att [B,NH,T,T] receives the softmax
 * probabilities (zero above the diagonal); out [B,T,C]. */
void attention_forward(const cllm_kernel_table *k, attention_precision prec, float *out, float *att,
                       const float *qkv, int B, int T, int C, int NH);
/* dqkv = gradient + beta * dqkv, beta 1 (accumulate) or 0 (overwrite, never
 * read). scratch: `slots` (>= 1) areas of T*T floats, overwritten; the team
 * uses at most that many threads here. */
void attention_backward_beta(const cllm_kernel_table *k, attention_precision prec, float *dqkv, float beta,
                             float *scratch, int slots, const float *dout, const float *qkv, const float *att, int B,
                             int T, int C, int NH);
/* The same with dqkv overwritten (beta 0). */
void attention_backward_overwrite(const cllm_kernel_table *k, attention_precision prec, float *dqkv, float *scratch,
                                  int slots, const float *dout, const float *qkv, const float *att, int B, int T,
                                  int C, int NH);

/* GELU, tanh approximation as GPT-2:
 * 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). out may alias inp. */
void gelu_forward(const cllm_kernel_table *k, float *out, const float *inp, int n);
/* dinp = gelu'(inp) * dout over [N, C] rows (written, never read), adding
 * the column sums of the gradient it writes onto dbias [C]: the bias
 * gradient of the product feeding GELU (c_fc), bitwise what the linear
 * backward's dbias would add, read while each row is in L1 instead of in a
 * second pass over N x C. */
void gelu_backward_overwrite_bias_sums(const cllm_kernel_table *k, float *dinp, float *dbias, const float *inp,
                                       const float *dout, int N, int C);
/* Fused bias + GELU over [N, C]: pre += bias per column (pre keeps the
 * pre-activation the backward needs), out = gelu(pre). Equal to a product
 * with the bias followed by gelu_forward, one pass instead of two. */
void bias_gelu_forward(const cllm_kernel_table *k, float *out, float *pre, const float *bias, int N, int C);

/* out = a + b (out may alias a or b). Its backward (da += dout, db += dout)
 * needs no code: the model lets the LayerNorm backward accumulate. */
void residual_forward(float *out, const float *a, const float *b, int n);

/* Per row: lse = log(sum(exp(logits))), loss = lse - logits[target]
 * (max-subtracted, so large logits cannot overflow). */
void softmax_crossentropy_forward(const cllm_kernel_table *k, float *losses, float *lse, const float *logits,
                                  const int32_t *targets, int N, int V);
/* dlogits = (softmax(logits) - onehot(target)) * dloss, where dloss is the
 * gradient of the objective with respect to each position's loss (e.g. 1/N for
 * the mean). Writes rather than accumulates; dlogits may alias logits. */
void softmax_crossentropy_backward(const cllm_kernel_table *k, float *dlogits, const float *logits, const float *lse,
                                   const int32_t *targets, float dloss, int N, int V);

#endif
