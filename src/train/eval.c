/* Evaluation (include/cllm/train/eval.h). */
#include "cllm/train/eval.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

size_t cllm_eval_windows(const cllm_eval_source *s) {
    if (s->val) return s->val->n_val;
    if (s->n_stream < 2) return 0;
    return (s->n_stream - 1 + (size_t)s->T - 1) / (size_t)s->T; /* last partial window included */
}

size_t cllm_eval_cap_windows(int64_t tokens, int T) {
    if (tokens <= 0) return 0;
    size_t w = (size_t)tokens / (size_t)T;
    return w > 0 ? w : 1;
}

size_t cllm_eval_selected(size_t n, size_t cap) { return cap == 0 || cap >= n ? n : cap; }

size_t cllm_eval_selected_index(size_t n, size_t cap, size_t j) {
    if (cap == 0 || cap >= n) return j;
    /* floor(j * n / cap) without forming j * n: n = q * cap + r. */
    size_t q = n / cap, r = n % cap;
    return j * q + j * r / cap;
}

/* Fills window w; returns its length (positions predicted). */
static int window_fill(const cllm_eval_source *s, size_t w, int32_t *in, int32_t *tg) {
    if (s->val) {
        cllm_dataset_val_window(s->val, w, in, tg);
        return s->T;
    }
    size_t start = w * (size_t)s->T, left = s->n_stream - 1 - start;
    int len = left < (size_t)s->T ? (int)left : s->T;
    memcpy(in, s->stream + start, (size_t)len * sizeof *in);
    memcpy(tg, s->stream + start + 1, (size_t)len * sizeof *tg);
    return len;
}

/* One worker's share of the windows (worksharing over the enclosing region,
 * or all of them with none); returns how many it evaluated. */
static size_t eval_worker(const gpt2_model *m, const cllm_eval_source *src, const cllm_eval_options *opt, size_t all,
                          size_t cap, size_t n, int team_threads, double *sums, int *lens, int *failed,
                          size_t *finished) {
    const cllm_stop_flag *stop = opt ? opt->stop : NULL;
    size_t done = 0;
    int th = omp_get_thread_num();
    omp_set_num_threads(team_threads); /* the forward's layers split over this worker's team */
    int own = !(opt && opt->arena);
    gpt2_acts *a = own ? gpt2_acts_create(&m->cfg, 1) : opt->arena(opt->arena_ctx, th);
    int32_t *in = malloc((size_t)src->T * sizeof *in), *tg = malloc((size_t)src->T * sizeof *tg);
    int ok = a && in && tg;
    if (!ok) {
#pragma omp atomic write
        *failed = 1;
    }
#pragma omp for schedule(dynamic, 1)
    for (size_t w = 0; w < n; w++) {
        if (!ok || cllm_stop_requested(stop)) continue;
        lens[w] = window_fill(src, cllm_eval_selected_index(all, cap, w), in, tg);
        sums[w] = (double)gpt2_forward(m, a, in, tg, 1, lens[w]) * lens[w];
        done++;
        if (opt && opt->progress) {
            size_t now;
#pragma omp atomic capture
            now = ++*finished;
            opt->progress(opt->progress_ctx, now, n);
        }
    }
    if (own) gpt2_acts_destroy(a);
    free(in);
    free(tg);
    return done;
}

cllm_status cllm_evaluate(const gpt2_model *m, const cllm_eval_source *src, const cllm_eval_options *opt,
                          double *mean_loss, size_t *n_tokens) {
    size_t all = cllm_eval_windows(src), cap = opt ? opt->max_windows : 0;
    if (all == 0) return cllm_fail(CLLM_ERR_INPUT, "nothing to evaluate: fewer than 2 tokens");
    size_t n = cllm_eval_selected(all, cap);
    double *sums = calloc(n, sizeof *sums);
    int *lens = calloc(n, sizeof *lens);
    if (!sums || !lens) {
        free(sums);
        free(lens);
        return cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
    }
    int threads = opt && opt->threads > 0 ? opt->threads : omp_get_max_threads();
    int team_threads = opt && opt->team_threads > 0 ? opt->team_threads : 1;
    if (!(opt && opt->threads > 0) && n < (size_t)threads) {
        team_threads = threads / (int)n;
        threads = (int)n;
    }
    if (team_threads > 1 && omp_get_max_active_levels() < 2) omp_set_max_active_levels(2);
    int failed = 0;
    size_t done = 0, finished = 0;
    if (threads == 1 && !omp_in_parallel()) {
        /* No region: the team's regions are then top-level ones, which the
         * runtime serves from its pool (see cllm_engine_step); not inside
         * another active region, to which the worksharing would bind. */
        int saved = omp_get_max_threads();
        done = eval_worker(m, src, opt, all, cap, n, team_threads, sums, lens, &failed, &finished);
        omp_set_num_threads(saved);
    } else {
#pragma omp parallel num_threads(threads) reduction(+ : done)
        done += eval_worker(m, src, opt, all, cap, n, team_threads, sums, lens, &failed, &finished);
    }
    double total = 0.0;
    size_t count = 0;
    for (size_t w = 0; w < n; w++) {
        total += sums[w];
        count += (size_t)lens[w];
    }
    free(sums);
    free(lens);
    if (failed) return cllm_fail(CLLM_ERR_INTERNAL, "out of memory for evaluation activations");
    if (done < n) return cllm_fail(CLLM_ERR_INTERRUPTED, "evaluation stopped by a stop request");
    *mean_loss = total / (double)count;
    *n_tokens = count;
    return CLLM_OK;
}
