/* Shared between gpt2.c and infer.c: where each tensor of a layer sits in
 * the table, so the hot paths index it instead of looking names up. */
#ifndef CLLM_MODEL_GPT2_INTERNAL_H
#define CLLM_MODEL_GPT2_INTERNAL_H

#include "cllm/models/gpt2.h"

/* Table order is Hugging Face's state_dict order: wte, wpe, then per layer
 * the twelve tensors below, then ln_f.weight and ln_f.bias. */
enum { GPT2_T_WTE = 0, GPT2_T_WPE = 1, GPT2_T_FIRST_LAYER = 2 };
enum {
    GPT2_L_LN1_W,
    GPT2_L_LN1_B,
    GPT2_L_ATTN_W,
    GPT2_L_ATTN_B,
    GPT2_L_APROJ_W,
    GPT2_L_APROJ_B,
    GPT2_L_LN2_W,
    GPT2_L_LN2_B,
    GPT2_L_FC_W,
    GPT2_L_FC_B,
    GPT2_L_MPROJ_W,
    GPT2_L_MPROJ_B,
    GPT2_PER_LAYER
};

static inline int gpt2_layer_tensor(int layer, int which) { return GPT2_T_FIRST_LAYER + layer * GPT2_PER_LAYER + which; }
static inline int gpt2_lnf_weight(const gpt2_config *c) { return GPT2_T_FIRST_LAYER + c->n_layer * GPT2_PER_LAYER; }

/* Pointer to tensor idx inside a buffer laid out like params (params or grads). */
static inline float *gpt2_at(const gpt2_model *m, float *buf, int idx) { return buf + m->tensors[idx].offset; }
static inline const float *gpt2_cat(const gpt2_model *m, const float *buf, int idx) {
    return buf + m->tensors[idx].offset;
}

/* Tensor idx's bf16 copy, NULL in fp32 mode (the layers then run fp32). */
static inline const uint16_t *gpt2_bf16_at(const gpt2_model *m, int idx) {
    return m->params_bf16 ? m->params_bf16 + m->tensors[idx].offset : NULL;
}

/* ---- one transformer block, the one definition training and the KV step
 * share (gpt2_block in gpt2.c) ---- */

/* The block's buffers over its N rows. */
typedef struct {
    float *qkv;                      /* [N, 3C] */
    float *atty;                     /* [N, C] attention output */
    float *res2, *ln2;               /* [N, C] residual after attention, its LayerNorm */
    float *ln2_mean, *ln2_rstd;      /* [N] */
    float *fch, *fch_gelu;           /* [N, 4C] c_fc before and after GELU */
    float *res3;                     /* [N, C] the block's output (residual after the MLP) */
} gpt2_block_io;

/* Where the LayerNorm that reads the block's output writes: the next block's
 * ln1, or ln_f after the last block. */
typedef struct {
    float *out, *mean, *rstd;
    const float *weight, *bias;
} gpt2_next_norm;

/* The attention of block `layer`: atty from qkv over the block's rows.
 * Training attends each of the batch's T positions over its prefix (and
 * keeps the probabilities for backward); the KV step attends one query over
 * the cached keys and values. */
typedef void (*gpt2_attend_fn)(void *ctx, const cllm_kernel_table *k, float *atty, const float *qkv, int layer);

/* Block l on N rows: x is its input (the residual stream), ln1 that input
 * normalised (by the embedding step or the previous block). The projections
 * that feed a residual run without their bias, which the fused residual +
 * LayerNorm adds, as bias_gelu_forward does for c_fc: fewer passes over the
 * activations, same values. */
void gpt2_block(const gpt2_model *m, int l, const float *x, const float *ln1, const gpt2_block_io *s,
                const gpt2_next_norm *next, int N, gpt2_attend_fn attend, void *attend_ctx);

#endif
