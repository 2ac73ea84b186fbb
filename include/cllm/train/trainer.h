/* The training loop behind `cllm train`: data, model, engine, AdamW,
 * schedule, evaluation, checkpoints with exact resume, progress and metrics.
 *
 * A run folder holds everything needed to continue or use a run:
 *   config.json, model.safetensors, tokenizer.bin   (checkpoint helper's API)
 *   optimizer.safetensors   AdamW m and v (F32, one tensor each over the flat
 *                           buffer), step, data-loader window index, RNG state
 *                           (U64), and the step in "__metadata__"
 *   run.json                every setting (see cllm_train_options), data paths
 *                           made absolute or "builtin", corpus size and hash
 *   metrics.jsonl           one JSON object per step
 *   loss.png                at the end
 * model.safetensors records the step too ("__metadata__" key "step"); resume
 * refuses a model/optimizer pair whose steps differ. */
#ifndef CLLM_TRAIN_TRAINER_H
#define CLLM_TRAIN_TRAINER_H

#include <stddef.h>
#include <stdint.h>

#include "cllm/common.h"
#include "cllm/model/gpt2.h"

typedef struct {
    /* data: n_data == 0 means the built-in corpus */
    char **data_paths;
    int n_data;
    double val_fraction;
    /* model */
    gpt2_config model;
    /* batch: one optimizer step sees batch * grad_accum sequences, computed as
     * (batch / micro) * grad_accum micro-batches of `micro` sequences */
    int batch, micro, grad_accum;
    /* budget: exactly one of these is > 0 */
    int64_t steps;
    double epochs;
    int64_t tokens;
    int64_t stop_after; /* 0: run the whole budget */
    /* optimizer */
    double lr, min_lr, weight_decay, clip; /* clip 0: off */
    int64_t warmup; /* < 0: 5% of the budget, at most 100 steps */
    uint64_t seed;
    /* cadence, in steps; 0 = never (eval, save and sample still happen at the end) */
    int64_t eval_every, sample_every, save_every, log_every;
    int sample_tokens; /* tokens of the final sample */
    const char *out_dir;
    int quiet, verbose;
    /* The kernels the model and the engine run on (the CLI passes the table
     * CLLM_SIMD names); NULL: cllm_kernel_table_best(). Not in run.json: it
     * belongs to the machine, not to the run. */
    const cllm_kernel_table *kernels;
} cllm_train_options;

typedef struct {
    int64_t steps_done;     /* optimizer steps completed at exit */
    int64_t total_steps;    /* the budget in steps */
    double final_loss;      /* last step's training loss */
    double final_val_loss;  /* NAN if there is no validation split */
    double unigram_entropy; /* nats/token of the training split */
    double tokens_per_s;    /* over the whole run */
    int interrupted;        /* stopped by SIGINT/SIGTERM after saving: exit 130 */
} cllm_train_result;

/* Runs training (fresh, or continuing out_dir when resume != 0: the caller has
 * loaded the options from out_dir's run.json). Errors: CLLM_ERR_INPUT for bad
 * settings or data, CLLM_ERR_INTERNAL for I/O, memory or a NaN/Inf loss. */
cllm_status cllm_train(const cllm_train_options *o, int resume, cllm_train_result *res);

/* Steps the budget amounts to, given the number of training windows. */
int64_t cllm_train_total_steps(const cllm_train_options *o, size_t n_train_windows);

/* run.json: writes every setting of o; data paths as given (make them
 * absolute first). Crash-safe. */
cllm_status cllm_run_json_write(const char *dir, const cllm_train_options *o, uint64_t corpus_hash,
                                size_t corpus_bytes);
/* Reads DIR/run.json into *o (data_paths malloc'd: free with
 * cllm_train_options_free_paths; out_dir points to nothing: the caller sets
 * it). Missing or malformed file: CLLM_ERR_INPUT naming it. */
cllm_status cllm_run_json_read(const char *dir, cllm_train_options *o, uint64_t *corpus_hash,
                               size_t *corpus_bytes);
void cllm_train_options_free_paths(cllm_train_options *o);

/* The factor global-norm clipping multiplies the gradient by: clip / norm
 * when the norm exceeds clip > 0, else 1; 0 for a non-finite norm (the step
 * is then discarded). */
float cllm_clip_factor(double grad_norm, double clip);

/* Test hook: the training loss of the given step (1-based) is replaced by NaN
 * before the finiteness check, to test the stop on divergence. 0: off. */
void cllm_train_debug_nan_at_step(int64_t step);
/* Test hook: after the update of step `step` (0: never), one parameter becomes
 * NaN while the loss stays finite, as a silent blow-up would leave it. */
void cllm_train_debug_poison_after_step(int64_t step);

#endif
