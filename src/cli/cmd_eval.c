/* cllm eval DIR [DATA...]: loss and perplexity of a saved model on text, or on
 * its own validation split; plus a diagnostic logits dump for interop tests. */
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cllm/cli/commands.h"
#include "cllm/cli/env.h"
#include "cllm/cli/flags.h"
#include "cllm/data/corpus.h"
#include "cllm/data/dataset.h"
#include "cllm/train/checkpoint.h"
#include "cllm/train/eval.h"
#include "cllm/base/json.h"
#include "cllm/base/memory.h"
#include "cllm/report/progress.h"
#include "cllm/train/trainer.h"

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

/* The validation split is rebuilt from the data as it is on disk now; if that
 * is not the data the run trained on (run.json's corpus size and hash, the
 * check --resume makes), the windows held out would be different ones,
 * possibly seen in training, and the figure would mean nothing. */
static cllm_status check_same_data(const char *dir, const cllm_train_options *o, const cllm_corpus *c,
                                   uint64_t hash, size_t bytes) {
    if (c->n_bytes == bytes && cllm_fnv1a64(c->bytes, c->n_bytes, CLLM_FNV1A64_OFFSET) == hash) return CLLM_OK;
    char what[96];
    if (c->n_bytes != bytes) snprintf(what, sizeof what, "%zu bytes when trained, %zu now", bytes, c->n_bytes);
    else snprintf(what, sizeof what, "same size, %zu bytes, different contents", bytes);
    return cllm_fail(CLLM_ERR_INPUT,
                     "the training data of %s changed since the run was trained (%s%s%s): its validation split "
                     "cannot be rebuilt; evaluate on other data explicitly with: cllm eval %s DATA",
                     dir, what, o->n_data ? ", first path " : "", o->n_data ? o->data_paths[0] : "", dir);
}

/* The run's validation split, rebuilt exactly as training built it from the
 * settings in run.json, and the windows training's passes evaluated
 * (*run_cap, 0 = all: the run's --eval-tokens). */
