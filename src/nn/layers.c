/* GPT-2 layers over the kernel table. See include/cllm/nn/layers.h for the
 * shared conventions (row-major, backward accumulates, no allocation, no
 * global state). The inner loops are the table's (include/cllm/kernels/
 * kernels.h): this file only walks rows, heads and blocks. */
#include "cllm/nn/layers.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

/* ---------------------------------------------------------------- embedding */

void embedding_forward(float *out, const int32_t *tokens, const float *wte, const float *wpe, int B, int T, int C) {
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            float *o = out + ((size_t)b * T + t) * C;
            const float *te = wte + (size_t)tokens[(size_t)b * T + t] * C;
            const float *pe = wpe + (size_t)t * C;
            for (int c = 0; c < C; c++) o[c] = te[c] + pe[c];
        }
    }
}

/* Sequences from b0 on; sequence b0 (when set_wpe) writes dwpe instead of
 * adding, so each dwpe element is summed over the batch in the same order
 * either way. */
static void embedding_backward_from(float *dwte, float *dwpe, const float *dout, const int32_t *tokens, int b0,
                                    int B, int T, int C) {
    for (int b = b0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            const float *d = dout + ((size_t)b * T + t) * C;
            float *dte = dwte + (size_t)tokens[(size_t)b * T + t] * C;
            float *dpe = dwpe + (size_t)t * C;
            for (int c = 0; c < C; c++) {
                dte[c] += d[c];
                dpe[c] += d[c];
            }
        }
    }
}

void embedding_backward(float *dwte, float *dwpe, const float *dout, const int32_t *tokens, int B, int T, int C) {
    embedding_backward_from(dwte, dwpe, dout, tokens, 0, B, T, C);
}

void embedding_backward_write_wpe(float *dwte, float *dwpe, const float *dout, const int32_t *tokens, int B, int T,
                                  int C) {
    for (int t = 0; t < T; t++) {
        const float *d = dout + (size_t)t * C;
        float *dte = dwte + (size_t)tokens[t] * C;
        float *dpe = dwpe + (size_t)t * C;
        for (int c = 0; c < C; c++) {
            dte[c] += d[c];
            dpe[c] = d[c];
        }
    }
    embedding_backward_from(dwte, dwpe, dout, tokens, 1, B, T, C);
}


/* ---------------------------------------------------------------- layernorm */

void layernorm_forward(const cllm_kernel_table *k, float *out, float *mean, float *rstd, const float *inp,
                       const float *weight, const float *bias, int N, int C) {
    for (int i = 0; i < N; i++)
        k->layernorm_row(out + (size_t)i * C, mean + i, rstd + i, inp + (size_t)i * C, weight, bias, C);
}

/* The row is summed while it is still in L1, instead of a residual pass over
 * the whole stream followed by a LayerNorm pass that reads it back. */
void residual_layernorm_forward(const cllm_kernel_table *k, float *res, float *out, float *mean, float *rstd,
                                const float *a, const float *b, const float *b_bias, const float *weight,
                                const float *bias, int N, int C) {
    for (int i = 0; i < N; i++) {
        float *r = res + (size_t)i * C;
        k->residual_row(r, a + (size_t)i * C, b + (size_t)i * C, b_bias, C);
        k->layernorm_row(out + (size_t)i * C, mean + i, rstd + i, r, weight, bias, C);
    }
}

void layernorm_backward_write(const cllm_kernel_table *k, float *dinp, float *dweight, float *dbias,
                              const float *dout, const float *inp, const float *weight, const float *mean,
                              const float *rstd, int N, int C) {
    /* 2C floats; the rows then accumulate in the same order as after a zeroed buffer. */
    memset(dweight, 0, (size_t)C * sizeof(float));
    memset(dbias, 0, (size_t)C * sizeof(float));
    layernorm_backward(k, dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C);
}

void layernorm_backward(const cllm_kernel_table *k, float *dinp, float *dweight, float *dbias, const float *dout,
                        const float *inp, const float *weight, const float *mean, const float *rstd, int N, int C) {
    for (int i = 0; i < N; i++)
        k->layernorm_backward_row(dinp + (size_t)i * C, dweight, dbias, dout + (size_t)i * C, inp + (size_t)i * C,
                                  weight, mean[i], rstd[i], C);
}

