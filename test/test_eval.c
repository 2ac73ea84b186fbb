/* --eval-tokens: a capped evaluation pass scores a fixed, evenly spaced
 * subset of the windows, the same every time and for any thread count, and
 * `cllm eval DIR` scores the very windows training's passes scored. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cllm/base/rng.h"
#include "cllm/train/eval.h"
#include "cllm/train/trainer.h"
#include "support.h"

static void test_selected_windows_are_evenly_spaced_and_distinct(void **state) {
    (void)state;
    assert_int_equal(cllm_eval_selected(100, 0), 100);
    assert_int_equal(cllm_eval_selected(100, 500), 100);
    assert_int_equal(cllm_eval_selected(100, 7), 7);
    assert_int_equal(cllm_eval_cap_windows(0, 128), 0);
    assert_int_equal(cllm_eval_cap_windows(5, 128), 1); /* below one window: still one */
    assert_int_equal(cllm_eval_cap_windows(20480, 128), 160);
    const size_t ns[] = {1, 2, 7, 100, 11297, 1000003};
    for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++)
        for (size_t cap = 1; cap <= ns[a] && cap < 300; cap += cap < 10 ? 1 : 37) {
            size_t prev = 0;
            for (size_t j = 0; j < cap; j++) {
                size_t w = cllm_eval_selected_index(ns[a], cap, j);
                assert_true(w < ns[a]);
                if (j) assert_true(w > prev);
                /* spread over the whole range: window j sits at j/cap of it */
                assert_true(w * cap <= j * ns[a] && j * ns[a] < (w + 1) * cap);
                prev = w;
            }
        }
}

/* The passes the ETA counts: every --eval-every steps and the final one. */
static void test_eta_counts_the_passes_left(void **state) {
    (void)state;
    assert_int_equal(cllm_train_evals_left(200, 0, 1200, 1200), 6); /* the final one is the pass at 1200 */
    assert_int_equal(cllm_train_evals_left(200, 199, 1200, 1200), 6);
    assert_int_equal(cllm_train_evals_left(200, 200, 1200, 1200), 5);
    assert_int_equal(cllm_train_evals_left(200, 1199, 1200, 1200), 1);
    assert_int_equal(cllm_train_evals_left(200, 1200, 1200, 1200), 0);
    assert_int_equal(cllm_train_evals_left(200, 0, 1250, 1250), 7); /* 200..1200, then the final at 1250 */
    assert_int_equal(cllm_train_evals_left(200, 1200, 1250, 1250), 1);
    assert_int_equal(cllm_train_evals_left(0, 0, 100, 100), 1); /* only at the end */
    assert_int_equal(cllm_train_evals_left(0, 100, 100, 100), 0);
    assert_int_equal(cllm_train_evals_left(200, 0, 500, 1200), 2); /* --stop-after 500: no final pass */
}

/* --eval-tokens resolved: as given, or a tenth of the sequences between passes. */
static void test_default_cap_is_a_tenth_of_the_sequences_between_passes(void **state) {
    (void)state;
    cllm_train_options o;
    cllm_train_options_defaults(&o);
    o.model.seq_len = 128;
    assert_int_equal(cllm_train_eval_cap(&o, 1200), 320); /* 200 steps x 16 sequences / 10 */
    o.grad_accum = 2;
    assert_int_equal(cllm_train_eval_cap(&o, 1200), 640);
    o.eval_every = 0; /* only at the end: of the whole budget */
    assert_int_equal(cllm_train_eval_cap(&o, 50), 50 * 32 / 10);
    o.eval_every = 500;
    assert_int_equal(cllm_train_eval_cap(&o, 100), 100 * 32 / 10); /* a budget shorter than the interval */
    o.eval_tokens = 20480;
    assert_int_equal(cllm_train_eval_cap(&o, 1200), 160);
    o.eval_tokens = 0;
    assert_int_equal(cllm_train_eval_cap(&o, 1200), 0); /* all */
}

typedef struct {
    gpt2_model m;
    int32_t *stream;
    size_t n;
} fixture;

enum { T = 8, WINDOWS = 53 };

static void make_fixture(fixture *f) {
    gpt2_config cfg = {.n_layer = 2, .n_head = 2, .n_embd = 16, .seq_len = T, .vocab_size = 32};
    assert_int_equal(gpt2_create(&f->m, &cfg), CLLM_OK);
    gpt2_init_weights(&f->m, 7);
    f->n = (size_t)WINDOWS * T + 1;
    f->stream = malloc(f->n * sizeof *f->stream);
    cllm_rng rng;
    cllm_rng_seed(&rng, 42);
    for (size_t i = 0; i < f->n; i++) f->stream[i] = (int32_t)(cllm_rng_next(&rng) % 32);
}

static double eval_capped(const fixture *f, size_t cap, int threads, size_t *tokens) {
    cllm_eval_source src = {NULL, f->stream, f->n, T};
    cllm_eval_options opt = {.threads = threads, .max_windows = cap};
    double loss = NAN;
    assert_int_equal(cllm_evaluate(&f->m, &src, &opt, &loss, tokens), CLLM_OK);
    return loss;
}

