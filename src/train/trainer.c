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

#include "cllm/build_config.h"
#include "cllm/cli/env.h"
#include "cllm/data/corpus.h"
#include "cllm/data/dataset.h"
#include "cllm/data/embedded.h"
#include "cllm/data/tokenizer.h"
#include "cllm/kernels/kernels.h"
#include "cllm/parallel/engine.h"
#include "cllm/rng.h"
#include "cllm/train/adamw.h"
#include "cllm/train/checkpoint.h"
#include "cllm/train/json.h"
#include "cllm/train/metrics.h"
#include "cllm/train/peak.h"
#include "cllm/train/plot.h"
#include "cllm/train/progress.h"
#include "cllm/train/runfolder.h"
#include "cllm/train/safetensors.h"
#include "cllm/train/sampler.h"
#include "cllm/train/schedule.h"

/* ---- run state ------------------------------------------------------------ */

typedef struct {
    const cllm_train_options *o; /* points to settings */
    cllm_train_options settings; /* the caller's options, vocab_size set to what the tokenizer actually learned */
    int requested_vocab;         /* --vocab when the tokenizer stopped short of it, else 0 */
    char *dir;
    cllm_run_lock lock;    /* held from the folder's choice to the end */
    int created_dir;       /* this run made the folder (removed again if start-up fails) */
    int folder_written;    /* run.json and tokenizer.bin are in place */
    cllm_corpus corpus;
    uint64_t corpus_hash;
    cllm_tokenizer *tok;
    cllm_dataset data;
    gpt2_model model;
    float *m, *v; /* AdamW moments, same layout as params */
    cllm_engine *engine;
    const cllm_kernel_table *kernels; /* the model's and the engine's kernels, from the options */
    int threads;
    gpt2_acts **acts; /* one arena per thread */
    int32_t **inputs, **targets;
    float *val_losses;
    int n_micro;           /* micro-batches per optimizer step */
    int seqs_per_step;     /* n_micro * micro */
    int64_t total_steps;
    int64_t warmup;        /* resolved: --warmup, or 5% of the budget (at most 100) */
    int64_t step;          /* optimizer steps completed */
    uint64_t window_base;  /* data-loader position: first window of the current step */
    cllm_rng rng;          /* samples printed during training */
    cllm_adamw_config adam;
    cllm_adamw_step hp;    /* the current step's hyper-parameters */
    double grad_norm;
    int bad_gradient;      /* set by clip_scale: the update must not run */
    double unigram;
} trainer;

static volatile sig_atomic_t stop_signal = 0;
static int64_t debug_nan_step = 0;

void cllm_train_debug_nan_at_step(int64_t step) { debug_nan_step = step; }

static int64_t debug_poison_step = 0;

void cllm_train_debug_poison_after_step(int64_t step) { debug_poison_step = step; }

static void on_signal(int sig) { stop_signal = sig; }

/* ---- engine callbacks ------------------------------------------------------ */

static float compute_micro(void *ctx, int micro, int thread, float *grad) {
    trainer *t = ctx;
    int T = t->o->model.seq_len, B = t->o->micro;
    int32_t *in = t->inputs[thread], *tg = t->targets[thread];
    for (int j = 0; j < B; j++) {
        uint64_t index = t->window_base + (uint64_t)micro * (uint64_t)B + (uint64_t)j;
        cllm_dataset_train_window(&t->data, index, in + (size_t)j * T, tg + (size_t)j * T);
    }
    float loss = gpt2_forward(&t->model, t->acts[thread], in, tg, B, T);
    /* The whole micro-batch in one backward, which writes every gradient, so
     * the engine skips zeroing the buffer (compute_overwrites). */
    gpt2_backward_overwrite(&t->model, t->acts[thread], grad, 1.0f / (float)t->n_micro);
    return loss;
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
    trainer *t = ctx;
    t->grad_norm = sqrt(norm2);
    if (!isfinite(norm2)) t->bad_gradient = 1;
    return cllm_clip_factor(t->grad_norm, t->o->clip);
}

