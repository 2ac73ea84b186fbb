/* The workflow around runs: `cllm help COMMAND`, the presets in `train
 * --help`, `train --tokenizer FILE`, `cllm runs` and its four states, and
 * extending a finished run with the schedule it states. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cllm/optim/schedule.h"
#include "cllm/train/runfolder.h"
#include "support.h"

static char *workdir, *corpus;

static int setup(void **state) {
    (void)state;
    workdir = make_temp_dir();
    corpus = write_word_corpus(workdir, "words.txt");
    return 0;
}

static int teardown(void **state) {
    (void)state;
    remove_tree(workdir);
    free(workdir);
    free(corpus);
    return 0;
}

static void train_ok(const char *extra) {
    char args[4096];
    snprintf(args, sizeof args, "train %s --preset tiny --vocab 300 --seq 16 --sample-tokens 0 --quiet %s", corpus,
             extra);
    run_result r = run_cllm("OMP_NUM_THREADS=2", args);
    if (r.exit_code != 0) fail_msg("cllm %s: exit %d\n%s", args, r.exit_code, r.err);
    run_result_free(&r);
}

static void test_help_command_is_the_command_help(void **state) {
    (void)state;
    const char *commands[] = {"train", "eval", "sample", "tokenizer", "plot", "bench", "info", "runs"};
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        char a[64], b[64];
        snprintf(a, sizeof a, "help %s", commands[i]);
        snprintf(b, sizeof b, "%s --help", commands[i]);
        run_result x = run_cllm(NULL, a), y = run_cllm(NULL, b);
        assert_int_equal(x.exit_code, 0);
        assert_int_equal(y.exit_code, 0);
        assert_string_equal(x.out, y.out);
        assert_true(strlen(x.out) > 40);
        run_result_free(&x);
        run_result_free(&y);
    }
    run_result u = run_cllm(NULL, "help frob");
    assert_int_equal(u.exit_code, 2);
    assert_non_null(strstr(u.err, "unknown command 'frob'"));
    run_result_free(&u);
    /* the presets, with their sizes and learning rates */
    run_result h = run_cllm(NULL, "help train");
    assert_non_null(strstr(h.out, "  S        4 layers x 256, 4 heads, context 256:  3,356,160 parameters, --lr 3e-3"));
    assert_non_null(strstr(h.out, "  M        6 layers x 384"));
    assert_non_null(strstr(h.out, "--resume DIR --steps N"));
    assert_non_null(strstr(h.out, "--eval-tokens N"));
    assert_non_null(strstr(h.out, "--tokenizer FILE"));
    run_result_free(&h);
}

static void test_train_reuses_a_tokenizer_file(void **state) {
    (void)state;
    char args[2048];
    char *tok = path_in(workdir, "tok.bin");
    snprintf(args, sizeof args, "tokenizer train %s --vocab 280 -o %s", corpus, tok);
    run_result r = run_cllm(NULL, args);
    assert_int_equal(r.exit_code, 0);
    run_result_free(&r);
    /* no --vocab: the file's 280; the run keeps a byte-identical copy */
    char *dir = path_in(workdir, "with-tok");
    snprintf(args, sizeof args, "--steps 3 --tokenizer %s --vocab 280 --out %s", tok, dir);
    train_ok(args); /* --vocab equal to the file's is fine */
    size_t a, b;
    unsigned char *x = read_whole_file(tok, &a);
    char *copy = path_in(dir, "tokenizer.bin");
    unsigned char *y = read_whole_file(copy, &b);
    assert_int_equal(a, b);
    assert_memory_equal(x, y, a);
    char *cfg = path_in(dir, "config.json");
    size_t n;
    char *config = (char *)read_whole_file(cfg, &n);
    assert_non_null(strstr(config, "\"vocab_size\": 280"));
    free(config);
    free(cfg);
    /* another run's tokenizer.bin, with no --vocab at all */
    char *dir2 = path_in(workdir, "with-run-tok");
    snprintf(args, sizeof args, "train %s --preset tiny --seq 16 --steps 2 --sample-tokens 0 --tokenizer %s --out %s",
             corpus, copy, dir2);
    r = run_cllm(NULL, args);
    assert_int_equal(r.exit_code, 0);
    assert_non_null(strstr(r.out, "(vocab 280)"));
    assert_non_null(strstr(r.out, "(--tokenizer), not trained"));
    run_result_free(&r);
    free(x);
    free(y);
    free(copy);
    free(dir);
    free(dir2);
    free(tok);
}

/* One line per run folder, in name order, with its state. */
static const char *row_of(const char *out, const char *name) {
    char key[64];
    snprintf(key, sizeof key, "\n%s ", name);
    const char *p = strstr(out, key);
    if (!p) fail_msg("no row for %s in:\n%s", name, out);
    return p + 1;
}

