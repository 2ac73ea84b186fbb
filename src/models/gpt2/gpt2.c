/* The GPT-2 model over one flat parameter buffer: tensor table, init,
 * activation arena, forward and backward. */
#include "cllm/models/gpt2.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cllm/nn/layers.h"
#include "cllm/base/rng.h"
#include "gpt2_internal.h"

/* ---------------------------------------------------------------- config */

/* Limits keep every product the layers index with int (N*4C, N*V rows) and
 * every buffer size far from overflow; they are far above what a CPU trains. */
#define GPT2_MAX_LAYER 1024
#define GPT2_MAX_EMBD 65536
#define GPT2_MAX_SEQ 65536
#define GPT2_MAX_VOCAB (1 << 24)

cllm_status gpt2_config_validate(const gpt2_config *cfg) {
    if (cfg->n_layer < 1 || cfg->n_layer > GPT2_MAX_LAYER)
        return cllm_fail(CLLM_ERR_INPUT, "n_layer must be in 1..%d, got %d", GPT2_MAX_LAYER, cfg->n_layer);
    if (cfg->n_embd < 1 || cfg->n_embd > GPT2_MAX_EMBD)
        return cllm_fail(CLLM_ERR_INPUT, "n_embd must be in 1..%d, got %d", GPT2_MAX_EMBD, cfg->n_embd);
    if (cfg->n_head < 1 || cfg->n_head > cfg->n_embd)
        return cllm_fail(CLLM_ERR_INPUT, "n_head must be in 1..n_embd (%d), got %d", cfg->n_embd, cfg->n_head);
    if (cfg->n_embd % cfg->n_head != 0)
        return cllm_fail(CLLM_ERR_INPUT, "n_embd (%d) must be a multiple of n_head (%d)", cfg->n_embd, cfg->n_head);
    if (cfg->seq_len < 1 || cfg->seq_len > GPT2_MAX_SEQ)
        return cllm_fail(CLLM_ERR_INPUT, "seq_len must be in 1..%d, got %d", GPT2_MAX_SEQ, cfg->seq_len);
    if (cfg->vocab_size < 1 || cfg->vocab_size > GPT2_MAX_VOCAB)
        return cllm_fail(CLLM_ERR_INPUT, "vocab_size must be in 1..%d, got %d", GPT2_MAX_VOCAB, cfg->vocab_size);
    int64_t C = cfg->n_embd;
    int64_t params = (int64_t)cfg->vocab_size * C + (int64_t)cfg->seq_len * C + (int64_t)cfg->n_layer * 13 * C * C;
    if (params > ((int64_t)1 << 36))
        return cllm_fail(CLLM_ERR_INPUT, "model too large: about %lld parameters", (long long)params);
    return CLLM_OK;
}

/* ---------------------------------------------------------------- table */

#define GPT2_TENSOR_ALIGN 16 /* floats: 64 bytes */

static size_t round_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

