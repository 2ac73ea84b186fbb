/* The settings of a training run: the table, and run.json written and read
 * from it (include/cllm/train/options.h). */
#include "cllm/train/options.h"

#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cllm/base/build_config.h"
#include "cllm/data/pretokenize.h"
#include "cllm/data/tokenizer.h"
#include "cllm/base/json.h"

#define AT(field) offsetof(cllm_train_options, field)

/* The choices' order is cllm_pretok's; the first is what runs before the row had. */
#if CLLM_HAVE_UTF8PROC
#define PRETOKENIZE_HELP "how text is split before BPE: gpt2 (GPT-2's rule, default) or cllm (cllm's old chunker)"
#else
#define PRETOKENIZE_HELP "how text is split before BPE: cllm (default: built without libutf8proc) or gpt2"
#endif

/* The order is --help's order. Keys are those of run.json since it was
 * first written, so older run folders still read. */
const cllm_train_option cllm_train_option_table[] = {
    {"layers", "n_layer", CLLM_OPT_INT, AT(model.n_layer), CLLM_OPT_FROM_PRESET, 1, 128, "N",
     "transformer blocks (default from the preset)", CLLM_OPT_FROZEN},
    {"heads", "n_head", CLLM_OPT_INT, AT(model.n_head), CLLM_OPT_FROM_PRESET, 1, 256, "N",
     "attention heads (default from the preset)", CLLM_OPT_FROZEN},
    {"embd", "n_embd", CLLM_OPT_INT, AT(model.n_embd), CLLM_OPT_FROM_PRESET, 1, 16384, "N",
     "embedding width (default from the preset)", CLLM_OPT_FROZEN},
    {"seq", "seq_len", CLLM_OPT_INT, AT(model.seq_len), CLLM_OPT_FROM_PRESET, 2, 65536, "N",
     "context length T in tokens (default from the preset)", CLLM_OPT_FROZEN},
    {"vocab", "vocab_size", CLLM_OPT_INT, AT(model.vocab_size), CLLM_TOKENIZER_DEFAULT_VOCAB,
     CLLM_TOKENIZER_MIN_VOCAB, CLLM_TOKENIZER_MAX_VOCAB, "N", "tokenizer vocabulary size, 257..65536 (default 512)",
     CLLM_OPT_FROZEN},
    /* Fine-tuning: the folder's shape, weights and tokenizer replace the
     * preset, the seed's initialization and tokenizer training. */
    {"init", "init", CLLM_OPT_PATH, AT(init_dir), 0, 1, 0, "DIR",
     "fine-tune the Hugging Face GPT-2 in DIR: its architecture, weights (F32/F16/BF16), tokenizer",
     CLLM_OPT_FROZEN},
    {"pretokenize", "pretokenize", CLLM_OPT_CHOICE, AT(pretokenize), CLLM_HAVE_UTF8PROC ? CLLM_PRETOK_GPT2 : CLLM_PRETOK_CLLM,
     0, CLLM_PRETOK_COUNT - 1, "cllm|gpt2", PRETOKENIZE_HELP, CLLM_OPT_FROZEN},
    {"batch", "batch", CLLM_OPT_INT, AT(batch), 16, 1, 1 << 20, "N",
     "sequences per optimizer step, before --grad-accum (default 16)", CLLM_OPT_FREE},
    {"micro", "micro", CLLM_OPT_INT, AT(micro), 1, 1, 1 << 20, "N",
     "sequences per micro-batch; --batch must be a multiple (default 1)", CLLM_OPT_FREE},
    {"grad-accum", "grad_accum", CLLM_OPT_INT, AT(grad_accum), 1, 1, 1 << 20, "N",
     "accumulate N batches per optimizer step (default 1)", CLLM_OPT_FREE},
    {"steps", "steps", CLLM_OPT_INT64, AT(steps), 1200, 1, 1e12, "N", "budget: optimizer steps (default 1200)",
     CLLM_OPT_BUDGET},
    {"epochs", "epochs", CLLM_OPT_DOUBLE, AT(epochs), 0, 1e-9, 1e9, "X", "budget: passes over the training windows",
     CLLM_OPT_BUDGET},
    {"tokens", "tokens", CLLM_OPT_INT64, AT(tokens), 0, 1, 1e15, "N", "budget: training tokens", CLLM_OPT_BUDGET},
    /* 3e-3 suits the small models cllm trains from scratch. A trained model
     * (--init, CLLM_INIT_LR) takes 1e-4: a sixth of GPT-2 small's own
     * pre-training peak (6e-4 for 125M parameters, GPT-3 paper table 2.1),
     * the order transformers' fine-tuning uses (5e-5 default); a rate near
     * the pre-training one mostly erases what the model knew. */
    {"lr", "lr", CLLM_OPT_DOUBLE, AT(lr), 3e-3, 0, 1e6, "X", "peak learning rate (default 3e-3; 1e-4 with --init)",
     CLLM_OPT_FREE},
    {"min-lr", "min_lr", CLLM_OPT_DOUBLE, AT(min_lr), CLLM_OPT_DERIVED, 0, 1e6, "X",
     "floor of the cosine decay (default lr/10)", CLLM_OPT_FREE},
    {"warmup", "warmup", CLLM_OPT_INT64, AT(warmup), -1, 0, 1e12, "N",
     "linear warm-up steps (default 5% of the budget, at most 100)", CLLM_OPT_FREE},
    {"weight-decay", "weight_decay", CLLM_OPT_DOUBLE, AT(weight_decay), 0.1, 0, 10, "X",
     "AdamW decoupled weight decay, not on biases/LayerNorm/embeddings (default 0.1)", CLLM_OPT_FREE},
    {"clip", "clip", CLLM_OPT_DOUBLE, AT(clip), 1.0, 0, 1e9, "X",
     "global gradient-norm clipping threshold, 0 = off (default 1.0)", CLLM_OPT_FREE},
    {"seed", "seed", CLLM_OPT_INT64, AT(seed), 1337, 0, 9.2e18, "N",
     "seed of initialization, data order and sampling (default 1337)", CLLM_OPT_FROZEN},
    {"val-fraction", "val_fraction", CLLM_OPT_DOUBLE, AT(val_fraction), 0.05, 0, 0.5, "X",
     "share of windows held out for validation, 0..0.5 (default 0.05)", CLLM_OPT_FROZEN},
    {"eval-every", "eval_every", CLLM_OPT_INT64, AT(eval_every), 200, 0, 1e12, "N",
     "validation loss every N steps, 0 = only at the end (default 200)", CLLM_OPT_FREE},
    {"eval-tokens", "eval_tokens", CLLM_OPT_INT64, AT(eval_tokens), -1, 0, 1e15, "N",
     "tokens per validation pass, the same evenly spaced windows each time and at the end, 0 = all "
     "(default: a tenth of the sequences trained between passes, ~3% of the compute)",
     CLLM_OPT_FREE},
    {"sample-every", "sample_every", CLLM_OPT_INT64, AT(sample_every), 0, 0, 1e12, "N",
     "print a short sample every N steps, 0 = only at the end (default 0)", CLLM_OPT_FREE},
    {"save-every", "save_every", CLLM_OPT_INT64, AT(save_every), 200, 0, 1e12, "N",
     "checkpoint every N steps, 0 = only at the end (default 200)", CLLM_OPT_FREE},
    {"log-every", "log_every", CLLM_OPT_INT64, AT(log_every), 20, 1, 1e12, "N",
     "plain progress line every N steps or 30 s, whichever comes first, when not on a terminal (default 20)",
     CLLM_OPT_FREE},
    {"sample-tokens", "sample_tokens", CLLM_OPT_INT, AT(sample_tokens), 200, 0, 1 << 20, "N",
     "tokens in the sample printed at the end, 0 = none (default 200)", CLLM_OPT_FREE},
    {"precision", "precision", CLLM_OPT_CHOICE, AT(precision), CLLM_PRECISION_FP32, 0, 1, "fp32|bf16",
     "matrix products in fp32, or bf16 with fp32 accumulation and master weights (default fp32)", CLLM_OPT_FROZEN},
};

