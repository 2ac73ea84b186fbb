/* cllm eval DIR [DATA...]: loss and perplexity of a saved model on text, or on
 * its own validation split; plus a diagnostic logits dump for interop tests. */
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cllm/cli/commands.h"
#include "cllm/cli/env.h"
#include "cllm/cli/flags.h"
#include "cllm/data/corpus.h"
#include "cllm/data/dataset.h"
#include "cllm/train/checkpoint.h"
#include "cllm/train/trainer.h"

/* Where evaluation windows come from: a raw token stream cut into
 * non-overlapping windows (DATA), or the run's validation windows. */
typedef struct {
    const int32_t *stream;
    size_t n_stream;
    const cllm_dataset *val;
    int T;
} window_source;

static size_t window_count(const window_source *s) {
    if (s->val) return s->val->n_val;
    return (s->n_stream - 1 + (size_t)s->T - 1) / (size_t)s->T; /* last partial window included */
}

/* Fills one window; returns its length (positions predicted). */
static int window_fill(const window_source *s, size_t w, int32_t *in, int32_t *tg) {
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

/* Mean loss over every predicted position. Windows run in parallel, each
 * thread with its own activations; the per-window sums are added in window
 * order afterwards, so the result does not depend on the thread count. */
static cllm_status evaluate(const gpt2_model *m, const window_source *src, double *mean_loss, size_t *n_tokens) {
    size_t n = window_count(src);
    double *sums = calloc(n ? n : 1, sizeof *sums);
    int *lens = calloc(n ? n : 1, sizeof *lens);
    if (!sums || !lens) {
        free(sums);
        free(lens);
        return cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
    }
    int failed = 0;
#pragma omp parallel
    {
        gpt2_acts *a = gpt2_acts_create(&m->cfg, 1);
        int32_t *in = malloc((size_t)src->T * sizeof *in), *tg = malloc((size_t)src->T * sizeof *tg);
        int ok = a && in && tg;
        if (!ok) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (size_t w = 0; w < n; w++) {
            if (!ok) continue;
            lens[w] = window_fill(src, w, in, tg);
            sums[w] = (double)gpt2_forward(m, a, in, tg, 1, lens[w]) * lens[w];
        }
        gpt2_acts_destroy(a);
        free(in);
        free(tg);
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
    if (count == 0) return cllm_fail(CLLM_ERR_INPUT, "nothing to evaluate: fewer than 2 tokens");
    *mean_loss = total / (double)count;
    *n_tokens = count;
    return CLLM_OK;
}

/* DATA files tokenized with the run's tokenizer into the very stream training
 * builds (cllm_dataset_tokenize: every document followed by EOT). */
static cllm_status tokenize_data(const cllm_tokenizer *tok, char **paths, int n_paths, int32_t **stream, size_t *n) {
    cllm_corpus c;
    cllm_status st = cllm_corpus_load((const char *const *)paths, n_paths, &c);
    if (st != CLLM_OK) return st;
    st = cllm_dataset_tokenize(&c, tok, stream, n);
    cllm_corpus_free(&c);
    if (st == CLLM_OK && *n < 2) {
        st = cllm_fail(CLLM_ERR_INPUT, "the data has %zu token(s): need at least 2", *n);
        free(*stream);
        *stream = NULL;
    }
    return st;
}

/* The run's validation split, rebuilt exactly as training built it from the
 * settings in run.json. */
static cllm_status build_validation(const char *dir, const cllm_tokenizer *tok, int seq_len, cllm_dataset *val) {
    char *path = cllm_path_join(dir, CLLM_RUN_FILE);
    if (!path) return cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
    struct stat sb;
    int missing = stat(path, &sb) != 0;
    if (missing) {
        cllm_status st = cllm_fail(CLLM_ERR_INPUT,
                                   "%s is missing, so the run's validation split is unknown: give DATA files to evaluate on",
                                   path);
        free(path);
        return st;
    }
    free(path);
    cllm_train_options o;
    memset(&o, 0, sizeof o);
    uint64_t hash = 0;
    size_t bytes = 0;
    cllm_status st = cllm_run_json_read(dir, &o, &hash, &bytes);
    if (st != CLLM_OK) return st;
    if (o.val_fraction <= 0) {
        cllm_train_options_free_paths(&o);
        return cllm_fail(CLLM_ERR_INPUT, "%s was trained without a validation split: give DATA files to evaluate on",
                         dir);
    }
    cllm_corpus c;
    st = cllm_corpus_load((const char *const *)o.data_paths, o.n_data, &c);
    if (st == CLLM_OK) {
        st = cllm_dataset_build(&c, tok, seq_len, o.val_fraction, o.seed, val);
        cllm_corpus_free(&c);
    }
    cllm_train_options_free_paths(&o);
    return st;
}

/* --dump-logits FILE --tokens "1 2 3": the logits of one forward pass, raw
 * little-endian float32 [n, vocab], for the PyTorch interop check. */
static cllm_status dump_logits(const gpt2_model *m, const char *ids_text, const char *path) {
    int T = m->cfg.seq_len, n = 0;
    int32_t *ids = malloc((size_t)T * sizeof *ids);
    if (!ids) return cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
    const char *p = ids_text;
    for (;;) {
        while (*p == ' ' || *p == ',') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v >= m->cfg.vocab_size || n == T) {
            free(ids);
            return cllm_fail(CLLM_ERR_INPUT, "--tokens wants up to %d ids in 0..%d separated by spaces", T,
                             m->cfg.vocab_size - 1);
        }
        ids[n++] = (int32_t)v;
        p = end;
    }
    cllm_status st = CLLM_OK;
    gpt2_acts *a = n ? gpt2_acts_create(&m->cfg, 1) : NULL;
    if (n == 0) st = cllm_fail(CLLM_ERR_INPUT, "--tokens is empty");
    else if (!a) st = CLLM_ERR_INTERNAL;
    if (st == CLLM_OK) {
        gpt2_forward(m, a, ids, NULL, 1, n);
        st = cllm_write_file_atomic(path, gpt2_logits(a), (size_t)n * (size_t)m->cfg.vocab_size * sizeof(float));
    }
    gpt2_acts_destroy(a);
    free(ids);
    return st;
}

static void print_result(double loss, size_t tokens, size_t windows, int from_data, int json) {
    double ppl = exp(loss);
    if (json)
        printf("{\"loss\":%.6f,\"perplexity\":%.6f,\"tokens\":%zu,\"windows\":%zu,\"source\":\"%s\"}\n", loss, ppl,
               tokens, windows, from_data ? "data" : "validation");
    else
        printf("loss %.4f  perplexity %.2f  tokens %zu\n", loss, ppl, tokens);
}

static int run_eval(const char *dir, char **data, int n_data, int json, const char *dump, const char *ids) {
    gpt2_model m;
    cllm_tokenizer *tok = NULL;
    cllm_status st = cllm_run_load(dir, &m, &tok);
    if (st != CLLM_OK) return (int)st;
    gpt2_use_kernels(&m, cllm_kernel_table_for(cllm_env_simd()));
    if (dump) {
        st = dump_logits(&m, ids, dump);
        gpt2_destroy(&m);
        cllm_tokenizer_free(tok);
        return (int)st;
    }
    window_source src = {NULL, 0, NULL, m.cfg.seq_len};
    int32_t *stream = NULL;
    cllm_dataset val;
    memset(&val, 0, sizeof val);
    if (n_data > 0) {
        st = tokenize_data(tok, data, n_data, &stream, &src.n_stream);
        src.stream = stream;
    } else {
        st = build_validation(dir, tok, m.cfg.seq_len, &val);
        src.val = &val;
    }
    double loss = 0;
    size_t tokens = 0;
    if (st == CLLM_OK) st = evaluate(&m, &src, &loss, &tokens);
    if (st == CLLM_OK) print_result(loss, tokens, window_count(&src), n_data > 0, json);
    if (!n_data) cllm_dataset_free(&val);
    free(stream);
    gpt2_destroy(&m);
    cllm_tokenizer_free(tok);
    return (int)st;
}

int cllm_cmd_eval(int argc, char **argv) {
    int json = 0;
    const char *dump = NULL, *ids = NULL;
    const cllm_flag flags[] = {
        {"json", CLLM_FLAG_BOOL, &json, NULL, "print one JSON object instead of text", 1, 0, NULL},
        {"dump-logits", CLLM_FLAG_STRING, &dump, "FILE",
         "diagnostic: write the logits of --tokens as raw float32 [n, vocab] to FILE", 1, 0, NULL},
        {"tokens", CLLM_FLAG_STRING, &ids, "IDS", "diagnostic: token ids for --dump-logits, e.g. \"1 2 3\"", 1, 0, NULL},
    };
    const cllm_command_spec spec = {
        "eval", "DIR [DATA...]",
        "Prints the loss (nats/token) and perplexity of the model in run folder DIR on DATA (files or\n"
        "folders, tokenized with the run's tokenizer, every token predicted once in non-overlapping\n"
        "windows), or without DATA on the run's own validation split (from DIR/run.json).",
        flags, (int)(sizeof flags / sizeof flags[0]), 1, -1};
    char *pos[argc > 0 ? argc : 1];
    int npos = 0;
    int rc = cllm_flags_exit_code(cllm_flags_parse(&spec, argc, argv, pos, &npos));
    if (rc >= 0) return rc;
    if ((dump == NULL) != (ids == NULL) || (dump && npos > 1)) {
        fprintf(stderr, "cllm eval: --dump-logits FILE and --tokens IDS go together, without DATA\n");
        return 2;
    }
    rc = run_eval(pos[0], pos + 1, npos - 1, json, dump, ids);
    if (rc != 0) fprintf(stderr, "cllm eval: %s\n", cllm_last_error());
    return rc;
}
