/* The GPT-2 model: configuration, one flat parameter buffer described by a
 * table of named tensors, forward and backward over a micro-batch, and
 * KV-cached single-token inference.
 *
 * Names and shapes follow Hugging Face GPT-2 exactly, so a checkpoint can be
 * written straight from the buffer:
 *   transformer.wte.weight [V,C], transformer.wpe.weight [T,C],
 *   transformer.h.{i}.ln_1.weight [C], .ln_1.bias [C],
 *   .attn.c_attn.weight [C,3C] (Conv1D layout [in,out]), .attn.c_attn.bias [3C],
 *   .attn.c_proj.weight [C,C], .attn.c_proj.bias [C], .ln_2.weight/.bias [C],
 *   .mlp.c_fc.weight [C,4C], .mlp.c_fc.bias [4C], .mlp.c_proj.weight [4C,C],
 *   .mlp.c_proj.bias [C], transformer.ln_f.weight/.bias [C].
 * The LM head is tied to wte (logits = x · wteᵀ), not a separate tensor.
 *
 * Thread safety: forward/backward take a const model and touch only the
 * caller's activation arena and gradient buffer, so many threads may run
 * their own sequences at once. There is no global state. Each of those
 * threads may lead a team (nested OpenMP, include/cllm/nn/team.h): the
 * layers split one forward or backward over the calling thread's team, with
 * the same bits as on one thread. Which sequences run where is the engine's
 * job. The arithmetic is the kernel table's the model carries
 * (gpt2_model.kernels). */
#ifndef CLLM_MODELS_GPT2_H
#define CLLM_MODELS_GPT2_H

#include <stddef.h>
#include <stdint.h>

#include "cllm/base/common.h"
#include "cllm/kernels/kernels.h"

typedef struct {
    int n_layer, n_head, n_embd;
    int seq_len; /* = n_positions: the longest sequence the model accepts */
    int vocab_size;
} gpt2_config;

typedef struct {
    char name[64];
    int ndim;         /* 1 or 2 */
    int64_t shape[2]; /* shape[1] unused (0) when ndim == 1 */
    size_t offset;    /* in floats from the start of the flat buffer; multiple of 16 */
    size_t numel;
    int no_decay;     /* 1 for biases, LayerNorm weights, wte and wpe: AdamW skips decay */
} gpt2_tensor;

typedef struct {
    gpt2_config cfg;
    gpt2_tensor *tensors;
    int n_tensors;
    size_t n_params; /* floats in the flat buffer, including alignment padding (always 0) */
    float *params;   /* one 64-byte-aligned buffer of n_params floats */
    /* The kernels forward, backward and the KV step run on: the best table
     * for this CPU after gpt2_create, replaced with gpt2_use_kernels. */
    const cllm_kernel_table *kernels;
    /* bf16 mode (gpt2_use_bf16): params rounded to bf16 (cllm_bf16_from_f32),
     * n_params values at the same offsets, which every linear layer's
     * products read (include/cllm/nn/layers.h); params stays the fp32 master
     * copy the optimizer updates and checkpoints store. NULL: fp32 mode. */
    uint16_t *params_bf16;
} gpt2_model;

/* All sizes > 0, n_embd % n_head == 0, and small enough that every size fits
 * in int and the buffers in memory. CLLM_ERR_INPUT with a message otherwise. */
cllm_status gpt2_config_validate(const gpt2_config *cfg);

/* Validates cfg, builds the tensor table and allocates params (zeroed).
 * On failure *m is left empty (safe to gpt2_destroy). */
cllm_status gpt2_create(gpt2_model *m, const gpt2_config *cfg);

/* gpt2_create in two halves, so a loader can check a file against the
 * tensor table (names, shapes, n_params) before committing memory to the
 * parameters: gpt2_describe validates cfg and builds the table with params
 * NULL; gpt2_alloc_params then allocates them (zeroed). On failure of either,
 * *m is left empty. */
cllm_status gpt2_describe(gpt2_model *m, const gpt2_config *cfg);
cllm_status gpt2_alloc_params(gpt2_model *m);

/* The number of real parameters cfg describes, in double so that any
 * positive sizes (even ones gpt2_config_validate refuses) give a finite
 * figure: for memory checks before anything is allocated. Equals
 * gpt2_num_parameters of the created model. */
double gpt2_param_count_estimate(const gpt2_config *cfg);

/* GPT-2 initialization from the seed, identical on every machine: weights and
 * embeddings normal(0, 0.02), residual projections (attn.c_proj.weight,
 * mlp.c_proj.weight) normal(0, 0.02/sqrt(2*n_layer)), biases 0, LayerNorm
 * weight 1 and bias 0. Tensors are filled in table order from one stream. */
void gpt2_init_weights(gpt2_model *m, uint64_t seed);

/* Runs m on another kernel table (e.g. the one CLLM_SIMD names); NULL keeps
 * the current one. Results differ between tables only by rounding. */
void gpt2_use_kernels(gpt2_model *m, const cllm_kernel_table *kernels);

/* Precision of the matrix products: on != 0 allocates params_bf16 and
 * fills it from params (bf16 mode), 0 frees it (fp32 mode). */
cllm_status gpt2_use_bf16(gpt2_model *m, int on);
/* Re-rounds params[begin, end) into params_bf16 after params changed there
 * (the optimizer's owner threads call it on the range they updated, each on
 * its own range); nothing in fp32 mode. gpt2_init_weights refreshes all. */