/* ---------------------------------------------------------------- linear */

/* The three products of a linear layer, each in one small function that
 * picks the precision: fp32 (k->gemm) when weight_bf16 is NULL, else bf16
 * operands with fp32 accumulation (k->gemm_bf16): the weight from its bf16
 * copy, the activations and gradients rounded while packing. beta / the
 * accumulate flag is 0 (write) or 1 (add onto the output). */

/* out[N, n_out] (+)= inp[N, n_in] · W */
static void product_forward(const cllm_kernel_table *k, float *out, float beta, const float *inp,
                            const float *weight, const uint16_t *weight_bf16, int N, int n_in, int n_out,
                            linear_layout layout) {
    int wt = layout == LINEAR_W_OUT_IN, ldw = wt ? n_in : n_out;
    if (!weight_bf16) {
        k->gemm(0, wt, N, n_out, n_in, 1.0f, inp, n_in, weight, ldw, beta, out, n_out);
        return;
    }
    cllm_bf16_operand a = cllm_bf16_op_f32(inp, n_in, 0), b = cllm_bf16_op_bf16(weight_bf16, ldw, wt);
    k->gemm_bf16(N, n_out, n_in, &a, &b, out, n_out, beta != 0.0f);
}

/* dinp[N, n_in] (+)= dout[N, n_out] · Wᵀ */
static void product_dinp(const cllm_kernel_table *k, float *dinp, float beta, const float *dout,
                         const float *weight, const uint16_t *weight_bf16, int N, int n_in, int n_out,
                         linear_layout layout) {
    int wt = layout == LINEAR_W_IN_OUT, ldw = wt ? n_out : n_in;
    if (!weight_bf16) {
        k->gemm(0, wt, N, n_in, n_out, 1.0f, dout, n_out, weight, ldw, beta, dinp, n_in);
        return;
    }
    cllm_bf16_operand a = cllm_bf16_op_f32(dout, n_out, 0), b = cllm_bf16_op_bf16(weight_bf16, ldw, wt);
    k->gemm_bf16(N, n_in, n_out, &a, &b, dinp, n_in, beta != 0.0f);
}

/* dW (+)= inpᵀ · dout ([n_in, n_out]) or doutᵀ · inp ([n_out, n_in]), in the weight's layout */
static void product_dweight(const cllm_kernel_table *k, float *dweight, float beta, const float *dout,
                            const float *inp, int bf16, int N, int n_in, int n_out, linear_layout layout) {
    int in_out = layout == LINEAR_W_IN_OUT;
    const float *x = in_out ? inp : dout, *y = in_out ? dout : inp;
    int rows = in_out ? n_in : n_out, cols = in_out ? n_out : n_in;
    if (!bf16) {
        k->gemm(1, 0, rows, cols, N, 1.0f, x, rows, y, cols, beta, dweight, cols);
        return;
    }
    cllm_bf16_operand a = cllm_bf16_op_f32(x, rows, 1), b = cllm_bf16_op_f32(y, cols, 0);
    k->gemm_bf16(rows, cols, N, &a, &b, dweight, cols, beta != 0.0f);
}

void linear_forward(const cllm_kernel_table *k, float *out, const float *inp, const float *weight,
                    const uint16_t *weight_bf16, const float *bias, int N, int n_in, int n_out, linear_layout layout) {
    float beta = 0.0f;
    if (bias) {
        /* Start from the bias and let the product accumulate onto it. */
        for (int i = 0; i < N; i++) memcpy(out + (size_t)i * n_out, bias, (size_t)n_out * sizeof(float));
        beta = 1.0f;
    }
    product_forward(k, out, beta, inp, weight, weight_bf16, N, n_in, n_out, layout);
}

