/* KV-cached inference: one token at a time, each layer attending over the
 * keys and values cached from earlier positions, so n tokens cost n
 * single-token passes instead of n full-prefix forwards. */
#include "cllm/models/gpt2.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cllm/nn/layers.h"
#include "cllm/nn/team.h"
#include "gpt2_internal.h"

struct gpt2_kv {
    gpt2_config cfg;
    int len;          /* tokens fed since the last reset */
    float *mem;
    float *k, *v;     /* [L, seq_len, C] each */
    float *x[2];      /* [C] the residual stream, in and out of a block by turns */
    float *ln;        /* [C] the block input normalised (ln1, then ln_f) */
    float stats[2];   /* its mean and rstd (not needed without backward) */
    gpt2_block_io io; /* one row of each block buffer */
    float *scores;    /* [n_head, seq_len] one attention row per head */
    float *logits;    /* [V] */
};

gpt2_kv *gpt2_kv_create(const gpt2_config *cfg) {
    if (gpt2_config_validate(cfg) != CLLM_OK) return NULL;
    gpt2_kv *kv = calloc(1, sizeof *kv);
    if (!kv) {
        cllm_fail(CLLM_ERR_INTERNAL, "out of memory for the KV cache");
        return NULL;
    }
    kv->cfg = *cfg;
    size_t C = (size_t)cfg->n_embd, T = (size_t)cfg->seq_len, L = (size_t)cfg->n_layer, NH = (size_t)cfg->n_head;
    size_t cache = L * T * C;
    /* x[2], ln; qkv, atty, res2, ln2, mean + rstd, fch, fch_gelu, res3; scores, logits */
    size_t total = 2 * cache + 3 * C + (3 * C + C + C + C + 2 + 4 * C + 4 * C + C) + NH * T + (size_t)cfg->vocab_size;
    kv->mem = cllm_alloc(total * sizeof(float));
    if (!kv->mem) {
        free(kv);
        return NULL;
    }
    float *p = kv->mem;
    kv->k = p, p += cache;
    kv->v = p, p += cache;
    kv->x[0] = p, p += C;
    kv->x[1] = p, p += C;
    kv->ln = p, p += C;
    kv->io.qkv = p, p += 3 * C;
    kv->io.atty = p, p += C;
    kv->io.res2 = p, p += C;
    kv->io.ln2 = p, p += C;
    kv->io.ln2_mean = p, p += 1;
    kv->io.ln2_rstd = p, p += 1;
    kv->io.fch = p, p += 4 * C;
    kv->io.fch_gelu = p, p += 4 * C;
    kv->io.res3 = p, p += C;
    kv->scores = p, p += NH * T;
    kv->logits = p;
    return kv;
}

void gpt2_kv_reset(gpt2_kv *kv) { kv->len = 0; }

int gpt2_kv_length(const gpt2_kv *kv) { return kv->len; }

void gpt2_kv_destroy(gpt2_kv *kv) {
    if (!kv) return;
    cllm_free(kv->mem);
    free(kv);
}

/* The KV step's attention: the one query at position pos over the keys and
 * values cached for 0..pos (this block's new ones stored first), with the
 * kernels training's attention uses for one row: the scaled scores by gemm,
 * the causal softmax row, the weighted values by gemm. The team splits the
 * heads, each with its own row of scores. */
typedef struct {
    const gpt2_model *m;
    gpt2_kv *kv;
    int pos;
} cached_attention;

static void attend_cached(void *ctx, const cllm_kernel_table *k, float *atty, const float *qkv, int l) {
    const cached_attention *c = ctx;
    gpt2_kv *kv = c->kv;
    int C = c->m->cfg.n_embd, NH = c->m->cfg.n_head, hs = C / NH, pos = c->pos;
    size_t T = (size_t)c->m->cfg.seq_len;
    float *kc = kv->k + (size_t)l * T * C, *vc = kv->v + (size_t)l * T * C;
    memcpy(kc + (size_t)pos * C, qkv + C, (size_t)C * sizeof(float));
    memcpy(vc + (size_t)pos * C, qkv + 2 * C, (size_t)C * sizeof(float));
    float scale = 1.0f / sqrtf((float)hs);
    int team = nn_team_threads_for(NH, 2.0 * (pos + 1) * C);
#pragma omp parallel for num_threads(team) if (team > 1) schedule(static)
    for (int h = 0; h < NH; h++) {
        float *scores = kv->scores + (size_t)h * T;
        k->gemm(0, 1, 1, pos + 1, hs, scale, qkv + (size_t)h * hs, 3 * C, kc + (size_t)h * hs, C, 0.0f, scores,
                pos + 1);
        k->softmax_row(scores, pos, pos + 1);
        k->gemm(0, 0, 1, hs, pos + 1, 1.0f, scores, pos + 1, vc + (size_t)h * hs, C, 0.0f, atty + (size_t)h * hs, C);
    }
}

/* The LayerNorm after block l: the next block's ln1, or ln_f. */
static gpt2_next_norm norm_after(const gpt2_model *m, gpt2_kv *kv, int l) {
    int w = l + 1 < m->cfg.n_layer ? gpt2_layer_tensor(l + 1, GPT2_L_LN1_W) : gpt2_lnf_weight(&m->cfg);
    return (gpt2_next_norm){kv->ln, &kv->stats[0], &kv->stats[1], gpt2_cat(m, m->params, w),
                            gpt2_cat(m, m->params, w + 1)};
}

const float *gpt2_kv_step(const gpt2_model *m, gpt2_kv *kv, int32_t token) {
    const gpt2_config *c = &m->cfg;
    const float *p = m->params;
    int C = c->n_embd, pos = kv->len;
    if (pos >= c->seq_len) {
        cllm_fail(CLLM_ERR_INPUT, "KV cache full: %d tokens fed, context is %d", pos, c->seq_len);
        return NULL;
    }
    if (token < 0 || token >= c->vocab_size) {
        cllm_fail(CLLM_ERR_INPUT, "token %d outside the vocabulary (0..%d)", (int)token, c->vocab_size - 1);
        return NULL;
    }
    embedding_forward(kv->x[0], &token, gpt2_cat(m, p, GPT2_T_WTE), gpt2_cat(m, p, GPT2_T_WPE) + (size_t)pos * C,
                      1, 1, C);
    layernorm_forward(m->kernels, kv->ln, &kv->stats[0], &kv->stats[1], kv->x[0],
                      gpt2_cat(m, p, gpt2_layer_tensor(0, GPT2_L_LN1_W)),
                      gpt2_cat(m, p, gpt2_layer_tensor(0, GPT2_L_LN1_B)), 1, C);
    /* The block training runs, on one row; its output becomes the next input. */
    cached_attention att = {m, kv, pos};
    for (int l = 0; l < c->n_layer; l++) {
        gpt2_block_io io = kv->io;
        io.res3 = kv->x[(l + 1) % 2];
        gpt2_next_norm next = norm_after(m, kv, l);
        gpt2_block(m, l, kv->x[l % 2], kv->ln, &io, &next, 1, attend_cached, &att);
    }
    linear_forward(m->kernels, kv->logits, kv->ln, gpt2_cat(m, p, GPT2_T_WTE), gpt2_bf16_at(m, GPT2_T_WTE), NULL, 1,
                   C, c->vocab_size, LINEAR_W_OUT_IN);
    kv->len++;
    return kv->logits;
}
