/* The training loop end to end on a tiny model and a tiny corpus: exact
 * resume, determinism across threads and schedules, divergence stop,
 * signals, bad command lines, and the trainer's small pieces (clipping,
 * metrics lines, progress lines, run.json). */
#include <ctype.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cllm/dist/engine.h"
#include "cllm/base/memory.h"
#include "cllm/report/metrics.h"
#include "cllm/report/progress.h"
#include "cllm/io/safetensors.h"
#include "cllm/train/test_hooks.h"
#include "cllm/train/trainer.h"
#include "cllm/train/checkpoint.h"
#include "cllm/train/runfolder.h"
#include "cllm/kernels/bf16.h"
#include "support.h"

/* ---- fixtures ------------------------------------------------------------------ */

static char *workdir;
static char *corpus_path;

static int setup_corpus(void **state) {
    (void)state;
    workdir = make_temp_dir();
    corpus_path = write_word_corpus(workdir, "corpus.txt");
    return 0;
}

static int teardown_corpus(void **state) {
    (void)state;
    remove_tree(workdir);
    free(workdir);
    free(corpus_path);
    return 0;
}

static char *data_paths[1];

static cllm_train_options tiny_options(const char *out, int64_t steps) {
    data_paths[0] = corpus_path;
    cllm_train_options o = {
        .data_paths = data_paths, .n_data = 1, .val_fraction = 0.1,
        .model = {.n_layer = 1, .n_head = 2, .n_embd = 16, .seq_len = 16, .vocab_size = 300},
        .batch = 4, .micro = 1, .grad_accum = 1, .steps = steps, .lr = 1e-2, .min_lr = 1e-3, .warmup = 2,
        .weight_decay = 0.1, .clip = 1.0, .seed = 7, .eval_every = 2, .save_every = 0, .log_every = 1,
        .sample_tokens = 0, .out_dir = out, .quiet = 1,
    };
    return o;
}

static char *run_dir(const char *name) {
    char *p = malloc(strlen(workdir) + strlen(name) + 2);
    sprintf(p, "%s/%s", workdir, name);
    return p;
}

static unsigned char *slurp(const char *dir, const char *name, size_t *n) {
    char *path = cllm_path_join(dir, name);
    unsigned char *b = read_whole_file(path, n);
    free(path);
    return b;
}

static void assert_same_file(const char *dir_a, const char *dir_b, const char *name) {
    size_t na = 0, nb = 0;
    unsigned char *a = slurp(dir_a, name, &na), *b = slurp(dir_b, name, &nb);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na);
    free(a);
    free(b);
}

static cllm_status train_fresh_in(const char *dir, int64_t steps, int64_t stop_after, int threads, int precision) {
    omp_set_num_threads(threads);
    cllm_train_options o = tiny_options(dir, steps);
    o.stop_after = stop_after;
    o.precision = precision;
    cllm_train_result res;
    return cllm_train(&o, 0, &res);
}

static cllm_status train_fresh(const char *dir, int64_t steps, int64_t stop_after, int threads) {
    return train_fresh_in(dir, steps, stop_after, threads, CLLM_PRECISION_FP32);
}

static cllm_status train_resume_until(const char *dir, int threads, int64_t stop_after, cllm_train_result *res) {
    omp_set_num_threads(threads);
    cllm_train_options o;
    uint64_t hash;
    size_t bytes;
    cllm_status st = cllm_run_json_read(dir, &o, &hash, &bytes);
    if (st != CLLM_OK) return st;
    o.out_dir = dir;
    o.quiet = 1;
    o.stop_after = stop_after;
    st = cllm_train(&o, 1, res);
    cllm_train_options_free_paths(&o);
    return st;
}

static cllm_status train_resume(const char *dir, int threads, cllm_train_result *res) {
    return train_resume_until(dir, threads, 0, res);
}

static int64_t optimizer_step(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/optimizer.safetensors", dir);
    cllm_st_file f;
    if (cllm_st_open(path, &f) != CLLM_OK) return -1;
    const char *s = cllm_st_metadata(&f, "step");
    int64_t step = s ? strtoll(s, NULL, 10) : -1;
    cllm_st_close(&f);
    return step;
}

/* ---- exact resume ----------------------------------------------------------------- */

/* 2N steps straight on 2 threads == N steps on 1 thread, then N more on 3
 * threads after --resume: byte for byte, model and optimizer state. */
static void test_resume_is_bitwise_identical(void **state) {
    (void)state;
    char *straight = run_dir("straight"), *resumed = run_dir("resumed");
    omp_set_schedule(omp_sched_dynamic, 1);
    assert_int_equal(train_fresh(straight, 8, 0, 2), CLLM_OK);
    assert_int_equal(train_fresh(resumed, 8, 4, 1), CLLM_OK);
    assert_int_equal(optimizer_step(resumed), 4);
    cllm_train_result res;
    assert_int_equal(train_resume(resumed, 3, &res), CLLM_OK);
    assert_int_equal(res.steps_done, 8);
    assert_int_equal(optimizer_step(resumed), 8);
    assert_same_file(straight, resumed, "model.safetensors");
    assert_same_file(straight, resumed, "optimizer.safetensors");

    /* The log continues where the checkpoint was taken: steps 1..8, once each. */
    size_t n;
    char *log = (char *)slurp(resumed, "metrics.jsonl", &n);
    assert_non_null(log);
    assert_int_equal(count_lines(log), 8);
    char *p = log;
    for (int s = 1; s <= 8; s++) {
        char key[32];
        snprintf(key, sizeof key, "{\"step\":%d,", s);
        assert_ptr_equal(strstr(p, key), p);
        p = strchr(p, '\n') + 1;
    }
    free(log);
    free(straight);
    free(resumed);
}

