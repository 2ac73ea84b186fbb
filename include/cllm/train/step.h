/* One optimizer step of training, as the trainer runs it and as
 * `cllm bench step` times it: micro-batches of windows from a source,
 * forward and backward on the engine's workers, the fixed-order reduction,
 * global-norm clipping, and AdamW over precomputed owned spans.
 *
 * The step owns what only training needs: per-thread activations and token
 * buffers, the AdamW moments, the engine and its spans. The model (the
 * parameters it updates in place) and the data belong to the caller. */
#ifndef CLLM_TRAIN_STEP_H
#define CLLM_TRAIN_STEP_H

#include <stddef.h>
#include <stdint.h>

#include "cllm/base/common.h"
#include "cllm/models/gpt2.h"
#include "cllm/dist/engine.h"
#include "cllm/kernels/kernels.h"

/* Writes sequence `index` of the stream: T inputs and their T targets. */
typedef void (*cllm_window_fn)(void *ctx, uint64_t index, int32_t *inputs, int32_t *targets);

typedef struct {
    gpt2_model *model;            /* its parameters are updated in place; its kernel table runs the step */
    int micro;                    /* sequences per micro-batch */
    int n_micro;                  /* micro-batches per step */
    double clip;                  /* global-norm threshold; 0: off */
    double weight_decay;
    cllm_window_fn window;
    void *window_ctx;
    /* engine tuning (from the environment, read by the caller) */
    int segments_per_thread, streaming, buffer_window;
    /* The team shape (cllm_engine_config.teams); 0, 0: cllm_step_team_default. */
    int teams, team_threads;
    /* the job's ranks (NULL: this process alone); each rank computes its
     * block of the micro-batches and updates the span it owns */
    const cllm_comm *comm;
} cllm_step_config;

typedef struct {
    double loss;      /* mean micro-batch loss, added in index order */
    double grad_norm; /* of the whole step's gradient, before clipping */
    int skipped;      /* the norm was not finite: no update was applied */
    cllm_engine_stats engine;
} cllm_step_result;

typedef struct cllm_step cllm_step;

cllm_status cllm_step_create(const cllm_step_config *c, cllm_step **out);
void cllm_step_free(cllm_step *s);

/* Optimizer step number `step` (1-based, for AdamW's bias correction) at
 * learning rate lr, over the sequences window_base, window_base + 1, ...
 * A worker's failure is returned as its own status and message, with no
 * update applied. */
cllm_status cllm_step_run(cllm_step *s, int64_t step, double lr, uint64_t window_base, cllm_step_result *r);

/* The AdamW moments (which 0: m, 1: v) of the span this rank owns
 * (cllm_step_owned; every parameter with one rank), in the model's layout:
 * element i of the array is parameter begin + i. */
float *cllm_step_moment(cllm_step *s, int which);
void cllm_step_owned(const cllm_step *s, size_t *begin, size_t *end);
/* This rank's micro-batches of each step: [first, first + n). */
void cllm_step_block(const cllm_step *s, int *first_micro, int *n_micro);
/* Bytes of AdamW moments this rank holds: 8 per owned parameter. */
size_t cllm_step_optimizer_bytes(const cllm_step *s);
/* The worker count, the engine's: the one every per-thread array is sized by. */
int cllm_step_threads(const cllm_step *s);
/* Threads in each worker's team (1: flat). */
int cllm_step_team_threads(const cllm_step *s);

/* The default team shape for `threads` OpenMP threads: the most teams (one
 * micro-batch each at a time, a gradient buffer each) that
 *  - divide the threads evenly (teams x team_threads = threads),
 *  - are not more than the step's micro-batches (a worker beyond those would
 *    idle; its threads do better in a team), and
 *  - fit, with their gradient buffers (cllm_engine_pool_buffers) and
 *    activation arenas, beside the model and AdamW's moments in 3/4 of
 *    `memory_available` bytes (0: unknown, no limit);
 * one team of all threads when none fits. Any shape gives the same bits. */
void cllm_step_team_default(const gpt2_config *cfg, int micro, int n_micro, int window, int threads,
                            double memory_available, int *teams, int *team_threads);
size_t cllm_step_buffer_bytes(const cllm_step *s);
/* Gradient buffers in the engine's pool. */
int cllm_step_buffers(const cllm_step *s);
/* Thread th's activation arena (micro sequences) and token buffers, free
 * between steps (evaluation uses them). */
void cllm_step_scratch(cllm_step *s, int th, gpt2_acts **acts, int32_t **inputs, int32_t **targets);

/* The factor global-norm clipping multiplies the gradient by: clip / norm
 * when the norm exceeds clip > 0, else 1; 0 for a non-finite norm. */
float cllm_clip_factor(double grad_norm, double clip);


#endif
