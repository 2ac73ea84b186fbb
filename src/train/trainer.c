/* The training loop: data -> model -> engine -> AdamW, with evaluation,
 * checkpoints, exact resume, progress and metrics.
 *
 * Exact resume rests on three facts: every source of randomness in a step is
 * a pure function of (seed, step) (data windows come from the stateless
 * dataset by a window counter, the schedule from (step, total)); the engine's
 * summation order depends on the micro-batch index only, never the thread
 * count; and checkpoints store the parameters, both AdamW moments and the
 * counters bit for bit. */
#include "cllm/train/trainer.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cllm/base/build_config.h"
#include "cllm/base/memory.h"
#include "cllm/data/corpus.h"
#include "cllm/data/dataset.h"
#include "cllm/data/embedded.h"
#include "cllm/data/hf_tokenizer.h"
#include "cllm/data/tokenizer.h"
#include "cllm/kernels/kernels.h"
#include "cllm/dist/engine.h"
#include "cllm/base/rng.h"
#include "cllm/optim/adamw.h"
#include "cllm/train/checkpoint.h"
#include "cllm/train/eval.h"
#include "cllm/base/json.h"
#include "cllm/report/metrics.h"
#include "cllm/report/peak.h"
#include "cllm/report/plot.h"
#include "cllm/report/progress.h"
#include "cllm/train/pretrained.h"
#include "cllm/train/runfolder.h"
#include "cllm/io/safetensors.h"
#include "cllm/train/sampler.h"
#include "cllm/train/step.h"
#include "cllm/train/test_hooks.h"
#include "cllm/train/tokens.h"
#include "cllm/optim/schedule.h"

/* ---- run state ------------------------------------------------------------ */

typedef struct {
    const cllm_train_options *o; /* points to settings */
    cllm_train_options settings; /* the caller's options, vocab_size set to what the tokenizer actually learned */
    int requested_vocab;         /* --vocab when the tokenizer stopped short of it, else 0 */
    char *dir;
    cllm_run_lock lock;    /* held from the folder's choice to the end */
    int created_dir;       /* this run made the folder (removed again if start-up fails) */
    int folder_written;    /* run.json and tokenizer.bin are in place */
    cllm_corpus_files files; /* the corpus, listed; read a file at a time */
    cllm_run_tokens tokens;  /* its token stream: the mapped cache DIR/tokens.bin */
    cllm_tokenizer *tok;
    cllm_dataset data;
    gpt2_model model;
    cllm_step *stepper;   /* the optimizer step: engine, per-thread arenas, AdamW moments */
    int threads;           /* the step's workers (teams) */
    int team_threads;      /* threads in each worker's team */
    int n_micro;           /* micro-batches per optimizer step */
    int seqs_per_step;     /* n_micro * micro */
    int64_t total_steps;
    int64_t warmup;        /* resolved: --warmup, or 5% of the budget (at most 100) */
    size_t eval_windows;   /* validation windows per pass (cllm_train_eval_cap, resolved) */
    cllm_progress *display; /* the progress line while the loop runs; NULL otherwise */
    double eval_seconds;   /* wall time of the last validation pass; 0: none yet */
    double eval_total_s;   /* of all passes this process ran */
    int64_t step;          /* optimizer steps completed */
    int64_t saved_step;    /* the step whose checkpoint is the folder's latest (set at resume and each save) */
    uint64_t window_base;  /* data-loader position: first window of the current step */
    cllm_rng rng;          /* samples printed during training */
    double grad_norm;      /* of the last step */
    double unigram;
    const cllm_comm *comm; /* the job's ranks (one: this process) */
    int lead;              /* rank 0: the only one that writes the run folder and prints */
    float *full[2];        /* with several ranks: every rank's moments, for a save (rank 0) or a load */
    char init_layout[256]; /* --init: the folder's model file in a few words (summary) */
} trainer;

static int64_t debug_nan_step = 0;

void cllm_train_debug_nan_at_step(int64_t step) { debug_nan_step = step; }

static int64_t debug_poison_step = 0;

void cllm_train_debug_poison_after_step(int64_t step) { debug_poison_step = step; }

static int64_t debug_signal_save_step = 0;

void cllm_train_debug_signal_after_save(int64_t step) { debug_signal_save_step = step; }

/* SIGINT, SIGTERM or SIGHUP arrived (cllm_stop_catch, from the start of
 * cllm_train): the current step and any save finish, optional work stops. */
static int stop_requested(void) { return cllm_stop_signal() != 0; }

/* A reader that closed the pipe (cllm train | head) makes writes to stdout
 * fail with EPIPE, since SIGPIPE is ignored (main.c); a full disk under a
 * redirection fails the same way. The error flag is sticky: from then on
 * training goes on and saves as usual, without printing. */
static int stdout_gone(void) { return ferror(stdout) != 0; }

/* ---- engine callbacks ------------------------------------------------------ */

void cllm_train_debug_fail_at_step(int64_t step) { cllm_step_debug_fail_at(step); }

/* The training stream's sequence `index`, for the step. */
static void train_window(void *ctx, uint64_t index, int32_t *inputs, int32_t *targets) {
    cllm_dataset_train_window(ctx, index, inputs, targets);
}

/* ---- small helpers ---------------------------------------------------------- */