/* The same in bf16 mode: the bf16 copy is rebuilt from the checkpoint's
 * fp32 master weights on resume, so 8 steps straight == 4 + 4 resumed on
 * other thread counts, byte for byte; and bf16 mode really ran (its model
 * differs from fp32's). */
static void test_bf16_resume_is_bitwise_identical(void **state) {
    (void)state;
    char *straight = run_dir("bf16_straight"), *resumed = run_dir("bf16_resumed"), *fp32 = run_dir("bf16_fp32");
    omp_set_schedule(omp_sched_dynamic, 1);
    assert_int_equal(train_fresh_in(straight, 8, 0, 2, CLLM_PRECISION_BF16), CLLM_OK);
    assert_int_equal(train_fresh_in(resumed, 8, 4, 1, CLLM_PRECISION_BF16), CLLM_OK);
    cllm_train_result res;
    assert_int_equal(train_resume(resumed, 3, &res), CLLM_OK);
    assert_int_equal(res.steps_done, 8);
    assert_same_file(straight, resumed, "model.safetensors");
    assert_same_file(straight, resumed, "optimizer.safetensors");
    assert_int_equal(train_fresh(fp32, 8, 0, 2), CLLM_OK);
    size_t na = 0, nb = 0;
    unsigned char *a = slurp(straight, "model.safetensors", &na), *b = slurp(fp32, "model.safetensors", &nb);
    assert_true(na == nb && memcmp(a, b, na) != 0);
    free(a);
    free(b);
    size_t n;
    char *json = (char *)slurp(resumed, "run.json", &n);
    assert_non_null(strstr(json, "\"precision\": \"bf16\""));
    free(json);
    free(straight);
    free(resumed);
    free(fp32);
}

/* Checkpoints of a bf16 run hold the fp32 master weights, not their bf16
 * copy: loading model.safetensors gives weights that bf16 cannot
 * represent, and saving and loading them again is exact. */
static void test_bf16_checkpoint_keeps_fp32_masters(void **state) {
    (void)state;
    char *dir = run_dir("bf16_master");
    assert_int_equal(train_fresh_in(dir, 4, 0, 1, CLLM_PRECISION_BF16), CLLM_OK);
    char *ckpt = cllm_run_checkpoint_dir(dir);
    gpt2_model m, back;
    assert_int_equal(cllm_checkpoint_load_model(ckpt, &m), CLLM_OK);
    size_t not_bf16 = 0;
    for (size_t i = 0; i < m.n_params; i++)
        not_bf16 += cllm_bf16_to_f32(cllm_bf16_from_f32(m.params[i])) != m.params[i];
    print_message("bf16 run's checkpoint: %zu of %zu weights are not bf16 values (fp32 masters)\n", not_bf16,
                  m.n_params);
    assert_true(not_bf16 > m.n_params / 2);
    char *again = run_dir("bf16_master_again");
    assert_int_equal(cllm_checkpoint_save_model(again, &m, 0), CLLM_OK);
    assert_int_equal(cllm_checkpoint_load_model(again, &back), CLLM_OK);
    assert_int_equal(back.n_params, m.n_params);
    assert_memory_equal(back.params, m.params, m.n_params * sizeof(float));
    gpt2_destroy(&m);
    gpt2_destroy(&back);
    free(ckpt);
    free(again);
    free(dir);
}

/* A model file that does not belong to the optimizer state is refused. */
static void test_resume_refuses_mismatched_pair(void **state) {
    (void)state;
    char *a = run_dir("pair_a"), *b = run_dir("pair_b");
    assert_int_equal(train_fresh(a, 4, 2, 1), CLLM_OK);
    assert_int_equal(train_fresh(b, 4, 3, 1), CLLM_OK);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "cp '%s/model.safetensors' '%s/model.safetensors'", b, a);
    assert_int_equal(system(cmd), 0);
    cllm_train_result res;
    assert_int_equal(train_resume(a, 1, &res), CLLM_ERR_INPUT);
    assert_non_null(strstr(cllm_last_error(), "mismatched"));
    free(a);
    free(b);
}

/* A folder of the earlier layout (plain model.safetensors, optimizer.safetensors
 * and optimizer.prev.safetensors, no `latest`), left by a crash of that
 * layout's save after the new optimizer state was in place but before the
 * new model: model of step 2, optimizer of step 4, prev of step 2. Resume
 * must pick the pair that belongs together, end bitwise where a straight run
 * ends, and leave the folder in the checkpoint layout. */
static void test_resume_of_earlier_layout_after_its_crash(void **state) {
    (void)state;
    char *straight = run_dir("legacy_straight"), *legacy = run_dir("legacy"), *ahead = run_dir("legacy_ahead");
    assert_int_equal(train_fresh(straight, 8, 0, 2), CLLM_OK);
    assert_int_equal(train_fresh(legacy, 8, 2, 2), CLLM_OK);
    assert_int_equal(train_fresh(ahead, 8, 4, 2), CLLM_OK);
    char cmd[16384];
    snprintf(cmd, sizeof cmd,
             "cd '%s' && cp -L model.safetensors m && mv m model.safetensors && "
             "cp -L config.json c && mv c config.json && "
             "cp -L optimizer.safetensors optimizer.prev.safetensors && "
             "cp -L '%s/optimizer.safetensors' o && mv o optimizer.safetensors && "
             "rm -rf latest checkpoint-*",
             legacy, ahead);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(optimizer_step(legacy), 4);
    cllm_train_result res;
    assert_int_equal(train_resume(legacy, 1, &res), CLLM_OK);
    assert_int_equal(res.steps_done, 8);
    assert_same_file(straight, legacy, "model.safetensors");
    assert_same_file(straight, legacy, "optimizer.safetensors");
    struct stat sb;
    char path[8192];
    snprintf(path, sizeof path, "%s/model.safetensors", legacy);
    assert_int_equal(lstat(path, &sb), 0);
    assert_true(S_ISLNK(sb.st_mode));
    snprintf(path, sizeof path, "%s/optimizer.prev.safetensors", legacy);
    assert_int_not_equal(lstat(path, &sb), 0);
    snprintf(path, sizeof path, "%s/latest", legacy);
    assert_int_equal(lstat(path, &sb), 0);
    free(straight);
    free(legacy);
    free(ahead);
}

