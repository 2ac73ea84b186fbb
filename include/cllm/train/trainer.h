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

#include "cllm/base/common.h"
#include "cllm/models/gpt2.h"
#include "cllm/train/options.h"
#include "cllm/train/step.h"


typedef struct {
    int64_t steps_done;     /* optimizer steps completed at exit */
    int64_t total_steps;    /* the budget in steps */
    double final_loss;      /* last step's training loss */
    double final_val_loss;  /* NAN if there is no validation split */
    double unigram_entropy; /* nats/token of the training split */
    double tokens_per_s;    /* over the whole run */
    double loop_s;          /* wall time of the training loop (steps, validation, checkpoints) in this process */
    double steps_s;         /* of it, in optimizer steps */
    double eval_s;          /* of it, in validation passes */
    int same_on_all_ranks;  /* the error returned is every rank's own (all failed start-up alike, or the
                               run diverged): rank 0 alone needs to report it, and no rank need abort the job */
    int interrupted;        /* a stop request (SIGINT/SIGTERM/SIGHUP) ended training early (after saving) or
                               skipped the final evaluation or sample of a complete run: exit 130 */
} cllm_train_result;

/* Runs training (fresh, or continuing out_dir when resume != 0: the caller has
 * loaded the options from out_dir's run.json). Errors: CLLM_ERR_INPUT for bad
 * settings or data, CLLM_ERR_INTERNAL for I/O, memory or a NaN/Inf loss. */
cllm_status cllm_train(const cllm_train_options *o, int resume, cllm_train_result *res);

/* Steps the budget amounts to, given the number of training windows. */
int64_t cllm_train_total_steps(const cllm_train_options *o, size_t n_train_windows);

/* The validation windows one pass evaluates (cllm_eval_options.max_windows,
 * 0 = all): --eval-tokens N as windows of the context (at least one), and by
 * default (eval_tokens < 0) a tenth of the sequences trained between two
 * passes (--eval-every steps, or the whole budget when it is 0). A forward
 * pass is about a third of a training step's work per token, so a pass then
 * costs about 3% of the training between passes. Every pass of a run, the
 * final one included, evaluates the same windows; `cllm eval DIR` computes
 * the same cap from run.json. */
size_t cllm_train_eval_cap(const cllm_train_options *o, int64_t total_steps);

/* Validation passes still to come after `step` when training runs to step
 * `end` of a budget of `total`: every eval_every steps, and the final one at
 * the end of the budget (once: at a multiple of eval_every it is that pass).
 * The progress line's ETA counts them. */
int64_t cllm_train_evals_left(int64_t eval_every, int64_t step, int64_t end, int64_t total);




#endif