const int cllm_train_option_count = (int)(sizeof cllm_train_option_table / sizeof cllm_train_option_table[0]);

void *cllm_train_option_field(cllm_train_options *o, const cllm_train_option *opt) {
    return (char *)o + opt->offset;
}

double cllm_train_option_get(const cllm_train_options *o, const cllm_train_option *opt) {
    const char *p = (const char *)o + opt->offset;
    switch (opt->type) {
    case CLLM_OPT_INT:
    case CLLM_OPT_CHOICE: return *(const int *)p;
    case CLLM_OPT_INT64: return (double)*(const int64_t *)p;
    case CLLM_OPT_DOUBLE: return *(const double *)p;
    case CLLM_OPT_PATH: return *(const char *const *)p != NULL;
    }
    return 0;
}

void cllm_train_option_set(cllm_train_options *o, const cllm_train_option *opt, double v) {
    void *p = cllm_train_option_field(o, opt);
    switch (opt->type) {
    case CLLM_OPT_INT:
    case CLLM_OPT_CHOICE: *(int *)p = (int)v; break;
    case CLLM_OPT_INT64: *(int64_t *)p = (int64_t)v; break;
    case CLLM_OPT_DOUBLE: *(double *)p = v; break;
    case CLLM_OPT_PATH:
        CLLM_ASSERT(v == 0); /* a path is set through its field, not as a number */
        *(const char **)p = NULL;
        break;
    }
}

