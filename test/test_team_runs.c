/* Whole runs under each team shape (README "Thread teams"): training writes
 * the same model.safetensors, and sampling and evaluation print the same,
 * for any thread count and team shape. The layers' own team tests are in
 * test_team.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "support.h"

/* ---- whole runs ---- */

/* A short run of a model wide enough that the layers really split (C = 192),
 * under the environment `env`: its model.safetensors, and the start-up
 * summary's threads line in *summary. */
static unsigned char *train_under(const char *env, size_t *n, char **summary) {
    char *dir = make_temp_dir(), args[768];
    char *corpus = write_word_corpus(dir, "words.txt");
    snprintf(args, sizeof args,
             "train %s --layers 1 --heads 4 --embd 192 --seq 32 --vocab 300 --steps 2 --batch 4 --micro 1 --clip 1 "
             "--eval-every 1 --sample-tokens 8 --out %s/run",
             corpus, dir);
    free(corpus);
    run_result r = run_cllm(env, args);
    if (r.exit_code != 0) fail_msg("%s cllm %s: exit %d: %s", env, args, r.exit_code, r.err);
    char *line = strstr(r.out, "  threads ");
    assert_non_null(line);
    *summary = strndup(line, strcspn(line, "\n"));
    char path[600];
    snprintf(path, sizeof path, "%s/run/model.safetensors", dir);
    unsigned char *bytes = read_whole_file(path, n);
    assert_non_null(bytes);
    run_result_free(&r);
    remove_tree(dir);
    free(dir);
    return bytes;
}

/* model.safetensors is byte-for-byte the same for 1 thread, flat 2 threads
 * (2 x 1, the default for 4 micro-batches), 1 x 2 (CLLM_TEAM and a nested
 * OMP_NUM_THREADS list) and oversubscribed 2 x 2; the start-up summary names
 * each shape. (OMP_NUM_THREADS=2,1 is the same engine as the flat default;
 * test_engine and test_team cover more shapes without the binary.) */
static void test_team_shapes_train_the_same_model(void **state) {
    (void)state;
    static const struct {
        const char *env, *shape;
    } runs[] = {
        {"OMP_NUM_THREADS=1", "1 = 1 team x 1"},
        {"OMP_NUM_THREADS=2", "2 = 2 teams x 1"},
        {"OMP_NUM_THREADS=2 CLLM_TEAM=2", "2 = 1 team x 2"},
        {"OMP_NUM_THREADS=1,2", "2 = 1 team x 2"},
        {"OMP_NUM_THREADS=4 CLLM_TEAM=2", "4 = 2 teams x 2"},
    };
    size_t n_ref = 0;
    unsigned char *ref = NULL;
    for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
        size_t n;
        char *summary;
        unsigned char *bytes = train_under(runs[i].env, &n, &summary);
        if (!strstr(summary, runs[i].shape)) fail_msg("%s: summary '%s' lacks '%s'", runs[i].env, summary, runs[i].shape);
        if (!ref) {
            ref = bytes, n_ref = n;
        } else {
            if (n != n_ref || memcmp(ref, bytes, n) != 0)
                fail_msg("%s: model.safetensors differs from %s's", runs[i].env, runs[0].env);
            free(bytes);
        }
        free(summary);
    }
    free(ref);
}

/* `cllm sample` and `cllm eval` of one run print the same at 1, 2 and 3
 * threads: sampling splits every KV-cached step over all threads, and eval
 * (fewer windows than threads, or one window per thread) the same way. */
static void test_sample_and_eval_same_output_for_any_threads(void **state) {
    (void)state;
    char *dir = make_temp_dir(), args[768];
    char *corpus = write_word_corpus(dir, "words.txt");
    snprintf(args, sizeof args,
             "train %s --layers 1 --heads 4 --embd 192 --seq 32 --vocab 300 --steps 2 --batch 2 --micro 1 "
             "--sample-tokens 0 --out %s/run --quiet",
             corpus, dir);
    run_result r = run_cllm("OMP_NUM_THREADS=2", args);
    if (r.exit_code != 0) fail_msg("cllm %s: exit %d: %s", args, r.exit_code, r.err);
    run_result_free(&r);
    static const char *const commands[] = {"sample %s/run --tokens 60 --seed 5 --prompt 'the'",
                                           "eval %s/run %s --json"};
    static const char *const envs[] = {"OMP_NUM_THREADS=1", "OMP_NUM_THREADS=3", "OMP_NUM_THREADS=2 CLLM_TEAM=2"};
    for (size_t c = 0; c < sizeof commands / sizeof commands[0]; c++) {
        snprintf(args, sizeof args, commands[c], dir, corpus);
        char *first = NULL;
        for (size_t e = 0; e < sizeof envs / sizeof envs[0]; e++) {
            r = run_cllm(envs[e], args);
            if (r.exit_code != 0) fail_msg("%s cllm %s: exit %d: %s", envs[e], args, r.exit_code, r.err);
            assert_true(strlen(r.out) > 0);
            if (!first) first = strdup(r.out);
            else if (strcmp(first, r.out) != 0)
                fail_msg("%s cllm %s printed\n%s\nbut %s printed\n%s", envs[e], args, r.out, envs[0], first);
            run_result_free(&r);
        }
        free(first);
    }
    free(corpus);
    remove_tree(dir);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_team_shapes_train_the_same_model),
        cmocka_unit_test(test_sample_and_eval_same_output_for_any_threads),
    };
    /* The shapes are set per run; none inherited. */
    unsetenv("CLLM_TEAM");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