static void add_tensor(gpt2_model *m, size_t *offset, const char *name, int64_t d0, int64_t d1, int no_decay) {
    gpt2_tensor *t = &m->tensors[m->n_tensors++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = d1 > 0 ? 2 : 1;
    t->shape[0] = d0;
    t->shape[1] = d1 > 0 ? d1 : 0;
    t->numel = (size_t)d0 * (size_t)(d1 > 0 ? d1 : 1);
    t->offset = *offset;
    t->no_decay = no_decay;
    *offset = round_up(*offset + t->numel, GPT2_TENSOR_ALIGN);
}

static void build_table(gpt2_model *m, size_t *total) {
    const gpt2_config *c = &m->cfg;
    int64_t C = c->n_embd;
    size_t off = 0;
    char name[64];
    add_tensor(m, &off, "transformer.wte.weight", c->vocab_size, C, 1);
    add_tensor(m, &off, "transformer.wpe.weight", c->seq_len, C, 1);
    static const struct {
        const char *suffix;
        int in_mult, out_mult; /* shape = [in_mult*C, out_mult*C], out_mult 0 for 1-D */
        int no_decay;
    } layer[GPT2_PER_LAYER] = {
        {"ln_1.weight", 1, 0, 1},      {"ln_1.bias", 1, 0, 1},     {"attn.c_attn.weight", 1, 3, 0},
        {"attn.c_attn.bias", 3, 0, 1}, {"attn.c_proj.weight", 1, 1, 0}, {"attn.c_proj.bias", 1, 0, 1},
        {"ln_2.weight", 1, 0, 1},      {"ln_2.bias", 1, 0, 1},     {"mlp.c_fc.weight", 1, 4, 0},
        {"mlp.c_fc.bias", 4, 0, 1},    {"mlp.c_proj.weight", 4, 1, 0}, {"mlp.c_proj.bias", 1, 0, 1},
    };
    for (int l = 0; l < c->n_layer; l++) {
        for (int k = 0; k < GPT2_PER_LAYER; k++) {
            snprintf(name, sizeof name, "transformer.h.%d.%s", l, layer[k].suffix);
            add_tensor(m, &off, name, layer[k].in_mult * C, layer[k].out_mult * C, layer[k].no_decay);
        }
    }
    add_tensor(m, &off, "transformer.ln_f.weight", C, 0, 1);
    add_tensor(m, &off, "transformer.ln_f.bias", C, 0, 1);
    *total = off;
}

cllm_status gpt2_describe(gpt2_model *m, const gpt2_config *cfg) {
    memset(m, 0, sizeof *m);
    cllm_status st = gpt2_config_validate(cfg);
    if (st != CLLM_OK) return st;
    m->cfg = *cfg;
    m->kernels = cllm_kernel_table_best();
    int n = GPT2_T_FIRST_LAYER + cfg->n_layer * GPT2_PER_LAYER + 2;
    m->tensors = calloc((size_t)n, sizeof *m->tensors);
    if (!m->tensors) return cllm_fail(CLLM_ERR_INTERNAL, "out of memory for the tensor table");
    size_t total = 0;
    build_table(m, &total);
    m->n_params = total;
    return CLLM_OK;
}

cllm_status gpt2_alloc_params(gpt2_model *m) {
    m->params = cllm_alloc(m->n_params * sizeof(float));
    if (!m->params) {
        gpt2_destroy(m);
        return CLLM_ERR_INTERNAL;
    }
    return CLLM_OK;
}

cllm_status gpt2_create(gpt2_model *m, const gpt2_config *cfg) {
    cllm_status st = gpt2_describe(m, cfg);
    return st == CLLM_OK ? gpt2_alloc_params(m) : st;
}

double gpt2_param_count_estimate(const gpt2_config *cfg) {
    double L = cfg->n_layer, C = cfg->n_embd, V = cfg->vocab_size, T = cfg->seq_len;
    /* wte + wpe, per layer the table in build_table (12 C^2 weights, 13 C
     * biases and LayerNorm), then ln_f. */
    return V * C + T * C + L * (12.0 * C * C + 13.0 * C) + 2.0 * C;
}

void gpt2_use_kernels(gpt2_model *m, const cllm_kernel_table *kernels) {
    if (kernels) m->kernels = kernels;
}

void gpt2_destroy(gpt2_model *m) {
    if (!m) return;
    free(m->tensors);
    cllm_free(m->params);
    cllm_free(m->params_bf16);
    memset(m, 0, sizeof *m);
}

const gpt2_tensor *gpt2_find_tensor(const gpt2_model *m, const char *name) {
    for (int i = 0; i < m->n_tensors; i++)
        if (strcmp(m->tensors[i].name, name) == 0) return &m->tensors[i];
    return NULL;
}

size_t gpt2_num_parameters(const gpt2_model *m) {
    size_t n = 0;
    for (int i = 0; i < m->n_tensors; i++) n += m->tensors[i].numel;
    return n;
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

void gpt2_init_weights(gpt2_model *m, uint64_t seed) {
    cllm_rng rng;
    cllm_rng_seed(&rng, seed);
    /* Residual projections add into the stream once per block twice per layer;
     * scaling them keeps the stream's variance from growing with depth. */
    float std = 0.02f;
    float residual_std = 0.02f / sqrtf(2.0f * (float)m->cfg.n_layer);
    memset(m->params, 0, m->n_params * sizeof(float));
    for (int i = 0; i < m->n_tensors; i++) {
        const gpt2_tensor *t = &m->tensors[i];
        float *p = m->params + t->offset;
        if (ends_with(t->name, ".bias")) continue; /* zero */
        if (strstr(t->name, ".ln_") || strstr(t->name, "ln_f.")) {
            for (size_t j = 0; j < t->numel; j++) p[j] = 1.0f;
            continue;
        }
        float s = ends_with(t->name, "c_proj.weight") ? residual_std : std;
        for (size_t j = 0; j < t->numel; j++) p[j] = s * cllm_rng_normal(&rng);
    }
    gpt2_refresh_bf16(m, 0, m->n_params);
}

/* ---------------------------------------------------------------- precision */

cllm_status gpt2_use_bf16(gpt2_model *m, int on) {
    cllm_free(m->params_bf16);
    m->params_bf16 = NULL;
    if (!on) return CLLM_OK;
    m->params_bf16 = cllm_alloc(m->n_params * sizeof(uint16_t));
    if (!m->params_bf16) return cllm_fail(CLLM_ERR_INTERNAL, "out of memory for the bf16 copy of the weights");
    gpt2_refresh_bf16(m, 0, m->n_params);
    return CLLM_OK;
}

void gpt2_refresh_bf16(gpt2_model *m, size_t begin, size_t end) {
    if (!m->params_bf16 || !m->params || begin >= end) return;
    CLLM_ASSERT(end <= m->n_params);
    m->kernels->bf16_round(m->params_bf16 + begin, m->params + begin, end - begin);
}

double gpt2_flops_per_token(const gpt2_config *cfg) {
    double L = cfg->n_layer, C = cfg->n_embd, V = cfg->vocab_size, T = cfg->seq_len;
    double matmul_params = L * 12.0 * C * C + V * C;
    return 6.0 * matmul_params + 12.0 * L * T * C;
}

/* ---------------------------------------------------------------- arena */

struct gpt2_acts {
    gpt2_config cfg;
    int max_batch;
    int slots; /* attention-backward scratch areas: the team threads that may share this arena */
    int B, T, has_targets;
    size_t bytes;
    float *mem;
    int32_t *tokens, *targets; /* copies: the caller may reuse its buffers before backward */
    /* forward, per layer l at l * (per-layer size) */
    float *encoded;                      /* [N,C] */
    float *ln1, *ln1_mean, *ln1_rstd;    /* [L,N,C], [L,N], [L,N] */
    float *qkv;                          /* [L,N,3C] */
    float *att;                          /* [L,B,NH,T,T] */
    float *atty;                         /* [L,N,C] attention output before c_proj */
    float *res2;                         /* [L,N,C] stream after the attention block */
    float *ln2, *ln2_mean, *ln2_rstd;    /* [L,N,C], [L,N], [L,N] */
    float *fch, *fch_gelu;               /* [L,N,4C] */
    float *res3;                         /* [L,N,C] stream after the MLP block */
    float *lnf, *lnf_mean, *lnf_rstd;    /* [N,C], [N], [N] */
    float *logits;                       /* [N,V]; backward turns it into dlogits */
    float *lse, *losses;                 /* [N] */
    /* backward scratch, reused by every layer */
    float *dres;                         /* [N,C] gradient of the residual stream */
    float *dln, *datty;                  /* [N,C] */
    float *dqkv;                         /* [N,3C] */
    float *dfch, *dfch_gelu;             /* [N,4C] */
    float *datt;                         /* [slots,T,T] */
};

_Static_assert(sizeof(int32_t) == sizeof(float), "token ids are carved from the float arena");

/* Carves the arena: with base == NULL it only counts, so sizing and
 * assignment share one description of the layout. */
static size_t carve(gpt2_acts *a, float *base) {
    const gpt2_config *c = &a->cfg;
    size_t L = (size_t)c->n_layer, C = (size_t)c->n_embd, V = (size_t)c->vocab_size, T = (size_t)c->seq_len;
    size_t N = (size_t)a->max_batch * T, NH = (size_t)c->n_head;
    size_t off = 0;
#define CARVE(field, count)                                  \
    do {                                                     \
        if (base) a->field = base + off;                     \
        off = round_up(off + (count), GPT2_TENSOR_ALIGN);    \
    } while (0)
    CARVE(encoded, N * C);
    CARVE(ln1, L * N * C);
    CARVE(ln1_mean, L * N);
    CARVE(ln1_rstd, L * N);
    CARVE(qkv, L * N * 3 * C);
    CARVE(att, L * (size_t)a->max_batch * NH * T * T);
    CARVE(atty, L * N * C);
    CARVE(res2, L * N * C);
    CARVE(ln2, L * N * C);
    CARVE(ln2_mean, L * N);
    CARVE(ln2_rstd, L * N);
    CARVE(fch, L * N * 4 * C);
    CARVE(fch_gelu, L * N * 4 * C);
    CARVE(res3, L * N * C);
    CARVE(lnf, N * C);
    CARVE(lnf_mean, N);
    CARVE(lnf_rstd, N);
    CARVE(logits, N * V);
    CARVE(lse, N);
    CARVE(losses, N);
    CARVE(dres, N * C);
    CARVE(dln, N * C);
    CARVE(datty, N * C);
    CARVE(dqkv, N * 3 * C);
    CARVE(dfch, N * 4 * C);
    CARVE(dfch_gelu, N * 4 * C);
    CARVE(datt, (size_t)a->slots * T * T);
    /* Token ids live in the same arena; those words are only ever accessed as
     * int32_t (allocated memory takes the type of what is stored in it). */
    if (base) a->tokens = (int32_t *)(base + off);
    off = round_up(off + N, GPT2_TENSOR_ALIGN);
    if (base) a->targets = (int32_t *)(base + off);
    off = round_up(off + N, GPT2_TENSOR_ALIGN);
#undef CARVE
    return off;
}

gpt2_acts *gpt2_acts_create(const gpt2_config *cfg, int max_batch) { return gpt2_acts_create_team(cfg, max_batch, 1); }

gpt2_acts *gpt2_acts_create_team(const gpt2_config *cfg, int max_batch, int team) {
    if (gpt2_config_validate(cfg) != CLLM_OK) return NULL;
    if (max_batch < 1 || team < 1 || team > 4096) {
        cllm_fail(CLLM_ERR_INPUT, "batch size and team must be at least 1, got %d and %d", max_batch, team);
        return NULL;
    }
    int64_t N = (int64_t)max_batch * cfg->seq_len;
    if (N * 4 * cfg->n_embd > INT_MAX || N > INT_MAX / 2) {
        cllm_fail(CLLM_ERR_INPUT, "batch %d x seq_len %d is too large for one activation arena", max_batch,
                  cfg->seq_len);
        return NULL;
    }
    gpt2_acts *a = calloc(1, sizeof *a);
    if (!a) {
        cllm_fail(CLLM_ERR_INTERNAL, "out of memory for the activation arena");
        return NULL;
    }
    a->cfg = *cfg;
    a->max_batch = max_batch;
    a->slots = team;
    size_t floats = carve(a, NULL);
    a->bytes = floats * sizeof(float);
    a->mem = cllm_alloc(a->bytes);
    if (!a->mem) {
        gpt2_acts_destroy(a);
        cllm_fail(CLLM_ERR_INTERNAL, "out of memory for the activation arena (%zu MiB)", floats * 4 >> 20);
        return NULL;
    }
    carve(a, a->mem);
    return a;
}

void gpt2_acts_destroy(gpt2_acts *a) {
    if (!a) return;
    cllm_free(a->mem);
    free(a);
}

size_t gpt2_acts_bytes(const gpt2_acts *a) { return a->bytes; }

/* The arrays carve() lays out, summed by kind (keep the two in step). */
double gpt2_acts_bytes_estimate(const gpt2_config *cfg, int max_batch) {
    double L = cfg->n_layer, C = cfg->n_embd, V = cfg->vocab_size, T = cfg->seq_len, NH = cfg->n_head;
    double B = max_batch, N = B * T;
    double per_layer = 16.0 * N * C + 4.0 * N + B * NH * T * T; /* ln1..res3, means and rstds, att */
    double once = 16.0 * N * C + N * V + 6.0 * N + T * T;       /* encoded, lnf, logits, backward scratch, ids */
    return (L * per_layer + once) * sizeof(float);
}

const float *gpt2_logits(const gpt2_acts *a) { return a->logits; }

/* ---------------------------------------------------------------- forward */

/* Per-layer slices of the arena, for the batch actually run (N = B*T rows;
 * the layer stride stays that of the full arena). */
typedef struct {
    float *ln1, *ln1_mean, *ln1_rstd, *qkv, *att, *atty, *res2, *ln2, *ln2_mean, *ln2_rstd, *fch, *fch_gelu, *res3;
} layer_acts;

static layer_acts layer_slice(const gpt2_acts *a, int l) {
    size_t C = (size_t)a->cfg.n_embd, N = (size_t)a->max_batch * a->cfg.seq_len;
    size_t att = (size_t)a->max_batch * a->cfg.n_head * a->cfg.seq_len * a->cfg.seq_len;
    size_t L = (size_t)l;
    layer_acts s = {
        a->ln1 + L * N * C,      a->ln1_mean + L * N, a->ln1_rstd + L * N,      a->qkv + L * N * 3 * C,
        a->att + L * att,        a->atty + L * N * C, a->res2 + L * N * C,      a->ln2 + L * N * C,
        a->ln2_mean + L * N,     a->ln2_rstd + L * N, a->fch + L * N * 4 * C,   a->fch_gelu + L * N * 4 * C,
        a->res3 + L * N * C,
    };
    return s;
}

static const float *layer_input(const gpt2_acts *a, int l) {
    return l == 0 ? a->encoded : layer_slice(a, l - 1).res3;
}

static gpt2_next_norm norm_after_block(const gpt2_model *m, gpt2_acts *a, int l) {
    const gpt2_config *c = &m->cfg;
    if (l + 1 < c->n_layer) {
        layer_acts n = layer_slice(a, l + 1);
        int w = gpt2_layer_tensor(l + 1, GPT2_L_LN1_W), b = gpt2_layer_tensor(l + 1, GPT2_L_LN1_B);
        return (gpt2_next_norm){n.ln1, n.ln1_mean, n.ln1_rstd, gpt2_cat(m, m->params, w),
                                gpt2_cat(m, m->params, b)};
    }
    int lnf = gpt2_lnf_weight(c);
    return (gpt2_next_norm){a->lnf, a->lnf_mean, a->lnf_rstd, gpt2_cat(m, m->params, lnf),
                            gpt2_cat(m, m->params, lnf + 1)};
}

void gpt2_block(const gpt2_model *m, int l, const float *x, const float *ln1, const gpt2_block_io *s,
                const gpt2_next_norm *next, int N, gpt2_attend_fn attend, void *attend_ctx) {
    const float *p = m->params;
    int C = m->cfg.n_embd;
#define W(k) gpt2_cat(m, p, gpt2_layer_tensor(l, GPT2_L_##k))
#define W16(k) gpt2_bf16_at(m, gpt2_layer_tensor(l, GPT2_L_##k))
    const cllm_kernel_table *k = m->kernels;
    linear_forward(k, s->qkv, ln1, W(ATTN_W), W16(ATTN_W), W(ATTN_B), N, C, 3 * C, LINEAR_W_IN_OUT);
    attend(attend_ctx, k, s->atty, s->qkv, l);
    linear_forward(k, s->res2, s->atty, W(APROJ_W), W16(APROJ_W), NULL, N, C, C, LINEAR_W_IN_OUT);
    residual_layernorm_forward(k, s->res2, s->ln2, s->ln2_mean, s->ln2_rstd, x, s->res2, W(APROJ_B), W(LN2_W),
                               W(LN2_B), N, C);
    linear_forward(k, s->fch, s->ln2, W(FC_W), W16(FC_W), NULL, N, C, 4 * C, LINEAR_W_IN_OUT);
    bias_gelu_forward(k, s->fch_gelu, s->fch, W(FC_B), N, 4 * C);
    linear_forward(k, s->res3, s->fch_gelu, W(MPROJ_W), W16(MPROJ_W), NULL, N, 4 * C, C, LINEAR_W_IN_OUT);
    residual_layernorm_forward(k, s->res3, next->out, next->mean, next->rstd, s->res2, s->res3, W(MPROJ_B),
                               next->weight, next->bias, N, C);
#undef W
#undef W16
}

/* Training's attention: every position of the batch over its prefix, the
 * probabilities kept in the arena for the backward pass. */
typedef struct {
    gpt2_acts *a;
    int B, T, n_head;
    attention_precision prec;
} batch_attention;

/* bf16 mode runs attention's products in bf16 too (fp32 accumulation). */
static attention_precision attention_prec(const gpt2_model *m) {
    return m->params_bf16 ? ATTENTION_BF16 : ATTENTION_FP32;
}

static void attend_batch(void *ctx, const cllm_kernel_table *k, float *atty, const float *qkv, int l) {
    const batch_attention *b = ctx;
    attention_forward(k, b->prec, atty, layer_slice(b->a, l).att, qkv, b->B, b->T, b->a->cfg.n_embd, b->n_head);
}

static void block_forward(const gpt2_model *m, gpt2_acts *a, int l, int B, int T) {
    layer_acts s = layer_slice(a, l);
    gpt2_block_io io = {s.qkv, s.atty, s.res2, s.ln2, s.ln2_mean, s.ln2_rstd, s.fch, s.fch_gelu, s.res3};
    gpt2_next_norm next = norm_after_block(m, a, l);
    batch_attention att = {a, B, T, m->cfg.n_head, attention_prec(m)};
    gpt2_block(m, l, layer_input(a, l), s.ln1, &io, &next, B * T, attend_batch, &att);
}

/* Out-of-range shapes or token ids would index outside the arena or wte; the
 * check costs N compares against a forward of N*C*C multiply-adds. */
static int forward_arguments_ok(const gpt2_config *c, const gpt2_acts *a, const int32_t *tokens,
                                const int32_t *targets, int B, int T) {
    if (B < 1 || B > a->max_batch || T < 1 || T > c->seq_len) {
        cllm_fail(CLLM_ERR_INTERNAL, "gpt2_forward: batch %dx%d outside the arena's %dx%d", B, T, a->max_batch,
                  c->seq_len);
        return 0;
    }
    for (int i = 0; i < B * T; i++) {
        int bad_token = tokens[i] < 0 || tokens[i] >= c->vocab_size;
        int bad_target = targets && (targets[i] < 0 || targets[i] >= c->vocab_size);
        if (bad_token || bad_target) {
            cllm_fail(CLLM_ERR_INPUT, "gpt2_forward: token id outside the vocabulary (0..%d)", c->vocab_size - 1);
            return 0;
        }
    }
    return 1;
}

float gpt2_forward(const gpt2_model *m, gpt2_acts *a, const int32_t *tokens, const int32_t *targets, int B, int T) {
    const gpt2_config *c = &m->cfg;
    const float *p = m->params;
    int C = c->n_embd, V = c->vocab_size, N = B * T;
    a->has_targets = 0;
    if (!forward_arguments_ok(c, a, tokens, targets, B, T)) return NAN;
    a->B = B;
    a->T = T;
    a->has_targets = targets != NULL;
    memcpy(a->tokens, tokens, (size_t)N * sizeof(int32_t));
    if (targets) memcpy(a->targets, targets, (size_t)N * sizeof(int32_t));

    embedding_forward(a->encoded, a->tokens, gpt2_cat(m, p, GPT2_T_WTE), gpt2_cat(m, p, GPT2_T_WPE), B, T, C);
    layer_acts first = layer_slice(a, 0);
    layernorm_forward(m->kernels, first.ln1, first.ln1_mean, first.ln1_rstd, a->encoded,
                      gpt2_cat(m, p, gpt2_layer_tensor(0, GPT2_L_LN1_W)),
                      gpt2_cat(m, p, gpt2_layer_tensor(0, GPT2_L_LN1_B)), N, C);
    for (int l = 0; l < c->n_layer; l++) block_forward(m, a, l, B, T); /* the last one also fills ln_f */
    /* The LM head is wte itself: logits = lnf · wteᵀ. */
    linear_forward(m->kernels, a->logits, a->lnf, gpt2_cat(m, p, GPT2_T_WTE), gpt2_bf16_at(m, GPT2_T_WTE), NULL, N,
                   C, V, LINEAR_W_OUT_IN);
    if (!targets) return 0.0f;
    softmax_crossentropy_forward(m->kernels, a->losses, a->lse, a->logits, a->targets, N, V);
    double sum = 0.0; /* double: the mean of many positions should not lose digits */
    for (int i = 0; i < N; i++) sum += a->losses[i];
    return (float)(sum / N);
}

/* ---------------------------------------------------------------- backward */

static void zero(float *p, size_t n) { memset(p, 0, n * sizeof(float)); }

typedef void (*linear_fn)(const cllm_kernel_table *, float *, float *, float *, const float *, const float *,
                          const float *, const uint16_t *, int, int, int, linear_layout);
typedef void (*layernorm_fn)(const cllm_kernel_table *, float *, float *, float *, const float *, const float *,
                             const float *, const float *, const float *, int, int);

/* On entry a->dres holds dL/d(block output); on exit dL/d(block input). The
 * skip connections need no code: layernorm_backward accumulates the branch's
 * gradient onto the stream gradient already in dres (what a residual
 * backward with da aliased to dres would add). */
static void block_backward(const gpt2_model *m, gpt2_acts *a, float *grads, int l, int write) {
    const float *p = m->params;
    int C = m->cfg.n_embd, B = a->B, T = a->T, N = B * T;
    layer_acts s = layer_slice(a, l);
    const float *x = layer_input(a, l);
#define W(k) gpt2_cat(m, p, gpt2_layer_tensor(l, GPT2_L_##k))
#define G(k) gpt2_at(m, grads, gpt2_layer_tensor(l, GPT2_L_##k))
#define W16(k) gpt2_bf16_at(m, gpt2_layer_tensor(l, GPT2_L_##k))
    /* Each scratch gradient is written by the first layer that produces it
     * (the *_overwrite variants), so none needs zeroing first. */
    linear_fn linear = write ? linear_backward_write : linear_backward_overwrite;
    layernorm_fn layernorm = write ? layernorm_backward_write : layernorm_backward;
    const cllm_kernel_table *k = m->kernels;
    linear(k, a->dfch_gelu, G(MPROJ_W), G(MPROJ_B), a->dres, s.fch_gelu, W(MPROJ_W), W16(MPROJ_W), N, 4 * C, C,
           LINEAR_W_IN_OUT);
    /* c_fc's bias gradient is summed by the GELU backward as it writes each
     * row (same adds, same order), not by the product in a pass over dfch. */
    if (write) zero(G(FC_B), (size_t)4 * C);
    gelu_backward_overwrite_bias_sums(k, a->dfch, G(FC_B), s.fch, a->dfch_gelu, N, 4 * C);
    linear(k, a->dln, G(FC_W), NULL, a->dfch, s.ln2, W(FC_W), W16(FC_W), N, C, 4 * C, LINEAR_W_IN_OUT);
    layernorm(k, a->dres, G(LN2_W), G(LN2_B), a->dln, s.res2, W(LN2_W), s.ln2_mean, s.ln2_rstd, N, C);

    linear(k, a->datty, G(APROJ_W), G(APROJ_B), a->dres, s.atty, W(APROJ_W), W16(APROJ_W), N, C, C,
           LINEAR_W_IN_OUT);
    attention_backward_overwrite(k, attention_prec(m), a->dqkv, a->datt, a->slots, a->datty, s.qkv, s.att, B, T, C,
                                 m->cfg.n_head);
    linear(k, a->dln, G(ATTN_W), G(ATTN_B), a->dqkv, s.ln1, W(ATTN_W), W16(ATTN_W), N, C, 3 * C,
           LINEAR_W_IN_OUT);
    layernorm(k, a->dres, G(LN1_W), G(LN1_B), a->dln, x, W(LN1_W), s.ln1_mean, s.ln1_rstd, N, C);
#undef W
#undef G
#undef W16
}

/* What a written gradient buffer must still get beyond the layers: zeros in
 * the alignment padding (so garbage never reaches the norm or AdamW) and in
 * the wpe rows of positions this forward did not reach. */
static void zero_untouched(const gpt2_model *m, float *grads, int T) {
    for (int i = 0; i < m->n_tensors; i++) {
        const gpt2_tensor *t = &m->tensors[i];
        size_t end = t->offset + t->numel;
        size_t next = i + 1 < m->n_tensors ? m->tensors[i + 1].offset : m->n_params;
        zero(grads + end, next - end);
    }
    int C = m->cfg.n_embd;
    zero(gpt2_at(m, grads, GPT2_T_WPE) + (size_t)T * C, (size_t)(m->cfg.seq_len - T) * C);
}

static void backward(const gpt2_model *m, gpt2_acts *a, float *grads, float loss_scale, int write) {
    const gpt2_config *c = &m->cfg;
    const float *p = m->params;
    int C = c->n_embd, V = c->vocab_size, B = a->B, T = a->T, N = B * T;
    if (!a->has_targets) { /* no loss, nothing to differentiate: a zero gradient */
        if (write) zero(grads, m->n_params);
        return;
    }

    float *dlogits = a->logits; /* in place: the logits are not needed after this */
    softmax_crossentropy_backward(m->kernels, dlogits, a->logits, a->lse, a->targets, loss_scale / (float)N, N, V);
    /* wte's first contribution (the LM head) writes it; the embedding adds. */
    (write ? linear_backward_write : linear_backward_overwrite)(m->kernels, a->dln, gpt2_at(m, grads, GPT2_T_WTE),
                                                                NULL, dlogits, a->lnf, gpt2_cat(m, p, GPT2_T_WTE),
                                                                gpt2_bf16_at(m, GPT2_T_WTE), N, C, V, LINEAR_W_OUT_IN);
    int lnf = gpt2_lnf_weight(c);
    zero(a->dres, (size_t)N * C);
    (write ? layernorm_backward_write : layernorm_backward)(m->kernels, a->dres, gpt2_at(m, grads, lnf),
                                                            gpt2_at(m, grads, lnf + 1), a->dln,
                                                            layer_input(a, c->n_layer), gpt2_cat(m, p, lnf),
                                                            a->lnf_mean, a->lnf_rstd, N, C);
    for (int l = c->n_layer - 1; l >= 0; l--) block_backward(m, a, grads, l, write);
    float *dwte = gpt2_at(m, grads, GPT2_T_WTE), *dwpe = gpt2_at(m, grads, GPT2_T_WPE);
    if (write) {
        embedding_backward_write_wpe(dwte, dwpe, a->dres, a->tokens, B, T, C);
        zero_untouched(m, grads, T);
    } else {
        embedding_backward(dwte, dwpe, a->dres, a->tokens, B, T, C);
    }
    a->has_targets = 0; /* the logits now hold gradients; a second backward would be wrong */
}

void gpt2_backward(const gpt2_model *m, gpt2_acts *a, float *grads, float loss_scale) {
    backward(m, a, grads, loss_scale, 0);
}

void gpt2_backward_overwrite(const gpt2_model *m, gpt2_acts *a, float *grads, float loss_scale) {
    backward(m, a, grads, loss_scale, 1);
}