const char *cllm_train_option_path(const cllm_train_options *o, const cllm_train_option *opt) {
    CLLM_ASSERT(opt->type == CLLM_OPT_PATH);
    return *(const char *const *)((const char *)o + opt->offset);
}

void cllm_train_options_defaults(cllm_train_options *o) {
    memset(o, 0, sizeof *o);
    for (int i = 0; i < cllm_train_option_count; i++) {
        const cllm_train_option *opt = &cllm_train_option_table[i];
        if (opt->fresh != CLLM_OPT_FROM_PRESET && opt->fresh != CLLM_OPT_DERIVED) cllm_train_option_set(o, opt, opt->fresh);
    }
}

void cllm_train_option_choice_name(const cllm_train_option *opt, int index, char *buf, size_t n) {
    const char *p = opt->metavar;
    for (int i = 0; i < index && p; i++) {
        p = strchr(p, '|');
        if (p) p++;
    }
    const char *bar = p ? strchr(p, '|') : NULL;
    size_t len = !p || index < 0 ? 0 : bar ? (size_t)(bar - p) : strlen(p);
    snprintf(buf, n, "%.*s", (int)len, len ? p : "");
}

int cllm_train_option_choice_index(const cllm_train_option *opt, const char *name) {
    char buf[64];
    for (int i = 0; i <= (int)opt->max; i++) {
        cllm_train_option_choice_name(opt, i, buf, sizeof buf);
        if (strcmp(buf, name) == 0) return i;
    }
    return -1;
}

/* ---- run.json -------------------------------------------------------------------------- */

static int append_value(char **buf, size_t *len, size_t *cap, const cllm_train_options *o,
                        const cllm_train_option *opt) {
    const char *p = (const char *)o + opt->offset;
    switch (opt->type) {
    case CLLM_OPT_INT: return cllm_json_appendf(buf, len, cap, "%d", *(const int *)p);
    case CLLM_OPT_INT64:
        /* The seed is the one unsigned field; its range keeps it below 2^63. */
        if (opt->offset == AT(seed)) return cllm_json_appendf(buf, len, cap, "%" PRIu64, *(const uint64_t *)p);
        return cllm_json_appendf(buf, len, cap, "%" PRId64, *(const int64_t *)p);
    case CLLM_OPT_DOUBLE: return cllm_json_appendf(buf, len, cap, "%.17g", *(const double *)p);
    case CLLM_OPT_PATH: {
        const char *path = *(const char *const *)p;
        return path ? cllm_json_append_string(buf, len, cap, path) : cllm_json_appendf(buf, len, cap, "null");
    }
    case CLLM_OPT_CHOICE: {
        char name[64];
        cllm_train_option_choice_name(opt, *(const int *)p, name, sizeof name);
        return cllm_json_append_string(buf, len, cap, name);
    }
    }
    return 0;
}

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
    ok = ok && cllm_json_appendf(&buf, &len, &cap, ",\n  \"corpus_bytes\": %zu,\n  \"corpus_hash\": \"%016" PRIx64 "\"",
                                 corpus_bytes, corpus_hash);
    for (int i = 0; ok && i < cllm_train_option_count; i++) {
        const cllm_train_option *opt = &cllm_train_option_table[i];
        ok = cllm_json_appendf(&buf, &len, &cap, ",\n  \"%s\": ", opt->key) && append_value(&buf, &len, &cap, o, opt);
    }
    if (o->total_steps > 0)
        ok = ok && cllm_json_appendf(&buf, &len, &cap, ",\n  \"total_steps\": %" PRId64, o->total_steps);
    ok = ok && cllm_json_appendf(&buf, &len, &cap, "\n}\n");
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

