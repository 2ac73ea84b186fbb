/* One optimizer step (include/cllm/train/step.h). */
#include "cllm/train/step.h"
#include "cllm/train/test_hooks.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "cllm/base/memory.h"
#include "cllm/params/spans.h"
#include "cllm/optim/adamw.h"

struct cllm_step {
    cllm_step_config c;
    cllm_engine *engine;
    int threads;      /* workers (teams) */
    int team_threads; /* threads in each worker's team */
    gpt2_acts **acts; /* one arena per worker, shared by its team */
    int32_t **inputs, **targets;
    float *m, *v;          /* AdamW moments of the owned span only (ZeRO-1 across ranks) */
    size_t own_begin, own_end;
    cllm_span_list *spans; /* per engine segment: pieces of one decay setting each */
    int n_segments;
    cllm_adamw_config adam;
    /* the step in progress */
    cllm_adamw_step hp;
    int64_t step;
    uint64_t window_base;
    double grad_norm;
    int bad_gradient; /* set by clip_scale: the update must not run */
};

static int64_t debug_fail_step = 0;

void cllm_step_debug_fail_at(int64_t step) { debug_fail_step = step; }

/* ---- engine callbacks ------------------------------------------------------ */

static cllm_status compute_micro(void *ctx, int index, int thread, float *grad, float *loss) {
    cllm_step *s = ctx;
    if (s->step == debug_fail_step && index == s->c.n_micro - 1)
        return cllm_fail(CLLM_ERR_INTERNAL, "micro-batch %d of step %" PRId64 " failed on purpose (test hook)", index,
                         s->step);
    int T = s->c.model->cfg.seq_len, B = s->c.micro;
    int32_t *in = s->inputs[thread], *tg = s->targets[thread];
    for (int j = 0; j < B; j++) {
        uint64_t sequence = s->window_base + (uint64_t)index * (uint64_t)B + (uint64_t)j;
        s->c.window(s->c.window_ctx, sequence, in + (size_t)j * T, tg + (size_t)j * T);
    }
    *loss = gpt2_forward(s->c.model, s->acts[thread], in, tg, B, T);
    /* The whole micro-batch in one backward, which writes every gradient, so
     * the engine skips zeroing the buffer (compute_overwrites). */
    gpt2_backward_overwrite(s->c.model, s->acts[thread], grad, 1.0f / (float)s->c.n_micro);
    return CLLM_OK;
}

float cllm_clip_factor(double grad_norm, double clip) {
    if (!isfinite(grad_norm)) return 0.0f;
    if (clip > 0 && grad_norm > clip) return (float)(clip / grad_norm);
    return 1.0f;
}

/* Called once per step by one thread, before any update of the step. A
 * non-finite norm cancels the update so the parameters in memory stay those
 * of the last good step. */
static float clip_scale(void *ctx, double norm2) {
    cllm_step *s = ctx;
    s->grad_norm = sqrt(norm2);
    if (!isfinite(norm2)) s->bad_gradient = 1;
    return cllm_clip_factor(s->grad_norm, s->c.clip);
}

/* AdamW on one engine segment, over the spans computed at creation. */
static void update_segment(void *ctx, int segment, size_t begin, size_t end, const float *const *srcs, int k,
                           float grad_scale) {
    cllm_step *s = ctx;
    if (s->bad_gradient) return;
    enum { MAX_SOURCES = 2 };
    CLLM_ASSERT(k >= 1 && k <= MAX_SOURCES && segment >= 0 && segment < s->n_segments);
    const cllm_span_list *spans = &s->spans[segment];
    CLLM_ASSERT(spans->n == 0 || (spans->spans[0].begin == begin && spans->spans[spans->n - 1].end == end));
    (void)begin, (void)end;
    float *params = s->c.model->params;
    const float *piece[MAX_SOURCES];
    for (int i = 0; i < spans->n; i++) {
        const cllm_span *sp = &spans->spans[i];
        for (int j = 0; j < k; j++) piece[j] = srcs[j] + sp->begin;
        CLLM_ASSERT(sp->begin >= s->own_begin && sp->end <= s->own_end);
        size_t at = sp->begin - s->own_begin;
        s->c.model->kernels->sum_adamw(params + sp->begin, s->m + at, s->v + at, piece, k, grad_scale,
                                sp->end - sp->begin, &s->hp, sp->decay);
        /* bf16 mode: the owner re-rounds the weights it just updated, so the
         * next step's products read them without another pass or a barrier. */
        gpt2_refresh_bf16(s->c.model, sp->begin, sp->end);
    }
}

/* ---- creation ----------------------------------------------------------------- */