void linear_backward_beta(const cllm_kernel_table *k, float *dinp, float dinp_beta, float *dweight, float *dbias,
                          float dparam_beta, const float *dout, const float *inp, const float *weight,
                          const uint16_t *weight_bf16, int N, int n_in, int n_out, linear_layout layout) {
    if (dinp) product_dinp(k, dinp, dinp_beta, dout, weight, weight_bf16, N, n_in, n_out, layout);
    product_dweight(k, dweight, dparam_beta, dout, inp, weight_bf16 != NULL, N, n_in, n_out, layout);
    if (dbias) {
        /* n_out floats: zeroing them keeps the summation order of the
         * accumulating path, so both give the same bits. */
        if (dparam_beta == 0.0f) memset(dbias, 0, (size_t)n_out * sizeof(float));
        k->column_sums(dbias, dout, N, n_out);
    }
}

void linear_backward_overwrite(const cllm_kernel_table *k, float *dinp, float *dweight, float *dbias,
                               const float *dout, const float *inp, const float *weight, const uint16_t *weight_bf16,
                               int N, int n_in, int n_out, linear_layout layout) {
    linear_backward_beta(k, dinp, 0.0f, dweight, dbias, 1.0f, dout, inp, weight, weight_bf16, N, n_in, n_out, layout);
}

void linear_backward_write(const cllm_kernel_table *k, float *dinp, float *dweight, float *dbias, const float *dout,
                           const float *inp, const float *weight, const uint16_t *weight_bf16, int N, int n_in,
                           int n_out, linear_layout layout) {
    linear_backward_beta(k, dinp, 0.0f, dweight, dbias, 0.0f, dout, inp, weight, weight_bf16, N, n_in, n_out, layout);
}

/* ---------------------------------------------------------------- attention */


/* The per-head products are GEMMs over strided views of qkv (row stride 3C),
 * so attention speeds up with the gemm kernel. Causality is used block-wise: rows
 * [r0, r1) only need columns [0, r1), so the products cover a staircase
 * instead of the full T x T square (for T = 256: 62.5% of it with blocks of
 * 64). Blocks of 32 would compute 56% of the square but ran a step 3-5%
 * slower: every product is repacked per block (twice the packing), the dK/dV
 * products sum over only 32 positions per pass over C, and 32 rows fill the
 * 6-row register tile less well than 64. */
#ifndef ATT_ROW_BLOCK
#define ATT_ROW_BLOCK 64
#endif

void attention_forward(const cllm_kernel_table *k, float *out, float *att, const float *qkv, int B, int T, int C,
                       int NH) {
    int hs = C / NH;
    int ld = 3 * C;
    float scale = 1.0f / sqrtf((float)hs);
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            const float *q = qkv + (size_t)b * T * ld + (size_t)h * hs;
            const float *kk = q + C;
            const float *v = q + 2 * C;
            float *a = att + ((size_t)b * NH + h) * T * T;
            float *y = out + (size_t)b * T * C + (size_t)h * hs;
            for (int r0 = 0; r0 < T; r0 += ATT_ROW_BLOCK) {
                int r1 = r0 + ATT_ROW_BLOCK < T ? r0 + ATT_ROW_BLOCK : T, m = r1 - r0;
                float *ab = a + (size_t)r0 * T;
                k->gemm(0, 1, m, r1, hs, scale, q + (size_t)r0 * ld, ld, kk, ld, 0.0f, ab, T);
                for (int t = r0; t < r1; t++) k->softmax_row(a + (size_t)t * T, t, T);
                k->gemm(0, 0, m, hs, r1, 1.0f, ab, T, v, ld, 0.0f, y + (size_t)r0 * C, C);
            }
        }
    }
}

/* beta 1 accumulates into dqkv, 0 overwrites it. Row blocks run last to
 * first: the last block's dK and dV products cover every key position, so
 * with beta 0 they write all of dK and dV before the earlier blocks add onto
 * them; each dQ row belongs to one block only. */