/* What run.json may hold beyond the flag's range: the fresh default (warmup
 * -1 = automatic) and 0 for the budgets not chosen. */
static int value_allowed(const cllm_train_option *opt, double v) {
    if (v >= opt->min && v <= opt->max) return 1;
    if (v == opt->fresh) return 1;
    return opt->resume == CLLM_OPT_BUDGET && v == 0;
}

/* A path row: a string or null. */
static cllm_status read_path_option(const cllm_json *v, const char *path, const cllm_train_option *opt,
                                    cllm_train_options *o) {
    const char **field = cllm_train_option_field(o, opt);
    *field = NULL;
    if (v->type == CLLM_JSON_NULL) return CLLM_OK;
    if (v->type != CLLM_JSON_STRING || !*v->string)
        return cllm_fail(CLLM_ERR_INPUT, "%s: \"%s\" must be a path or null", path, opt->key);
    *field = strdup(v->string);
    return *field ? CLLM_OK : cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
}

/* Rows added after run folders already existed, with the value a run had
 * before the row existed: a run.json without the key reads as that. Any
 * other key missing is a damaged run.json. */
static const struct {
    const char *key;
    double before;
} rows_added_later[] = {
    {"eval_tokens", -1},                /* the automatic cap, as a fresh run */
    {"pretokenize", CLLM_PRETOK_CLLM},  /* the only pre-tokenizer there was */
    {"precision", CLLM_PRECISION_FP32}, /* the only precision there was */
    {"init", 0},                        /* no --init */
};

static cllm_status read_missing_option(const char *path, const cllm_train_option *opt, cllm_train_options *o) {
    for (size_t i = 0; i < sizeof rows_added_later / sizeof rows_added_later[0]; i++)
        if (strcmp(rows_added_later[i].key, opt->key) == 0) {
            cllm_train_option_set(o, opt, rows_added_later[i].before);
            return CLLM_OK;
        }
    return cllm_fail(CLLM_ERR_INPUT, "%s: missing \"%s\"", path, opt->key);
}

static cllm_status read_option(const cllm_json *root, const char *path, const cllm_train_option *opt,
                               cllm_train_options *o) {
    const cllm_json *v = cllm_json_get(root, opt->key);
    if (!v) return read_missing_option(path, opt, o);
    if (opt->type == CLLM_OPT_PATH) return read_path_option(v, path, opt, o);
    if (opt->type == CLLM_OPT_CHOICE) {
        int index = v->type == CLLM_JSON_STRING ? cllm_train_option_choice_index(opt, v->string) : -1;
        if (index < 0) return cllm_fail(CLLM_ERR_INPUT, "%s: \"%s\" must be one of %s", path, opt->key, opt->metavar);
        cllm_train_option_set(o, opt, index);
        return CLLM_OK;
    }
    if (v->type != CLLM_JSON_NUMBER)
        return cllm_fail(CLLM_ERR_INPUT, "%s: malformed \"%s\"", path, opt->key);
    if (opt->type != CLLM_OPT_DOUBLE && !v->is_integer)
        return cllm_fail(CLLM_ERR_INPUT, "%s: \"%s\" must be an integer", path, opt->key);
    double x = opt->type == CLLM_OPT_DOUBLE ? v->number : (double)v->integer;
    if (!value_allowed(opt, x))
        return cllm_fail(CLLM_ERR_INPUT, "%s: \"%s\" is out of range (%g..%g)", path, opt->key, opt->min, opt->max);
    if (opt->type == CLLM_OPT_INT64) *(int64_t *)cllm_train_option_field(o, opt) = v->integer; /* exact beyond 2^53 */
    else cllm_train_option_set(o, opt, x);
    return CLLM_OK;
}