static cllm_status build_validation(const char *dir, const cllm_tokenizer *tok, int seq_len, cllm_dataset *val,
                                    size_t *run_cap) {
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
        st = check_same_data(dir, &o, &c, hash, bytes);
        if (st == CLLM_OK) st = cllm_dataset_build(&c, tok, seq_len, o.val_fraction, o.seed, val);
        if (st == CLLM_OK) *run_cap = cllm_train_eval_cap(&o, cllm_train_total_steps(&o, val->n_train));
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

/* A model with finite but huge weights can still give a NaN or infinite
 * loss; the JSON then says null (JSON has no NaN), the text says nan/inf. */
static void print_result(double loss, size_t tokens, size_t windows, size_t all, int from_data, int json) {
    double ppl = exp(loss);
    if (json) {
        char l[40], p[40];
        cllm_json_format_number(l, sizeof l, loss, 9);
        cllm_json_format_number(p, sizeof p, ppl, 9);
        printf("{\"loss\":%s,\"perplexity\":%s,\"tokens\":%zu,\"windows\":%zu,\"windows_total\":%zu,"
               "\"source\":\"%s\"}\n",
               l, p, tokens, windows, all, from_data ? "data" : "validation");
    } else {
        printf("loss %.4f  perplexity %.2f  tokens %zu", isnan(loss) ? NAN : loss, isnan(ppl) ? NAN : ppl, tokens);
        if (windows < all) printf("  windows %zu of %zu (--eval-tokens 0: all)", windows, all);
        printf("\n");
    }
}

/* The pass with a progress line on stderr when it is a terminal (stdout
 * keeps only the result, for pipes); plain lines only when CLLM_PROGRESS
 * asks for them. */
static cllm_status evaluate_shown(const gpt2_model *m, const cllm_eval_source *src, size_t cap, double *loss,
                                  size_t *tokens) {
    const char *env = cllm_env_progress();
    cllm_progress_mode mode = cllm_progress_pick(env, 0, isatty(STDERR_FILENO));
    if (mode == CLLM_PROGRESS_PLAIN && strcmp(env, "plain") != 0) mode = CLLM_PROGRESS_OFF;
    cllm_progress *shown = cllm_progress_open(mode, stderr, cllm_env_columns(), 30.0);
    cllm_progress_info pi = {.loss = NAN, .lr = -1, .eta_s = -1, .mfu = -1,
                             .eval_total = cllm_eval_selected(cllm_eval_windows(src), cap)};
    cllm_progress_update(shown, &pi, 1);
    cllm_eval_options opt = {.max_windows = cap, .progress = shown ? cllm_progress_eval : NULL, .progress_ctx = shown};
    cllm_status st = cllm_evaluate(m, src, &opt, loss, tokens);
    if (mode == CLLM_PROGRESS_LINE && shown) {
        cllm_progress_hold(shown);
        fprintf(stderr, "\033[A\033[K"); /* the finished line goes: the result says it all */
    }
    cllm_progress_close(shown);
    return st;
}

static int run_eval(const char *dir, char **data, int n_data, int json, const char *dump, const char *ids,
                    int64_t eval_tokens) {
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
    cllm_eval_source src = {NULL, NULL, 0, m.cfg.seq_len};
    int32_t *stream = NULL;
    cllm_dataset val;
    memset(&val, 0, sizeof val);
    size_t cap = 0; /* DATA: every window unless --eval-tokens says */
    if (n_data > 0) {
        st = tokenize_data(tok, data, n_data, &stream, &src.n_stream);
        src.stream = stream;
    } else {
        st = build_validation(dir, tok, m.cfg.seq_len, &val, &cap);
        src.val = &val;
    }
    if (eval_tokens >= 0) cap = cllm_eval_cap_windows(eval_tokens, m.cfg.seq_len);
    double loss = 0;
    size_t tokens = 0;
    if (st == CLLM_OK) st = cllm_memory_check(omp_get_max_threads() * gpt2_acts_bytes_estimate(&m.cfg, 1),
                                              "evaluation (one activation arena per thread; fewer OMP_NUM_THREADS "
                                              "need less)");
    if (st == CLLM_OK) st = evaluate_shown(&m, &src, cap, &loss, &tokens);
    size_t all = st == CLLM_OK ? cllm_eval_windows(&src) : 0;
    if (st == CLLM_OK) print_result(loss, tokens, cllm_eval_selected(all, cap), all, n_data > 0, json);
    if (!n_data) cllm_dataset_free(&val);
    free(stream);
    gpt2_destroy(&m);
    cllm_tokenizer_free(tok);
    return (int)st;
}

int cllm_cmd_eval(int argc, char **argv) {
    int json = 0;
    const char *dump = NULL, *ids = NULL;
    int64_t eval_tokens = -1;
    const cllm_flag flags[] = {
        {"json", CLLM_FLAG_BOOL, &json, NULL, "print one JSON object instead of text", 1, 0, NULL},
        {"eval-tokens", CLLM_FLAG_INT64, &eval_tokens, "N",
         "score about N tokens: that many windows, evenly spaced, 0 = all (default: the validation split as "
         "training scored it, the run's --eval-tokens; DATA: all)",
         0, 1e15, NULL},
        {"dump-logits", CLLM_FLAG_STRING, &dump, "FILE",
         "diagnostic: write the logits of --tokens as raw float32 [n, vocab] to FILE", 1, 0, NULL},
        {"tokens", CLLM_FLAG_STRING, &ids, "IDS", "diagnostic: token ids for --dump-logits, e.g. \"1 2 3\"", 1, 0, NULL},
    };
    const cllm_command_spec spec = {
        "eval", "DIR [DATA...]",
        "Prints the loss (nats/token) and perplexity of the model in run folder DIR on DATA (files or\n"
        "folders, tokenized with the run's tokenizer, every token predicted once in non-overlapping\n"
        "windows), or without DATA on the run's own validation split (from DIR/run.json), the windows\n"
        "training's passes evaluated. A progress line goes to stderr when it is a terminal.",
        flags, (int)(sizeof flags / sizeof flags[0]), 1, -1};
    char *pos[argc > 0 ? argc : 1];
    int npos = 0;
    int rc = cllm_flags_exit_code(cllm_flags_parse(&spec, argc, argv, pos, &npos));
    if (rc >= 0) return rc;
    if ((dump == NULL) != (ids == NULL) || (dump && npos > 1)) {
        fprintf(stderr, "cllm eval: --dump-logits FILE and --tokens IDS go together, without DATA\n");
        return 2;
    }
    if (dump && (rc = cllm_flags_check_output_file("eval", "--dump-logits", dump)) >= 0) return rc;
    rc = run_eval(pos[0], pos + 1, npos - 1, json, dump, ids, eval_tokens);
    if (rc != 0) fprintf(stderr, "cllm eval: %s\n", cllm_last_error());
    return rc;
}