/* The tensor holding element i, or the first one after it (padding). */
static int tensor_at(const gpt2_model *m, size_t i) {
    int lo = 0, hi = m->n_tensors;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (m->tensors[mid].offset + m->tensors[mid].numel <= i) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* AdamW on [begin, end), split at tensor boundaries so each piece has one
 * decay flag. Alignment padding between tensors has zero gradient and zero
 * moments, so updating it without decay leaves it exactly 0. */
static void update_range(void *ctx, size_t begin, size_t end, const float *const *srcs, int k, float grad_scale) {
    trainer *t = ctx;
    if (t->bad_gradient) return;
    enum { MAX_SOURCES = 64 };
    const float *piece[MAX_SOURCES];
    if (k > MAX_SOURCES) k = MAX_SOURCES; /* the engine passes 1 or 2 */
    const gpt2_model *m = &t->model;
    size_t pos = begin;
    int ti = tensor_at(m, pos);
    while (pos < end) {
        size_t piece_end = end;
        int decay = 0;
        if (ti < m->n_tensors && m->tensors[ti].offset <= pos) {
            const gpt2_tensor *tn = &m->tensors[ti];
            if (tn->offset + tn->numel < piece_end) piece_end = tn->offset + tn->numel;
            decay = !tn->no_decay;
            ti++;
        } else if (ti < m->n_tensors && m->tensors[ti].offset < piece_end) {
            piece_end = m->tensors[ti].offset; /* padding up to the next tensor */
        }
        for (int s = 0; s < k; s++) piece[s] = srcs[s] + pos;
        t->kernels->sum_adamw(m->params + pos, t->m + pos, t->v + pos, piece, k, grad_scale, piece_end - pos,
                              &t->hp, decay);
        pos = piece_end;
    }
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

/* ---- run.json ---------------------------------------------------------------- */

cllm_status cllm_run_json_write(const char *dir, const cllm_train_options *o, uint64_t corpus_hash,
                                size_t corpus_bytes) {
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int ok = cllm_json_appendf(&buf, &len, &cap, "{\n  \"cllm_version\": \"%s\",\n  \"data\": ", CLLM_VERSION);
    if (o->n_data == 0) {
        ok = ok && cllm_json_appendf(&buf, &len, &cap, "\"builtin\"");
    } else {
        ok = ok && cllm_json_appendf(&buf, &len, &cap, "[");
        for (int i = 0; i < o->n_data; i++) {
            ok = ok && cllm_json_appendf(&buf, &len, &cap, i ? ", " : "");
            ok = ok && cllm_json_append_string(&buf, &len, &cap, o->data_paths[i]);
        }
        ok = ok && cllm_json_appendf(&buf, &len, &cap, "]");
    }
    ok = ok && cllm_json_appendf(
                   &buf, &len, &cap,
                   ",\n  \"corpus_bytes\": %zu,\n  \"corpus_hash\": \"%016" PRIx64 "\",\n"
                   "  \"val_fraction\": %.17g,\n  \"n_layer\": %d,\n  \"n_head\": %d,\n  \"n_embd\": %d,\n"
                   "  \"seq_len\": %d,\n  \"vocab_size\": %d,\n  \"batch\": %d,\n  \"micro\": %d,\n"
                   "  \"grad_accum\": %d,\n  \"steps\": %" PRId64 ",\n  \"epochs\": %.17g,\n"
                   "  \"tokens\": %" PRId64 ",\n  \"lr\": %.17g,\n  \"min_lr\": %.17g,\n  \"warmup\": %" PRId64
                   ",\n  \"weight_decay\": %.17g,\n  \"clip\": %.17g,\n  \"seed\": %" PRIu64
                   ",\n  \"eval_every\": %" PRId64 ",\n  \"sample_every\": %" PRId64 ",\n  \"save_every\": %" PRId64
                   ",\n  \"log_every\": %" PRId64 ",\n  \"sample_tokens\": %d\n}\n",
                   corpus_bytes, corpus_hash, o->val_fraction, o->model.n_layer, o->model.n_head, o->model.n_embd,
                   o->model.seq_len, o->model.vocab_size, o->batch, o->micro, o->grad_accum, o->steps, o->epochs,
                   o->tokens, o->lr, o->min_lr, o->warmup, o->weight_decay, o->clip, o->seed, o->eval_every,
                   o->sample_every, o->save_every, o->log_every, o->sample_tokens);
    if (!ok) {
        free(buf);
        return cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
    }
    char *path = cllm_path_join(dir, "run.json");
    cllm_status st = path ? cllm_write_file_atomic(path, buf, len) : cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
    free(path);
    free(buf);
    return st;
}

typedef struct {
    const cllm_json *root;
    const char *path;
    cllm_status st;
} json_reader;

static const cllm_json *member(json_reader *r, const char *key, cllm_json_type type) {
    const cllm_json *v = cllm_json_get(r->root, key);
    if (r->st != CLLM_OK) return NULL;
    if (!v || v->type != type) {
        r->st = cllm_fail(CLLM_ERR_INPUT, "%s: missing or malformed \"%s\"", r->path, key);
        return NULL;
    }
    return v;
}

static int64_t read_int(json_reader *r, const char *key, int64_t lo, int64_t hi) {
    const cllm_json *v = member(r, key, CLLM_JSON_NUMBER);
    if (!v) return 0;
    if (!v->is_integer || v->integer < lo || v->integer > hi) {
        r->st = cllm_fail(CLLM_ERR_INPUT, "%s: \"%s\" must be an integer in %" PRId64 "..%" PRId64, r->path, key,
                          lo, hi);
        return 0;
    }
    return v->integer;
}

static double read_double(json_reader *r, const char *key, double lo, double hi) {
    const cllm_json *v = member(r, key, CLLM_JSON_NUMBER);
    if (!v) return 0;
    if (!(v->number >= lo && v->number <= hi)) {
        r->st = cllm_fail(CLLM_ERR_INPUT, "%s: \"%s\" is out of range", r->path, key);
        return 0;
    }
    return v->number;
}

static void read_data_paths(json_reader *r, cllm_train_options *o) {
    const cllm_json *d = cllm_json_get(r->root, "data");
    if (d && d->type == CLLM_JSON_STRING && strcmp(d->string, "builtin") == 0) return;
    if (!d || d->type != CLLM_JSON_ARRAY || d->length == 0 || d->length > INT_MAX) {
        r->st = cllm_fail(CLLM_ERR_INPUT, "%s: \"data\" must be \"builtin\" or a list of paths", r->path);
        return;
    }
    o->data_paths = calloc(d->length, sizeof *o->data_paths);
    if (!o->data_paths) {
        r->st = cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
        return;
    }
    for (size_t i = 0; i < d->length; i++) {
        if (d->items[i].type != CLLM_JSON_STRING) {
            r->st = cllm_fail(CLLM_ERR_INPUT, "%s: \"data\" must be \"builtin\" or a list of paths", r->path);
            return;
        }
        o->data_paths[i] = strdup(d->items[i].string);
        o->n_data = (int)i + 1;
        if (!o->data_paths[i]) {
            r->st = cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
            return;
        }
    }
}

cllm_status cllm_run_json_read(const char *dir, cllm_train_options *o, uint64_t *corpus_hash,
                               size_t *corpus_bytes) {
    memset(o, 0, sizeof *o);
    char *path = cllm_path_join(dir, "run.json");
    if (!path) return cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
    if (access(path, F_OK) != 0) {
        cllm_status st = cllm_fail(CLLM_ERR_INPUT, "%s: no run.json (not a cllm run folder?)", dir);
        free(path);
        return st;
    }
    cllm_json *root = NULL;
    cllm_status st = cllm_json_parse_file(path, &root);
    if (st != CLLM_OK) {
        free(path);
        return st;
    }
    json_reader r = {root, path, CLLM_OK};
    if (root->type != CLLM_JSON_OBJECT) r.st = cllm_fail(CLLM_ERR_INPUT, "%s: not a JSON object", path);
    read_data_paths(&r, o);
    *corpus_bytes = (size_t)read_int(&r, "corpus_bytes", 0, INT64_MAX);
    const cllm_json *h = member(&r, "corpus_hash", CLLM_JSON_STRING);
    if (h) *corpus_hash = strtoull(h->string, NULL, 16);
    o->val_fraction = read_double(&r, "val_fraction", 0, 0.5);
    o->model.n_layer = (int)read_int(&r, "n_layer", 1, INT_MAX);
    o->model.n_head = (int)read_int(&r, "n_head", 1, INT_MAX);
    o->model.n_embd = (int)read_int(&r, "n_embd", 1, INT_MAX);
    o->model.seq_len = (int)read_int(&r, "seq_len", 2, INT_MAX);
    o->model.vocab_size = (int)read_int(&r, "vocab_size", 257, 65536);
    o->batch = (int)read_int(&r, "batch", 1, INT_MAX);
    o->micro = (int)read_int(&r, "micro", 1, INT_MAX);
    o->grad_accum = (int)read_int(&r, "grad_accum", 1, INT_MAX);
    o->steps = read_int(&r, "steps", 0, INT64_MAX);
    o->epochs = read_double(&r, "epochs", 0, 1e9);
    o->tokens = read_int(&r, "tokens", 0, INT64_MAX);
    o->lr = read_double(&r, "lr", 0, 1e6);
    o->min_lr = read_double(&r, "min_lr", 0, 1e6);
    o->warmup = read_int(&r, "warmup", -1, INT64_MAX);
    o->weight_decay = read_double(&r, "weight_decay", 0, 10);
    o->clip = read_double(&r, "clip", 0, 1e9);
    o->seed = (uint64_t)read_int(&r, "seed", 0, INT64_MAX);
    o->eval_every = read_int(&r, "eval_every", 0, INT64_MAX);
    o->sample_every = read_int(&r, "sample_every", 0, INT64_MAX);
    o->save_every = read_int(&r, "save_every", 0, INT64_MAX);
    o->log_every = read_int(&r, "log_every", 1, INT64_MAX);
    o->sample_tokens = (int)read_int(&r, "sample_tokens", 0, INT_MAX);
    if (r.st == CLLM_OK && (o->steps > 0) + (o->epochs > 0) + (o->tokens > 0) != 1)
        r.st = cllm_fail(CLLM_ERR_INPUT, "%s: exactly one of steps, epochs, tokens must be positive", path);
    cllm_json_free(root);
    free(path);
    if (r.st != CLLM_OK) cllm_train_options_free_paths(o);
    return r.st;
}

void cllm_train_options_free_paths(cllm_train_options *o) {
    for (int i = 0; i < o->n_data; i++) free(o->data_paths[i]);
    free(o->data_paths);
    o->data_paths = NULL;
    o->n_data = 0;
}

/* ---- checkpoints ------------------------------------------------------------- */

/* optimizer.safetensors holds m and v over the flat buffer, the counters as
 * U64 scalars, and the hash of the parameters it belongs to: resume accepts
 * the pair only when the model file hashes to the same value. A checkpoint
 * is a folder of its own, committed by one rename (runfolder.h), so the
 * model, its config and its optimizer state always change together. */
static uint64_t params_hash(const gpt2_model *m) { return cllm_fnv1a64(m->params, m->n_params * sizeof(float), CLLM_FNV1A64_OFFSET); }

static cllm_status write_optimizer(trainer *t, const char *path) {
    cllm_st_writer w;
    cllm_st_writer_init(&w);
    int64_t flat[1] = {(int64_t)t->model.n_params};
    int64_t four[1] = {4};
    uint64_t step = (uint64_t)t->step, window = t->window_base, phash = params_hash(&t->model);
    char step_s[32], hash_s[32];
    snprintf(step_s, sizeof step_s, "%" PRId64, t->step);
    snprintf(hash_s, sizeof hash_s, "%016" PRIx64, phash);
    cllm_status st = cllm_st_writer_add(&w, "adamw.m", CLLM_ST_F32, t->m, 1, flat);
    if (st == CLLM_OK) st = cllm_st_writer_add(&w, "adamw.v", CLLM_ST_F32, t->v, 1, flat);
    if (st == CLLM_OK) st = cllm_st_writer_add(&w, "step", CLLM_ST_U64, &step, 0, NULL);
    if (st == CLLM_OK) st = cllm_st_writer_add(&w, "data_window", CLLM_ST_U64, &window, 0, NULL);
    if (st == CLLM_OK) st = cllm_st_writer_add(&w, "rng_state", CLLM_ST_U64, t->rng.s, 1, four);
    if (st == CLLM_OK) st = cllm_st_writer_add(&w, "params_hash", CLLM_ST_U64, &phash, 0, NULL);
    if (st == CLLM_OK) st = cllm_st_writer_metadata(&w, "step", step_s);
    if (st == CLLM_OK) st = cllm_st_writer_metadata(&w, "params_hash", hash_s);
    if (st == CLLM_OK) st = cllm_st_writer_write(&w, path);
    cllm_st_writer_free(&w);
    return st;
}

/* The first non-finite value of x[0..n), or n. */
static size_t first_non_finite(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return i;
    return n;
}

/* A checkpoint is the state a user goes back to: one holding NaN or inf
 * would only fail later, so it is never written. */
static cllm_status check_state_finite(const trainer *t) {
    const gpt2_model *m = &t->model;
    size_t bad = first_non_finite(m->params, m->n_params);
    if (bad < m->n_params) {
        const char *name = "padding";
        for (int i = 0; i < m->n_tensors; i++)
            if (m->tensors[i].offset <= bad && bad < m->tensors[i].offset + m->tensors[i].numel) name = m->tensors[i].name;
        return cllm_fail(CLLM_ERR_INTERNAL, "parameter %s is not finite at step %" PRId64 ": no checkpoint written; "
                         "the last good one in %s is kept (try a lower --lr, or --clip 1)", name, t->step, t->dir);
    }
    if (first_non_finite(t->m, m->n_params) < m->n_params || first_non_finite(t->v, m->n_params) < m->n_params)
        return cllm_fail(CLLM_ERR_INTERNAL, "the optimizer state is not finite at step %" PRId64 ": no checkpoint "
                         "written; the last good one in %s is kept", t->step, t->dir);
    return CLLM_OK;
}

static cllm_status save_checkpoint(trainer *t) {
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

/* Loads one optimizer file if it belongs to the model in memory. Returns
 * CLLM_OK and *matched = 1 when it does. */
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
    st = copy_u64(&f, "params_hash", &phash, 1);
    if (st == CLLM_OK && phash == params_hash(&t->model)) {
        st = copy_u64(&f, "step", &step, 1);
        if (st == CLLM_OK) st = copy_u64(&f, "data_window", &window, 1);
        if (st == CLLM_OK) st = copy_u64(&f, "rng_state", t->rng.s, 4);
        if (st == CLLM_OK) st = copy_f32(&f, "adamw.m", t->m, t->model.n_params);
        if (st == CLLM_OK) st = copy_f32(&f, "adamw.v", t->v, t->model.n_params);
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
    gpt2_destroy(&loaded);
    int matched = 0;
    st = load_optimizer_file(t, ckpt, CLLM_OPTIMIZER_FILE, &matched);
    if (st == CLLM_OK && !matched && strcmp(ckpt, t->dir) == 0)
        st = load_optimizer_file(t, t->dir, "optimizer.prev.safetensors", &matched);
    free(ckpt);
    if (st == CLLM_OK && !matched)
        st = cllm_fail(CLLM_ERR_INPUT, "%s: optimizer.safetensors does not belong to model.safetensors "
                       "(a mismatched pair); cannot resume exactly", t->dir);
    return st;
}

/* ---- evaluation and statistics -------------------------------------------------- */

/* Mean loss over every validation window. Windows are spread over threads,
 * each with its own arena; the per-window losses are summed in window order
 * afterwards, so the result does not depend on the thread count. */
static double evaluate(trainer *t) {
    size_t n = t->data.n_val;
    if (n == 0) return NAN;
    int T = t->o->model.seq_len;
    long long count = (long long)n;
#pragma omp parallel for schedule(dynamic) num_threads(t->threads)
    for (long long i = 0; i < count; i++) {
        int th = omp_get_thread_num();
        cllm_dataset_val_window(&t->data, (size_t)i, t->inputs[th], t->targets[th]);
        t->val_losses[i] = gpt2_forward(&t->model, t->acts[th], t->inputs[th], t->targets[th], 1, T);
    }
    double sum = 0;
    for (size_t i = 0; i < n; i++) sum += t->val_losses[i];
    return sum / (double)n;
}

/* The entropy of the training split's token distribution (nats/token): the
 * loss of the best model that ignores context, which training must beat. */
static cllm_status unigram_entropy(trainer *t) {
    int V = t->o->model.vocab_size, T = t->o->model.seq_len;
    uint64_t *count = calloc((size_t)V, sizeof *count);
    if (!count) return cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
    uint64_t total = 0;
    for (size_t w = 0; w < t->data.n_train; w++) {
        const int32_t *tok = t->data.tokens + t->data.train_starts[w] + 1;
        for (int i = 0; i < T; i++)
            if (tok[i] >= 0 && tok[i] < V) count[tok[i]]++;
        total += (uint64_t)T;
    }
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

static cllm_status alloc_per_thread(trainer *t) {
    int T = t->o->model.seq_len, B = t->o->micro;
    t->acts = calloc((size_t)t->threads, sizeof *t->acts);
    t->inputs = calloc((size_t)t->threads, sizeof *t->inputs);
    t->targets = calloc((size_t)t->threads, sizeof *t->targets);
    if (!t->acts || !t->inputs || !t->targets) return cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
    for (int i = 0; i < t->threads; i++) {
        t->acts[i] = gpt2_acts_create(&t->o->model, B);
        t->inputs[i] = cllm_alloc((size_t)B * (size_t)T * sizeof(int32_t));
        t->targets[i] = cllm_alloc((size_t)B * (size_t)T * sizeof(int32_t));
        if (!t->acts[i] || !t->inputs[i] || !t->targets[i])
            return cllm_fail(CLLM_ERR_INTERNAL, "out of memory for activations (thread %d)", i);
    }
    t->val_losses = cllm_alloc((t->data.n_val + 1) * sizeof(float));
    t->m = cllm_alloc(t->model.n_params * sizeof(float));
    t->v = cllm_alloc(t->model.n_params * sizeof(float));
    if (!t->val_losses || !t->m || !t->v) return cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
    return CLLM_OK;
}

static void trainer_free(trainer *t) {
    if (t->acts)
        for (int i = 0; i < t->threads; i++) gpt2_acts_destroy(t->acts[i]);
    if (t->inputs)
        for (int i = 0; i < t->threads; i++) cllm_free(t->inputs[i]);
    if (t->targets)
        for (int i = 0; i < t->threads; i++) cllm_free(t->targets[i]);
    free(t->acts);
    free(t->inputs);
    free(t->targets);
    cllm_free(t->val_losses);
    cllm_free(t->m);
    cllm_free(t->v);
    if (t->engine) cllm_engine_free(t->engine);
    gpt2_destroy(&t->model);
    cllm_dataset_free(&t->data);
    if (t->tok) cllm_tokenizer_free(t->tok);
    cllm_corpus_free(&t->corpus);
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
    cllm_run_lock_release(&t->lock, 1);
    if (t->created_dir) rmdir(t->dir);
}

/* Data, tokenizer and dataset: everything that can fail on user input, done
 * before the run folder is created. */
static cllm_status load_data(trainer *t, int resume, uint64_t expect_hash, size_t expect_bytes) {
    const cllm_train_options *o = t->o;
    cllm_status st = cllm_corpus_load((const char *const *)o->data_paths, o->n_data, &t->corpus);
    if (st != CLLM_OK) return st;
    t->corpus_hash = cllm_fnv1a64(t->corpus.bytes, t->corpus.n_bytes, CLLM_FNV1A64_OFFSET);
    if (resume && (t->corpus_hash != expect_hash || t->corpus.n_bytes != expect_bytes))
        return cllm_fail(CLLM_ERR_INPUT, "the training data changed since the run started (%zu bytes, now %zu); "
                         "cannot resume exactly", expect_bytes, t->corpus.n_bytes);
    if (resume) {
        char *path = cllm_path_join(t->dir, "tokenizer.bin");
        if (!path) return cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
        st = cllm_tokenizer_load(path, &t->tok);
        free(path);
    } else {
        st = cllm_tokenizer_train(&t->corpus, o->model.vocab_size, &t->tok);
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
    return cllm_dataset_build(&t->corpus, t->tok, o->model.seq_len, o->val_fraction, o->seed, &t->data);
}

static void print_summary(const trainer *t, size_t buffer_bytes) {
    const cllm_train_options *o = t->o;
    const gpt2_config *c = &o->model;
    printf("cllm train: run folder %s\n", t->dir);
    if (o->n_data == 0) printf("  data      %s\n", CLLM_DEFAULT_CORPUS_NAME);
    else printf("  data      %d path(s), first %s\n", o->n_data, o->data_paths[0]);
    printf("            %zu files, %zu bytes, %zu tokens (vocab %d), %zu train / %zu validation windows of %d\n",
           t->corpus.n_docs, t->corpus.n_bytes, t->data.n_tokens, c->vocab_size, t->data.n_train, t->data.n_val,
           c->seq_len);
    if (t->corpus.n_binary_skipped)
        printf("            %zu binary file%s skipped (a NUL byte in the first 8 KiB)\n", t->corpus.n_binary_skipped,
               t->corpus.n_binary_skipped == 1 ? "" : "s");
    if (t->requested_vocab)
        printf("            vocabulary %d, not --vocab %d: the corpus has no more pairs to merge\n", c->vocab_size,
               t->requested_vocab);
    printf("  model     GPT-2, %d layers, %d heads, %d dims, context %d: %zu parameters\n", c->n_layer, c->n_head,
           c->n_embd, c->seq_len, gpt2_num_parameters(&t->model));
    printf("  batch     %d sequences x %d accumulation = %d per step, micro-batches of %d (%d per step)\n", o->batch,
           o->grad_accum, t->seqs_per_step, o->micro, t->n_micro);
    printf("  schedule  %" PRId64 " steps, lr %.3g warm-up %" PRId64 " then cosine to %.3g, AdamW wd %.3g, clip %.3g\n",
           t->total_steps, o->lr, t->warmup, o->min_lr, o->weight_decay, o->clip);
    printf("  threads   %d (OMP_NUM_THREADS), SIMD %s, gradient buffers %.1f MiB\n", t->threads,
           t->kernels->name, (double)buffer_bytes / (1024.0 * 1024.0));
    printf("  baseline  unigram entropy of the training split %.4f nats/token\n", t->unigram);
    if (t->step > 0)
        printf("  resume    from step %" PRId64 " (data window %" PRIu64 ")%s\n", t->step, t->window_base,
               o->stop_after > 0 ? ", stopping after the step given by --stop-after" : "");
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
}

/* ---- samples ------------------------------------------------------------------- */

static int print_token(int32_t id, void *ctx) {
    const cllm_tokenizer *tok = ctx;
    size_t len = 0;
    const uint8_t *b = cllm_tokenizer_token_bytes(tok, id, &len);
    if (b && len) fwrite(b, 1, len, stdout);
    fflush(stdout);
    return 0;
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

static cllm_status train_loop(trainer *t, cllm_train_result *res) {
    const cllm_train_options *o = t->o;
    cllm_progress_mode mode = cllm_progress_pick(cllm_env_progress(), o->quiet, isatty(STDOUT_FILENO));
    cllm_metrics_log log;
    cllm_status st = cllm_metrics_open(&log, t->dir, t->step);
    if (st != CLLM_OK) return st;
    cllm_schedule sched = {o->lr, o->min_lr, t->warmup, t->total_steps};
    cllm_engine_job job = {t, compute_micro, clip_scale, update_range};
    int64_t end = o->stop_after > 0 && o->stop_after < t->total_steps ? o->stop_after : t->total_steps;
    double peak = cllm_peak_gflops_per_core() * 1e9 * t->threads;
    double flops_per_token = gpt2_flops_per_token(&o->model);
    double tokens_per_step = (double)t->seqs_per_step * o->model.seq_len;
    double train_time = 0;
    int64_t first = t->step;
    double val = NAN, last_loss = NAN, last_draw = 0;
    while (t->step < end && !stop_signal) {
        int64_t s = t->step + 1;
        double lr = cllm_schedule_lr(&sched, s);
        t->hp = cllm_adamw_step_make(&t->adam, lr, s);
        t->bad_gradient = 0;
        cllm_engine_stats stats;
        double t0 = cllm_now();
        st = cllm_engine_step(t->engine, &job, &stats);
        train_time += cllm_now() - t0;
        if (st != CLLM_OK) break;
        double loss = s == debug_nan_step ? NAN : stats.loss;
        if (!isfinite(loss) || t->bad_gradient || !isfinite(t->grad_norm)) {
            cllm_progress_end(mode, stdout);
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
            break;
        }
        t->step = s;
        t->window_base += (uint64_t)t->seqs_per_step;
        if (s == debug_poison_step) t->model.params[t->model.tensors[0].offset] = NAN;
        last_loss = loss;
        int eval_now = due(s, o->eval_every) || s == t->total_steps;
        if (eval_now) val = evaluate(t);
        double tps = tokens_per_step / stats.wall;
        cllm_metrics_row row = {
            .step = s, .tokens = (int64_t)(s * tokens_per_step), .loss = loss, .has_val = eval_now && isfinite(val),
            .val_loss = val, .lr = lr, .grad_norm = t->grad_norm, .tokens_per_s = tps,
            .exposed_reduction = stats.exposed_share, .utilisation = stats.utilisation, .atomics = stats.atomics,
            .compute_min = stats.compute_min, .compute_median = stats.compute_median,
            .compute_max = stats.compute_max, .reduce = stats.reduce,
        };
        st = cllm_metrics_append(&log, &row);
        if (st != CLLM_OK) break;
        double avg_tps = (double)(s - first) * tokens_per_step / train_time;
        cllm_progress_info pi = {
            .step = s, .total = t->total_steps, .loss = loss, .has_val = isfinite(val), .val_loss = val,
            .tokens_per_s = avg_tps, .lr = lr, .eta_s = (double)(end - s) * tokens_per_step / avg_tps,
            .mfu = peak > 0 ? avg_tps * flops_per_token / peak : -1,
        };
        /* A terminal line is redrawn at most 10 times a second: tiny models
         * run hundreds of steps a second and would flood the terminal. */
        double now = cllm_now();
        if (mode != CLLM_PROGRESS_LINE || now - last_draw >= 0.1 || s == end || eval_now || o->verbose) {
            cllm_progress_show(mode, &pi, due(s, o->log_every) || s == end, stdout);
            last_draw = now;
        }
        if (o->verbose) {
            cllm_progress_end(mode, stdout);
            print_verbose(t, &stats);
        }
        if (due(s, o->sample_every) && s != t->total_steps) {
            cllm_progress_end(mode, stdout);
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
    cllm_progress_end(mode, stdout);
    cllm_metrics_close(&log);
    if (st != CLLM_OK) return st;
    /* The end of the budget, --stop-after, or a signal: save where we are. */
    if (t->step > first || !cllm_run_has_checkpoint(t->dir)) st = save_checkpoint(t);
    if (st != CLLM_OK) return st;
    res->steps_done = t->step;
    res->final_loss = last_loss;
    res->final_val_loss = t->step == t->total_steps ? val : NAN;
    res->tokens_per_s = t->step > first ? (double)(t->step - first) * tokens_per_step / train_time : 0;
    res->interrupted = stop_signal != 0;
    return CLLM_OK;
}

static cllm_status finish_run(trainer *t, const cllm_train_result *res) {
    const cllm_train_options *o = t->o;
    if (res->interrupted) {
        printf("interrupted at step %" PRId64 " of %" PRId64 ": checkpoint saved; continue with: cllm train --resume %s\n",
               t->step, t->total_steps, t->dir);
        return CLLM_OK;
    }
    if (t->step < t->total_steps) {
        printf("stopped after step %" PRId64 " of %" PRId64 ": checkpoint saved; continue with: cllm train --resume %s\n",
               t->step, t->total_steps, t->dir);
        return CLLM_OK;
    }
    double val = res->final_val_loss;
    if (!isfinite(val)) val = evaluate(t);
    if (!isfinite(res->final_loss)) { /* resumed a complete run: no step ran now, so no training loss */
        printf("final: step %" PRId64 " (the run was already complete)", t->step);
        if (isfinite(val)) printf(", validation loss %.4f (perplexity %.2f)", val, exp(val));
        printf(", unigram baseline %.4f\n", t->unigram);
    } else if (isfinite(val))
        printf("final: step %" PRId64 ", train loss %.4f, validation loss %.4f (perplexity %.2f), unigram baseline "
               "%.4f, %.0f tokens/s\n",
               t->step, res->final_loss, val, exp(val), t->unigram, res->tokens_per_s);
    else
        printf("final: step %" PRId64 ", train loss %.4f (no validation split), unigram baseline %.4f\n", t->step,
               res->final_loss, t->unigram);
    char *png = cllm_path_join(t->dir, "loss.png");
    const char *dirs[1] = {t->dir};
    if (png && cllm_plot_runs(dirs, 1, png, t->dir) == CLLM_OK) printf("loss curve: %s\n", png);
    else if (png) fprintf(stderr, "cllm train: no loss.png: %s\n", cllm_last_error());
    free(png);
    if (o->sample_tokens > 0) {
        cllm_rng_seed(&t->rng, o->seed);
        return print_sample(t, o->sample_tokens, "--- sample ---");
    }
    return CLLM_OK;
}

static cllm_status setup(trainer *t, int resume) {
    const cllm_train_options *o = t->o;
    cllm_status st = gpt2_create(&t->model, &o->model);
    if (st != CLLM_OK) return st;
    t->kernels = o->kernels ? o->kernels : cllm_kernel_table_best();
    gpt2_use_kernels(&t->model, t->kernels);
    gpt2_init_weights(&t->model, o->seed);
    t->threads = omp_get_max_threads();
    t->n_micro = o->batch / o->micro * o->grad_accum;
    t->seqs_per_step = t->n_micro * o->micro;
    t->total_steps = cllm_train_total_steps(o, t->data.n_train);
    if (t->total_steps < 1) return cllm_fail(CLLM_ERR_INPUT, "the budget is less than one step");
    t->warmup = o->warmup >= 0 ? o->warmup : t->total_steps / 20 < 100 ? t->total_steps / 20 : 100;
    if (o->stop_after > t->total_steps)
        return cllm_fail(CLLM_ERR_INPUT, "--stop-after %" PRId64 " is beyond the budget of %" PRId64 " steps",
                         o->stop_after, t->total_steps);
    st = alloc_per_thread(t);
    if (st != CLLM_OK) return st;
    t->adam = cllm_adamw_defaults();
    t->adam.weight_decay = o->weight_decay;
    cllm_rng_seed(&t->rng, o->seed ^ 0x5eed5a3b1e5ULL);
    cllm_engine_config ec = {
        .n_params = t->model.n_params, .n_micro = t->n_micro, .segments_per_thread = cllm_env_segments(),
        .streaming = cllm_env_streaming(), .window = cllm_env_grad_window(), .compute_overwrites = 1,
        .kernels = t->kernels,
    };
    st = cllm_engine_create(&ec, &t->engine);
    if (st != CLLM_OK) return st;
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
    st = cllm_run_json_write(t->dir, &abs, hash, t->corpus.n_bytes);
    for (int i = 0; i < t->o->n_data; i++) free(paths[i]);
    free(paths);
    if (st != CLLM_OK) return st;
    char *tok = cllm_path_join(t->dir, "tokenizer.bin");
    st = tok ? cllm_tokenizer_save(t->tok, tok) : cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
    free(tok);
    if (st == CLLM_OK) t->folder_written = 1;
    return st;
}

cllm_status cllm_train(const cllm_train_options *o, int resume, cllm_train_result *res) {
    memset(res, 0, sizeof *res);
    res->final_val_loss = NAN;
    trainer t;
    memset(&t, 0, sizeof t);
    t.lock.fd = -1;
    t.settings = *o;
    t.o = &t.settings;
    uint64_t expect_hash = 0;
    size_t expect_bytes = 0;
    if (resume) {
        cllm_train_options saved;
        cllm_status st = cllm_run_json_read(o->out_dir, &saved, &expect_hash, &expect_bytes);
        if (st != CLLM_OK) return st;
        cllm_train_options_free_paths(&saved);
    }
    cllm_status st = pick_run_dir(&t, resume);
    if (st == CLLM_OK) st = load_data(&t, resume, expect_hash, expect_bytes);
    if (st == CLLM_OK) st = setup(&t, resume);
    t.folder_written = resume;
    if (st == CLLM_OK && !resume) st = create_run_folder(&t, t.corpus_hash);
    else if (st == CLLM_OK) st = cllm_run_json_write(t.dir, t.o, t.corpus_hash, t.corpus.n_bytes);
    if (st != CLLM_OK) undo_run_dir(&t);
    if (st == CLLM_OK) {
        res->total_steps = t.total_steps;
        res->unigram_entropy = t.unigram;
        if (!o->quiet) print_summary(&t, cllm_engine_buffer_bytes(t.engine));
        stop_signal = 0;
        struct sigaction sa, old_int, old_term;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, &old_int);
        sigaction(SIGTERM, &sa, &old_term);
        st = train_loop(&t, res);
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGTERM, &old_term, NULL);
        res->unigram_entropy = t.unigram;
        if (st == CLLM_OK) st = finish_run(&t, res);
    }
    trainer_free(&t);
    return st;
}