void gpt2_refresh_bf16(gpt2_model *m, size_t begin, size_t end);

/* NULL if no tensor has that name. */
const gpt2_tensor *gpt2_find_tensor(const gpt2_model *m, const char *name);

/* Frees the table and the buffer; *m becomes empty. NULL-safe. */
void gpt2_destroy(gpt2_model *m);

/* Number of real parameters (the sum of numel, without alignment padding). */
size_t gpt2_num_parameters(const gpt2_model *m);

/* Training FLOPs (forward + backward) per token, for MFU, at full context T:
 *   6 * N_matmul  +  12 * n_layer * T * C
 * where N_matmul = n_layer * 12 * C^2 (c_attn, c_proj, c_fc, mlp c_proj weights)
 * + V * C (tied LM head). Each weight costs 2 FLOPs per token forward and 4
 * backward (dX and dW); attention scores and the weighted sum are 2*T*C each
 * forward per layer per token, tripled for the backward. Embedding lookups,
 * LayerNorm, GELU and softmax are ignored, and attention is counted over the
 * full T x T square although the causal half is mostly skipped (both as in the
 * PaLM / nanoGPT count, so MFU figures compare with theirs). */
double gpt2_flops_per_token(const gpt2_config *cfg);

/* Activation arena for up to max_batch sequences of cfg.seq_len tokens,
 * allocated once; forward and backward allocate nothing. NULL on OOM or bad
 * arguments (message set). */
typedef struct gpt2_acts gpt2_acts;
gpt2_acts *gpt2_acts_create(const gpt2_config *cfg, int max_batch);
/* The same for a team of up to `team` threads sharing the arena (one T x T
 * attention-backward scratch each; gpt2_acts_create has one, so its backward
 * attention runs on one thread). */
gpt2_acts *gpt2_acts_create_team(const gpt2_config *cfg, int max_batch, int team);
void gpt2_acts_destroy(gpt2_acts *a);
/* Bytes the arena holds (for memory reports). */
size_t gpt2_acts_bytes(const gpt2_acts *a);
/* The bytes gpt2_acts_create(cfg, max_batch) would allocate, in double (no
 * overflow for any positive sizes) and without the 64-byte rounding of each
 * array: for memory checks before allocating. */
double gpt2_acts_bytes_estimate(const gpt2_config *cfg, int max_batch);

/* Forward over B sequences of T <= seq_len tokens (tokens[B*T], row-major),
 * B <= max_batch. targets (same shape) may be NULL: no loss. Returns the mean
 * cross-entropy over the B*T positions, or 0 when targets == NULL. A shape
 * outside the arena or a token id outside [0, V) computes nothing and returns
 * NaN with a message (cllm_last_error). No allocation. */
float gpt2_forward(const gpt2_model *m, gpt2_acts *a, const int32_t *tokens, const int32_t *targets, int B,
                   int T);

/* [B*T, V] logits of the last forward, valid until gpt2_backward (which
 * reuses that memory for the logits' gradient) or the next forward. */
const float *gpt2_logits(const gpt2_acts *a);

/* Backward of (loss_scale * mean loss) of the last forward, which must have had
 * targets. ACCUMULATES (+=) into grads (n_params floats, same layout as params),
 * so a caller sums micro-batches by passing loss_scale = 1/(micro-batches).
 * One backward per forward (a second call does nothing); the arena's own
 * scratch is used, nothing is allocated. */
void gpt2_backward(const gpt2_model *m, gpt2_acts *a, float *grads, float loss_scale);
/* The same, but WRITES every element of grads instead of adding to it: each
 * parameter gradient is written by the first product or sum that produces it
 * (dW products with beta = 0, bias and LayerNorm gradients, wte's LM-head
 * contribution, then the embedding's added; wpe written), and the alignment
 * padding and the wpe rows beyond this forward's T are set to zero. grads may
 * hold anything on entry (NaNs included), so a caller that would zero it only
 * to accumulate one backward into it can skip the zeroing. The result equals
 * zeroing + gpt2_backward bit for bit (same operations in the same order; a
 * first term of -0 stays -0 here where 0 + -0 gives +0 there, a difference
 * == does not see). Without a loss to differentiate (no targets, a second
 * call, a failed forward) it writes zeros, as zeroing + gpt2_backward gives. */
void gpt2_backward_overwrite(const gpt2_model *m, gpt2_acts *a, float *grads, float loss_scale);

/* Inference with a KV cache: generating n tokens costs n single-token layer
 * passes, each attending over the cached keys and values. */
typedef struct gpt2_kv gpt2_kv;
gpt2_kv *gpt2_kv_create(const gpt2_config *cfg); /* NULL on OOM (message set) */
void gpt2_kv_reset(gpt2_kv *kv);
/* Feeds one token at position gpt2_kv_length(kv). Returns logits[V], valid
 * until the next call; NULL (CLLM_ERR_INPUT, message set) when the cache is
 * full (length == seq_len: the caller resets and re-feeds a window) or the
 * token is outside [0, V). */
const float *gpt2_kv_step(const gpt2_model *m, gpt2_kv *kv, int32_t token);
int gpt2_kv_length(const gpt2_kv *kv);
void gpt2_kv_destroy(gpt2_kv *kv);

#endif