/* Each engine segment's spans, from the model's tensor table. */
static cllm_status owned_spans(cllm_step *s) {
    const gpt2_model *m = s->c.model;
    cllm_param_extent *ext = malloc((size_t)m->n_tensors * sizeof *ext);
    s->n_segments = cllm_engine_segments(s->engine);
    s->spans = calloc((size_t)s->n_segments, sizeof *s->spans);
    if (!ext || !s->spans) {
        free(ext);
        return cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
    }
    for (int i = 0; i < m->n_tensors; i++)
        ext[i] = (cllm_param_extent){m->tensors[i].offset, m->tensors[i].numel, !m->tensors[i].no_decay};
    cllm_status st = CLLM_OK;
    for (int seg = 0; st == CLLM_OK && seg < s->n_segments; seg++) {
        size_t begin, end;
        cllm_engine_segment(s->engine, seg, &begin, &end);
        st = cllm_spans_of_range(ext, m->n_tensors, begin, end, &s->spans[seg]);
    }
    free(ext);
    return st;
}

static cllm_status alloc_per_thread(cllm_step *s) {
    int T = s->c.model->cfg.seq_len, B = s->c.micro;
    s->acts = calloc((size_t)s->threads, sizeof *s->acts);
    s->inputs = calloc((size_t)s->threads, sizeof *s->inputs);
    s->targets = calloc((size_t)s->threads, sizeof *s->targets);
    if (!s->acts || !s->inputs || !s->targets) return cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
    for (int i = 0; i < s->threads; i++) {
        s->acts[i] = gpt2_acts_create_team(&s->c.model->cfg, B, s->team_threads);
        s->inputs[i] = cllm_alloc((size_t)B * (size_t)T * sizeof(int32_t));
        s->targets[i] = cllm_alloc((size_t)B * (size_t)T * sizeof(int32_t));
        if (!s->acts[i] || !s->inputs[i] || !s->targets[i])
            return cllm_fail(CLLM_ERR_INTERNAL, "out of memory for activations (thread %d)", i);
    }
    cllm_engine_owned(s->engine, &s->own_begin, &s->own_end);
    size_t n = s->own_end - s->own_begin;
    s->m = cllm_alloc((n ? n : 1) * sizeof(float));
    s->v = cllm_alloc((n ? n : 1) * sizeof(float));
    if (s->m) memset(s->m, 0, n * sizeof(float));
    if (s->v) memset(s->v, 0, n * sizeof(float));
    if (!s->m || !s->v) return cllm_fail(CLLM_ERR_INTERNAL, "out of memory for the optimizer state");
    return CLLM_OK;
}

cllm_status cllm_step_create(const cllm_step_config *c, cllm_step **out) {
    *out = NULL;
    CLLM_ASSERT(c->model && c->model->kernels && c->window && c->micro >= 1 && c->n_micro >= 1);
    cllm_step *s = calloc(1, sizeof *s);
    if (!s) return cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
    s->c = *c;
    s->adam = cllm_adamw_defaults();
    s->adam.weight_decay = c->weight_decay;
    int teams = c->teams, team_threads = c->team_threads;
    if (teams <= 0)
        cllm_step_team_default(&c->model->cfg, c->micro, c->n_micro, c->buffer_window, omp_get_max_threads(),
                               (double)cllm_memory_available(), &teams, &team_threads);
    cllm_engine_config ec = {
        .n_params = c->model->n_params, .n_micro = c->n_micro, .segments_per_thread = c->segments_per_thread,
        .streaming = c->streaming, .window = c->buffer_window, .compute_overwrites = 1, .comm = c->comm,
        .kernels = c->model->kernels, .teams = teams, .team_threads = team_threads,
    };
    cllm_status st = cllm_engine_create(&ec, &s->engine);
    if (st == CLLM_OK) {
        s->threads = cllm_engine_threads(s->engine);
        s->team_threads = cllm_engine_team_threads(s->engine);
        st = alloc_per_thread(s);
    }
    if (st == CLLM_OK) st = owned_spans(s);
    if (st != CLLM_OK) {
        cllm_step_free(s);
        return st;
    }
    *out = s;
    return CLLM_OK;
}

void cllm_step_free(cllm_step *s) {
    if (!s) return;
    for (int i = 0; i < s->threads; i++) {
        if (s->acts) gpt2_acts_destroy(s->acts[i]);
        if (s->inputs) cllm_free(s->inputs[i]);
        if (s->targets) cllm_free(s->targets[i]);
    }
    free(s->acts);
    free(s->inputs);
    free(s->targets);
    cllm_free(s->m);
    cllm_free(s->v);
    for (int i = 0; s->spans && i < s->n_segments; i++) cllm_span_list_free(&s->spans[i]);
    free(s->spans);
    if (s->engine) cllm_engine_free(s->engine);
    free(s);
}