/* ---- determinism across threads and schedules ---------------------------------------- */

static void test_same_parameters_for_any_threads_and_schedule(void **state) {
    (void)state;
    const omp_sched_t kinds[] = {omp_sched_static, omp_sched_dynamic, omp_sched_guided};
    const char *names[] = {"static", "dynamic", "guided"};
    char *reference = NULL;
    for (int threads = 1; threads <= 4; threads++) {
        for (int k = 0; k < 3; k++) {
            char name[64];
            snprintf(name, sizeof name, "det_%d_%s", threads, names[k]);
            char *dir = run_dir(name);
            omp_set_schedule(kinds[k], 1);
            cllm_train_options o = tiny_options(dir, 3);
            o.batch = 6;
            o.micro = 1;
            o.grad_accum = 2; /* 12 micro-batches: more than threads, uneven shares */
            omp_set_num_threads(threads);
            cllm_train_result res;
            assert_int_equal(cllm_train(&o, 0, &res), CLLM_OK);
            if (!reference) reference = dir;
            else {
                assert_same_file(reference, dir, "model.safetensors");
                free(dir);
            }
        }
    }
    omp_set_schedule(omp_sched_dynamic, 1);
    free(reference);
}

/* bf16 mode is as deterministic as fp32: the same model for 1-4 threads. */
static void test_bf16_same_parameters_for_any_threads(void **state) {
    (void)state;
    char *reference = NULL;
    omp_set_schedule(omp_sched_dynamic, 1);
    for (int threads = 1; threads <= 4; threads++) {
        char name[64];
        snprintf(name, sizeof name, "bf16_det_%d", threads);
        char *dir = run_dir(name);
        cllm_train_options o = tiny_options(dir, 3);
        o.batch = 6;
        o.grad_accum = 2; /* 12 micro-batches: more than threads, uneven shares */
        o.precision = CLLM_PRECISION_BF16;
        omp_set_num_threads(threads);
        cllm_train_result res;
        assert_int_equal(cllm_train(&o, 0, &res), CLLM_OK);
        if (!reference) reference = dir;
        else {
            assert_same_file(reference, dir, "model.safetensors");
            free(dir);
        }
    }
    free(reference);
}

/* bf16 mode runs on every CPU: on the portable table (no VDPBF16PS) it
 * trains too, and its loss is close to the fast table's (the products are
 * bitwise equal; the fp32 row kernels differ between tables by rounding). */
static void test_bf16_trains_on_the_portable_kernels(void **state) {
    (void)state;
    double loss[2];
    const cllm_kernel_table *tables[2] = {cllm_kernel_table_for(CLLM_SIMD_OMP), cllm_kernel_table_best()};
    for (int i = 0; i < 2; i++) {
        char *dir = run_dir(i ? "bf16_best" : "bf16_portable");
        cllm_train_options o = tiny_options(dir, 4);
        o.precision = CLLM_PRECISION_BF16;
        o.kernels = tables[i];
        omp_set_num_threads(2);
        cllm_train_result res;
        assert_int_equal(cllm_train(&o, 0, &res), CLLM_OK);
        loss[i] = res.final_loss;
        free(dir);
    }
    print_message("bf16 final loss: portable %.6f, %s %.6f\n", loss[0], tables[1]->name, loss[1]);
    assert_true(isfinite(loss[0]) && fabs(loss[0] - loss[1]) <= 1e-3 * fabs(loss[1]));
}

/* ---- divergence -------------------------------------------------------------------------- */

/* A NaN loss at step 5 stops the run with a clear error; the checkpoint of
 * step 4 stays, identical to a run stopped there on purpose. */
/* 8 tiny steps on 2 threads, a checkpoint every 2, with one test hook armed
 * at `step` for this run only. */
static cllm_status train_with_hook(const char *dir, void (*hook)(int64_t), int64_t step, cllm_train_result *res) {
    omp_set_num_threads(2);
    cllm_train_options o = tiny_options(dir, 8);
    o.save_every = 2;
    hook(step);
    cllm_status st = cllm_train(&o, 0, res);
    hook(0);
    return st;
}

static void test_nan_stops_and_keeps_last_good_checkpoint(void **state) {
    (void)state;
    char *bad = run_dir("nan"), *good = run_dir("nan_reference");
    cllm_train_result res;
    cllm_status st = train_with_hook(bad, cllm_train_debug_nan_at_step, 5, &res);
    assert_int_equal(st, CLLM_ERR_INTERNAL);
    assert_non_null(strstr(cllm_last_error(), "diverged at step 5"));
    assert_int_equal(optimizer_step(bad), 4);
    assert_int_equal(train_fresh(good, 8, 4, 1), CLLM_OK);
    assert_same_file(bad, good, "model.safetensors");
    free(bad);
    free(good);
}

/* A stop request that comes during or right after a periodic save: the loop
 * ends at that step, which is saved already, so the run ends interrupted with
 * that checkpoint (it used to save the same step again and fail with "already
 * committed"); resumed, it gives the uninterrupted run's bits. */
static void test_stop_right_after_a_periodic_save(void **state) {
    (void)state;
    char *cut = run_dir("stop_after_save"), *whole = run_dir("stop_after_save_reference");
    cllm_train_result res;
    cllm_status st = train_with_hook(cut, cllm_train_debug_signal_after_save, 4, &res);
    if (st != CLLM_OK) fail_msg("a stop right after the save of step 4: %s", cllm_last_error());
    assert_true(res.interrupted);
    assert_int_equal(res.steps_done, 4);
    assert_int_equal(optimizer_step(cut), 4);
    assert_int_equal(train_resume(cut, 1, &res), CLLM_OK);
    assert_int_equal(train_fresh(whole, 8, 0, 2), CLLM_OK);
    assert_same_file(cut, whole, "model.safetensors");
    free(cut);
    free(whole);
}

