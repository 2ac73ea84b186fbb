/* Run folders: the checkpoint protocol's states, the writer's lock, default
 * run names, folders that are not runs, and checkpoints never written from a
 * non-finite state (include/cllm/train/runfolder.h, docs/RELIABILITY.md). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cllm/train/checkpoint.h"
#include "cllm/train/runfolder.h"
#include "cllm/io/safetensors.h"
#include "cllm/train/test_hooks.h"
#include "cllm/train/trainer.h"
#include "support.h"

static char *workdir;
static char *corpus_path;

static int setup(void **state) {
    (void)state;
    workdir = make_temp_dir();
    corpus_path = write_word_corpus(workdir, "corpus.txt");
    return 0;
}

static int teardown(void **state) {
    (void)state;
    remove_tree(workdir);
    free(workdir);
    free(corpus_path);
    return 0;
}

static int exists(const char *dir, const char *name) { return path_exists(dir, name); }

/* Entries of dir that are not . or .., counted. */
static int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

/* A tiny run through the binary: extra flags appended; returns the result. */
static run_result train_cli(const char *cwd, const char *extra) {
    char args[16384];
    snprintf(args, sizeof args,
             "train '%s' --layers 1 --heads 2 --embd 16 --seq 16 --vocab 300 --batch 2 --steps 4 --sample-tokens 0 "
             "--quiet %s",
             corpus_path, extra);
    char env[8192];
    snprintf(env, sizeof env, "cd '%s' && OMP_NUM_THREADS=1", cwd);
    return run_cllm(env, args);
}

static void expect_ok(run_result *r) {
    if (r->exit_code != 0) fail_msg("cllm train: exit %d, stderr '%s'", r->exit_code, r->err);
}

/* ---- the protocol's states, step by step ----------------------------------------------------- */

static void write_small(const char *dir, const char *name, const char *text) {
    free(write_file(dir, name, text, strlen(text)));
}

/* Before a commit the folder has no checkpoint; the commit switches all three
 * files at once; a later save's folder is invisible until its own commit. */
static void test_commit_switches_every_file_at_once(void **state) {
    (void)state;
    char *dir = path_in(workdir, "protocol");
    assert_int_equal(mkdir(dir, 0755), 0);
    assert_false(cllm_run_has_checkpoint(dir));
    char *ckpt = NULL;
    assert_int_equal(cllm_run_checkpoint_begin(dir, 1, &ckpt), CLLM_OK);
    assert_false(cllm_run_has_checkpoint(dir)); /* links made, but they lead nowhere yet */
    write_small(ckpt, "model.safetensors", "model 1");
    write_small(ckpt, "config.json", "config 1");
    write_small(ckpt, "optimizer.safetensors", "optimizer 1");
    assert_false(cllm_run_has_checkpoint(dir));
    assert_int_equal(cllm_run_checkpoint_commit(dir, 1), CLLM_OK);
    assert_true(cllm_run_has_checkpoint(dir));
    free(ckpt);

    /* The next save, interrupted before its commit: readers still see step 1. */
    assert_int_equal(cllm_run_checkpoint_begin(dir, 2, &ckpt), CLLM_OK);
    write_small(ckpt, "model.safetensors", "model 2");
    char *model = path_in(dir, "model.safetensors"), *opt = path_in(dir, "optimizer.safetensors");
    size_t n;
    char *text = (char *)read_whole_file(model, &n);
    assert_string_equal(text, "model 1");
    free(text);
    write_small(ckpt, "config.json", "config 2");
    write_small(ckpt, "optimizer.safetensors", "optimizer 2");
    assert_int_equal(cllm_run_checkpoint_commit(dir, 2), CLLM_OK);
    text = (char *)read_whole_file(model, &n);
    assert_string_equal(text, "model 2");
    free(text);
    text = (char *)read_whole_file(opt, &n);
    assert_string_equal(text, "optimizer 2");
    free(text);
    assert_false(exists(dir, "checkpoint-00000001")); /* the earlier one is gone after the commit */
    /* Saving the committed step again would destroy the committed state: refused. */
    char *again = NULL;
    assert_int_equal(cllm_run_checkpoint_begin(dir, 2, &again), CLLM_ERR_INTERNAL);
    assert_null(again);
    free(ckpt);
    free(model);
    free(opt);
    remove_tree(dir);
    free(dir);
}