/* ---- the step ------------------------------------------------------------------ */

/* Under MPI the spans other ranks own arrive after the update (the
 * all-gather of params_updated): their bf16 copy is made here, by all
 * threads in chunks, leaving out this rank's own span (its owner threads
 * refreshed it right after their update). One rank alone has nothing to do. */
static void refresh_gathered_bf16(cllm_step *s) {
    gpt2_model *m = s->c.model;
    if (!m->params_bf16) return;
    size_t n = m->n_params, own_b, own_e;
    cllm_comm_span(s->c.comm, n, s->c.comm->rank, &own_b, &own_e);
    enum { CHUNK = 1 << 16 };
    long chunks = (long)((n + CHUNK - 1) / CHUNK);
#pragma omp parallel for schedule(static)
    for (long c = 0; c < chunks; c++) {
        size_t lo = (size_t)c * CHUNK, hi = lo + CHUNK < n ? lo + CHUNK : n;
        if (lo < own_b) gpt2_refresh_bf16(m, lo, hi < own_b ? hi : own_b);
        if (hi > own_e) gpt2_refresh_bf16(m, lo > own_e ? lo : own_e, hi);
    }
}

cllm_status cllm_step_run(cllm_step *s, int64_t step, double lr, uint64_t window_base, cllm_step_result *r) {
    s->hp = cllm_adamw_step_make(&s->adam, lr, step);
    s->step = step;
    s->window_base = window_base;
    s->bad_gradient = 0;
    s->grad_norm = 0;
    cllm_engine_job job = {s, compute_micro, clip_scale, update_segment, s->c.model->params};
    memset(r, 0, sizeof *r);
    cllm_status st = cllm_engine_step(s->engine, &job, &r->engine);
    if (st == CLLM_OK && s->c.comm && s->c.comm->size > 1 && !s->bad_gradient) refresh_gathered_bf16(s);
    r->loss = r->engine.loss;
    r->grad_norm = s->grad_norm;
    r->skipped = s->bad_gradient;
    return st;
}

float *cllm_step_moment(cllm_step *s, int which) { return which ? s->v : s->m; }

void cllm_step_owned(const cllm_step *s, size_t *begin, size_t *end) {
    *begin = s->own_begin;
    *end = s->own_end;
}

void cllm_step_block(const cllm_step *s, int *first_micro, int *n_micro) {
    cllm_engine_block(s->engine, first_micro, n_micro);
}

size_t cllm_step_optimizer_bytes(const cllm_step *s) { return 2 * (s->own_end - s->own_begin) * sizeof(float); }

int cllm_step_threads(const cllm_step *s) { return s->threads; }

int cllm_step_team_threads(const cllm_step *s) { return s->team_threads; }

/* Bytes a shape needs beyond the model: gradient buffers and arenas. */
static double shape_bytes(const gpt2_config *cfg, int micro, int n_micro, int window, int teams, int team_threads) {
    double P = gpt2_param_count_estimate(cfg);
    double buffers = cllm_engine_pool_buffers(n_micro, teams, window);
    double scratch = (double)(team_threads - 1) * cfg->seq_len * cfg->seq_len * sizeof(float);
    return buffers * P * sizeof(float) + teams * (gpt2_acts_bytes_estimate(cfg, micro) + scratch);
}

void cllm_step_team_default(const gpt2_config *cfg, int micro, int n_micro, int window, int threads,
                            double memory_available, int *teams, int *team_threads) {
    double model = 3.0 * gpt2_param_count_estimate(cfg) * sizeof(float); /* params, m, v */
    if (threads < 1) threads = 1;
    for (int t = threads; t >= 1; t--) {
        if (threads % t != 0 || (t > n_micro && t > 1)) continue;
        double need = model + shape_bytes(cfg, micro, n_micro, window, t, threads / t);
        if (t > 1 && memory_available > 0 && need > 0.75 * memory_available) continue;
        *teams = t;
        *team_threads = threads / t;
        return;
    }
    *teams = 1;
    *team_threads = threads;
}

size_t cllm_step_buffer_bytes(const cllm_step *s) { return cllm_engine_buffer_bytes(s->engine); }

int cllm_step_buffers(const cllm_step *s) { return cllm_engine_buffers(s->engine); }

void cllm_step_scratch(cllm_step *s, int th, gpt2_acts **acts, int32_t **inputs, int32_t **targets) {
    CLLM_ASSERT(th >= 0 && th < s->threads);
    *acts = s->acts[th];
    *inputs = s->inputs[th];
    *targets = s->targets[th];
}
