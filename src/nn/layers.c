/* GPT-2 layers over the kernel table. See include/cllm/nn/layers.h for the
 * shared conventions (row-major, backward accumulates, no allocation, no
 * global state). The inner loops are the table's (include/cllm/kernels/
 * kernels.h): this file only walks rows, heads and blocks, and splits them
 * over the calling team (include/cllm/nn/team.h) so that every element gets
 * the same kernel calls as on one thread. */
#include "cllm/nn/layers.h"

#include <math.h>
#include <omp.h>
#include <stddef.h>
#include <string.h>

#include "cllm/nn/team.h"

/* ---------------------------------------------------------------- embedding */

void embedding_forward(float *out, const int32_t *tokens, const float *wte, const float *wpe, int B, int T, int C) {
    int team = nn_team_threads_for((long)B * T, (double)B * T * C);
#pragma omp parallel for num_threads(team) if (team > 1) schedule(static)
    for (int i = 0; i < B * T; i++) {
        float *o = out + (size_t)i * C;
        const float *te = wte + (size_t)tokens[i] * C;
        const float *pe = wpe + (size_t)(i % T) * C;
        for (int c = 0; c < C; c++) o[c] = te[c] + pe[c];
    }
}

/* Columns [c0, c1) of sequences from b0 on; sequence b0 (when set_wpe)
 * writes dwpe instead of adding, so each dwpe element is summed over the
 * batch in the same order either way. Positions sharing a token add into
 * the same dwte row, in position order. */
static void embedding_backward_cols(float *dwte, float *dwpe, const float *dout, const int32_t *tokens, int b0,
                                    int set_wpe, int B, int T, int C, int c0, int c1) {
    for (int b = b0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            const float *d = dout + ((size_t)b * T + t) * C;
            float *dte = dwte + (size_t)tokens[(size_t)b * T + t] * C;
            float *dpe = dwpe + (size_t)t * C;
            for (int c = c0; c < c1; c++) {
                dte[c] += d[c];
                if (set_wpe && b == b0) dpe[c] = d[c];
                else dpe[c] += d[c];
            }
        }
    }
}

/* Sums over positions: the team splits the columns, never the positions. */
static void embedding_backward_team(float *dwte, float *dwpe, const float *dout, const int32_t *tokens, int set_wpe,
                                    int B, int T, int C) {
    int team = nn_team_threads_for((C + TEAM_COL_GRAIN - 1) / TEAM_COL_GRAIN, (double)B * T * C);
    if (team <= 1) {
        embedding_backward_cols(dwte, dwpe, dout, tokens, 0, set_wpe, B, T, C, 0, C);
        return;
    }
#pragma omp parallel num_threads(team)
    {
        int c0, c1;
        team_block(C, TEAM_COL_GRAIN, omp_get_thread_num(), omp_get_num_threads(), &c0, &c1);
        embedding_backward_cols(dwte, dwpe, dout, tokens, 0, set_wpe, B, T, C, c0, c1);
    }
}

void embedding_backward(float *dwte, float *dwpe, const float *dout, const int32_t *tokens, int B, int T, int C) {
    embedding_backward_team(dwte, dwpe, dout, tokens, 0, B, T, C);
}

void embedding_backward_write_wpe(float *dwte, float *dwpe, const float *dout, const int32_t *tokens, int B, int T,
                                  int C) {
    embedding_backward_team(dwte, dwpe, dout, tokens, 1, B, T, C);
}


/* ---------------------------------------------------------------- layernorm */

void layernorm_forward(const cllm_kernel_table *k, float *out, float *mean, float *rstd, const float *inp,
                       const float *weight, const float *bias, int N, int C) {
    int team = nn_team_threads_for(N, (double)N * C);
#pragma omp parallel for num_threads(team) if (team > 1) schedule(static)
    for (int i = 0; i < N; i++)
        k->layernorm_row(out + (size_t)i * C, mean + i, rstd + i, inp + (size_t)i * C, weight, bias, C);
}

/* The row is summed while it is still in L1, instead of a residual pass over
 * the whole stream followed by a LayerNorm pass that reads it back. */