static int is_directory(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int file_exists(const char *dir, const char *name) {
    char *p = cllm_path_join(dir, name);
    int ok = p && access(p, F_OK) == 0;
    free(p);
    return ok;
}


int64_t cllm_train_total_steps(const cllm_train_options *o, size_t n_train_windows) {
    int64_t seqs = (int64_t)o->batch * o->grad_accum;
    if (o->steps > 0) return o->steps;
    if (o->epochs > 0) return (int64_t)ceil(o->epochs * (double)n_train_windows / (double)seqs);
    if (o->tokens > 0) {
        int64_t per_step = seqs * o->model.seq_len;
        return (o->tokens + per_step - 1) / per_step;
    }
    return 0;
}

size_t cllm_train_eval_cap(const cllm_train_options *o, int64_t total_steps) {
    if (o->eval_tokens >= 0) return cllm_eval_cap_windows(o->eval_tokens, o->model.seq_len);
    int64_t between = o->eval_every > 0 && o->eval_every < total_steps ? o->eval_every : total_steps;
    int64_t sequences = between * (int64_t)o->batch * o->grad_accum / 10;
    return sequences > 0 ? (size_t)sequences : 1;
}

/* ---- checkpoints ------------------------------------------------------------- */

/* optimizer.safetensors (format 2) holds one tensor per parameter tensor
 * and moment, "adamw.m.<name>" and "adamw.v.<name>" with the parameter's
 * shape, so the file depends on neither the in-memory order nor the padding
 * (and can be written and read shard by shard); the counters as U64
 * scalars; and the hash of the parameters it belongs to, taken tensor by
 * tensor in table order: resume accepts the pair only when the model hashes
 * to the same value. Format 1 (earlier versions: "adamw.m"/"adamw.v" flat
 * over the padded buffer, the hash over that buffer) is still read. A
 * checkpoint is a folder of its own, committed by one rename (runfolder.h),
 * so the model, its config and its optimizer state always change together. */
#define OPTIMIZER_FORMAT "2"

static uint64_t params_hash(const gpt2_model *m) {
    uint64_t h = CLLM_FNV1A64_OFFSET;
    for (int i = 0; i < m->n_tensors; i++)
        h = cllm_fnv1a64(m->params + m->tensors[i].offset, m->tensors[i].numel * sizeof(float), h);
    return h;
}

/* Format 1's hash: the padded buffer as it lay in memory. */
static uint64_t params_hash_format1(const gpt2_model *m) {
    return cllm_fnv1a64(m->params, m->n_params * sizeof(float), CLLM_FNV1A64_OFFSET);
}

/* The AdamW moments (k 0: m, 1: v) of every parameter, in the parameters'
 * layout: the step's own with one rank; with several, the gathered copy
 * that a save or a load has made (full_moments_alloc). */
static float *moments(const trainer *t, int k) { return t->full[k] ? t->full[k] : cllm_step_moment(t->stepper, k); }

/* The same answer on every rank: st, or when another rank failed, a
 * failure naming that rank (its own message is on its stderr). */
static cllm_status agree(const trainer *t, cllm_status st, const char *when) {
    int failed = t->comm->first_flagged(t->comm, st != CLLM_OK);
    if (failed < 0 || st != CLLM_OK) return st;
    return cllm_fail(CLLM_ERR_INTERNAL, "stopped: rank %d failed %s", failed, when);
}

/* Every rank agrees whether any has a stop request: all finish the same step. */
static int agreed_stop(const trainer *t) { return t->comm->first_flagged(t->comm, stop_requested()) >= 0; }

/* ZeRO-1: each rank holds the moments of its span only. A save gathers them
 * onto rank 0 by span (then written by tensor name as one process writes
 * them); a load reads the whole file into these and keeps its span. */
static cllm_status full_moments_alloc(trainer *t) {
    if (t->comm->size == 1) return CLLM_OK;
    for (int k = 0; k < 2; k++) {
        t->full[k] = cllm_alloc(t->model.n_params * sizeof(float));
        if (!t->full[k]) return cllm_fail(CLLM_ERR_INTERNAL, "out of memory for the gathered optimizer state");
    }
    return CLLM_OK;
}

static void full_moments_free(trainer *t) {
    for (int k = 0; k < 2; k++) {
        cllm_free(t->full[k]);
        t->full[k] = NULL;
    }
}

static cllm_status gather_moments(trainer *t) {
    if (t->comm->size == 1) return CLLM_OK;
    cllm_status st = t->lead ? full_moments_alloc(t) : CLLM_OK;
    for (int k = 0; k < 2 && st == CLLM_OK; k++)
        st = t->comm->gather(t->comm, cllm_step_moment(t->stepper, k), t->model.n_params, t->full[k]);
    return st;
}

static void keep_own_moments(trainer *t) {
    size_t b, e;
    cllm_step_owned(t->stepper, &b, &e);
    for (int k = 0; k < 2; k++) memcpy(cllm_step_moment(t->stepper, k), t->full[k] + b, (e - b) * sizeof(float));
}

static void moment_name(char *buf, size_t n, const char *moment, const gpt2_tensor *t) {
    snprintf(buf, n, "adamw.%s.%s", moment, t->name);
}

static cllm_status add_moments(cllm_st_writer *w, const trainer *t) {
    const gpt2_model *m = &t->model;
    cllm_status st = CLLM_OK;
    for (int i = 0; st == CLLM_OK && i < m->n_tensors; i++) {
        const gpt2_tensor *tn = &m->tensors[i];
        char name[160];
        moment_name(name, sizeof name, "m", tn);
        st = cllm_st_writer_add(w, name, CLLM_ST_F32, moments(t, 0) + tn->offset, tn->ndim, tn->shape);
        moment_name(name, sizeof name, "v", tn);
        if (st == CLLM_OK) st = cllm_st_writer_add(w, name, CLLM_ST_F32, moments(t, 1) + tn->offset, tn->ndim, tn->shape);
    }
    return st;
}

static cllm_status write_optimizer(trainer *t, const char *path) {
    cllm_st_writer w;
    cllm_st_writer_init(&w);
    int64_t four[1] = {4};
    uint64_t step = (uint64_t)t->step, window = t->window_base, phash = params_hash(&t->model);
    char step_s[32], hash_s[32];
    snprintf(step_s, sizeof step_s, "%" PRId64, t->step);
    snprintf(hash_s, sizeof hash_s, "%016" PRIx64, phash);
    cllm_status st = add_moments(&w, t);
    if (st == CLLM_OK) st = cllm_st_writer_add(&w, "step", CLLM_ST_U64, &step, 0, NULL);
    if (st == CLLM_OK) st = cllm_st_writer_add(&w, "data_window", CLLM_ST_U64, &window, 0, NULL);
    if (st == CLLM_OK) st = cllm_st_writer_add(&w, "rng_state", CLLM_ST_U64, t->rng.s, 1, four);
    if (st == CLLM_OK) st = cllm_st_writer_add(&w, "params_hash", CLLM_ST_U64, &phash, 0, NULL);
    if (st == CLLM_OK) st = cllm_st_writer_metadata(&w, "cllm_optimizer_format", OPTIMIZER_FORMAT);
    if (st == CLLM_OK) st = cllm_st_writer_metadata(&w, "step", step_s);
    if (st == CLLM_OK) st = cllm_st_writer_metadata(&w, "params_hash", hash_s);
    if (st == CLLM_OK) st = cllm_st_writer_write(&w, path);
    cllm_st_writer_free(&w);
    return st;
}

/* A checkpoint is the state a user goes back to: one holding NaN or inf
 * would only fail later, so it is never written. Padding is always 0, so the
 * tensors are all there is to check. */
static cllm_status check_state_finite(const trainer *t) {
    const gpt2_model *m = &t->model;
    const float *arrays[3] = {m->params, moments(t, 0), moments(t, 1)};
    static const char *const what[3] = {"parameter", "AdamW m of", "AdamW v of"};
    for (int i = 0; i < m->n_tensors; i++) {
        const gpt2_tensor *tn = &m->tensors[i];
        for (int a = 0; a < 3; a++)
            if (cllm_first_non_finite(arrays[a] + tn->offset, tn->numel) < tn->numel)
                return cllm_fail(CLLM_ERR_INTERNAL, "%s %s is not finite at step %" PRId64 ": no checkpoint written; "
                                 "the last good one in %s is kept (try a lower --lr, or --clip 1)",
                                 what[a], tn->name, t->step, t->dir);
    }
    return CLLM_OK;
}

static cllm_status write_checkpoint(trainer *t) {
    cllm_status st = check_state_finite(t);
    char *ckpt = NULL;
    if (st == CLLM_OK) st = cllm_run_checkpoint_begin(t->dir, t->step, &ckpt);
    if (st != CLLM_OK) return st;
    char *opt = cllm_path_join(ckpt, CLLM_OPTIMIZER_FILE);
    st = opt ? write_optimizer(t, opt) : cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
    char step_s[32];
    snprintf(step_s, sizeof step_s, "%" PRId64, t->step);
    const char *const meta[1][2] = {{"step", step_s}};
    if (st == CLLM_OK) st = cllm_checkpoint_save_model_meta(ckpt, &t->model, cllm_tokenizer_eot(t->tok), meta, 1);
    if (st == CLLM_OK) st = cllm_run_checkpoint_commit(t->dir, t->step);
    free(opt);
    free(ckpt);
    return st;
}

/* Every rank takes part (the moments are gathered); rank 0 writes. */
static cllm_status save_checkpoint(trainer *t) {
    cllm_status st = gather_moments(t);
    if (st == CLLM_OK && t->lead) st = write_checkpoint(t);
    full_moments_free(t);
    st = agree(t, st, "while the checkpoint was saved");
    if (st == CLLM_OK) t->saved_step = t->step;
    if (st == CLLM_OK && t->step == debug_signal_save_step) raise(SIGTERM);
    return st;
}

static cllm_status copy_u64(const cllm_st_file *f, const char *name, uint64_t *out, size_t n) {
    const cllm_st_tensor *x = cllm_st_find(f, name);
    if (!x || x->dtype != CLLM_ST_U64 || x->numel != n)
        return cllm_fail(CLLM_ERR_INPUT, "%s: missing or malformed tensor \"%s\"", f->path, name);
    memcpy(out, x->data, n * sizeof *out);
    return CLLM_OK;
}

static cllm_status copy_f32(const cllm_st_file *f, const char *name, float *out, size_t n) {
    const cllm_st_tensor *x = cllm_st_find(f, name);
    if (!x || x->dtype != CLLM_ST_F32 || x->numel != n)
        return cllm_fail(CLLM_ERR_INPUT, "%s: missing or malformed tensor \"%s\" (model size changed?)", f->path,
                         name);
    memcpy(out, x->data, n * sizeof *out);
    return CLLM_OK;
}

/* Format 2: each tensor's moments by name, checked finite; the padding
 * between tensors keeps the zero moments it always has. */
static cllm_status read_moments(trainer *t, const cllm_st_file *f) {
    const gpt2_model *m = &t->model;
    memset(moments(t, 0), 0, m->n_params * sizeof(float));
    memset(moments(t, 1), 0, m->n_params * sizeof(float));
    cllm_status st = CLLM_OK;
    for (int i = 0; st == CLLM_OK && i < m->n_tensors; i++) {
        const gpt2_tensor *tn = &m->tensors[i];
        char name[160];
        for (int k = 0; st == CLLM_OK && k < 2; k++) {
            float *dst = moments(t, k) + tn->offset;
            moment_name(name, sizeof name, k ? "v" : "m", tn);
            st = copy_f32(f, name, dst, tn->numel);
            if (st == CLLM_OK) st = cllm_check_finite(f->path, name, dst, tn->numel);
        }
    }
    return st;
}

static cllm_status read_moments_format1(trainer *t, const cllm_st_file *f) {
    size_t n = t->model.n_params;
    float *m = moments(t, 0), *v = moments(t, 1);
    cllm_status st = copy_f32(f, "adamw.m", m, n);
    if (st == CLLM_OK) st = copy_f32(f, "adamw.v", v, n);
    if (st == CLLM_OK) st = cllm_check_finite(f->path, "adamw.m", m, n);
    if (st == CLLM_OK) st = cllm_check_finite(f->path, "adamw.v", v, n);
    return st;
}

/* Loads one optimizer file if it belongs to the model in memory. Returns
 * CLLM_OK and *matched = 1 when it does. Non-finite moments are a load
 * error naming the tensor: resuming from them would turn every parameter
 * they touch into NaN on the first step. */
static cllm_status load_optimizer_file(trainer *t, const char *dir, const char *name, int *matched) {
    *matched = 0;
    char *path = cllm_path_join(dir, name);
    if (!path) return cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
    if (access(path, F_OK) != 0) {
        free(path);
        return CLLM_OK;
    }
    cllm_st_file f;
    cllm_status st = cllm_st_open(path, &f);
    free(path);
    if (st != CLLM_OK) return st;
    uint64_t phash = 0, step = 0, window = 0;
    int format1 = cllm_st_find(&f, "adamw.m") != NULL;
    st = copy_u64(&f, "params_hash", &phash, 1);
    if (st == CLLM_OK && phash == (format1 ? params_hash_format1(&t->model) : params_hash(&t->model))) {
        st = copy_u64(&f, "step", &step, 1);
        if (st == CLLM_OK) st = copy_u64(&f, "data_window", &window, 1);
        if (st == CLLM_OK) st = copy_u64(&f, "rng_state", t->rng.s, 4);
        if (st == CLLM_OK) st = format1 ? read_moments_format1(t, &f) : read_moments(t, &f);
        if (st == CLLM_OK) {
            t->step = (int64_t)step;
            t->window_base = window;
            *matched = 1;
        }
    }
    cllm_st_close(&f);
    return st;
}

/* The committed checkpoint (through `latest`), or an earlier layout's files,
 * where the previous optimizer state may be the one matching the model. */
static cllm_status load_checkpoint(trainer *t) {
    char *ckpt = cllm_run_checkpoint_dir(t->dir);
    if (!ckpt) return cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
    gpt2_model loaded;
    memset(&loaded, 0, sizeof loaded);
    cllm_status st = cllm_checkpoint_load_model(ckpt, &loaded);
    if (st != CLLM_OK) {
        free(ckpt);
        return st;
    }
    const gpt2_config *a = &loaded.cfg, *b = &t->model.cfg;
    if (a->n_layer != b->n_layer || a->n_head != b->n_head || a->n_embd != b->n_embd || a->seq_len != b->seq_len ||
        a->vocab_size != b->vocab_size || loaded.n_params != t->model.n_params) {
        gpt2_destroy(&loaded);
        free(ckpt);
        return cllm_fail(CLLM_ERR_INPUT, "%s: model.safetensors does not match run.json", t->dir);
    }
    memcpy(t->model.params, loaded.params, loaded.n_params * sizeof(float));
    gpt2_refresh_bf16(&t->model, 0, t->model.n_params); /* bf16 mode: the copy of the loaded master weights */
    gpt2_destroy(&loaded);
    int matched = 0;
    st = full_moments_alloc(t);
    if (st == CLLM_OK) st = load_optimizer_file(t, ckpt, CLLM_OPTIMIZER_FILE, &matched);
    if (st == CLLM_OK && !matched && strcmp(ckpt, t->dir) == 0)
        st = load_optimizer_file(t, t->dir, "optimizer.prev.safetensors", &matched);
    if (st == CLLM_OK && matched && t->full[0]) keep_own_moments(t);
    full_moments_free(t);
    free(ckpt);
    if (st == CLLM_OK && !matched)
        st = cllm_fail(CLLM_ERR_INPUT, "%s: optimizer.safetensors does not belong to model.safetensors "
                       "(a mismatched pair); cannot resume exactly", t->dir);
    return st;
}

/* ---- evaluation and statistics -------------------------------------------------- */

/* The step's own arenas serve the evaluation: no second set of activations. */
static gpt2_acts *step_arena(void *ctx, int thread) {
    gpt2_acts *acts;
    int32_t *in, *tg;
    cllm_step_scratch(ctx, thread, &acts, &in, &tg);
    return acts;
}

/* Mean loss over the pass's validation windows (all, or the fixed subset
 * of --eval-tokens; train/eval.c, the evaluation `cllm eval` runs too),
 * counted on the progress line. A stop request skips the windows not yet
 * started: a long evaluation must not hold up a Ctrl-C; the result is then
 * NAN (not computed). */
static double evaluate(trainer *t) {
    if (t->data.n_val == 0) return NAN;
    cllm_eval_source src = {.val = &t->data, .T = t->o->model.seq_len};
    cllm_eval_options opt = {.arena = step_arena, .arena_ctx = t->stepper, .threads = t->threads,
                             .team_threads = t->team_threads, .stop = cllm_stop_flag_ptr(), .max_windows = t->eval_windows,
                             .progress = t->display ? cllm_progress_eval : NULL, .progress_ctx = t->display};
    double loss = NAN, t0 = cllm_now();
    size_t tokens = 0;
    cllm_status st = cllm_evaluate(&t->model, &src, &opt, &loss, &tokens);
    if (st != CLLM_OK) return NAN;
    t->eval_seconds = cllm_now() - t0;
    t->eval_total_s += t->eval_seconds;
    return loss;
}

/* Pages of the mapped stream handed back during a sequential pass. */
#define RELEASE_EVERY_TOKENS ((size_t)1 << 20)

/* Windows a pass evaluates, and a note for the lines that show its loss:
 * "" when it is the whole split, else " on 160 of 11,297 validation
 * windows". */
static size_t eval_selected(const trainer *t) { return cllm_eval_selected(t->data.n_val, t->eval_windows); }

static void eval_note(const trainer *t, char *buf, size_t n) {
    size_t k = eval_selected(t);
    buf[0] = '\0';
    if (k == t->data.n_val) return;
    char a[32], b[32];
    cllm_progress_count(k, a, sizeof a);
    cllm_progress_count(t->data.n_val, b, sizeof b);
    snprintf(buf, n, " on %s of %s validation windows", a, b);
}

/* The entropy of the training split's token distribution (nats/token): the
 * loss of the best model that ignores context, which training must beat. */
static cllm_status unigram_entropy(trainer *t) {
    int V = t->o->model.vocab_size, T = t->o->model.seq_len;
    uint64_t *count = calloc((size_t)V, sizeof *count);
    if (!count) return cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
    int32_t *tok = malloc((size_t)T * sizeof *tok);
    if (!tok) {
        free(count);
        return cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
    }
    uint64_t total = 0;
    size_t released = 0;
    for (size_t w = 0; w < t->data.n_train; w++) {
        size_t start = t->data.train_starts[w] + 1; /* ascending: one pass over the stream */
        cllm_dataset_read(&t->data, start, (size_t)T, tok);
        for (int i = 0; i < T; i++)
            if (tok[i] >= 0 && tok[i] < V) count[tok[i]]++;
        total += (uint64_t)T;
        if (start - released >= RELEASE_EVERY_TOKENS) { /* a pass over a big cache must not stay resident */
            cllm_run_tokens_release(&t->tokens, released, start);
            released = start;
        }
    }
    cllm_run_tokens_release(&t->tokens, 0, t->tokens.n_tokens);
    free(tok);
    double h = 0;
    for (int i = 0; i < V; i++)
        if (count[i]) {
            double p = (double)count[i] / (double)total;
            h -= p * log(p);
        }
    free(count);
    t->unigram = h;
    return CLLM_OK;
}

/* ---- set-up and tear-down ----------------------------------------------------- */

static void trainer_free(trainer *t) {
    full_moments_free(t);
    cllm_step_free(t->stepper);
    gpt2_destroy(&t->model);
    cllm_dataset_free(&t->data);
    if (t->tok) cllm_tokenizer_free(t->tok);
    cllm_run_tokens_free(&t->tokens);
    cllm_corpus_files_free(&t->files);
    cllm_run_lock_release(&t->lock, 0);
    free(t->dir);
}

/* runs/YYYYmmdd-HHMMSS, or with -2, -3, ... when that exists: mkdir is the
 * claim, so two runs started in the same second never share a folder. */
static cllm_status claim_default_dir(trainer *t) {
    cllm_status st = cllm_make_dirs("runs");
    if (st != CLLM_OK) return st;
    char base[64], name[80];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(base, sizeof base, "runs/%Y%m%d-%H%M%S", &tm);
    for (int k = 1; k <= 1000; k++) {
        if (k == 1) snprintf(name, sizeof name, "%s", base);
        else snprintf(name, sizeof name, "%s-%d", base, k);
        if (mkdir(name, 0755) == 0) {
            t->dir = strdup(name);
            t->created_dir = 1;
            return t->dir ? CLLM_OK : cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
        }
        if (errno != EEXIST) return cllm_fail(CLLM_ERR_INPUT, "cannot create folder %s: %s", name, strerror(errno));
    }
    return cllm_fail(CLLM_ERR_INPUT, "runs/ already holds 1000 runs named %s-*: give --out", base);
}

/* The folder exists, and nothing else writes to it from now on. */
static cllm_status claim_run_dir(trainer *t, int resume) {
    if (!t->o->out_dir) return claim_default_dir(t);
    t->dir = strdup(t->o->out_dir);
    if (!t->dir) return cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
    if (resume) {
        if (!is_directory(t->dir)) return cllm_fail(CLLM_ERR_INPUT, "%s: no such run folder", t->dir);
        return CLLM_OK;
    }
    t->created_dir = !is_directory(t->dir);
    return cllm_make_dirs(t->dir);
}

/* Chooses and locks the run folder before anything is read, so a folder that
 * cannot be used is said at once, and a second writer is refused. */
static cllm_status pick_run_dir(trainer *t, int resume) {
    if (!t->lead) { /* other ranks only read the folder, to resume */
        t->dir = strdup(t->o->out_dir ? t->o->out_dir : "(rank 0's run folder)");
        return t->dir ? CLLM_OK : cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
    }
    cllm_status st = claim_run_dir(t, resume);
    if (st == CLLM_OK) st = cllm_run_lock_acquire(t->dir, &t->lock);
    if (st != CLLM_OK) return st;
    int has_checkpoint = cllm_run_has_checkpoint(t->dir);
    if (!resume && has_checkpoint)
        return cllm_fail(CLLM_ERR_INPUT, "%s already holds a run: continue it with --resume %s or choose another --out",
                         t->dir, t->dir);
    if (!resume && !cllm_run_folder_is_ours(t->dir))
        return cllm_fail(CLLM_ERR_INPUT, "%s is not empty and is not a cllm run folder: choose a new or empty --out",
                         t->dir);
    /* A folder whose run never reached a checkpoint (killed during start-up or its first steps) holds nothing
       worth keeping: starting afresh there is allowed, so the user is never stuck between "already holds a run"
       and "no checkpoint yet". */
    if (!resume && file_exists(t->dir, "run.json"))
        fprintf(stderr, "cllm train: %s holds a run that never reached a checkpoint; starting it afresh\n", t->dir);
    if (resume && !has_checkpoint)
        return cllm_fail(CLLM_ERR_INPUT, "%s has no checkpoint to resume from (model.safetensors missing); "
                         "start the run again with --out %s", t->dir, t->dir);
    return cllm_run_remove_leftovers(t->dir);
}

/* A start-up that failed before the run's own files were written leaves the
 * folder as it found it: removed if this run made it. */
static void undo_run_dir(trainer *t) {
    if (!t->dir || t->lock.fd < 0 || t->folder_written) return;
    cllm_run_tokens_free(&t->tokens); /* removes a token cache not committed */
    cllm_run_lock_release(&t->lock, 1);
    if (t->created_dir) rmdir(t->dir);
}

/* Hands back the pages of the mapped stream behind a sequential pass. */
typedef struct {
    const cllm_run_tokens *tokens;
    size_t released;
} release_state;

static void release_read(void *ctx, size_t pos) {
    release_state *r = ctx;
    if (pos <= r->released) return;
    cllm_run_tokens_release(r->tokens, r->released, pos);
    r->released = pos;
}

/* What start-up says while it reads: the corpus at once, then on a terminal the bytes done and the rate. */
typedef struct {
    cllm_progress_mode mode;
    const char *phase;
    double t0, last;
} startup_progress;

static void startup_show(void *ctx, uint64_t done, uint64_t total) {
    startup_progress *p = ctx;
    double now = cllm_now();
    if (p->mode != CLLM_PROGRESS_LINE || now - p->last < 0.25) return;
    p->last = now;
    double mb = (double)done / 1e6;
    printf("\r\033[K  %-9s %.1f of %.1f MB, %.1f MB/s", p->phase, mb, (double)total / 1e6,
           now > p->t0 ? mb / (now - p->t0) : 0.0);
    fflush(stdout);
}

static void startup_phase(startup_progress *p, const char *phase) {
    p->phase = phase;
    p->t0 = p->last = cllm_now();
}

/* The end of a phase, e.g. "  tokenizer trained on 88.6 MB in 2.9 s (30.6 MB/s)": the in-place line
   replaced by one that stays. */
static void startup_done(startup_progress *p, const char *label, const char *what, uint64_t bytes,
                         const char *extra) {
    if (p->mode == CLLM_PROGRESS_OFF) return;
    double s = cllm_now() - p->t0;
    printf("%s  %-9s %s %.1f MB in %.1f s (%.1f MB/s%s)\n", p->mode == CLLM_PROGRESS_LINE ? "\r\033[K" : "",
           label, what, (double)bytes / 1e6, s, s > 0 ? (double)bytes / 1e6 / s : 0.0, extra);
    fflush(stdout);
}

static cllm_status data_changed(const trainer *t, size_t expect_bytes) {
    return cllm_fail(CLLM_ERR_INPUT, "the training data changed since the run started (%zu bytes, now %zu); "
                     "cannot resume exactly", expect_bytes, (size_t)t->tokens.corpus_bytes);
}

/* Data, tokenizer and dataset: everything that can fail on user input, done
 * before the run folder is written. The corpus is streamed, never held:
 * listed, read once to train the tokenizer (fresh runs), read again to
 * encode it into DIR/tokens.bin, which the dataset maps (train/tokens.h). */
static cllm_status load_data(trainer *t, int resume, uint64_t expect_hash, size_t expect_bytes) {
    const cllm_train_options *o = t->o;
    const char *const *paths = (const char *const *)o->data_paths;
    startup_progress sp = {cllm_progress_pick(o->progress ? o->progress : "auto", o->quiet, isatty(STDOUT_FILENO)),
                           NULL, 0, 0};
    if (!t->lead) sp.mode = CLLM_PROGRESS_OFF; /* rank 0 says what is read */
    cllm_run_tokens_options to = {0, cllm_stop_flag_ptr(), {startup_show, &sp}};
    if (sp.mode != CLLM_PROGRESS_OFF) { /* at once: listing a big tree alone can take a second */
        printf("cllm train: reading %s", o->n_data ? paths[0] : CLLM_DEFAULT_CORPUS_NAME);
        if (o->n_data > 1) printf(" and %d more path%s", o->n_data - 1, o->n_data > 2 ? "s" : "");
        printf("\n");
        fflush(stdout);
    }
    startup_phase(&sp, "listed");
    cllm_status st = cllm_corpus_list(paths, o->n_data, cllm_stop_flag_ptr(), &t->files);
    if (st == CLLM_OK && !resume && t->lead) st = cllm_run_tokens_begin(t->dir, o->model.vocab_size, &t->tokens);
    if (st != CLLM_OK) return st;
    if (sp.mode != CLLM_PROGRESS_OFF) {
        size_t n = t->files.builtin ? 1 : t->files.n_files;
        printf("  listed    %zu file%s, %.1f MB in %.1f s\n", n, n == 1 ? "" : "s", (double)t->files.total_bytes / 1e6,
               cllm_now() - sp.t0);
        fflush(stdout);
    }
    if (resume) {
        char *path = cllm_path_join(t->dir, "tokenizer.bin");
        if (!path) return cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
        st = cllm_tokenizer_load(path, &t->tok);
        free(path);
    } else if (o->init_dir) {
        st = cllm_pretrained_load_tokenizer(o->init_dir, &t->tok); /* its ids are what the weights were trained on */
        if (st == CLLM_OK) t->settings.pretokenize = (int)cllm_tokenizer_pretokenizer(t->tok); /* run.json: the truth */
    } else if (o->tokenizer_path) {
        st = cllm_tokenizer_load(o->tokenizer_path, &t->tok);
    } else {
        startup_phase(&sp, "tokenizer");
        st = cllm_run_tokenizer_train(&t->files, paths, o->n_data, o->model.vocab_size,
                                      (cllm_pretok)o->pretokenize, &to, &t->tok, &t->tokens);
        if (st == CLLM_OK) startup_done(&sp, "tokenizer", "trained on", t->tokens.corpus_bytes, "");
    }
    if (st != CLLM_OK) return st;
    int learned = cllm_tokenizer_vocab_size(t->tok);
    if (!resume && learned < o->model.vocab_size) {
        /* A small corpus runs out of pairs to merge before --vocab: size the model to the tokenizer rather than
           refuse (run.json then records the vocabulary actually used, so --resume and eval agree with it). */
        t->requested_vocab = o->model.vocab_size;
        t->settings.model.vocab_size = learned;
    }
    if (learned != o->model.vocab_size)
        return cllm_fail(CLLM_ERR_INPUT, "tokenizer has %d tokens, run.json says %d",
                         cllm_tokenizer_vocab_size(t->tok), o->model.vocab_size);
    startup_phase(&sp, resume ? "checking" : "encoding"); /* resume: the data's hash, and the cache's */
    if (resume) { /* only rank 0 writes the folder: another rank without a usable cache encodes in memory */
        st = cllm_run_tokens_reuse(t->dir, &t->files, t->tok, expect_hash, expect_bytes, t->lead, &to, &t->tokens);
        if (st != CLLM_OK && t->tokens.changed) return data_changed(t, expect_bytes);
        if (st == CLLM_OK && t->tokens.note[0] && t->lead) {
            if (sp.mode == CLLM_PROGRESS_LINE) printf("\r\033[K");
            fprintf(stderr, "cllm train: %s: rebuilt it\n", t->tokens.note);
        }
    } else if (t->lead) {
        st = cllm_run_tokens_build(t->dir, &t->files, t->tok, &to, &t->tokens);
    } else { /* the other ranks of a fresh run: the same stream, in memory (rank 0's folder may be elsewhere) */
        uint64_t hash = t->tokens.corpus_hash, bytes = t->tokens.corpus_bytes;
        st = cllm_run_tokens_in_memory(&t->files, t->tok, &to, &t->tokens);
        if (st == CLLM_OK && bytes && (t->tokens.corpus_hash != hash || t->tokens.corpus_bytes != bytes))
            st = cllm_fail(CLLM_ERR_INPUT, "the training data changed while it was read: start again once it stays put");
    }
    if (st != CLLM_OK) return st;
    if (!resume || t->tokens.note[0]) {
        char what[64], extra[48];
        snprintf(what, sizeof what, "%zu tokens from", t->tokens.n_tokens);
        snprintf(extra, sizeof extra, ", %d thread%s", omp_get_max_threads(), omp_get_max_threads() == 1 ? "" : "s");
        startup_done(&sp, "tokens", what, t->tokens.corpus_bytes, extra);
    }
    st = cllm_dataset_from_ids(t->tokens.ids, t->tokens.id_bytes, t->tokens.n_tokens, o->model.seq_len,
                               o->val_fraction, o->seed, &t->data);
    /* Every evaluation reads all the validation windows, spread over the whole stream: held in memory (a
       val_fraction of the stream's bytes), they keep the map's pages from being resident after every pass. */
    release_state rs = {&t->tokens, 0};
    if (st == CLLM_OK) st = cllm_dataset_hold_validation(&t->data, release_read, &rs);
    return st;
}

/* The optimizer state each rank holds (ZeRO-1: its span's moments) and,
 * with several ranks, how the step is split. */
static void print_ranks(const trainer *t) {
    size_t b, e;
    cllm_step_owned(t->stepper, &b, &e);
    double mib = (double)cllm_step_optimizer_bytes(t->stepper) / (1024.0 * 1024.0);
    if (t->comm->size == 1) {
        printf("  optimizer AdamW moments %.3f MiB (%zu parameters)\n", mib, e - b);
        return;
    }
    int first, n;
    cllm_step_block(t->stepper, &first, &n);
    printf("  ranks     %d (MPI), %d threads each; rank 0 computes micro-batches %d..%d of %d per step (a node of "
           "the reduction tree)\n", t->comm->size, t->threads, first, first + n - 1, t->n_micro);
    printf("  optimizer AdamW moments %.3f MiB per rank (rank 0: %zu of %zu parameters, 1/%d), gathered to rank 0 "
           "to save\n", mib, e - b, t->model.n_params, t->comm->size);
}

/* What the run holds, allocated up front (so the figure is what the run
 * needs, whatever is resident yet), and the peak resident so far (which
 * includes reading the corpus and, with --init or --resume, the model
 * file). */
static void print_memory(const trainer *t, size_t buffer_bytes) {
    double params = (double)t->model.n_params * sizeof(float), arenas = 0;
    for (int th = 0; th < t->threads; th++) {
        gpt2_acts *acts;
        int32_t *in, *tg;
        cllm_step_scratch(t->stepper, th, &acts, &in, &tg);
        arenas += (double)gpt2_acts_bytes(acts);
    }
    double moments = (double)cllm_step_optimizer_bytes(t->stepper); /* this rank's span: 1/R with R ranks */
    double tokens = (double)t->data.n_tokens * sizeof(int32_t), total = params + moments + buffer_bytes + arenas + tokens;
    char all[32], p[32], m[32], g[32], a[32], d[32], rss[32];
    cllm_format_bytes(total, all, sizeof all);
    cllm_format_bytes(params, p, sizeof p);
    cllm_format_bytes(moments, m, sizeof m);
    cllm_format_bytes((double)buffer_bytes, g, sizeof g);
    cllm_format_bytes(arenas, a, sizeof a);
    cllm_format_bytes(tokens, d, sizeof d);
    cllm_format_bytes((double)cllm_memory_peak_rss(), rss, sizeof rss);
    printf("  memory    %s: parameters %s, AdamW moments %s, gradient buffers %s, activations %s (%d arena%s of %d "
           "sequence%s), tokens %s; peak resident so far %s\n",
           all, p, m, g, a, t->threads, t->threads == 1 ? "" : "s", t->o->micro, t->o->micro == 1 ? "" : "s", d, rss);
}

static void print_summary(const trainer *t, size_t buffer_bytes) {
    const cllm_train_options *o = t->o;
    const gpt2_config *c = &o->model;
    printf("cllm train: run folder %s\n", t->dir);
    if (o->n_data == 0) printf("  data      %s\n", CLLM_DEFAULT_CORPUS_NAME);
    else printf("  data      %d path(s), first %s\n", o->n_data, o->data_paths[0]);
    printf("            %zu files, %zu bytes, %zu tokens (vocab %d), %zu train / %zu validation windows of %d\n",
           t->tokens.n_docs, (size_t)t->tokens.corpus_bytes, t->data.n_tokens, c->vocab_size, t->data.n_train, t->data.n_val,
           c->seq_len);
    if (t->tokens.n_binary_skipped)
        printf("            %zu binary file%s skipped (a NUL byte in the first 8 KiB)\n", t->tokens.n_binary_skipped,
               t->tokens.n_binary_skipped == 1 ? "" : "s");
    if (t->requested_vocab)
        printf("            vocabulary %d, not --vocab %d: the corpus has no more pairs to merge\n", c->vocab_size,
               t->requested_vocab);
    if (o->tokenizer_path) printf("            tokenizer %s (--tokenizer), not trained\n", o->tokenizer_path);
    char why[160];
    if (cllm_hf_tokenizer_expressible(t->tok, why, sizeof why))
        printf("  tokenizer %s pre-tokenization; tokenizer.bin and Hugging Face tokenizer.json, vocab.json, merges.txt\n",
               cllm_pretok_name(cllm_tokenizer_pretokenizer(t->tok)));
    else
        printf("  tokenizer %s pre-tokenization; tokenizer.bin only, no Hugging Face files: %s\n",
               cllm_pretok_name(cllm_tokenizer_pretokenizer(t->tok)), why);
    printf("  model     GPT-2, %d layers, %d heads, %d dims, context %d: %zu parameters\n", c->n_layer, c->n_head,
           c->n_embd, c->seq_len, gpt2_num_parameters(&t->model));
    if (o->init_dir && t->init_layout[0])
        printf("  init      %s: %s; tokenizer %s\n", o->init_dir, t->init_layout,
               cllm_pretrained_tokenizer_file(o->init_dir));
    else if (o->init_dir) /* resumed: the weights are the checkpoint's */
        printf("  init      the run started from %s\n", o->init_dir);
    printf("  batch     %d sequences x %d accumulation = %d per step, micro-batches of %d (%d per step)\n", o->batch,
           o->grad_accum, t->seqs_per_step, o->micro, t->n_micro);
    printf("  schedule  %" PRId64 " steps, lr %.3g warm-up %" PRId64 " then cosine to %.3g, AdamW wd %.3g, clip %.3g\n",
           t->total_steps, o->lr, t->warmup, o->min_lr, o->weight_decay, o->clip);
    printf("  threads   %d = %d team%s x %d (%s), SIMD %s, gradient buffers %d x %.1f MiB = %.1f MiB\n",
           t->threads * t->team_threads, t->threads, t->threads == 1 ? "" : "s", t->team_threads,
           o->teams > 0 ? "CLLM_TEAM / OMP_NUM_THREADS" : "default for this model and memory", t->model.kernels->name,
           cllm_step_buffers(t->stepper), (double)buffer_bytes / cllm_step_buffers(t->stepper) / (1024.0 * 1024.0),
           (double)buffer_bytes / (1024.0 * 1024.0));
    print_memory(t, buffer_bytes);
    print_ranks(t);
    if (o->precision == CLLM_PRECISION_BF16)
        printf("  precision bf16 matrix products, fp32 accumulation and master weights (%s)\n",
               t->model.kernels->bf16_fast ? "AVX512_BF16" : "exact portable emulation: this CPU or SIMD path has no "
                                                              "AVX512_BF16, slow");
    if (t->data.n_val > 0) {
        char k[32], n[32], tokens[32], every[64] = "at the end";
        size_t sel = eval_selected(t);
        cllm_progress_count(sel, k, sizeof k);
        cllm_progress_count(t->data.n_val, n, sizeof n);
        cllm_progress_count(sel * (size_t)c->seq_len, tokens, sizeof tokens);
        if (o->eval_every > 0) snprintf(every, sizeof every, "every %" PRId64 " steps and at the end", o->eval_every);
        if (sel == t->data.n_val) printf("  eval      all %s validation windows, %s\n", n, every);
        else
            printf("  eval      %s of %s validation windows (%s tokens, %s), the same ones %s\n", k, n, tokens,
                   o->eval_tokens < 0 ? "the default; --eval-tokens 0: all" : "--eval-tokens", every);
    }
    printf("  baseline  unigram entropy of the training split %.4f nats/token\n", t->unigram);
    /* The learning rate the run goes on with, said out loud: a finished run
       extended with a larger --steps continues on the schedule of the new
       budget, which is above the floor it ended at. */
    cllm_schedule sched = {o->lr, o->min_lr, t->warmup, t->total_steps};
    if (t->step > 0 && t->step < t->total_steps)
        printf("  resume    from step %" PRId64 " (data window %" PRIu64 "), next lr %.3g (schedule of %" PRId64
               " steps)%s\n",
               t->step, t->window_base, cllm_schedule_lr(&sched, t->step + 1), t->total_steps,
               o->stop_after > 0 ? ", stopping after the step given by --stop-after" : "");
    else if (t->step > 0)
        printf("  resume    from step %" PRId64 ": the budget is done\n", t->step);
    else if (o->stop_after > 0)
        printf("  stop      after step %" PRId64 " (the schedule stays that of the whole budget)\n", o->stop_after);
    fflush(stdout);
}

/* The atomics are split into the hand-over count, which depends only on
 * micro-batches and segments, and those spent by starved workers, which
 * depend on timing: neither depends on the parameter count. */
static void print_verbose(const trainer *t, const cllm_engine_stats *s) {
    printf("  step %" PRId64 ": compute min/median/max %.1f/%.1f/%.1f ms, reduction %.1f ms, exposed %.1f%% "
           "+ update %.1f%%, atomics %" PRId64 " (%" PRId64 " hand-over + %" PRId64 " while waiting; %d nodes "
           "folded by owners), utilisation %.1f%%\n",
           t->step, 1e3 * s->compute_min, 1e3 * s->compute_median, 1e3 * s->compute_max, 1e3 * s->reduce,
           100.0 * s->exposed_share, 100.0 * s->update_share, s->atomics, s->atomics - s->atomics_extra,
           s->atomics_extra, s->folded_nodes, 100.0 * s->utilisation);
    if (t->comm->size > 1)
        printf("  step %" PRId64 ": rank 0 of %d: waited %.1f ms (%.1f%%) for the other ranks' compute, then "
               "communication %.1f ms exposed (%.1f%% of the step), %.1f KiB sent\n",
               t->step, t->comm->size, 1e3 * s->rank_wait, 100.0 * s->rank_wait_share, 1e3 * s->comm,
               100.0 * s->comm_share, (double)s->comm_bytes / 1024.0);
}

/* ---- samples ------------------------------------------------------------------- */

static int print_token(int32_t id, void *ctx) {
    const cllm_tokenizer *tok = ctx;
    size_t len = 0;
    const uint8_t *b = cllm_tokenizer_token_bytes(tok, id, &len);
    if (b && len) fwrite(b, 1, len, stdout);
    fflush(stdout);
    return stop_requested() || stdout_gone(); /* non-zero ends the sample */
}

/* Streams n_tokens generated from an end-of-text start, temperature 0.8. */
static cllm_status print_sample(trainer *t, int n_tokens, const char *title) {
    printf("%s\n", title);
    fflush(stdout);
    cllm_sample_settings set = {.temperature = 0.8f, .top_k = 0, .top_p = 1.0f};
    int32_t eot = cllm_tokenizer_eot(t->tok);
    cllm_status st = cllm_generate(&t->model, &eot, 1, n_tokens, &set, &t->rng, print_token, t->tok, NULL);
    printf("\n");
    fflush(stdout);
    return st;
}

/* ---- the loop ---------------------------------------------------------------------- */

/* "NaN", "inf" or the number: printf's "-nan" reads like a bug of ours. */
static const char *describe(double x, char *buf) {
    if (isnan(x)) return "NaN";
    if (isinf(x)) return x > 0 ? "inf" : "-inf";
    snprintf(buf, 32, "%.4g", x);
    return buf;
}

static int due(int64_t step, int64_t every) { return every > 0 && step % every == 0; }

int64_t cllm_train_evals_left(int64_t eval_every, int64_t step, int64_t end, int64_t total) {
    int64_t n = eval_every > 0 ? end / eval_every - step / eval_every : 0;
    if (end == total && (eval_every <= 0 || end % eval_every != 0) && step < end) n++;
    return n;
}

static int64_t evals_after(const trainer *t, int64_t s, int64_t end) {
    return t->data.n_val ? cllm_train_evals_left(t->o->eval_every, s, end, t->total_steps) : 0;
}

/* Seconds one validation pass takes: the last one measured, or before the
 * first, its tokens at three times the training rate (a forward pass is
 * about a third of a training step's work). */
static double eval_pass_seconds(const trainer *t, double train_tokens_per_s) {
    if (t->eval_seconds > 0) return t->eval_seconds;
    if (!(train_tokens_per_s > 0)) return 0;
    return (double)eval_selected(t) * t->o->model.seq_len / (3.0 * train_tokens_per_s);
}

static cllm_status train_loop(trainer *t, cllm_train_result *res) {
    const cllm_train_options *o = t->o;
    cllm_progress_mode mode = cllm_progress_pick(o->progress ? o->progress : "auto", o->quiet, isatty(STDOUT_FILENO));
    if (!t->lead) mode = CLLM_PROGRESS_OFF;
    cllm_metrics_log log = {0};
    cllm_status st = t->lead ? cllm_metrics_open(&log, t->dir, t->step) : CLLM_OK;
    st = agree(t, st, "to open metrics.jsonl");
    if (st != CLLM_OK) return st;
    cllm_schedule sched = {o->lr, o->min_lr, t->warmup, t->total_steps};
    int64_t end = o->stop_after > 0 && o->stop_after < t->total_steps ? o->stop_after : t->total_steps;
    double peak = cllm_peak_gflops_per_core(o->peak_gflops) * 1e9 * t->threads * t->team_threads;
    double flops_per_token = gpt2_flops_per_token(&o->model);
    double tokens_per_step = (double)t->seqs_per_step * o->model.seq_len;
    double train_time = 0, loop_start = cllm_now();
    int64_t first = t->step;
    t->saved_step = first; /* 0, or the checkpoint a resume loaded */
    double val = NAN, last_loss = NAN;
    /* One line at once, before the first step (which can take long on a big
     * model): plain mode then prints every --log-every steps or 30 s. */
    t->display = cllm_progress_open(mode, stdout, o->columns, 30.0);
    cllm_progress_info pi = {.step = t->step, .total = t->total_steps, .loss = NAN, .has_val = 0,
                             .tokens_per_s = 0, .lr = -1, .eta_s = -1, .mfu = -1};
    cllm_progress_update(t->display, &pi, 1);
    while (t->step < end && !agreed_stop(t)) {
        int64_t s = t->step + 1;
        double lr = cllm_schedule_lr(&sched, s);
        cllm_step_result r;
        double t0 = cllm_now();
        st = cllm_step_run(t->stepper, s, lr, t->window_base, &r);
        train_time += cllm_now() - t0;
        /* A read of the map maps the whole page-cache folio around it (up to megabytes, whatever the madvise):
           the step's windows are not read again soon, so their pages go back, or the resident size would grow
           by ~16 MB a step until the whole cache is in it. */
        cllm_run_tokens_release(&t->tokens, 0, t->tokens.n_tokens);
        if (st != CLLM_OK) break;
        const cllm_engine_stats stats = r.engine;
        t->grad_norm = r.grad_norm;
        double loss = s == debug_nan_step ? NAN : r.loss;
        if (!isfinite(loss) || r.skipped || !isfinite(t->grad_norm)) {
            cllm_progress_hold(t->display);
            char buf_loss[32], buf_norm[32];
            char kept[512];
            if (cllm_run_has_checkpoint(t->dir))
                snprintf(kept, sizeof kept, "the last good checkpoint in %s is kept", t->dir);
            else
                snprintf(kept, sizeof kept, "no checkpoint had been saved yet");
            st = cllm_fail(CLLM_ERR_INTERNAL,
                           "training diverged at step %" PRId64 " (loss %s, gradient norm %s): stopped; %s "
                           "(try a lower --lr, or --clip 1)",
                           s, describe(loss, buf_loss), describe(t->grad_norm, buf_norm), kept);
            res->same_on_all_ranks = 1; /* loss and norm are the same numbers on every rank */
            break;
        }
        t->step = s;
        t->window_base += (uint64_t)t->seqs_per_step;
        if (s == debug_poison_step) t->model.params[t->model.tensors[0].offset] = NAN;
        last_loss = loss;
        double avg_tps = (double)(s - first) * tokens_per_step / train_time;
        double steps_left_s = (double)(end - s) * tokens_per_step / avg_tps;
        pi = (cllm_progress_info){
            .step = s, .total = t->total_steps, .loss = loss, .has_val = isfinite(val), .val_loss = val,
            .tokens_per_s = avg_tps, .lr = lr,
            .eta_s = steps_left_s + (double)evals_after(t, s, end) * eval_pass_seconds(t, avg_tps),
            .mfu = peak > 0 ? avg_tps * flops_per_token / peak : -1,
        };
        /* The same model on every rank: rank 0 alone evaluates. */
        int eval_now = (due(s, o->eval_every) || s == t->total_steps) && t->data.n_val > 0 && t->lead;
        if (eval_now) {
            /* The pass shows its own count; the ETA includes it. */
            cllm_progress_info during = pi;
            during.eval_total = eval_selected(t);
            during.eta_s = steps_left_s + (double)(evals_after(t, s, end) + 1) * eval_pass_seconds(t, avg_tps);
            cllm_progress_update(t->display, &during, mode == CLLM_PROGRESS_LINE);
            val = evaluate(t);
            pi.has_val = isfinite(val);
            pi.val_loss = val;
            pi.eta_s = steps_left_s + (double)evals_after(t, s, end) * eval_pass_seconds(t, avg_tps);
        }
        double tps = tokens_per_step / stats.wall;
        cllm_metrics_row row = {
            .step = s, .tokens = (int64_t)(s * tokens_per_step), .loss = loss, .has_val = eval_now && isfinite(val),
            .val_loss = val, .lr = lr, .grad_norm = t->grad_norm, .tokens_per_s = tps,
            .exposed_reduction = stats.exposed_share, .utilisation = stats.utilisation, .atomics = stats.atomics,
            .compute_min = stats.compute_min, .compute_median = stats.compute_median,
            .compute_max = stats.compute_max, .reduce = stats.reduce, .exposed_comm = stats.comm_share,
            .rank_wait = stats.rank_wait_share,
            .comm_bytes = (int64_t)stats.comm_bytes,
        };
        st = t->lead ? cllm_metrics_append(&log, &row) : CLLM_OK;
        if (st != CLLM_OK) break;
        /* A terminal line is redrawn at most 10 times a second (the display
         * decides): tiny models run hundreds of steps a second. */
        cllm_progress_update(t->display, &pi,
                             due(s, o->log_every) || s == end || (mode == CLLM_PROGRESS_LINE && (eval_now || o->verbose)));
        if (o->verbose && t->lead && !stdout_gone()) {
            cllm_progress_hold(t->display);
            print_verbose(t, &stats);
        }
        if (t->lead && due(s, o->sample_every) && s != t->total_steps && !stdout_gone() && !stop_requested()) {
            cllm_progress_hold(t->display);
            char title[64];
            snprintf(title, sizeof title, "--- sample at step %" PRId64 " ---", s);
            st = print_sample(t, 64, title);
            if (st != CLLM_OK) break;
        }
        if (due(s, o->save_every) && s != end) {
            st = save_checkpoint(t);
            if (st != CLLM_OK) break;
        }
    }
    cllm_progress_close(t->display);
    t->display = NULL;
    cllm_metrics_close(&log);
    if (st != CLLM_OK) return st;
    /* The end of the budget, --stop-after, or a stop request: save where we
     * are (a request that arrives during the save lets it finish), unless
     * that step is saved already (a request that came during or right after
     * a periodic save). Stopped before its first step, a run has nothing new
     * to save, and a fresh one stays a folder that never reached a checkpoint. */
    if (t->step > t->saved_step) st = save_checkpoint(t);
    if (st != CLLM_OK) return st;
    res->steps_done = t->step;
    res->final_loss = last_loss;
    res->final_val_loss = t->step == t->total_steps ? val : NAN;
    res->tokens_per_s = t->step > first ? (double)(t->step - first) * tokens_per_step / train_time : 0;
    res->loop_s = cllm_now() - loop_start;
    res->steps_s = train_time;
    res->eval_s = t->eval_total_s;
    /* Only a stop request ends the loop early without an error; once the
     * last step is done, the run is complete whatever arrives. */
    res->interrupted = t->step < end;
    return CLLM_OK;
}

/* The last lines of a run. A stop request that arrives once the last step is
 * done does not make the run incomplete: the checkpoint is saved (done by
 * now), the final evaluation and sample are cut short or skipped, the output
 * says how to get them, and res->interrupted (exit 130) is set only when
 * something asked for was skipped. */
static cllm_status finish_run(trainer *t, cllm_train_result *res) {
    const cllm_train_options *o = t->o;
    if (!t->lead) return CLLM_OK; /* rank 0 evaluates, plots, samples and says so */
    if (res->interrupted) {
        if (t->step == 0)
            printf("interrupted by %s before step 1: no checkpoint saved; %s never reached a checkpoint (start "
                   "again with: cllm train --out %s)\n",
                   cllm_signal_name(cllm_stop_signal()), t->dir, t->dir);
        else
            printf("interrupted at step %" PRId64 " of %" PRId64 ": checkpoint saved; continue with: cllm train "
                   "--resume %s\n",
                   t->step, t->total_steps, t->dir);
        return CLLM_OK;
    }
    if (t->step < t->total_steps) {
        printf("stopped after step %" PRId64 " of %" PRId64 ": checkpoint saved; continue with: cllm train --resume %s\n",
               t->step, t->total_steps, t->dir);
        return CLLM_OK;
    }
    double val = res->final_val_loss;
    if (!isfinite(val)) val = evaluate(t); /* NAN at once after a stop request */
    char on[96];
    eval_note(t, on, sizeof on);
    int eval_skipped = t->data.n_val > 0 && !isfinite(val) && stop_requested();
    char skipped_note[512] = "";
    if (eval_skipped) {
        snprintf(skipped_note, sizeof skipped_note, "validation skipped by %s (cllm eval %s computes it)",
                 cllm_signal_name(cllm_stop_signal()), t->dir);
        res->interrupted = 1;
    }
    if (!isfinite(res->final_loss)) { /* resumed a complete run: no step ran now, so no training loss */
        printf("final: step %" PRId64 " (the run was already complete)", t->step);
        if (isfinite(val)) printf(", validation loss %.4f (perplexity %.2f)%s", val, exp(val), on);
        else if (eval_skipped) printf(", %s", skipped_note);
        printf(", unigram baseline %.4f\n", t->unigram);
    } else if (isfinite(val))
        printf("final: step %" PRId64 ", train loss %.4f, validation loss %.4f (perplexity %.2f)%s, unigram baseline "
               "%.4f, %.0f tokens/s\n",
               t->step, res->final_loss, val, exp(val), on, t->unigram, res->tokens_per_s);
    else if (eval_skipped)
        printf("final: step %" PRId64 " (the run is complete), train loss %.4f, %s, unigram baseline %.4f, "
               "%.0f tokens/s\n",
               t->step, res->final_loss, skipped_note, t->unigram, res->tokens_per_s);
    else
        printf("final: step %" PRId64 ", train loss %.4f (no validation split), unigram baseline %.4f\n", t->step,
               res->final_loss, t->unigram);
    if (res->loop_s > 0) {
        char loop[32], steps[32];
        cllm_progress_duration(res->loop_s, loop, sizeof loop);
        cllm_progress_duration(res->steps_s, steps, sizeof steps);
        printf("time: %s training (%s in steps), validation %.1f s (%.1f%% of it)\n", loop, steps, res->eval_s,
               100.0 * res->eval_s / res->loop_s);
    }
    /* The plot takes milliseconds and completes the run folder: drawn even
     * after a stop request. */
    char *png = cllm_path_join(t->dir, "loss.png");
    const char *dirs[1] = {t->dir};
    if (png && cllm_plot_runs(dirs, 1, png, t->dir) == CLLM_OK) printf("loss curve: %s\n", png);
    else if (png) fprintf(stderr, "cllm train: no loss.png: %s\n", cllm_last_error());
    free(png);
    if (o->sample_tokens <= 0 || stdout_gone()) return CLLM_OK; /* a sample nobody can read is not generated */
    cllm_status st = CLLM_OK;
    int started = !stop_requested();
    if (started) {
        cllm_rng_seed(&t->rng, o->seed);
        st = print_sample(t, o->sample_tokens, "--- sample ---");
    }
    if (st == CLLM_OK && stop_requested()) {
        printf("sample %s by %s (cllm sample %s generates one)\n", started ? "cut short" : "skipped",
               cllm_signal_name(cllm_stop_signal()), t->dir);
        res->interrupted = 1;
    }
    return st;
}

static cllm_status setup(trainer *t, int resume) {
    const cllm_train_options *o = t->o;
    cllm_status st = gpt2_create(&t->model, &o->model);
    if (st != CLLM_OK) return st;
    gpt2_use_kernels(&t->model, o->kernels); /* NULL keeps the best table gpt2_create chose */
    if (o->precision == CLLM_PRECISION_BF16) st = gpt2_use_bf16(&t->model, 1);
    if (st != CLLM_OK) return st;
    if (o->init_dir && !resume)
        st = cllm_pretrained_load_weights(o->init_dir, &t->model, t->init_layout, sizeof t->init_layout);
    else gpt2_init_weights(&t->model, o->seed); /* on --resume the checkpoint replaces them below */
    if (st != CLLM_OK) return st;
    gpt2_refresh_bf16(&t->model, 0, t->model.n_params); /* bf16 mode: the copy of --init's weights */
    t->n_micro = o->batch / o->micro * o->grad_accum;
    t->seqs_per_step = t->n_micro * o->micro;
    t->total_steps = cllm_train_total_steps(o, t->data.n_train);
    if (t->total_steps < 1) return cllm_fail(CLLM_ERR_INPUT, "the budget is less than one step");
    t->warmup = o->warmup >= 0 ? o->warmup : t->total_steps / 20 < 100 ? t->total_steps / 20 : 100;
    t->eval_windows = cllm_train_eval_cap(o, t->total_steps);
    t->settings.total_steps = t->total_steps; /* into run.json, for `cllm runs` */
    if (o->stop_after > t->total_steps)
        return cllm_fail(CLLM_ERR_INPUT, "--stop-after %" PRId64 " is beyond the budget of %" PRId64 " steps",
                         o->stop_after, t->total_steps);
    cllm_rng_seed(&t->rng, o->seed ^ 0x5eed5a3b1e5ULL);
    cllm_step_config sc = {
        .model = &t->model, .micro = o->micro, .n_micro = t->n_micro, .comm = t->comm,
        .clip = o->clip, .weight_decay = o->weight_decay, .window = train_window, .window_ctx = &t->data,
        .segments_per_thread = o->segments_per_thread, .streaming = !o->no_streaming,
        .buffer_window = o->grad_window, .teams = o->teams, .team_threads = o->team_threads,
    };
    st = cllm_step_create(&sc, &t->stepper);
    if (st != CLLM_OK) return st;
    t->threads = cllm_step_threads(t->stepper);
    t->team_threads = cllm_step_team_threads(t->stepper);
    if (resume) {
        st = load_checkpoint(t);
        if (st != CLLM_OK) return st;
        if (o->stop_after > 0 && o->stop_after <= t->step)
            return cllm_fail(CLLM_ERR_INPUT, "--stop-after %" PRId64 ": the run is already at step %" PRId64,
                             o->stop_after, t->step);
        /* A smaller budget given with --resume cannot un-train steps. */
        if (t->step > t->total_steps)
            return cllm_fail(CLLM_ERR_INPUT,
                             "the run is already at step %" PRId64 ", past the budget of %" PRId64
                             " steps given now: give a larger --steps, --epochs or --tokens",
                             t->step, t->total_steps);
    }
    return unigram_entropy(t);
}

/* A fresh run's folder: created only now that data and settings are known
 * good, so a bad command line leaves nothing behind. */
static cllm_status create_run_folder(trainer *t, uint64_t hash) {
    cllm_status st = cllm_make_dirs(t->dir);
    if (st != CLLM_OK) return st;
    /* run.json records absolute data paths so --resume works from anywhere. */
    cllm_train_options abs = *t->o;
    char **paths = calloc((size_t)t->o->n_data + 1, sizeof *paths);
    if (!paths) return cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
    for (int i = 0; i < t->o->n_data; i++) {
        paths[i] = realpath(t->o->data_paths[i], NULL);
        if (!paths[i]) paths[i] = strdup(t->o->data_paths[i]);
    }
    abs.data_paths = paths;
    char *init = t->o->init_dir ? realpath(t->o->init_dir, NULL) : NULL;
    if (init) abs.init_dir = init;
    st = cllm_run_json_write(t->dir, &abs, hash, (size_t)t->tokens.corpus_bytes);
    free(init);
    for (int i = 0; i < t->o->n_data; i++) free(paths[i]);
    free(paths);
    if (st != CLLM_OK) return st;
    char *tok = cllm_path_join(t->dir, "tokenizer.bin");
    st = tok ? cllm_tokenizer_save(t->tok, tok) : cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
    free(tok);
    if (st == CLLM_OK) st = cllm_run_tokens_commit(&t->tokens);
    /* Beside it, the same tokenizer as Hugging Face files (when they can express it: the summary says if not). */
    char why[160];
    if (st == CLLM_OK && cllm_hf_tokenizer_expressible(t->tok, why, sizeof why))
        st = cllm_hf_tokenizer_write(t->tok, t->dir, t->o->model.seq_len);
    if (st == CLLM_OK) t->folder_written = 1;
    return st;
}

/* A stop request before the loop: nothing of the run is written yet (the
 * folder, if it existed, is as it was), so the whole start-up is abandoned. */
static cllm_status interrupted_at_start(const trainer *t, int resume, cllm_status st) {
    /* The data layer says "interrupted while reading the corpus" (or while
     * training the tokenizer): keep the phase, name the signal. */
    static const char prefix[] = "interrupted ";
    const char *msg = cllm_last_error();
    char where[200];
    snprintf(where, sizeof where, "%s",
             st == CLLM_ERR_INTERRUPTED && strncmp(msg, prefix, sizeof prefix - 1) == 0 ? msg + sizeof prefix - 1
                                                                                         : "during start-up");
    const char *sig = cllm_signal_name(cllm_stop_signal());
    if (resume)
        return cllm_fail(CLLM_ERR_INTERRUPTED, "interrupted by %s %s: %s is unchanged (continue with: cllm train "
                         "--resume %s)", sig, where, t->dir, t->dir);
    return cllm_fail(CLLM_ERR_INTERRUPTED, "interrupted by %s %s: nothing written", sig, where);
}

cllm_status cllm_train(const cllm_train_options *o, int resume, cllm_train_result *res) {
    /* From the very start: reading the corpus and training the tokenizer can
     * take minutes, and a Ctrl-C there must end the run as cleanly as one
     * during training. */
    cllm_stop_catch(0);
    memset(res, 0, sizeof *res);
    res->final_val_loss = NAN;
    trainer t;
    memset(&t, 0, sizeof t);
    t.lock.fd = -1;
    t.settings = *o;
    t.o = &t.settings;
    t.comm = o->comm ? o->comm : cllm_comm_single();
    t.lead = t.comm->rank == 0;
    uint64_t expect_hash = 0;
    size_t expect_bytes = 0;
    if (resume) {
        cllm_train_options saved;
        cllm_status st = cllm_run_json_read(o->out_dir, &saved, &expect_hash, &expect_bytes);
        if (st != CLLM_OK) {
            cllm_stop_release();
            return st;
        }
        cllm_train_options_free_paths(&saved);
    }
    cllm_status st = pick_run_dir(&t, resume);
    if (st == CLLM_OK) st = load_data(&t, resume, expect_hash, expect_bytes);
    if (st == CLLM_OK) st = setup(&t, resume);
    t.folder_written = resume;
    /* The last moment a stop request leaves nothing behind. */
    if ((st == CLLM_OK && stop_requested()) || st == CLLM_ERR_INTERRUPTED) st = interrupted_at_start(&t, resume, st);
    if (st == CLLM_OK && t.lead && !resume) st = create_run_folder(&t, t.tokens.corpus_hash);
    else if (st == CLLM_OK && t.lead)
        st = cllm_run_json_write(t.dir, t.o, t.tokens.corpus_hash, (size_t)t.tokens.corpus_bytes);
    /* The same input fails the same way on every rank: then rank 0 alone says so. */
    res->same_on_all_ranks = st != CLLM_OK && t.comm->first_flagged(t.comm, st == CLLM_OK) < 0;
    st = agree(&t, st, "during start-up");
    if (st != CLLM_OK) undo_run_dir(&t);
    if (st == CLLM_OK) {
        res->total_steps = t.total_steps;
        res->unigram_entropy = t.unigram;
        if (!o->quiet && t.lead) print_summary(&t, cllm_step_buffer_bytes(t.stepper));
        st = train_loop(&t, res);
        res->unigram_entropy = t.unigram;
        if (st == CLLM_OK) st = finish_run(&t, res);
        /* Open MPI ends a job as soon as one process exits non-zero: the ranks
         * of an interrupted run (exit 130) leave together, once rank 0 has
         * said where it stopped, so that its last line is not cut off. */
        if (st == CLLM_OK && res->interrupted && t.comm->size > 1) {
            fflush(stdout);
            st = agree(&t, st, "at the end of the interrupted run");
        }
    }
    cllm_stop_release();
    trainer_free(&t);
    return st;
}
