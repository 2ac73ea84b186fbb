/* KV-cached inference: one token at a time, each layer attending over the
 * keys and values cached from earlier positions, so n tokens cost n
 * single-token passes instead of n full-prefix forwards. */
#include "cllm/models/gpt2.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cllm/nn/layers.h"
#include "gpt2_internal.h"

struct gpt2_kv {
    gpt2_config cfg;
    int len;          /* tokens fed since the last reset */
    float *mem;
    float *k, *v;     /* [L, seq_len, C] each */
    float *x;         /* [C] residual stream */
    float *ln;        /* [C] */
    float *qkv;       /* [3C] */
    float *atty;      /* [C] */
    float *fch;       /* [4C] */
    float *scores;    /* [seq_len] */
    float *logits;    /* [V] */
    float stats[2];   /* layernorm mean and rstd (unused here, required by the layer) */
};

gpt2_kv *gpt2_kv_create(const gpt2_config *cfg) {
    if (gpt2_config_validate(cfg) != CLLM_OK) return NULL;
    gpt2_kv *kv = calloc(1, sizeof *kv);
    if (!kv) {
        cllm_fail(CLLM_ERR_INTERNAL, "out of memory for the KV cache");
        return NULL;
    }
    kv->cfg = *cfg;
    size_t C = (size_t)cfg->n_embd, T = (size_t)cfg->seq_len, L = (size_t)cfg->n_layer;
    size_t cache = L * T * C;
    size_t total = 2 * cache + C + C + 3 * C + C + 4 * C + T + (size_t)cfg->vocab_size;
    kv->mem = cllm_alloc(total * sizeof(float));
    if (!kv->mem) {
        free(kv);
        return NULL;
    }
    float *p = kv->mem;
    kv->k = p, p += cache;
    kv->v = p, p += cache;
    kv->x = p, p += C;
    kv->ln = p, p += C;
    kv->qkv = p, p += 3 * C;
    kv->atty = p, p += C;
    kv->fch = p, p += 4 * C;
    kv->scores = p, p += T;
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

/* Attention of one query (position pos) over cached keys/values 0..pos, the
 * same arithmetic as one row of attention_forward. */
static void attend_one(float *out, float *scores, const float *q, const float *kc, const float *vc, int pos, int C,
                       int NH) {
    int hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    for (int h = 0; h < NH; h++) {
        const float *qh = q + (size_t)h * hs;
        float mx = -INFINITY;
        for (int j = 0; j <= pos; j++) {
            const float *kj = kc + (size_t)j * C + (size_t)h * hs;
            float s = 0.0f;
            for (int i = 0; i < hs; i++) s += qh[i] * kj[i];
            scores[j] = s * scale;
            mx = scores[j] > mx ? scores[j] : mx;
        }
        float sum = 0.0f;
        for (int j = 0; j <= pos; j++) {
            scores[j] = expf(scores[j] - mx);
            sum += scores[j];
        }
        float inv = 1.0f / sum;
        float *oh = out + (size_t)h * hs;
        for (int i = 0; i < hs; i++) oh[i] = 0.0f;
        for (int j = 0; j <= pos; j++) {
            const float *vj = vc + (size_t)j * C + (size_t)h * hs;
            float a = scores[j] * inv;
            for (int i = 0; i < hs; i++) oh[i] += a * vj[i];
        }
    }
}

static void block_step(const gpt2_model *m, gpt2_kv *kv, int l, int pos) {
    const float *p = m->params;
    int C = m->cfg.n_embd;
    size_t T = (size_t)m->cfg.seq_len;
    float *kc = kv->k + (size_t)l * T * C, *vc = kv->v + (size_t)l * T * C;
#define W(k) gpt2_cat(m, p, gpt2_layer_tensor(l, GPT2_L_##k))
    layernorm_forward(m->kernels, kv->ln, &kv->stats[0], &kv->stats[1], kv->x, W(LN1_W), W(LN1_B), 1, C);
    linear_forward(m->kernels, kv->qkv, kv->ln, W(ATTN_W), W(ATTN_B), 1, C, 3 * C, LINEAR_W_IN_OUT);
    memcpy(kc + (size_t)pos * C, kv->qkv + C, (size_t)C * sizeof(float));
    memcpy(vc + (size_t)pos * C, kv->qkv + 2 * C, (size_t)C * sizeof(float));
    attend_one(kv->atty, kv->scores, kv->qkv, kc, vc, pos, C, m->cfg.n_head);
    /* kv->ln is free again: it holds the projection before the residual add. */
    linear_forward(m->kernels, kv->ln, kv->atty, W(APROJ_W), W(APROJ_B), 1, C, C, LINEAR_W_IN_OUT);
    residual_forward(kv->x, kv->x, kv->ln, C);
    layernorm_forward(m->kernels, kv->ln, &kv->stats[0], &kv->stats[1], kv->x, W(LN2_W), W(LN2_B), 1, C);
    linear_forward(m->kernels, kv->fch, kv->ln, W(FC_W), W(FC_B), 1, C, 4 * C, LINEAR_W_IN_OUT);
    gelu_forward(m->kernels, kv->fch, kv->fch, 4 * C);
    linear_forward(m->kernels, kv->ln, kv->fch, W(MPROJ_W), W(MPROJ_B), 1, 4 * C, C, LINEAR_W_IN_OUT);
    residual_forward(kv->x, kv->x, kv->ln, C);
#undef W
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
    embedding_forward(kv->x, &token, gpt2_cat(m, p, GPT2_T_WTE), gpt2_cat(m, p, GPT2_T_WPE) + (size_t)pos * C, 1, 1,
                      C);
    for (int l = 0; l < c->n_layer; l++) block_step(m, kv, l, pos);
    int lnf = gpt2_lnf_weight(c);
    layernorm_forward(m->kernels, kv->ln, &kv->stats[0], &kv->stats[1], kv->x, gpt2_cat(m, p, lnf),
                      gpt2_cat(m, p, lnf + 1), 1, C);
    linear_forward(m->kernels, kv->logits, kv->ln, gpt2_cat(m, p, GPT2_T_WTE), NULL, 1, C, c->vocab_size,
                   LINEAR_W_OUT_IN);
    kv->len++;
    return kv->logits;
}