void residual_layernorm_forward(const cllm_kernel_table *k, float *res, float *out, float *mean, float *rstd,
                                const float *a, const float *b, const float *b_bias, const float *weight,
                                const float *bias, int N, int C) {
    int team = nn_team_threads_for(N, (double)N * C);
#pragma omp parallel for num_threads(team) if (team > 1) schedule(static)
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

/* Widest row the team version handles; wider ones run on one thread. */
#define TEAM_LN_MAX_C 8192

/* Where a team thread's row kernel writes what it must not keep: dweight and
 * dbias of its rows, or dinp of its column slices. Per thread, as the gemm's
 * packing buffers are, so no call allocates. */
static _Thread_local float ln_sink[2 * TEAM_LN_MAX_C];

/* The team's LayerNorm backward. dinp needs whole rows (its row means) and
 * dweight, dbias are sums over rows, so each thread runs the row kernel
 * twice over: on its block of whole rows, keeping dinp (its dweight and dbias
 * go to the sink), then on its block of columns of every row in order,
 * keeping dweight and dbias (dinp to the sink). The row kernel's dweight and
 * dbias are element-wise in the column (d * xhat and d, added), so a slice
 * of a row gets the same bits there as the whole row; the two halves write
 * disjoint memory and need no barrier. Twice the work of one thread, split
 * over the team. */
static void layernorm_backward_team(const cllm_kernel_table *k, float *dinp, float *dweight, float *dbias,
                                    const float *dout, const float *inp, const float *weight, const float *mean,
                                    const float *rstd, int N, int C, int team) {
#pragma omp parallel num_threads(team)
    {
        int t = omp_get_thread_num(), threads = omp_get_num_threads(), lo, hi;
        memset(ln_sink, 0, 2 * (size_t)C * sizeof(float));
        team_block(N, 1, t, threads, &lo, &hi);
        for (int i = lo; i < hi; i++)
            k->layernorm_backward_row(dinp + (size_t)i * C, ln_sink, ln_sink + C, dout + (size_t)i * C,
                                      inp + (size_t)i * C, weight, mean[i], rstd[i], C);
        team_block(C, TEAM_COL_GRAIN, t, threads, &lo, &hi);
        for (int i = 0; hi > lo && i < N; i++)
            k->layernorm_backward_row(ln_sink, dweight + lo, dbias + lo, dout + (size_t)i * C + lo,
                                      inp + (size_t)i * C + lo, weight + lo, mean[i], rstd[i], hi - lo);
    }
}

void layernorm_backward(const cllm_kernel_table *k, float *dinp, float *dweight, float *dbias, const float *dout,
                        const float *inp, const float *weight, const float *mean, const float *rstd, int N, int C) {
    int team = C <= TEAM_LN_MAX_C ? nn_team_threads_for(N, 2.0 * N * C) : 1;
    if (team > 1) {
        layernorm_backward_team(k, dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C, team);
        return;
    }
    for (int i = 0; i < N; i++)
        k->layernorm_backward_row(dinp + (size_t)i * C, dweight, dbias, dout + (size_t)i * C, inp + (size_t)i * C,
                                  weight, mean[i], rstd[i], C);
}

/* ---------------------------------------------------------------- linear */

/* The three products of a linear layer, each in one small function that
 * picks the precision: fp32 (team_gemm) when weight_bf16 is NULL, else bf16
 * operands with fp32 accumulation (team_gemm_bf16): the weight from its bf16
 * copy, the activations and gradients rounded while packing. beta / the
 * accumulate flag is 0 (write) or 1 (add onto the output). */

/* out[N, n_out] (+)= inp[N, n_in] · W */
static void product_forward(const cllm_kernel_table *k, float *out, float beta, const float *inp,
                            const float *weight, const uint16_t *weight_bf16, int N, int n_in, int n_out,
                            linear_layout layout) {
    int wt = layout == LINEAR_W_OUT_IN, ldw = wt ? n_in : n_out;
    if (!weight_bf16) {
        team_gemm(k, 0, wt, N, n_out, n_in, 1.0f, inp, n_in, weight, ldw, beta, out, n_out);
        return;
    }
    cllm_bf16_operand a = cllm_bf16_op_f32(inp, n_in, 0), b = cllm_bf16_op_bf16(weight_bf16, ldw, wt);
    team_gemm_bf16(k, N, n_out, n_in, &a, &b, out, n_out, beta != 0.0f);
}

/* dinp[N, n_in] (+)= dout[N, n_out] · Wᵀ */
static void product_dinp(const cllm_kernel_table *k, float *dinp, float beta, const float *dout,
                         const float *weight, const uint16_t *weight_bf16, int N, int n_in, int n_out,
                         linear_layout layout) {
    int wt = layout == LINEAR_W_IN_OUT, ldw = wt ? n_out : n_in;
    if (!weight_bf16) {
        team_gemm(k, 0, wt, N, n_in, n_out, 1.0f, dout, n_out, weight, ldw, beta, dinp, n_in);
        return;
    }
    cllm_bf16_operand a = cllm_bf16_op_f32(dout, n_out, 0), b = cllm_bf16_op_bf16(weight_bf16, ldw, wt);
    team_gemm_bf16(k, N, n_in, n_out, &a, &b, dinp, n_in, beta != 0.0f);
}

/* dW (+)= inpᵀ · dout ([n_in, n_out]) or doutᵀ · inp ([n_out, n_in]), in the weight's layout */
static void product_dweight(const cllm_kernel_table *k, float *dweight, float beta, const float *dout,
                            const float *inp, int bf16, int N, int n_in, int n_out, linear_layout layout) {
    int in_out = layout == LINEAR_W_IN_OUT;
    const float *x = in_out ? inp : dout, *y = in_out ? dout : inp;
    int rows = in_out ? n_in : n_out, cols = in_out ? n_out : n_in;
    if (!bf16) {
        team_gemm(k, 1, 0, rows, cols, N, 1.0f, x, rows, y, cols, beta, dweight, cols);
        return;
    }
    cllm_bf16_operand a = cllm_bf16_op_f32(x, rows, 1), b = cllm_bf16_op_f32(y, cols, 0);
    team_gemm_bf16(k, rows, cols, N, &a, &b, dweight, cols, beta != 0.0f);
}

void linear_forward(const cllm_kernel_table *k, float *out, const float *inp, const float *weight,
                    const uint16_t *weight_bf16, const float *bias, int N, int n_in, int n_out, linear_layout layout) {
    float beta = 0.0f;
    if (bias) {
        /* Start from the bias and let the product accumulate onto it. */
        int team = nn_team_threads_for(N, (double)N * n_out);
#pragma omp parallel for num_threads(team) if (team > 1) schedule(static)
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
        team_column_sums(k, dbias, dout, N, n_out);
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

/* C[M,N] (+)= alpha · op(A)·op(B) for two activations (row-major, op =
 * transposed where ta / tb): fp32 through k->gemm, or bf16 operands rounded
 * while packing, accumulated in fp32 (k->gemm_bf16, which has no alpha:
 * the caller passes 1 and scales in fp32 itself). */
static void att_product(const cllm_kernel_table *k, attention_precision prec, int ta, int tb, int M, int N, int K,
                        float alpha, const float *A, int lda, const float *B, int ldb, float beta, float *C,
                        int ldc) {
    if (prec == ATTENTION_FP32) {
        k->gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    CLLM_ASSERT(alpha == 1.0f && (beta == 0.0f || beta == 1.0f));
    cllm_bf16_operand a = cllm_bf16_op_f32(A, lda, ta), b = cllm_bf16_op_f32(B, ldb, tb);
    k->gemm_bf16(M, N, K, &a, &b, C, ldc, beta != 0.0f);
}

/* rows [r0, r1) of a T-wide matrix, columns [0, r1) (a causal row block's
 * staircase step), times s */
static void scale_rows(float *x, int T, int r0, int r1, float s) {
    for (int t = r0; t < r1; t++)
        for (int j = 0; j < r1; j++) x[(size_t)t * T + j] *= s;
}

/* One (sequence, head) pair of the forward: rows of T x T scores by blocks.
 * fp32 folds the 1/sqrt(hs) scale into the product; bf16 scales the scores
 * (the prefix softmax reads) after it. */
static void attention_forward_head(const cllm_kernel_table *k, attention_precision prec, float *out, float *att,
                                   const float *qkv, int b, int h, int T, int C, int NH) {
    int hs = C / NH;
    int ld = 3 * C;
    float scale = 1.0f / sqrtf((float)hs);
    float in_product = prec == ATTENTION_FP32 ? scale : 1.0f;
    const float *q = qkv + (size_t)b * T * ld + (size_t)h * hs;
    const float *kk = q + C;
    const float *v = q + 2 * C;
    float *a = att + ((size_t)b * NH + h) * T * T;
    float *y = out + (size_t)b * T * C + (size_t)h * hs;
    for (int r0 = 0; r0 < T; r0 += ATT_ROW_BLOCK) {
        int r1 = r0 + ATT_ROW_BLOCK < T ? r0 + ATT_ROW_BLOCK : T, m = r1 - r0;
        float *ab = a + (size_t)r0 * T;
        att_product(k, prec, 0, 1, m, r1, hs, in_product, q + (size_t)r0 * ld, ld, kk, ld, 0.0f, ab, T);
        if (prec != ATTENTION_FP32) scale_rows(a, T, r0, r1, scale); /* softmax reads [0, t] of row t */
        for (int t = r0; t < r1; t++) k->softmax_row(a + (size_t)t * T, t, T);
        att_product(k, prec, 0, 0, m, hs, r1, 1.0f, ab, T, v, ld, 0.0f, y + (size_t)r0 * C, C);
    }
}

/* The team splits the (sequence, head) pairs: each writes its own columns
 * of out and its own T x T block of att. */
void attention_forward(const cllm_kernel_table *k, attention_precision prec, float *out, float *att,
                       const float *qkv, int B, int T, int C, int NH) {
    int team = nn_team_threads_for((long)B * NH, (double)B * T * T * C);
#pragma omp parallel for num_threads(team) if (team > 1) schedule(static)
    for (int p = 0; p < B * NH; p++) attention_forward_head(k, prec, out, att, qkv, p / NH, p % NH, T, C, NH);
}

/* One (sequence, head) pair of the backward, with `scratch` (T x T) its own.
 * beta 1 accumulates into dqkv, 0 overwrites it. Row blocks run last to
 * first: the last block's dK and dV products cover every key position, so
 * with beta 0 they write all of dK and dV before the earlier blocks add onto
 * them; each dQ row belongs to one block only. bf16 scales dL/d(scores) by
 * 1/sqrt(hs) in place (fp32 folds it into both products that read it). */
static void attention_backward_head(const cllm_kernel_table *k, attention_precision prec, float *dqkv, float beta,
                                    float *scratch, const float *dout, const float *qkv, const float *att, int b,
                                    int h, int T, int C, int NH) {
    int hs = C / NH;
    int ld = 3 * C;
    float scale = 1.0f / sqrtf((float)hs);
    float in_product = prec == ATTENTION_FP32 ? scale : 1.0f;
    int last_r0 = (T - 1) / ATT_ROW_BLOCK * ATT_ROW_BLOCK;
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
        att_product(k, prec, 0, 1, m, r1, hs, 1.0f, dyb, C, v, ld, 0.0f, ds, T);
        att_product(k, prec, 1, 0, r1, hs, m, 1.0f, ab, T, dyb, C, kv_beta, dv, ld);
        for (int t = r0; t < r1; t++) k->softmax_backward_row(scratch + (size_t)t * T, a + (size_t)t * T, t, r1);
        if (prec != ATTENTION_FP32) scale_rows(scratch, T, r0, r1, scale);
        att_product(k, prec, 0, 0, m, hs, r1, in_product, ds, T, kk, ld, beta, dq + (size_t)r0 * ld, ld);
        att_product(k, prec, 1, 0, r1, hs, m, in_product, ds, T, q + (size_t)r0 * ld, ld, kv_beta, dk, ld);
    }
}

/* The team splits the (sequence, head) pairs, at most one thread per
 * scratch slot; each pair writes only its own columns of dqkv. */
void attention_backward_beta(const cllm_kernel_table *k, attention_precision prec, float *dqkv, float beta,
                             float *scratch, int slots, const float *dout, const float *qkv, const float *att, int B,
                             int T, int C, int NH) {
    int team = nn_team_threads_for((long)B * NH, 2.0 * B * T * T * C);
    if (team > slots) team = slots;
#pragma omp parallel num_threads(team) if (team > 1)
    {
        float *own = scratch + (size_t)omp_get_thread_num() * T * T;
#pragma omp for schedule(static)
        for (int p = 0; p < B * NH; p++)
            attention_backward_head(k, prec, dqkv, beta, own, dout, qkv, att, p / NH, p % NH, T, C, NH);
    }
}

void attention_backward_overwrite(const cllm_kernel_table *k, attention_precision prec, float *dqkv, float *scratch,
                                  int slots, const float *dout, const float *qkv, const float *att, int B, int T,
                                  int C, int NH) {
    attention_backward_beta(k, prec, dqkv, 0.0f, scratch, slots, dout, qkv, att, B, T, C, NH);
}

/* ---------------------------------------------------------------- gelu */

void gelu_forward(const cllm_kernel_table *k, float *out, const float *inp, int n) { k->gelu(out, inp, n); }

/* The team's version: rows of the gradient first, then, after a barrier,
 * the bias sums by columns, each column over the rows in order (the same
 * adds as the row-by-row sums). */
static void gelu_backward_bias_sums_team(const cllm_kernel_table *k, float *dinp, float *dbias, const float *inp,
                                         const float *dout, int N, int C, int team) {
#pragma omp parallel num_threads(team)
    {
        int t = omp_get_thread_num(), threads = omp_get_num_threads(), lo, hi;
        team_block(N, 1, t, threads, &lo, &hi);
        for (int i = lo; i < hi; i++)
            k->gelu_backward_set(dinp + (size_t)i * C, inp + (size_t)i * C, dout + (size_t)i * C, C);
#pragma omp barrier
        team_block(C, TEAM_COL_GRAIN, t, threads, &lo, &hi);
        for (int i = 0; hi > lo && i < N; i++) k->column_sums(dbias + lo, dinp + (size_t)i * C + lo, 1, hi - lo);
    }
}

void gelu_backward_overwrite_bias_sums(const cllm_kernel_table *k, float *dinp, float *dbias, const float *inp,
                                       const float *dout, int N, int C) {
    int team = nn_team_threads_for(N, (double)N * C);
    if (team > 1) {
        gelu_backward_bias_sums_team(k, dinp, dbias, inp, dout, N, C, team);
        return;
    }
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
    int team = nn_team_threads_for(N, (double)N * C);
    if (team <= 1) {
        k->bias_gelu(out, pre, bias, N, C);
        return;
    }
#pragma omp parallel num_threads(team)
    {
        int lo, hi;
        team_block(N, 1, omp_get_thread_num(), omp_get_num_threads(), &lo, &hi);
        if (hi > lo) k->bias_gelu(out + (size_t)lo * C, pre + (size_t)lo * C, bias, hi - lo, C);
    }
}

/* ---------------------------------------------------------------- residual */

void residual_forward(float *out, const float *a, const float *b, int n) {
    for (int i = 0; i < n; i++) out[i] = a[i] + b[i];
}

/* ---------------------------------------------------------------- loss */

void softmax_crossentropy_forward(const cllm_kernel_table *k, float *losses, float *lse, const float *logits,
                                  const int32_t *targets, int N, int V) {
    int team = nn_team_threads_for(N, (double)N * V);
#pragma omp parallel for num_threads(team) if (team > 1) schedule(static)
    for (int i = 0; i < N; i++) {
        const float *l = logits + (size_t)i * V;
        lse[i] = k->logsumexp_row(l, V);
        losses[i] = lse[i] - l[targets[i]];
    }
}

void softmax_crossentropy_backward(const cllm_kernel_table *k, float *dlogits, const float *logits, const float *lse,
                                   const int32_t *targets, float dloss, int N, int V) {
    int team = nn_team_threads_for(N, (double)N * V);
#pragma omp parallel for num_threads(team) if (team > 1) schedule(static)
    for (int i = 0; i < N; i++) {
        float *d = dlogits + (size_t)i * V;
        k->softmax_grad_row(d, logits + (size_t)i * V, lse[i], dloss, V); /* elementwise: d may alias the logits */
        d[targets[i]] -= dloss;
    }
}