/* Through the binary: a learning rate that blows up ends with exit 1 and one
 * line naming the step. */
static void test_huge_learning_rate_diverges_with_exit_1(void **state) {
    (void)state;
    char *dir = run_dir("diverge");
    char args[8192];
    snprintf(args, sizeof args,
             "train '%s' --layers 1 --heads 2 --embd 16 --seq 16 --vocab 300 --batch 4 --steps 200 --lr 1e5 "
             "--clip 0 --warmup 0 --save-every 0 --sample-tokens 0 --out '%s' --quiet",
             corpus_path, dir);
    run_result r = run_cllm("OMP_NUM_THREADS=2", args);
    assert_int_equal(r.exit_code, 1);
    assert_int_equal(count_lines(r.err), 1);
    assert_non_null(strstr(r.err, "diverged at step"));
    run_result_free(&r);
    free(dir);
}

/* ---- the binary: signals and bad command lines ---------------------------------------------- */

static void check_signal_saves_and_exits_130(const char *signal_name) {
    char name[32];
    snprintf(name, sizeof name, "signal_%s", signal_name);
    char *dir = run_dir(name);
    char cmd[16384];
    snprintf(cmd, sizeof cmd,
             "OMP_NUM_THREADS=1 '%s' train '%s' --layers 1 --heads 2 --embd 16 --seq 16 --vocab 300 --batch 4 "
             "--steps 1000000 --eval-every 0 --save-every 0 --sample-tokens 0 --out '%s' --quiet & pid=$!; i=0; "
             "while [ ! -s '%s/metrics.jsonl' ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; "
             "kill -%s $pid; wait $pid; exit $?",
             CLLM_BIN, corpus_path, dir, dir, signal_name);
    int status = system(cmd);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 130);
    int64_t step = optimizer_step(dir);
    assert_true(step >= 1);
    /* the saved step is the last one logged */
    size_t n;
    char *log = (char *)slurp(dir, "metrics.jsonl", &n);
    assert_int_equal(count_lines(log), step);
    free(log);
    free(dir);
}

/* SIGTERM and SIGINT (Ctrl-C) alike: the step finishes, the checkpoint is
 * saved, exit status 130. */
static void test_sigterm_and_sigint_save_and_exit_130(void **state) {
    (void)state;
    check_signal_saves_and_exits_130("TERM");
    check_signal_saves_and_exits_130("INT");
}

static void expect_bad_command(const char *args, const char *needle) {
    char *dir = run_dir("never");
    char full[8192];
    snprintf(full, sizeof full, "train %s --out '%s' --quiet", args, dir);
    run_result r = run_cllm("OMP_NUM_THREADS=1", full);
    if (r.exit_code != 2 || count_lines(r.err) != 1 || !strstr(r.err, needle))
        fail_msg("cllm %s: exit %d, stderr '%s' (expected exit 2, one line with '%s')", full, r.exit_code, r.err,
                 needle);
    struct stat st;
    assert_int_not_equal(stat(dir, &st), 0); /* nothing written */
    run_result_free(&r);
    free(dir);
}

static void test_bad_command_lines_exit_2_and_write_nothing(void **state) {
    (void)state;
    expect_bad_command("--batch 6 --micro 4", "multiple of --micro");
    expect_bad_command("--steps 5 --epochs 1", "only one budget");
    expect_bad_command("--preset XL", "--preset");
    expect_bad_command("--heads 3 --embd 32", "--heads");
    expect_bad_command("--lr abc", "--lr");
    expect_bad_command("--min-lr 1 --lr 0.1", "--min-lr");
    expect_bad_command("--frobnicate", "unknown option");
    expect_bad_command("/nonexistent/corpus.txt", "/nonexistent/corpus.txt");
    expect_bad_command("--vocab 10", "--vocab");
    char args[4096];
    snprintf(args, sizeof args, "'%s' --steps 3 --stop-after 9 --layers 1 --heads 2 --embd 16 --seq 16 --vocab 300",
             corpus_path);
    expect_bad_command(args, "--stop-after");
    /* an --out folder that cannot be created: bad input, not an internal error */
    snprintf(args, sizeof args,
             "train '%s' --layers 1 --heads 2 --embd 16 --seq 16 --vocab 300 --steps 1 --out /proc/cllm-no-such --quiet",
             corpus_path);
    run_result r = run_cllm("OMP_NUM_THREADS=1", args);
    assert_int_equal(r.exit_code, 2);
    assert_int_equal(count_lines(r.err), 1);
    assert_non_null(strstr(r.err, "cannot create folder /proc/cllm-no-such"));
    run_result_free(&r);
}

/* A corpus too small for --vocab 512: the tokenizer runs out of pairs to merge, and training goes on with the
 * vocabulary it learned, says so, and records it so that eval and --resume load the run. The folder also holds a
 * binary file, which the summary counts as skipped. */