/* What a dead save leaves is removed by the next writer, and only that. */
static void test_leftovers_of_a_dead_save_are_removed(void **state) {
    (void)state;
    char *dir = path_in(workdir, "leftovers");
    assert_int_equal(mkdir(dir, 0755), 0);
    char *ckpt = NULL;
    assert_int_equal(cllm_run_checkpoint_begin(dir, 3, &ckpt), CLLM_OK);
    write_small(ckpt, "model.safetensors", "m");
    write_small(ckpt, "config.json", "c");
    write_small(ckpt, "optimizer.safetensors", "o");
    assert_int_equal(cllm_run_checkpoint_commit(dir, 3), CLLM_OK);
    free(ckpt);
    write_small(dir, "checkpoint-00000004/optimizer.safetensors", "half a save");
    write_small(dir, "checkpoint-00000004/model.safetensors.tmp.123", "a torn write");
    write_small(dir, "checkpoint-00000003/config.json.tmp.77", "torn");
    write_small(dir, "run.json.tmp.55", "torn");
    char *latest_tmp = path_in(dir, "latest.tmp.999");
    assert_int_equal(symlink("checkpoint-00000004", latest_tmp), 0);
    write_small(dir, "run.json", "{}");
    assert_true(cllm_run_folder_is_ours(dir));
    assert_int_equal(cllm_run_remove_leftovers(dir), CLLM_OK);
    assert_false(exists(dir, "checkpoint-00000004"));
    assert_false(exists(dir, "run.json.tmp.55"));
    assert_false(exists(dir, "latest.tmp.999"));
    assert_false(exists(dir, "checkpoint-00000003/config.json.tmp.77"));
    assert_true(exists(dir, "checkpoint-00000003/config.json"));
    assert_true(exists(dir, "run.json"));
    assert_true(cllm_run_has_checkpoint(dir));
    /* A crash inside the commit, after `latest` moved but before a link was made: restored. */
    char *link = path_in(dir, "config.json");
    assert_int_equal(unlink(link), 0);
    assert_int_equal(cllm_run_remove_leftovers(dir), CLLM_OK);
    size_t n;
    char *text = (char *)read_whole_file(link, &n);
    assert_non_null(text);
    assert_string_equal(text, "c");
    free(text);
    free(link);
    free(latest_tmp);
    remove_tree(dir);
    free(dir);
}

static void test_folder_of_other_files_is_not_ours(void **state) {
    (void)state;
    char *dir = path_in(workdir, "mine");
    assert_true(cllm_run_folder_is_ours(dir)); /* missing */
    assert_int_equal(mkdir(dir, 0755), 0);
    assert_true(cllm_run_folder_is_ours(dir)); /* empty */
    write_small(dir, "metrics.jsonl", "");
    assert_true(cllm_run_folder_is_ours(dir));
    write_small(dir, "thesis.tex", "my own work");
    assert_false(cllm_run_folder_is_ours(dir));
    remove_tree(dir);
    free(dir);
}

/* ---- the lock ------------------------------------------------------------------------------- */

/* While one writer holds a folder, a second (in this process or another) is
 * refused with the holder's pid; once released, the folder is free again. */
static void test_second_writer_is_refused_with_the_pid(void **state) {
    (void)state;
    char *dir = path_in(workdir, "locked");
    run_result r = train_cli(workdir, "--out locked --steps 2");
    expect_ok(&r);
    run_result_free(&r);
    cllm_run_lock held, second;
    assert_int_equal(cllm_run_lock_acquire(dir, &held), CLLM_OK);
    assert_int_equal(cllm_run_lock_acquire(dir, &second), CLLM_ERR_INPUT);
    char pid[32];
    snprintf(pid, sizeof pid, "pid %ld", (long)getpid());
    assert_non_null(strstr(cllm_last_error(), pid));

    char args[8192];
    snprintf(args, sizeof args, "train --resume '%s' --steps 4 --quiet", dir);
    r = run_cllm("OMP_NUM_THREADS=1", args);
    assert_int_equal(r.exit_code, 2);
    assert_int_equal(count_lines(r.err), 1);
    assert_non_null(strstr(r.err, "in use by another cllm train"));
    assert_non_null(strstr(r.err, pid));
    run_result_free(&r);
    /* --out over the same folder is refused the same way, not "already holds a run". */
    r = train_cli(workdir, "--out locked");
    assert_int_equal(r.exit_code, 2);
    assert_non_null(strstr(r.err, "in use by another cllm train"));
    run_result_free(&r);

    cllm_run_lock_release(&held, 0);
    r = run_cllm("OMP_NUM_THREADS=1", args);
    expect_ok(&r);
    run_result_free(&r);
    free(dir);
}

