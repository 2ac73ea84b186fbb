/* Evaluation: the mean loss of a model over a set of windows, the one
 * implementation behind training's validation passes and `cllm eval`.
 *
 * Windows run in parallel, each worker with its own activations and its
 * team splitting each window's forward (include/cllm/nn/team.h); each
 * window's loss sum is kept by index and the sums are added in window
 * order afterwards, so the result does not depend on the thread count or
 * the team shape. Without a shape given, windows go to omp_get_max_threads()
 * workers, or, when there are fewer windows than threads, to one worker per
 * window, each with an equal team of the rest: every thread works. */
#ifndef CLLM_TRAIN_EVAL_H
#define CLLM_TRAIN_EVAL_H

#include <stddef.h>
#include <stdint.h>

#include "cllm/base/common.h"
#include "cllm/data/dataset.h"
#include "cllm/models/gpt2.h"

/* Where windows come from: a dataset's validation windows, or a token
 * stream cut into non-overlapping windows of T (the last one shorter). */
typedef struct {
    const cllm_dataset *val; /* non-NULL: its n_val validation windows */
    const int32_t *stream;   /* else: this stream of n_stream tokens */
    size_t n_stream;
    int T;
} cllm_eval_source;

/* Number of windows of src. */
size_t cllm_eval_windows(const cllm_eval_source *src);

/* A cap of `tokens` predicted positions in windows of T: at least one window
 * (a cap below T still evaluates something); 0 means no cap. */
size_t cllm_eval_cap_windows(int64_t tokens, int T);

/* The windows a capped pass evaluates: `cap` of the n (cap 0 or >= n: all n),
 * evenly spaced over them (the j-th is floor(j * n / cap)), so a capped pass
 * samples the whole split rather than its first documents, needs no random
 * numbers, and is the same set at every evaluation. */
size_t cllm_eval_selected(size_t n, size_t cap);
size_t cllm_eval_selected_index(size_t n, size_t cap, size_t j);

/* Per-thread activation arenas to use (for at least one sequence each), so
 * the trainer evaluates in the memory it already holds; NULL: evaluation
 * allocates its own. */
typedef gpt2_acts *(*cllm_eval_arena_fn)(void *ctx, int thread);

/* Called after each finished window with the number done so far and the
 * number the pass evaluates, from whichever worker thread finished it: it
 * must be thread-safe (report/progress.c's display is). */
typedef void (*cllm_eval_progress_fn)(void *ctx, size_t done, size_t total);

typedef struct {
    cllm_eval_arena_fn arena;
    void *arena_ctx;
    int threads;                /* workers, each with its arena; 0: see cllm_evaluate */
    int team_threads;           /* threads in each worker's team (nested OpenMP); 0: 1 */
    const cllm_stop_flag *stop; /* a request skips the windows not yet started */
    size_t max_windows;         /* 0: every window; else cllm_eval_selected's subset */
    cllm_eval_progress_fn progress;
    void *progress_ctx;
} cllm_eval_options;

/* *mean_loss: mean loss per predicted position; *n_tokens: positions (of
 * the selected windows). Stopped early: CLLM_ERR_INTERRUPTED. No window:
 * CLLM_ERR_INPUT. */
cllm_status cllm_evaluate(const gpt2_model *m, const cllm_eval_source *src, const cllm_eval_options *opt,
                          double *mean_loss, size_t *n_tokens);

#endif