static void test_small_corpus_trains_with_the_learned_vocabulary(void **state) {
    (void)state;
    char text[3000];
    size_t n = 0;
    while (n + 40 < sizeof text) n += (size_t)snprintf(text + n, sizeof text - n, "the cat sat on the mat. ");
    char *corpus = run_dir("small"), *dir = run_dir("small-vocab");
    assert_int_equal(mkdir(corpus, 0755), 0);
    free(write_file(corpus, "small.txt", text, n));
    free(write_file(corpus, "image.bin", "\x89PNG\0\0", 6));
    char args[8192];
    snprintf(args, sizeof args,
             "train '%s' --layers 1 --heads 2 --embd 16 --seq 16 --vocab 512 --batch 4 --steps 2 --sample-tokens 0 "
             "--out '%s'",
             corpus, dir);
    run_result r = run_cllm("OMP_NUM_THREADS=1", args);
    if (r.exit_code != 0) fail_msg("cllm %s: exit %d, stderr '%s'", args, r.exit_code, r.err);
    assert_non_null(strstr(r.out, "not --vocab 512"));
    assert_non_null(strstr(r.out, "1 binary file skipped"));
    cllm_train_options o;
    uint64_t hash;
    size_t bytes;
    assert_int_equal(cllm_run_json_read(dir, &o, &hash, &bytes), CLLM_OK);
    cllm_train_options_free_paths(&o);
    assert_true(o.model.vocab_size < 512);
    char vocab_line[64];
    snprintf(vocab_line, sizeof vocab_line, "(vocab %d)", o.model.vocab_size);
    assert_non_null(strstr(r.out, vocab_line));
    run_result_free(&r);
    snprintf(args, sizeof args, "eval '%s'", dir);
    r = run_cllm("OMP_NUM_THREADS=1", args);
    assert_int_equal(r.exit_code, 0);
    run_result_free(&r);
    snprintf(args, sizeof args, "train --resume '%s' --quiet --sample-tokens 0", dir);
    r = run_cllm("OMP_NUM_THREADS=1", args);
    assert_int_equal(r.exit_code, 0);
    run_result_free(&r);
    free(corpus);
    free(dir);
}

/* The held-out split defaults to 5% of the windows, and run.json records it
 * so that eval and --resume rebuild the same split. */
static void test_default_validation_fraction_is_5_percent(void **state) {
    (void)state;
    char *dir = run_dir("default_val");
    char args[8192];
    snprintf(args, sizeof args,
             "train '%s' --layers 1 --heads 2 --embd 16 --seq 16 --vocab 300 --batch 4 --steps 1 "
             "--sample-tokens 0 --out '%s' --quiet",
             corpus_path, dir);
    run_result r = run_cllm("OMP_NUM_THREADS=1", args);
    assert_int_equal(r.exit_code, 0);
    run_result_free(&r);
    cllm_train_options o;
    uint64_t hash;
    size_t bytes;
    assert_int_equal(cllm_run_json_read(dir, &o, &hash, &bytes), CLLM_OK);
    assert_true(o.val_fraction == 0.05);
    cllm_train_options_free_paths(&o);
    r = run_cllm(NULL, "train --help");
    assert_non_null(strstr(r.out, "(default 0.05)"));
    run_result_free(&r);
    free(dir);
}

/* --verbose: one engine line per step with every figure the issue lists,
 * and hand-over atomics that follow the engine's formula (4 micro-batches,
 * one segment per thread). */
static void test_verbose_prints_engine_figures_per_step(void **state) {
    (void)state;
    char *dir = run_dir("verbose");
    char args[8192];
    snprintf(args, sizeof args,
             "train '%s' --layers 1 --heads 2 --embd 32 --seq 32 --vocab 300 --batch 4 --steps 3 "
             "--sample-tokens 0 --out '%s' --verbose",
             corpus_path, dir);
    run_result r = run_cllm("OMP_NUM_THREADS=2 CLLM_SEGMENTS=1", args);
    assert_int_equal(r.exit_code, 0);
    for (int step = 1; step <= 3; step++) {
        char key[32];
        snprintf(key, sizeof key, "  step %d: ", step);
        const char *line = strstr(r.out, key);
        if (!line) fail_msg("no verbose line for step %d in:\n%s", step, r.out);
        double cmin, cmed, cmax, red, exposed, update, util;
        long long total, handover, waiting;
        int folded;
        int n = sscanf(line + strlen(key),
                       "compute min/median/max %lf/%lf/%lf ms, reduction %lf ms, exposed %lf%% + update %lf%%, "
                       "atomics %lld (%lld hand-over + %lld while waiting; %d nodes folded by owners), "
                       "utilisation %lf%%",
                       &cmin, &cmed, &cmax, &red, &exposed, &update, &total, &handover, &waiting, &folded, &util);
        if (n != 11) fail_msg("malformed verbose line (%d fields): %.200s", n, line);
        assert_true(cmin >= 0 && cmin <= cmed && cmed <= cmax && cmax > 0);
        assert_true(red >= 0); /* printed to 0.1 ms: a tiny model rounds to 0.0 */
        assert_true(exposed >= 0 && update >= 0 && exposed + update <= 100.05);
        assert_true(folded >= 0 && folded <= 2); /* M = 4: two non-root nodes */
        assert_true(util > 0 && util <= 100.05);
        assert_int_equal(handover, cllm_engine_atomics_expected(4, 2, folded));
        assert_int_equal(total, handover + waiting);
    }
    run_result_free(&r);
    free(dir);
}

/* Whether a printed number is NaN ("nan", "-nan"): a word of its own, so that
 * the random letters of a mkdtemp() folder in a printed path ("...3Onan8")
 * do not count. */
static int prints_nan(const char *out) {
    for (const char *p = strstr(out, "nan"); p; p = strstr(p + 1, "nan")) {
        char before = p == out ? ' ' : p[-1], after = p[3];
        if ((before == ' ' || before == '-' || before == '(' || before == '=') && !isalnum((unsigned char)after))
            return 1;
    }
    return 0;
}

/* --resume of a complete run finishes again (evaluation, plot) without a
 * step; a budget below the step reached is refused and changes nothing. */