/* Two trains over one folder at the same time: exactly one runs, the other
 * is refused at once, and the folder ends as a single complete run. */
static void test_two_concurrent_resumes_do_not_mix(void **state) {
    (void)state;
    char *dir = path_in(workdir, "race");
    run_result r = train_cli(workdir, "--out race --steps 2");
    expect_ok(&r);
    run_result_free(&r);
    char args[16384];
    snprintf(args, sizeof args,
             "train --resume '%s' --steps 40 --quiet > /dev/null 2>'%s/a.err' & "
             "%s train --resume '%s' --steps 40 --quiet > /dev/null 2>'%s/b.err' & wait; "
             "cat '%s/a.err' '%s/b.err'",
             dir, workdir, CLLM_BIN, dir, workdir, workdir, workdir);
    r = run_cllm("OMP_NUM_THREADS=1", args);
    int refused = strstr(r.out, "in use by another cllm train") != NULL;
    run_result_free(&r);
    /* Either the two overlapped (one refused) or the first had finished (the second found a complete run). */
    char *metrics = path_in(dir, "metrics.jsonl");
    size_t n;
    char *log = (char *)read_whole_file(metrics, &n);
    assert_non_null(log);
    assert_int_equal(count_lines(log), 40);
    if (!refused) print_message("the two resumes did not overlap on this machine; the lock was not exercised\n");
    free(log);
    free(metrics);
    free(dir);
}

/* ---- names and folders ---------------------------------------------------------------------- */

/* The default name exists already (another run of this second): the new run
 * takes the next suffix and leaves the other folder as it was. */
static void test_default_run_names_never_collide(void **state) {
    (void)state;
    char *cwd = path_in(workdir, "named");
    assert_int_equal(mkdir(cwd, 0755), 0);
    char *runs = path_in(cwd, "runs");
    assert_int_equal(mkdir(runs, 0755), 0);
    time_t now = time(NULL);
    for (int k = 0; k < 30; k++) { /* every name of the next half minute is taken */
        time_t when = now + k;
        struct tm tm;
        localtime_r(&when, &tm);
        char name[64];
        strftime(name, sizeof name, "%Y%m%d-%H%M%S", &tm);
        char *p = path_in(runs, name);
        mkdir(p, 0755);
        free(p);
    }
    run_result r = train_cli(cwd, "--steps 2");
    expect_ok(&r);
    run_result_free(&r);
    assert_int_equal(count_entries(runs), 31);
    DIR *d = opendir(runs);
    int with_suffix = 0, untouched = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char *p = path_in(runs, e->d_name);
        if (strchr(e->d_name + 9, '-')) {
            with_suffix++;
            assert_true(cllm_run_has_checkpoint(p));
        } else {
            untouched += count_entries(p) == 0;
        }
        free(p);
    }
    closedir(d);
    assert_int_equal(with_suffix, 1);
    assert_int_equal(untouched, 30);
    free(runs);
    free(cwd);
}

/* --out naming a folder of the user's own files is refused, and the folder
 * is left exactly as it was (not even a lock file). */
static void test_out_into_a_folder_of_other_files_is_refused(void **state) {
    (void)state;
    char *dir = path_in(workdir, "papers");
    assert_int_equal(mkdir(dir, 0755), 0);
    write_small(dir, "thesis.tex", "chapter one");
    run_result r = train_cli(workdir, "--out papers");
    assert_int_equal(r.exit_code, 2);
    assert_int_equal(count_lines(r.err), 1);
    assert_non_null(strstr(r.err, "not a cllm run folder"));
    run_result_free(&r);
    assert_int_equal(count_entries(dir), 1);
    /* A start-up that fails on bad input leaves no folder behind either. */
    r = train_cli(workdir, "/nonexistent/corpus --out fresh");
    assert_int_equal(r.exit_code, 2);
    run_result_free(&r);
    assert_false(exists(workdir, "fresh"));
    free(dir);
}

