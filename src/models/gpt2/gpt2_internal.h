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

#endif