static void test_resume_of_complete_run_and_smaller_budget(void **state) {
    (void)state;
    char *dir = run_dir("complete");
    assert_int_equal(train_fresh(dir, 3, 0, 1), CLLM_OK);
    size_t n_before, n_after;
    unsigned char *model_before = slurp(dir, "model.safetensors", &n_before);
    unsigned char *run_before = slurp(dir, "run.json", &n_before);
    char args[8192];
    snprintf(args, sizeof args, "train --resume '%s' --quiet", dir);
    run_result r = run_cllm("OMP_NUM_THREADS=1", args);
    assert_int_equal(r.exit_code, 0);
    assert_non_null(strstr(r.out, "final: step 3 (the run was already complete), validation loss"));
    assert_false(prints_nan(r.out));
    run_result_free(&r);
    unsigned char *model_after = slurp(dir, "model.safetensors", &n_after);
    assert_memory_equal(model_before, model_after, n_after);

    snprintf(args, sizeof args, "train --resume '%s' --steps 2 --quiet", dir);
    r = run_cllm("OMP_NUM_THREADS=1", args);
    assert_int_equal(r.exit_code, 2);
    assert_int_equal(count_lines(r.err), 1);
    assert_non_null(strstr(r.err, "already at step 3, past the budget of 2 steps"));
    run_result_free(&r);
    size_t n_run;
    unsigned char *run_after = slurp(dir, "run.json", &n_run);
    assert_string_equal((char *)run_before, (char *)run_after); /* the budget on disk is untouched */
    assert_int_equal(optimizer_step(dir), 3);
    free(model_before);
    free(model_after);
    free(run_before);
    free(run_after);
    free(dir);
}

/* A run killed before its first checkpoint leaves run.json alone in its
 * folder: --resume says how to go on, and a fresh run there starts afresh
 * instead of refusing, so the user is never stuck. */
static void test_unfinished_run_folder_can_be_started_again(void **state) {
    (void)state;
    char *dir = run_dir("unfinished");
    /* A real run.json, with the commit of its checkpoint taken back: the
       state a kill during the first save leaves (a checkpoint folder that
       `latest` never named, links that lead nowhere). */
    assert_int_equal(train_fresh(dir, 2, 0, 1), CLLM_OK);
    char path[4096];
    snprintf(path, sizeof path, "%s/latest", dir);
    assert_int_equal(unlink(path), 0);
    snprintf(path, sizeof path, "%s/checkpoint-00000002/config.json", dir);
    assert_int_equal(unlink(path), 0);
    char args[8192];
    snprintf(args, sizeof args, "train --resume '%s' --quiet", dir);
    run_result r = run_cllm("OMP_NUM_THREADS=1", args);
    assert_int_equal(r.exit_code, 2);
    assert_int_equal(count_lines(r.err), 1);
    assert_non_null(strstr(r.err, "no checkpoint to resume from"));
    run_result_free(&r);
    snprintf(args, sizeof args,
             "train '%s' --layers 1 --heads 2 --embd 16 --seq 16 --vocab 300 --batch 2 --steps 2 --sample-tokens 0 "
             "--quiet --out '%s'",
             corpus_path, dir);
    r = run_cllm("OMP_NUM_THREADS=1", args);
    if (r.exit_code != 0) fail_msg("cllm %s: exit %d, stderr '%s'", args, r.exit_code, r.err);
    assert_non_null(strstr(r.err, "never reached a checkpoint"));
    run_result_free(&r);
    assert_int_equal(optimizer_step(dir), 2);
    snprintf(path, sizeof path, "%s/checkpoint-00000002/config.json", dir); /* the new run's own checkpoint */
    assert_int_equal(access(path, F_OK), 0);
    r = run_cllm("OMP_NUM_THREADS=1", args); /* now it holds a checkpoint: refused */
    assert_int_equal(r.exit_code, 2);
    assert_non_null(strstr(r.err, "already holds a run"));
    run_result_free(&r);
    free(dir);
}

static void test_resume_refuses_model_flags(void **state) {
    (void)state;
    char *dir = run_dir("flags");
    assert_int_equal(train_fresh(dir, 4, 2, 1), CLLM_OK);
    const char *refused[] = {"--layers 2", "--heads 4", "--embd 32", "--seq 8", "--vocab 400", "--preset S",
                             "--precision bf16"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        char args[8192];
        snprintf(args, sizeof args, "train --resume '%s' %s --quiet", dir, refused[i]);
        run_result r = run_cllm("OMP_NUM_THREADS=1", args);
        assert_int_equal(r.exit_code, 2);
        assert_int_equal(count_lines(r.err), 1);
        assert_non_null(strstr(r.err, "--resume"));
        run_result_free(&r);
    }
    assert_int_equal(optimizer_step(dir), 2); /* untouched */
    run_result r = run_cllm(NULL, "train --resume /nonexistent/run --quiet");
    assert_int_equal(r.exit_code, 2);
    assert_int_equal(count_lines(r.err), 1);
    run_result_free(&r);
    free(dir);
}

/* ---- small pieces -------------------------------------------------------------------------- */

static void test_clip_factor(void **state) {
    (void)state;
    assert_true(cllm_clip_factor(10.0, 1.0) == 0.1f);
    assert_true(cllm_clip_factor(0.5, 1.0) == 1.0f);
    assert_true(cllm_clip_factor(1.0, 1.0) == 1.0f);
    assert_true(cllm_clip_factor(1e9, 0.0) == 1.0f); /* clip 0 = off */
    assert_true(cllm_clip_factor(NAN, 1.0) == 0.0f);
    assert_true(cllm_clip_factor(INFINITY, 0.0) == 0.0f);
    /* the clipped gradient's norm is the threshold */
    assert_float_equal(cllm_clip_factor(4.0, 0.5) * 4.0, 0.5, 1e-7);
}