/* A tiny in-process run of 8 steps that saves every 2. */
static cllm_train_options eight_steps_saving_every_two(const char *dir, int batch) {
    static char *data[1];
    data[0] = corpus_path;
    cllm_train_options o = {
        .data_paths = data, .n_data = 1, .val_fraction = 0.1,
        .model = {.n_layer = 1, .n_head = 2, .n_embd = 16, .seq_len = 16, .vocab_size = 300},
        .batch = batch, .micro = 1, .grad_accum = 1, .steps = 8, .lr = 1e-2, .min_lr = 1e-3, .warmup = 2,
        .weight_decay = 0.1, .clip = 1.0, .seed = 7, .eval_every = 0, .save_every = 2, .log_every = 1,
        .sample_tokens = 0, .out_dir = dir, .quiet = 1,
    };
    return o;
}

/* ---- never a non-finite checkpoint ------------------------------------------------------------ */

/* A parameter turns NaN after step 4 while that step's loss was finite: the
 * save of step 4 is refused with a message naming the tensor, and the folder
 * still holds the checkpoint of step 2. */
static void test_no_checkpoint_from_non_finite_parameters(void **state) {
    (void)state;
    char *dir = path_in(workdir, "poisoned");
    cllm_train_options o = eight_steps_saving_every_two(dir, 2);
    omp_set_num_threads(1);
    cllm_train_debug_poison_after_step(4);
    cllm_train_result res;
    cllm_status st = cllm_train(&o, 0, &res);
    cllm_train_debug_poison_after_step(0);
    assert_int_equal(st, CLLM_ERR_INTERNAL);
    assert_non_null(strstr(cllm_last_error(), "is not finite at step 4"));
    assert_non_null(strstr(cllm_last_error(), "wte.weight"));
    char *latest = path_in(dir, "latest");
    char target[64] = {0};
    assert_true(readlink(latest, target, sizeof target - 1) > 0);
    assert_string_equal(target, "checkpoint-00000002");
    assert_false(exists(dir, "checkpoint-00000004"));
    free(latest);
    free(dir);
}

/* A worker's own error reaches the user as itself, not as "diverged", and
 * the checkpoint before it stays committed. */
static void test_worker_failure_is_reported_as_itself(void **state) {
    (void)state;
    char *dir = path_in(workdir, "worker_failure");
    cllm_train_options o = eight_steps_saving_every_two(dir, 4);
    omp_set_num_threads(2);
    cllm_train_debug_fail_at_step(3);
    cllm_train_result res;
    cllm_status st = cllm_train(&o, 0, &res);
    cllm_train_debug_fail_at_step(0);
    assert_int_equal(st, CLLM_ERR_INTERNAL);
    assert_non_null(strstr(cllm_last_error(), "micro-batch 3 of step 3 failed on purpose"));
    assert_null(strstr(cllm_last_error(), "diverged"));
    char *latest = path_in(dir, "latest");
    char target[64] = {0};
    assert_true(readlink(latest, target, sizeof target - 1) > 0);
    assert_string_equal(target, "checkpoint-00000002");
    free(latest);
    free(dir);
}

/* ---- optimizer state files of format 1 --------------------------------------------------- */

/* Rewrites DIR's optimizer.safetensors (format 2: one tensor per parameter)
 * as an earlier cllm wrote it (format 1: "adamw.m"/"adamw.v" flat over the
 * padded in-memory buffer, the hash over that buffer). */