static void count_calls(void *ctx, size_t done, size_t total) {
    size_t *c = ctx;
#pragma omp atomic
    c[0]++;
    assert_true(done >= 1 && done <= total);
#pragma omp atomic write /* every worker reports; one plain store each would race */
    c[1] = total;
}

static void test_capped_pass_is_deterministic_and_is_its_windows(void **state) {
    (void)state;
    fixture f;
    make_fixture(&f);
    size_t tokens = 0, tokens2 = 0;
    double a = eval_capped(&f, 7, 1, &tokens), b = eval_capped(&f, 7, 2, &tokens2);
    assert_true(a == b); /* bitwise, for any thread count */
    assert_int_equal(tokens, 7 * T);
    assert_true(eval_capped(&f, 7, 2, &tokens2) == a); /* and the same the next time */
    /* it is the mean over exactly the windows cllm_eval_selected_index names */
    double sum = 0;
    for (size_t j = 0; j < 7; j++) {
        size_t w = cllm_eval_selected_index(WINDOWS, 7, j);
        cllm_eval_source one = {NULL, f.stream + w * T, T + 1, T};
        double l = NAN;
        size_t n = 0;
        assert_int_equal(cllm_evaluate(&f.m, &one, NULL, &l, &n), CLLM_OK);
        assert_int_equal(n, T);
        sum += l * T;
    }
    assert_true(fabs(sum / (7.0 * T) - a) < 1e-12);
    /* the cap bites: all windows give another figure */
    double all = eval_capped(&f, 0, 2, &tokens);
    assert_int_equal(tokens, WINDOWS * T);
    assert_true(all != a);
    assert_true(eval_capped(&f, WINDOWS + 5, 2, &tokens) == all); /* a cap beyond the split is no cap */
    /* progress: one call per window, with the pass's size */
    size_t calls[2] = {0, 0};
    cllm_eval_source src = {NULL, f.stream, f.n, T};
    cllm_eval_options opt = {.threads = 2, .max_windows = 7, .progress = count_calls, .progress_ctx = calls};
    double l;
    assert_int_equal(cllm_evaluate(&f.m, &src, &opt, &l, &tokens), CLLM_OK);
    assert_int_equal(calls[0], 7);
    assert_int_equal(calls[1], 7);
    gpt2_destroy(&f.m);
    free(f.stream);
}

/* Training's final validation loss is on the capped windows, and `cllm eval
 * DIR` without flags scores those same windows; --eval-tokens 0 scores all. */
static void test_cllm_eval_scores_the_windows_training_scored(void **state) {
    (void)state;
    char *dir = make_temp_dir(), args[1024];
    char *corpus = write_word_corpus(dir, "words.txt");
    snprintf(args, sizeof args,
             "train %s --preset tiny --vocab 300 --seq 16 --steps 6 --eval-every 3 --eval-tokens 48 "
             "--val-fraction 0.2 --sample-tokens 0 --out %s/run",
             corpus, dir);
    run_result r = run_cllm("OMP_NUM_THREADS=2", args);
    assert_int_equal(r.exit_code, 0);
    assert_non_null(strstr(r.out, "eval      3 of "));
    const char *fin = strstr(r.out, "validation loss ");
    assert_non_null(fin);
    assert_non_null(strstr(fin, " on 3 of "));
    char trained[16];
    snprintf(trained, sizeof trained, "%.6s", fin + strlen("validation loss "));
    run_result_free(&r);

    snprintf(args, sizeof args, "eval %s/run", dir);
    run_result e1 = run_cllm("OMP_NUM_THREADS=1", args), e2 = run_cllm("OMP_NUM_THREADS=2", args);
    assert_int_equal(e1.exit_code, 0);
    assert_string_equal(e1.out, e2.out);
    assert_true(strncmp(e1.out, "loss ", 5) == 0);
    assert_memory_equal(e1.out + 5, trained, 6);
    assert_non_null(strstr(e1.out, "tokens 48  windows 3 of "));
    assert_string_equal(e1.err, ""); /* not a terminal: no progress line */

    snprintf(args, sizeof args, "eval %s/run --eval-tokens 0 --json", dir);
    run_result all = run_cllm("OMP_NUM_THREADS=2", args);
    assert_int_equal(all.exit_code, 0);
    assert_null(strstr(all.out, "\"windows\":3,"));
    assert_true(strncmp(all.out + strlen("{\"loss\":"), trained, 6) != 0);
    snprintf(args, sizeof args, "eval %s/run %s --eval-tokens 32 --json", dir, corpus);
    run_result data = run_cllm("OMP_NUM_THREADS=2", args);
    assert_int_equal(data.exit_code, 0);
    assert_non_null(strstr(data.out, "\"tokens\":32,\"windows\":2,"));
    run_result_free(&e1);
    run_result_free(&e2);
    run_result_free(&all);
    run_result_free(&data);
    free(corpus);
    remove_tree(dir);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_selected_windows_are_evenly_spaced_and_distinct),
        cmocka_unit_test(test_eta_counts_the_passes_left),
        cmocka_unit_test(test_default_cap_is_a_tenth_of_the_sequences_between_passes),
        cmocka_unit_test(test_capped_pass_is_deterministic_and_is_its_windows),
        cmocka_unit_test(test_cllm_eval_scores_the_windows_training_scored),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