static void test_metrics_line(void **state) {
    (void)state;
    cllm_metrics_row r = {.step = 12, .tokens = 3072, .loss = 2.5, .has_val = 1, .val_loss = NAN, .lr = 1e-3,
                          .grad_norm = 0.75, .tokens_per_s = 1000, .exposed_reduction = 0.01, .utilisation = 0.9,
                          .atomics = 42, .exposed_comm = 0.03, .comm_bytes = 171520,
                          .rank_wait = 0.125};
    char buf[1024];
    size_t n = cllm_metrics_format(&r, buf, sizeof buf);
    assert_int_equal(n, strlen(buf));
    assert_ptr_equal(strstr(buf, "{\"step\":12,\"tokens\":3072,\"loss\":2.5,"), buf);
    assert_non_null(strstr(buf, "\"val_loss\":null"));
    assert_non_null(strstr(buf, "\"grad_norm\":0.75"));
    assert_non_null(strstr(buf, "\"atomics\":42"));
    assert_non_null(strstr(buf, "\"exposed_reduction\":0.01"));
    assert_non_null(strstr(buf, "\"utilisation\":0.9"));
    assert_non_null(strstr(buf, "\"exposed_comm\":0.03"));
    assert_non_null(strstr(buf, "\"rank_wait\":0.125"));
    assert_non_null(strstr(buf, "\"comm_bytes\":171520"));
    assert_string_equal(buf + n - 2, "}\n");
    r.has_val = 0;
    cllm_metrics_format(&r, buf, sizeof buf);
    assert_null(strstr(buf, "val_loss"));
}

static void test_run_json_round_trip(void **state) {
    (void)state;
    char *dir = run_dir("runjson");
    mkdir(dir, 0755);
    cllm_train_options o = tiny_options(dir, 17);
    o.lr = 0.1 + 0.2; /* not exactly representable in decimal: must survive */
    o.seed = 9007199254740993ULL;
    assert_int_equal(cllm_run_json_write(dir, &o, 0xfedcba9876543210ULL, 12345), CLLM_OK);
    cllm_train_options back;
    uint64_t hash;
    size_t bytes;
    assert_int_equal(cllm_run_json_read(dir, &back, &hash, &bytes), CLLM_OK);
    assert_true(hash == 0xfedcba9876543210ULL);
    assert_int_equal(bytes, 12345);
    assert_int_equal(back.n_data, 1);
    assert_string_equal(back.data_paths[0], corpus_path);
    assert_true(back.lr == o.lr);
    assert_true(back.seed == o.seed);
    assert_int_equal(back.steps, 17);
    assert_int_equal(back.model.n_embd, 16);
    assert_int_equal(back.batch, 4);
    cllm_train_options_free_paths(&back);
    /* a damaged file is an input error naming it */
    char *p = write_file(dir, "run.json", "{\"data\": 3}", 11);
    assert_int_equal(cllm_run_json_read(dir, &back, &hash, &bytes), CLLM_ERR_INPUT);
    assert_non_null(strstr(cllm_last_error(), "run.json"));
    free(p);
    free(dir);
}

/* ---- loaders refuse bad files early and clearly (issue 10) ------------------------ */

/* Sets element `index` of tensor `name` in DIR/FILE to v, in place. */
static void patch_tensor(const char *dir, const char *file, const char *name, size_t index, float v) {
    size_t n = 0;
    unsigned char *bytes = slurp(dir, file, &n);
    assert_non_null(bytes);
    cllm_st_file f;
    assert_int_equal(cllm_st_parse(bytes, n, file, &f), CLLM_OK);
    const cllm_st_tensor *t = cllm_st_find(&f, name);
    assert_non_null(t);
    assert_true(index < t->numel);
    memcpy(bytes + ((const unsigned char *)t->data - f.bytes) + index * sizeof v, &v, sizeof v);
    cllm_st_close(&f);
    free(write_file(dir, file, bytes, n));
    free(bytes);
}

static void expect_resume_error(const char *dir, const char *needle) {
    cllm_train_result res;
    cllm_status st = train_resume(dir, 1, &res);
    if (st != CLLM_ERR_INPUT || !strstr(cllm_last_error(), needle))
        fail_msg("resume gave %d '%s'; wanted an input error with '%s'", st, cllm_last_error(), needle);
}

/* A NaN or Inf in the checkpoint's weights or in AdamW's moments is refused
 * by --resume naming the tensor and the element; once the file is restored,
 * the same folder resumes. */
static void test_resume_refuses_non_finite_checkpoint(void **state) {
    (void)state;
    char *dir = run_dir("nonfinite");
    assert_int_equal(train_fresh(dir, 4, 2, 1), CLLM_OK);
    size_t nm = 0, no = 0;
    unsigned char *model = slurp(dir, "model.safetensors", &nm), *opt = slurp(dir, "optimizer.safetensors", &no);
    assert_non_null(model);
    assert_non_null(opt);

    patch_tensor(dir, "model.safetensors", "transformer.wpe.weight", 9, NAN);
    expect_resume_error(dir, "model.safetensors: tensor transformer.wpe.weight holds NaN at element 9 of ");
    char args[4096];
    snprintf(args, sizeof args, "train --resume '%s' --quiet", dir);
    run_result r = run_cllm("OMP_NUM_THREADS=1", args);
    assert_int_equal(r.exit_code, 2);
    assert_int_equal(count_lines(r.err), 1);
    assert_non_null(strstr(r.err, "transformer.wpe.weight holds NaN"));
    run_result_free(&r);
    free(write_file(dir, "model.safetensors", model, nm));

    patch_tensor(dir, "optimizer.safetensors", "adamw.v.transformer.h.0.mlp.c_fc.weight", 3, NAN);
    expect_resume_error(dir, "optimizer.safetensors: tensor adamw.v.transformer.h.0.mlp.c_fc.weight holds NaN at element 3 of ");
    free(write_file(dir, "optimizer.safetensors", opt, no));
    patch_tensor(dir, "optimizer.safetensors", "adamw.m.transformer.wte.weight", 0, INFINITY);
    expect_resume_error(dir, "tensor adamw.m.transformer.wte.weight holds +Inf at element 0 of ");
    run_result r2 = run_cllm("OMP_NUM_THREADS=1", args);
    assert_int_equal(r2.exit_code, 2);
    assert_int_equal(count_lines(r2.err), 1);
    assert_non_null(strstr(r2.err, "adamw.m.transformer.wte.weight holds +Inf"));
    run_result_free(&r2);
    free(write_file(dir, "optimizer.safetensors", opt, no));

    cllm_train_result res;
    assert_int_equal(train_resume(dir, 1, &res), CLLM_OK);
    assert_int_equal(res.steps_done, 4);
    free(model);
    free(opt);
    free(dir);
}