void attention_backward_beta(const cllm_kernel_table *k, float *dqkv, float beta, float *scratch, const float *dout,
                             const float *qkv, const float *att, int B, int T, int C, int NH) {
    int hs = C / NH;
    int ld = 3 * C;
    float scale = 1.0f / sqrtf((float)hs);
    int last_r0 = (T - 1) / ATT_ROW_BLOCK * ATT_ROW_BLOCK;
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            size_t head = (size_t)b * T * ld + (size_t)h * hs;
            const float *q = qkv + head, *kk = q + C, *v = q + 2 * C;
            float *dq = dqkv + head, *dk = dq + C, *dv = dq + 2 * C;
            const float *a = att + ((size_t)b * NH + h) * T * T;
            const float *dy = dout + (size_t)b * T * C + (size_t)h * hs;
            for (int r0 = last_r0; r0 >= 0; r0 -= ATT_ROW_BLOCK) {
                int r1 = r0 + ATT_ROW_BLOCK < T ? r0 + ATT_ROW_BLOCK : T, m = r1 - r0;
                float kv_beta = r0 == last_r0 ? beta : 1.0f;
                const float *ab = a + (size_t)r0 * T, *dyb = dy + (size_t)r0 * C;
                float *ds = scratch + (size_t)r0 * T; /* dL/d(att), then dL/d(scores) in place */
                k->gemm(0, 1, m, r1, hs, 1.0f, dyb, C, v, ld, 0.0f, ds, T);
                k->gemm(1, 0, r1, hs, m, 1.0f, ab, T, dyb, C, kv_beta, dv, ld);
                for (int t = r0; t < r1; t++)
                    k->softmax_backward_row(scratch + (size_t)t * T, a + (size_t)t * T, t, r1);
                k->gemm(0, 0, m, hs, r1, scale, ds, T, kk, ld, beta, dq + (size_t)r0 * ld, ld);
                k->gemm(1, 0, r1, hs, m, scale, ds, T, q + (size_t)r0 * ld, ld, kv_beta, dk, ld);
            }
        }
    }
}

void attention_backward_overwrite(const cllm_kernel_table *k, float *dqkv, float *scratch, const float *dout,
                                  const float *qkv, const float *att, int B, int T, int C, int NH) {
    attention_backward_beta(k, dqkv, 0.0f, scratch, dout, qkv, att, B, T, C, NH);
}

/* ---------------------------------------------------------------- gelu */

void gelu_forward(const cllm_kernel_table *k, float *out, const float *inp, int n) { k->gelu(out, inp, n); }

void gelu_backward_overwrite_bias_sums(const cllm_kernel_table *k, float *dinp, float *dbias, const float *inp,
                                       const float *dout, int N, int C) {
    /* Row by row, so each gradient row is summed from L1 right after it is
     * written; the sums are the column sums' (rows in order), so the bits
     * equal the overwriting GELU backward followed by the product's bias sums. */
    for (int i = 0; i < N; i++) {
        float *d = dinp + (size_t)i * C;
        k->gelu_backward_set(d, inp + (size_t)i * C, dout + (size_t)i * C, C);
        k->column_sums(dbias, d, 1, C);
    }
}

/* The c_fc product runs with beta = 0 and no bias copy (no pass writing
 * N x 4C bias rows, no read of them inside the product), and the bias is
 * added on the way into GELU. */
void bias_gelu_forward(const cllm_kernel_table *k, float *out, float *pre, const float *bias, int N, int C) {
    k->bias_gelu(out, pre, bias, N, C);
}

/* ---------------------------------------------------------------- residual */

void residual_forward(float *out, const float *a, const float *b, int n) {
    for (int i = 0; i < n; i++) out[i] = a[i] + b[i];
}

/* ---------------------------------------------------------------- loss */

void softmax_crossentropy_forward(const cllm_kernel_table *k, float *losses, float *lse, const float *logits,
                                  const int32_t *targets, int N, int V) {
    for (int i = 0; i < N; i++) {
        const float *l = logits + (size_t)i * V;
        lse[i] = k->logsumexp_row(l, V);
        losses[i] = lse[i] - l[targets[i]];
    }
}

void softmax_crossentropy_backward(const cllm_kernel_table *k, float *dlogits, const float *logits, const float *lse,
                                   const int32_t *targets, float dloss, int N, int V) {
    for (int i = 0; i < N; i++) {
        float *d = dlogits + (size_t)i * V;
        k->softmax_grad_row(d, logits + (size_t)i * V, lse[i], dloss, V); /* elementwise: d may alias the logits */
        d[targets[i]] -= dloss;
    }
}