static void rewrite_as_format1(const char *dir) {
    gpt2_model m;
    assert_int_equal(cllm_checkpoint_load_model(dir, &m), CLLM_OK);
    /* The committed file itself: a write to DIR/optimizer.safetensors would
       replace the link, not the file resume reads. */
    char *opt_path = path_in(dir, "latest/optimizer.safetensors");
    cllm_st_file f;
    assert_int_equal(cllm_st_open(opt_path, &f), CLLM_OK);
    float *mom[2] = {calloc(m.n_params, sizeof(float)), calloc(m.n_params, sizeof(float))};
    for (int i = 0; i < m.n_tensors; i++)
        for (int k = 0; k < 2; k++) {
            char name[160];
            snprintf(name, sizeof name, "adamw.%s.%s", k ? "v" : "m", m.tensors[i].name);
            const cllm_st_tensor *x = cllm_st_find(&f, name);
            assert_non_null(x);
            memcpy(mom[k] + m.tensors[i].offset, x->data, x->nbytes);
        }
    uint64_t scalars[3], rng[4];
    const char *names[3] = {"step", "data_window", "params_hash"};
    for (int i = 0; i < 3; i++) memcpy(&scalars[i], cllm_st_find(&f, names[i])->data, 8);
    memcpy(rng, cllm_st_find(&f, "rng_state")->data, sizeof rng);
    cllm_st_close(&f);
    scalars[2] = cllm_fnv1a64(m.params, m.n_params * sizeof(float), CLLM_FNV1A64_OFFSET);
    cllm_st_writer w;
    cllm_st_writer_init(&w);
    int64_t flat[1] = {(int64_t)m.n_params}, four[1] = {4};
    assert_int_equal(cllm_st_writer_add(&w, "adamw.m", CLLM_ST_F32, mom[0], 1, flat), CLLM_OK);
    assert_int_equal(cllm_st_writer_add(&w, "adamw.v", CLLM_ST_F32, mom[1], 1, flat), CLLM_OK);
    for (int i = 0; i < 3; i++) assert_int_equal(cllm_st_writer_add(&w, names[i], CLLM_ST_U64, &scalars[i], 0, NULL), CLLM_OK);
    assert_int_equal(cllm_st_writer_add(&w, "rng_state", CLLM_ST_U64, rng, 1, four), CLLM_OK);
    assert_int_equal(cllm_st_writer_write(&w, opt_path), CLLM_OK);
    cllm_st_writer_free(&w);
    free(mom[0]);
    free(mom[1]);
    free(opt_path);
    gpt2_destroy(&m);
}

/* A run stopped at step 2 whose optimizer file is of format 1 resumes and
 * ends byte-identical to a straight run; its next save writes format 2. */
static void test_optimizer_format1_still_resumes_bitwise(void **state) {
    (void)state;
    run_result r = train_cli(workdir, "--out f1_straight --steps 6");
    expect_ok(&r);
    run_result_free(&r);
    r = train_cli(workdir, "--out f1 --steps 6 --stop-after 2");
    expect_ok(&r);
    run_result_free(&r);
    char *dir = path_in(workdir, "f1"), *straight = path_in(workdir, "f1_straight");
    rewrite_as_format1(dir);
    cllm_st_file f;
    char *opt = path_in(dir, "optimizer.safetensors");
    assert_int_equal(cllm_st_open(opt, &f), CLLM_OK);
    assert_non_null(cllm_st_find(&f, "adamw.m")); /* format 1 is what resume finds */
    cllm_st_close(&f);
    char args[8192];
    snprintf(args, sizeof args, "train --resume '%s' --quiet", dir);
    r = run_cllm("OMP_NUM_THREADS=2", args);
    expect_ok(&r);
    run_result_free(&r);
    const char *files[2] = {"model.safetensors", "optimizer.safetensors"};
    for (int i = 0; i < 2; i++) {
        char *a = path_in(dir, files[i]), *b = path_in(straight, files[i]);
        size_t na, nb;
        unsigned char *x = read_whole_file(a, &na), *y = read_whole_file(b, &nb);
        assert_int_equal(na, nb);
        assert_memory_equal(x, y, na);
        free(x);
        free(y);
        free(a);
        free(b);
    }
    assert_int_equal(cllm_st_open(opt, &f), CLLM_OK);
    assert_null(cllm_st_find(&f, "adamw.m"));
    assert_non_null(cllm_st_find(&f, "adamw.m.transformer.wte.weight"));
    cllm_st_close(&f);
    free(opt);
    free(dir);
    free(straight);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_commit_switches_every_file_at_once),
        cmocka_unit_test(test_leftovers_of_a_dead_save_are_removed),
        cmocka_unit_test(test_folder_of_other_files_is_not_ours),
        cmocka_unit_test(test_second_writer_is_refused_with_the_pid),
        cmocka_unit_test(test_two_concurrent_resumes_do_not_mix),
        cmocka_unit_test(test_default_run_names_never_collide),
        cmocka_unit_test(test_out_into_a_folder_of_other_files_is_refused),
        cmocka_unit_test(test_no_checkpoint_from_non_finite_parameters),
        cmocka_unit_test(test_worker_failure_is_reported_as_itself),
        cmocka_unit_test(test_optimizer_format1_still_resumes_bitwise),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
