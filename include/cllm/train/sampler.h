/* Choosing the next token from logits, and generating text with the KV cache.
 *
 * Sampling order: temperature scales the logits (0 = greedy argmax, the
 * lowest id on ties); top-k keeps the k most likely tokens (0 = off); top-p
 * keeps the smallest set of most likely tokens whose probability reaches p
 * (1 = off); one uniform draw from the RNG then picks within what is left.
 * The result depends only on the logits, the settings and the RNG state. */
#ifndef CLLM_TRAIN_SAMPLER_H
#define CLLM_TRAIN_SAMPLER_H

#include <stdint.h>
#include <stdio.h>

#include "cllm/base/common.h"
#include "cllm/data/tokenizer.h"
#include "cllm/models/gpt2.h"
#include "cllm/base/rng.h"

typedef struct {
    float temperature; /* >= 0; 0 = greedy */
    int top_k;         /* >= 0; 0 = off */
    float top_p;       /* (0, 1]; 1 = off */
} cllm_sample_settings;

/* Scratch for V-sized sorting, so a generation loop allocates once. */
typedef struct {
    float prob;
    int32_t id;
} cllm_sample_candidate;

typedef struct {
    int V;
    float *probs;
    cllm_sample_candidate *sorted;
} cllm_sampler;

cllm_status cllm_sampler_init(cllm_sampler *s, int V);
void cllm_sampler_free(cllm_sampler *s);
int32_t cllm_sampler_next(cllm_sampler *s, const float *logits, const cllm_sample_settings *set, cllm_rng *rng);

/* One-shot convenience (allocates scratch per call; -1 on OOM). */
int32_t cllm_sample_next(const float *logits, int V, float temperature, int top_k, float top_p, cllm_rng *rng);

/* Called for every generated token; return nonzero to stop early. */
typedef int (*cllm_token_fn)(int32_t token, void *user);

/* Feeds the prompt (n_prompt >= 1 tokens; callers with no prompt pass the
 * end-of-text id) through the KV cache, then generates n_new tokens, calling
 * on_token for each as soon as it is chosen, and storing them in out (may be
 * NULL; else n_new slots).
 *
 * Context sliding: the model sees at most seq_len tokens. When the cache is
 * full and another token must be fed, the cache restarts from the last
 * seq_len/2 tokens of the context (re-fed one by one), so generation can run
 * for any length at a cost of seq_len/2 extra steps every seq_len/2 tokens.
 * A prompt longer than the context is handled the same way. Logits that are
 * not finite (finite weights so large that the forward pass overflows) stop
 * generation with CLLM_ERR_INPUT before a token is drawn from them. */
cllm_status cllm_generate(const gpt2_model *m, const int32_t *prompt, int n_prompt, int n_new,
                          const cllm_sample_settings *set, cllm_rng *rng, cllm_token_fn on_token, void *user,
                          int32_t *out);

/* Text in, text out: encodes prompt (NULL or "" = start from the end-of-text
 * token, as at a document boundary), writes the prompt, then streams each
 * generated token's bytes to out with a flush as it is produced. The RNG is
 * seeded from seed, so the same seed gives the same text. Generated
 * end-of-text tokens print nothing. */
cllm_status cllm_sample_to_stream(const gpt2_model *m, const cllm_tokenizer *t, const char *prompt, int n_tokens,
                                  const cllm_sample_settings *set, uint64_t seed, FILE *out);

#endif