static void test_runs_lists_states_steps_and_losses(void **state) {
    (void)state;
    char *runs = path_in(workdir, "runs"), args[2048], *d;
    d = path_in(runs, "b-complete");
    snprintf(args, sizeof args, "--steps 4 --out %s", d);
    train_ok(args);
    free(d);
    d = path_in(runs, "a-stopped");
    snprintf(args, sizeof args, "--steps 50 --stop-after 3 --out %s", d);
    train_ok(args);
    free(d);
    d = path_in(runs, "c-running");
    snprintf(args, sizeof args, "--steps 5 --stop-after 2 --out %s", d);
    train_ok(args);
    cllm_run_lock lock; /* this test holds its lock: as a cllm train would */
    assert_int_equal(cllm_run_lock_acquire(d, &lock), CLLM_OK);
    char *broken = path_in(runs, "d-broken");
    char *json_from = path_in(d, "run.json"), *json_to = path_in(broken, "run.json");
    size_t n;
    unsigned char *json = read_whole_file(json_from, &n);
    free(write_file(runs, "d-broken/run.json", json, n)); /* run.json and nothing else: no checkpoint */
    free(json);
    free(write_file(runs, "not-a-run/notes.txt", "mine\n", 5));

    snprintf(args, sizeof args, "runs %s", runs);
    run_result r = run_cllm(NULL, args);
    assert_int_equal(r.exit_code, 0);
    assert_true(strncmp(r.out, "run ", 4) == 0);
    const char *stopped = row_of(r.out, "a-stopped"), *complete = row_of(r.out, "b-complete");
    const char *running = row_of(r.out, "c-running"), *bad = row_of(r.out, "d-broken");
    assert_true(stopped < complete && complete < running && running < bad); /* name order */
    assert_null(strstr(r.out, "not-a-run"));
    assert_non_null(strstr(stopped, " stopped "));
    assert_non_null(strstr(stopped, " 3/50 "));
    assert_non_null(strstr(complete, " complete "));
    assert_non_null(strstr(complete, " 4/4 "));
    assert_non_null(strstr(running, " running "));
    assert_non_null(strstr(bad, " broken "));
    assert_non_null(strstr(bad, "no checkpoint"));
    /* the last losses and the tokens: the complete run's final line has a validation loss */
    double loss = 0, val = 0;
    char tokens[32];
    assert_int_equal(sscanf(complete, "b-complete complete 4/4 %lf %lf %31s", &loss, &val, tokens), 3);
    assert_true(loss > 0 && val > 0);
    assert_string_equal(tokens, "1,024"); /* 4 steps x 16 sequences x 16 tokens */
    run_result_free(&r);
    cllm_run_lock_release(&lock, 0);
    snprintf(args, sizeof args, "runs %s", d); /* a run folder itself; the lock has gone */
    r = run_cllm(NULL, args);
    assert_int_equal(r.exit_code, 0);
    assert_non_null(strstr(r.out, " stopped "));
    assert_non_null(strstr(r.out, " 2/5 "));
    run_result_free(&r);
    free(json_from);
    free(json_to);
    free(broken);
    free(d);
    free(runs);
}

static double metrics_lr(const char *dir, int64_t step) {
    char *path = path_in(dir, "metrics.jsonl"), key[64];
    size_t n;
    char *text = (char *)read_whole_file(path, &n);
    assert_non_null(text);
    snprintf(key, sizeof key, "{\"step\":%lld,", (long long)step);
    const char *line = strstr(text, key);
    assert_non_null(line);
    const char *lr = strstr(line, "\"lr\":");
    double v = strtod(lr + 5, NULL);
    free(text);
    free(path);
    return v;
}

/* A finished run extended with --steps N continues on the schedule of an
 * N-step run (said at start-up); --lr equal to --min-lr keeps it flat. */
static void test_extending_a_finished_run_states_its_schedule(void **state) {
    (void)state;
    char *dir = path_in(workdir, "extend"), args[2048];
    snprintf(args, sizeof args, "--steps 6 --out %s", dir);
    train_ok(args);
    double end_lr = metrics_lr(dir, 6);
    assert_true(fabs(end_lr - 3e-4) < 1e-12); /* the floor: lr / 10 */
    snprintf(args, sizeof args, "train --resume %s --steps 12 --sample-tokens 0", dir);
    run_result r = run_cllm("OMP_NUM_THREADS=2", args);
    assert_int_equal(r.exit_code, 0);
    cllm_schedule s12 = {3e-3, 3e-4, 0, 12}; /* warm-up: 5% of 12 steps = 0 */
    char said[128];
    snprintf(said, sizeof said, "resume    from step 6 (data window 96), next lr %.3g (schedule of 12 steps)",
             cllm_schedule_lr(&s12, 7));
    assert_non_null(strstr(r.out, said));
    run_result_free(&r);
    for (int64_t k = 7; k <= 12; k++) assert_true(fabs(metrics_lr(dir, k) - cllm_schedule_lr(&s12, k)) < 1e-9);
    assert_true(metrics_lr(dir, 7) > 4 * end_lr); /* the documented jump back up */
    /* flat: --lr equal to --min-lr */
    snprintf(args, sizeof args, "train --resume %s --steps 15 --lr 3e-4 --min-lr 3e-4 --sample-tokens 0 --quiet", dir);
    r = run_cllm("OMP_NUM_THREADS=2", args);
    assert_int_equal(r.exit_code, 0);
    run_result_free(&r);
    for (int64_t k = 13; k <= 15; k++) assert_true(fabs(metrics_lr(dir, k) - 3e-4) < 1e-12);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help_command_is_the_command_help),
        cmocka_unit_test(test_train_reuses_a_tokenizer_file),
        cmocka_unit_test(test_runs_lists_states_steps_and_losses),
        cmocka_unit_test(test_extending_a_finished_run_states_its_schedule),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