/* `cllm eval DIR` without DATA rebuilds the validation split from the data on
 * disk; when that data is no longer what the run trained on (a byte added,
 * or the same size with other contents), it refuses, as --resume does, and
 * points at `cllm eval DIR DATA`, which still evaluates on it explicitly. */
static void test_eval_refuses_changed_training_data(void **state) {
    (void)state;
    char *dir = run_dir("evaldata"), *copy_dir = run_dir("evaldata-corpus");
    assert_int_equal(mkdir(copy_dir, 0755), 0);
    size_t n = 0;
    char *text = (char *)read_whole_file(corpus_path, &n);
    assert_non_null(text);
    char *copy = write_file(copy_dir, "corpus.txt", text, n);
    omp_set_num_threads(1);
    cllm_train_options o = tiny_options(dir, 2);
    char *paths[1] = {copy};
    o.data_paths = paths;
    cllm_train_result res;
    assert_int_equal(cllm_train(&o, 0, &res), CLLM_OK);
    char args[8192];
    snprintf(args, sizeof args, "eval --json '%s'", dir);
    run_result r = run_cllm(NULL, args);
    assert_int_equal(r.exit_code, 0);
    assert_non_null(strstr(r.out, "\"source\":\"validation\""));
    run_result_free(&r);

    char *longer = malloc(n + 1);
    memcpy(longer, text, n);
    longer[n] = '\n';
    free(write_file(copy_dir, "corpus.txt", longer, n + 1));
    r = run_cllm(NULL, args);
    assert_int_equal(r.exit_code, 2);
    assert_int_equal(count_lines(r.err), 1);
    assert_non_null(strstr(r.err, "changed since the run was trained"));
    char bytes_text[96];
    snprintf(bytes_text, sizeof bytes_text, "%zu bytes when trained, %zu now", n, n + 1);
    assert_non_null(strstr(r.err, bytes_text));
    assert_non_null(strstr(r.err, "cllm eval"));
    assert_string_equal(r.out, "");
    run_result_free(&r);

    text[n / 2] ^= 0x20; /* same size, other contents */
    free(write_file(copy_dir, "corpus.txt", text, n));
    r = run_cllm(NULL, args);
    assert_int_equal(r.exit_code, 2);
    assert_non_null(strstr(r.err, "different contents"));
    run_result_free(&r);

    snprintf(args, sizeof args, "eval --json '%s' '%s'", dir, copy);
    r = run_cllm(NULL, args);
    assert_int_equal(r.exit_code, 0); /* explicit DATA is evaluated as given */
    assert_non_null(strstr(r.out, "\"source\":\"data\""));
    run_result_free(&r);
    free(longer);
    free(text);
    free(copy);
    free(copy_dir);
    free(dir);
}

/* A model from flags that cannot fit in memory is bad input with the figure,
 * before any data is read or anything written (it used to be "model too
 * large" without figures, or an allocation of hundreds of GB). */
static void test_train_refuses_a_model_that_cannot_fit(void **state) {
    (void)state;
    if ((double)cllm_memory_available() > 2e13) {
        printf("skipped: this machine has more than 20 TB available\n");
        return;
    }
    expect_bad_command("--layers 128 --embd 16384 --heads 64", " TB, ");
    expect_bad_command("--layers 128 --embd 16384 --heads 64", "available");
    expect_bad_command("--layers 128 --embd 4096 --heads 64 --seq 1024", "needs 1.1 TB, ");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clip_factor),
        cmocka_unit_test(test_metrics_line),
        cmocka_unit_test(test_run_json_round_trip),
        cmocka_unit_test(test_resume_is_bitwise_identical),
        cmocka_unit_test(test_bf16_resume_is_bitwise_identical),
        cmocka_unit_test(test_bf16_checkpoint_keeps_fp32_masters),
        cmocka_unit_test(test_resume_refuses_mismatched_pair),
        cmocka_unit_test(test_resume_of_earlier_layout_after_its_crash),
        cmocka_unit_test(test_same_parameters_for_any_threads_and_schedule),
        cmocka_unit_test(test_bf16_same_parameters_for_any_threads),
        cmocka_unit_test(test_bf16_trains_on_the_portable_kernels),
        cmocka_unit_test(test_nan_stops_and_keeps_last_good_checkpoint),
        cmocka_unit_test(test_stop_right_after_a_periodic_save),
        cmocka_unit_test(test_huge_learning_rate_diverges_with_exit_1),
        cmocka_unit_test(test_sigterm_and_sigint_save_and_exit_130),
        cmocka_unit_test(test_bad_command_lines_exit_2_and_write_nothing),
        cmocka_unit_test(test_resume_refuses_model_flags),
        cmocka_unit_test(test_unfinished_run_folder_can_be_started_again),
        cmocka_unit_test(test_default_validation_fraction_is_5_percent),
        cmocka_unit_test(test_verbose_prints_engine_figures_per_step),
        cmocka_unit_test(test_resume_of_complete_run_and_smaller_budget),
        cmocka_unit_test(test_small_corpus_trains_with_the_learned_vocabulary),
        cmocka_unit_test(test_resume_refuses_non_finite_checkpoint),
        cmocka_unit_test(test_eval_refuses_changed_training_data),
        cmocka_unit_test(test_train_refuses_a_model_that_cannot_fit),
    };
    return cmocka_run_group_tests(tests, setup_corpus, teardown_corpus);
}