static cllm_status read_data_paths(const cllm_json *root, const char *path, cllm_train_options *o) {
    const cllm_json *d = cllm_json_get(root, "data");
    if (d && d->type == CLLM_JSON_STRING && strcmp(d->string, "builtin") == 0) return CLLM_OK;
    if (!d || d->type != CLLM_JSON_ARRAY || d->length == 0 || d->length > INT_MAX)
        return cllm_fail(CLLM_ERR_INPUT, "%s: \"data\" must be \"builtin\" or a list of paths", path);
    o->data_paths = calloc(d->length, sizeof *o->data_paths);
    if (!o->data_paths) return cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
    for (size_t i = 0; i < d->length; i++) {
        if (d->items[i].type != CLLM_JSON_STRING)
            return cllm_fail(CLLM_ERR_INPUT, "%s: \"data\" must be \"builtin\" or a list of paths", path);
        o->data_paths[i] = strdup(d->items[i].string);
        o->n_data = (int)i + 1;
        if (!o->data_paths[i]) return cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
    }
    return CLLM_OK;
}

static cllm_status read_corpus_identity(const cllm_json *root, const char *path, uint64_t *hash, size_t *bytes) {
    const cllm_json *b = cllm_json_get(root, "corpus_bytes");
    const cllm_json *h = cllm_json_get(root, "corpus_hash");
    if (!b || b->type != CLLM_JSON_NUMBER || !b->is_integer || b->integer < 0)
        return cllm_fail(CLLM_ERR_INPUT, "%s: missing or malformed \"corpus_bytes\"", path);
    if (!h || h->type != CLLM_JSON_STRING)
        return cllm_fail(CLLM_ERR_INPUT, "%s: missing or malformed \"corpus_hash\"", path);
    *bytes = (size_t)b->integer;
    *hash = strtoull(h->string, NULL, 16);
    return CLLM_OK;
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
    if (st == CLLM_OK && root->type != CLLM_JSON_OBJECT) st = cllm_fail(CLLM_ERR_INPUT, "%s: not a JSON object", path);
    if (st == CLLM_OK) st = read_data_paths(root, path, o);
    if (st == CLLM_OK) st = read_corpus_identity(root, path, corpus_hash, corpus_bytes);
    for (int i = 0; st == CLLM_OK && i < cllm_train_option_count; i++)
        st = read_option(root, path, &cllm_train_option_table[i], o);
    const cllm_json *total = st == CLLM_OK ? cllm_json_get(root, "total_steps") : NULL;
    if (total && total->type == CLLM_JSON_NUMBER && total->is_integer && total->integer > 0)
        o->total_steps = total->integer;
    if (st == CLLM_OK && (o->steps > 0) + (o->epochs > 0) + (o->tokens > 0) != 1)
        st = cllm_fail(CLLM_ERR_INPUT, "%s: exactly one of steps, epochs, tokens must be positive", path);
    cllm_json_free(root);
    free(path);
    if (st != CLLM_OK) cllm_train_options_free_paths(o);
    return st;
}

void cllm_train_options_free_paths(cllm_train_options *o) {
    for (int i = 0; i < cllm_train_option_count; i++) {
        const cllm_train_option *opt = &cllm_train_option_table[i];
        if (opt->type != CLLM_OPT_PATH) continue;
        const char **field = cllm_train_option_field(o, opt);
        free((char *)*field); /* run.json's copy: cllm_run_json_read allocated it */
        *field = NULL;
    }
    for (int i = 0; i < o->n_data; i++) free(o->data_paths[i]);
    free(o->data_paths);
    o->data_paths = NULL;
    o->n_data = 0;
}
