/* Token sampling and KV-cached generation (see include/cllm/train/sampler.h). */
#include "cllm/train/sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

cllm_status cllm_sampler_init(cllm_sampler *s, int V) {
    memset(s, 0, sizeof *s);
    if (V <= 0) return cllm_fail(CLLM_ERR_INTERNAL, "sampler: vocabulary size %d", V);
    s->V = V;
    s->probs = malloc((size_t)V * sizeof *s->probs);
    s->sorted = malloc((size_t)V * sizeof *s->sorted);
    if (!s->probs || !s->sorted) {
        cllm_sampler_free(s);
        return cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
    }
    return CLLM_OK;
}

void cllm_sampler_free(cllm_sampler *s) {
    free(s->probs);
    free(s->sorted);
    memset(s, 0, sizeof *s);
}

static int32_t argmax(const float *x, int n) {
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* Sorting by probability descending, then id ascending, gives one order for
 * every input (qsort is not stable, so the tie-break must be explicit). */
static int by_prob_desc(const void *a, const void *b) {
    const cllm_sample_candidate *x = a, *y = b;
    if (x->prob != y->prob) return x->prob > y->prob ? -1 : 1;
    return x->id < y->id ? -1 : (x->id > y->id);
}

/* Unnormalised softmax at the given temperature; returns the sum. */
static double exp_scaled(const float *logits, int V, float temperature, float *probs) {
    float mx = logits[argmax(logits, V)];
    double sum = 0.0;
    for (int i = 0; i < V; i++) {
        probs[i] = expf((logits[i] - mx) / temperature);
        sum += probs[i];
    }
    return sum;
}

/* Number of leading candidates to keep under top-k, then top-p. */
static int nucleus_size(const cllm_sample_candidate *c, int V, int top_k, float top_p) {
    int keep = (top_k > 0 && top_k < V) ? top_k : V;
    if (top_p < 1.0f) {
        double kept_sum = 0.0;
        for (int i = 0; i < keep; i++) kept_sum += c[i].prob;
        double target = (double)top_p * kept_sum, acc = 0.0;
        int n = 0;
        while (n < keep) {
            acc += c[n++].prob;
            if (acc >= target) break;
        }
        keep = n;
    }
    return keep;
}

/* One uniform draw over the cumulative sums, in the given order. */
static int32_t draw_unsorted(const float *probs, int n, double total, cllm_rng *rng) {
    double u = (double)cllm_rng_uniform(rng) * total, acc = 0.0;
    int32_t last = 0;
    for (int i = 0; i < n; i++) {
        acc += probs[i];
        if (probs[i] > 0) last = i;
        if (u < acc) return i;
    }
    return last; /* rounding can leave u just above the final sum */
}

static int32_t draw_sorted(const cllm_sample_candidate *c, int n, double total, cllm_rng *rng) {
    double u = (double)cllm_rng_uniform(rng) * total, acc = 0.0;
    for (int i = 0; i < n; i++) {
        acc += c[i].prob;
        if (u < acc) return c[i].id;
    }
    return c[n - 1].id;
}

int32_t cllm_sampler_next(cllm_sampler *s, const float *logits, const cllm_sample_settings *set, cllm_rng *rng) {
    int V = s->V;
    if (set->temperature <= 0.0f || set->top_k == 1) return argmax(logits, V);
    double sum = exp_scaled(logits, V, set->temperature, s->probs);
    int filtered = (set->top_k > 0 && set->top_k < V) || set->top_p < 1.0f;
    if (!filtered) return draw_unsorted(s->probs, V, sum, rng);
    for (int i = 0; i < V; i++) s->sorted[i] = (cllm_sample_candidate){s->probs[i], i};
    qsort(s->sorted, (size_t)V, sizeof *s->sorted, by_prob_desc);
    int keep = nucleus_size(s->sorted, V, set->top_k, set->top_p);
    double kept = 0.0;
    for (int i = 0; i < keep; i++) kept += s->sorted[i].prob;
    return draw_sorted(s->sorted, keep, kept, rng);
}

int32_t cllm_sample_next(const float *logits, int V, float temperature, int top_k, float top_p, cllm_rng *rng) {
    cllm_sampler s;
    if (cllm_sampler_init(&s, V) != CLLM_OK) return -1;
    cllm_sample_settings set = {temperature, top_k, top_p};
    int32_t id = cllm_sampler_next(&s, logits, &set, rng);
    cllm_sampler_free(&s);
    return id;
}

/* ---- generation ---------------------------------------------------------------- */

typedef struct {
    const gpt2_model *m;
    gpt2_kv *kv;
    int32_t *ctx; /* the tokens in the cache, in order */
    int n_ctx;
    const float *logits;
} context;

/* Feeds one token, first sliding the window if the cache is full. */
static void feed(context *c, int32_t token) {
    int T = c->m->cfg.seq_len;
    if (c->n_ctx == T) {
        int keep = T / 2;
        memmove(c->ctx, c->ctx + (T - keep), (size_t)keep * sizeof *c->ctx);
        c->n_ctx = keep;
        gpt2_kv_reset(c->kv);
        for (int i = 0; i < keep; i++) gpt2_kv_step(c->m, c->kv, c->ctx[i]);
    }
    c->ctx[c->n_ctx++] = token;
    c->logits = gpt2_kv_step(c->m, c->kv, token);
}

cllm_status cllm_generate(const gpt2_model *m, const int32_t *prompt, int n_prompt, int n_new,
                          const cllm_sample_settings *set, cllm_rng *rng, cllm_token_fn on_token, void *user,
                          int32_t *out) {
    const gpt2_config *cfg = &m->cfg;
    if (n_prompt < 1) return cllm_fail(CLLM_ERR_INPUT, "generation needs at least one prompt token");
    for (int i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= cfg->vocab_size)
            return cllm_fail(CLLM_ERR_INPUT, "prompt token %d is outside the vocabulary", (int)prompt[i]);
    context c = {m, gpt2_kv_create(cfg), malloc((size_t)cfg->seq_len * sizeof(int32_t)), 0, NULL};
    cllm_sampler s;
    cllm_status st = c.kv && c.ctx ? cllm_sampler_init(&s, cfg->vocab_size) : cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
    if (st != CLLM_OK) {
        gpt2_kv_destroy(c.kv);
        free(c.ctx);
        return st;
    }
    for (int i = 0; i < n_prompt; i++) feed(&c, prompt[i]);
    for (int i = 0; i < n_new; i++) {
        if (cllm_first_non_finite(c.logits, (size_t)cfg->vocab_size) < (size_t)cfg->vocab_size) {
            /* Finite weights can still overflow the forward pass (a diverged
             * run); NaN logits would make every draw token 0, a NUL byte. */
            st = cllm_fail(CLLM_ERR_INPUT,
                           "the model's logits are not finite after %d generated token(s): its weights overflow "
                           "the forward pass (a diverged run?)", i);
            break;
        }
        int32_t tok = cllm_sampler_next(&s, c.logits, set, rng);
        if (out) out[i] = tok;
        if (on_token && on_token(tok, user)) break;
        if (i + 1 < n_new) feed(&c, tok);
    }
    cllm_sampler_free(&s);
    gpt2_kv_destroy(c.kv);
    free(c.ctx);
    return st;
}

typedef struct {
    const cllm_tokenizer *t;
    FILE *out;
    int failed;
} stream_ctx;

static int stream_token(int32_t token, void *user) {
    stream_ctx *s = user;
    size_t len = 0;
    const uint8_t *bytes = cllm_tokenizer_token_bytes(s->t, token, &len);
    if (bytes && len && fwrite(bytes, 1, len, s->out) != len) s->failed = 1;
    if (fflush(s->out) != 0) s->failed = 1;
    return s->failed; /* a closed pipe ends generation early */
}

cllm_status cllm_sample_to_stream(const gpt2_model *m, const cllm_tokenizer *t, const char *prompt, int n_tokens,
                                  const cllm_sample_settings *set, uint64_t seed, FILE *out) {
    int32_t eot = cllm_tokenizer_eot(t);
    int32_t *ids = NULL;
    size_t n_ids = 0;
    if (prompt && *prompt) {
        cllm_status st = cllm_tokenizer_encode(t, (const uint8_t *)prompt, strlen(prompt), &ids, &n_ids);
        if (st != CLLM_OK) return st;
        fputs(prompt, out);
    }
    if (n_ids == 0) {
        free(ids);
        ids = malloc(sizeof *ids);
        if (!ids) return cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
        ids[0] = eot;
        n_ids = 1;
    }
    if (n_ids > (size_t)INT32_MAX) {
        free(ids);
        return cllm_fail(CLLM_ERR_INPUT, "prompt too long");
    }
    cllm_rng rng;
    cllm_rng_seed(&rng, seed);
    stream_ctx ctx = {t, out, 0};
    cllm_status st = cllm_generate(m, ids, (int)n_ids, n_tokens, set, &rng, stream_token, &ctx, NULL);
    free(ids);
    return st;
}
