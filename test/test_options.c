/* The options table drives run.json: every row is written and read back
 * exactly, a value outside its row's range is refused naming the key, and
 * the defaults are the table's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cllm/data/pretokenize.h"
#include "cllm/train/options.h"
#include "support.h"

/* A value inside row opt's range that no default has: distinct per row. */
static double probe_value(const cllm_train_option *opt, int i) {
    double lo = opt->min, hi = opt->max;
    if (opt->type == CLLM_OPT_DOUBLE) return lo + (hi - lo) * (0.123 + 0.01 * i);
    if (opt->type == CLLM_OPT_CHOICE) return opt->fresh == hi ? lo : hi; /* the name that is not the default */
    double v = floor(lo + (hi > lo + 100 ? 7 + i : (hi - lo) / 2));
    return v;
}

static void test_every_row_round_trips_through_run_json(void **state) {
    (void)state;
    char *dir = make_temp_dir();
    cllm_train_options o;
    cllm_train_options_defaults(&o);
    for (int i = 0; i < cllm_train_option_count; i++) {
        const cllm_train_option *opt = &cllm_train_option_table[i];
        if (opt->resume == CLLM_OPT_BUDGET) continue;
        if (opt->type == CLLM_OPT_PATH) *(const char **)cllm_train_option_field(&o, opt) = "/models/gpt \"2\"";
        else cllm_train_option_set(&o, opt, probe_value(opt, i));
    }
    o.steps = 0;
    o.tokens = 0;
    o.epochs = 2.5; /* exactly one budget */
    char *paths[2] = {"/data/a.txt", "/data/b \"quoted\".txt"};
    o.data_paths = paths;
    o.n_data = 2;
    assert_int_equal(cllm_run_json_write(dir, &o, 0x0123456789abcdefULL, 4242), CLLM_OK);

    char *path = cllm_path_join(dir, "run.json");
    size_t n;
    char *text = (char *)read_whole_file(path, &n);
    for (int i = 0; i < cllm_train_option_count; i++) {
        char key[80];
        snprintf(key, sizeof key, "\"%s\": ", cllm_train_option_table[i].key);
        if (!strstr(text, key)) fail_msg("run.json lacks %s", key);
    }
    free(text);

    cllm_train_options back;
    uint64_t hash;
    size_t bytes;
    assert_int_equal(cllm_run_json_read(dir, &back, &hash, &bytes), CLLM_OK);
    assert_int_equal(hash, 0x0123456789abcdefULL);
    assert_int_equal(bytes, 4242);
    assert_int_equal(back.n_data, 2);
    assert_string_equal(back.data_paths[1], paths[1]);
    for (int i = 0; i < cllm_train_option_count; i++) {
        const cllm_train_option *opt = &cllm_train_option_table[i];
        if (cllm_train_option_get(&back, opt) != cllm_train_option_get(&o, opt))
            fail_msg("%s: wrote %.17g, read %.17g", opt->key, cllm_train_option_get(&o, opt),
                     cllm_train_option_get(&back, opt));
        if (opt->type == CLLM_OPT_PATH)
            assert_string_equal(cllm_train_option_path(&back, opt), cllm_train_option_path(&o, opt));
    }
    cllm_train_options_free_paths(&back);
    free(path);
    remove_tree(dir);
    free(dir);
}

/* Each row, one at a time set just outside its range in run.json: refused, the key named. */
static void test_out_of_range_value_is_refused_naming_the_key(void **state) {
    (void)state;
    char *dir = make_temp_dir();
    for (int i = 0; i < cllm_train_option_count; i++) {
        const cllm_train_option *opt = &cllm_train_option_table[i];
        cllm_train_options o;
        cllm_train_options_defaults(&o);
        o.model.n_layer = o.model.n_head = 2;
        o.model.n_embd = 32;
        o.model.seq_len = 32;
        double bad = opt->max * 2 + 1;
        if (opt->type == CLLM_OPT_PATH) continue; /* a path has no range: below */
        /* An int64 row's bad value must still convert to int64 (converting
           one beyond 2^63 is undefined): the largest double below 2^63. */
        const double below_2_63 = 9223372036854774784.0;
        if (opt->type == CLLM_OPT_INT64 && bad > below_2_63) bad = below_2_63;
        assert_true(bad > opt->max);
        if (bad == opt->fresh) continue;
        cllm_train_option_set(&o, opt, bad);
        assert_int_equal(cllm_run_json_write(dir, &o, 1, 1), CLLM_OK);
        cllm_train_options back;
        uint64_t hash;
        size_t bytes;
        assert_int_equal(cllm_run_json_read(dir, &back, &hash, &bytes), CLLM_ERR_INPUT);
        char key[80];
        snprintf(key, sizeof key, "\"%s\"", opt->key);
        if (!strstr(cllm_last_error(), key)) fail_msg("%s: message '%s' does not name it", opt->key, cllm_last_error());
    }
    remove_tree(dir);
    free(dir);
}

/* Path rows: null when not given, absent in a run.json older than the row
 * (read as not given), and anything but a path or null refused by key. */
/* Each row's key taken out of run.json: a row added after run folders existed
 * reads as the value runs had before it (the cllm chunker, fp32, no --init,
 * the automatic eval cap); any other missing key is refused, naming it. */
static void test_missing_key_reads_as_before_the_row_or_is_refused(void **state) {
    (void)state;
    char *dir = make_temp_dir();
    cllm_train_options o;
    cllm_train_options_defaults(&o);
    o.model.n_layer = o.model.n_head = 2;
    o.model.n_embd = o.model.seq_len = 32;
    o.pretokenize = CLLM_PRETOK_GPT2;
    o.precision = CLLM_PRECISION_BF16;
    o.total_steps = 5; /* a key after the last row: every row's line ends with a comma */
    assert_int_equal(cllm_run_json_write(dir, &o, 1, 1), CLLM_OK);
    char *path = cllm_path_join(dir, "run.json");
    size_t n;
    char *text = (char *)read_whole_file(path, &n);
    assert_non_null(text);
    for (int i = 0; i < cllm_train_option_count; i++) {
        const cllm_train_option *opt = &cllm_train_option_table[i];
        char key[80];
        snprintf(key, sizeof key, "\n  \"%s\": ", opt->key);
        char *at = strstr(text, key), *end = at ? strchr(at + 1, '\n') : NULL;
        assert_non_null(end);
        assert_int_equal(end[-1], ',');
        char *without = malloc(n + 1);
        size_t head = (size_t)(at - text);
        memcpy(without, text, head);
        strcpy(without + head, end);
        free(write_file(dir, "run.json", without, strlen(without)));
        free(without);
        cllm_train_options back;
        uint64_t hash;
        size_t bytes;
        cllm_status st = cllm_run_json_read(dir, &back, &hash, &bytes);
        if (strcmp(opt->key, "pretokenize") == 0) assert_int_equal(back.pretokenize, CLLM_PRETOK_CLLM);
        else if (strcmp(opt->key, "precision") == 0) assert_int_equal(back.precision, CLLM_PRECISION_FP32);
        else if (strcmp(opt->key, "init") == 0) assert_null(back.init_dir);
        else if (strcmp(opt->key, "eval_tokens") == 0) assert_int_equal(back.eval_tokens, -1);
        else {
            assert_int_equal(st, CLLM_ERR_INPUT);
            char quoted[80];
            snprintf(quoted, sizeof quoted, "missing \"%s\"", opt->key);
            if (!strstr(cllm_last_error(), quoted)) fail_msg("%s: message '%s'", opt->key, cllm_last_error());
            continue;
        }
        assert_int_equal(st, CLLM_OK);
        cllm_train_options_free_paths(&back);
    }
    free(text);
    free(path);
    remove_tree(dir);
    free(dir);
}

static void test_path_rows_absent_null_or_malformed(void **state) {
    (void)state;
    char *dir = make_temp_dir();
    cllm_train_options o;
    cllm_train_options_defaults(&o);
    o.model.n_layer = o.model.n_head = 2;
    o.model.n_embd = o.model.seq_len = 32;
    assert_int_equal(cllm_run_json_write(dir, &o, 1, 1), CLLM_OK);
    char *path = cllm_path_join(dir, "run.json");
    size_t n;
    char *text = (char *)read_whole_file(path, &n);
    assert_non_null(strstr(text, "\"init\": null"));
    for (int variant = 0; variant < 3; variant++) {
        char *edited = strdup(text), *at = strstr(edited, "\"init\": null,");
        const char *with[3] = {"", "\"init\": 5,", "\"init\": \"\","};
        char *out = malloc(n + 32);
        sprintf(out, "%.*s%s%s", (int)(at - edited), edited, with[variant], at + strlen("\"init\": null,"));
        free(write_file(dir, "run.json", out, strlen(out)));
        cllm_train_options back;
        uint64_t hash;
        size_t bytes;
        cllm_status st = cllm_run_json_read(dir, &back, &hash, &bytes);
        if (variant == 0) {
            assert_int_equal(st, CLLM_OK);
            assert_null(back.init_dir);
            cllm_train_options_free_paths(&back);
        } else {
            assert_int_equal(st, CLLM_ERR_INPUT);
            assert_non_null(strstr(cllm_last_error(), "\"init\" must be a path or null"));
        }
        free(out);
        free(edited);
    }
    free(text);
    free(path);
    remove_tree(dir);
    free(dir);
}

static void test_defaults_are_the_table(void **state) {
    (void)state;
    cllm_train_options o;
    cllm_train_options_defaults(&o);
    assert_int_equal(o.steps, 1200);
    assert_int_equal(o.batch, 16);
    assert_int_equal(o.warmup, -1);
    assert_true(o.lr == 3e-3);
    for (int i = 0; i < cllm_train_option_count; i++) {
        const cllm_train_option *opt = &cllm_train_option_table[i];
        if (opt->fresh == CLLM_OPT_FROM_PRESET || opt->fresh == CLLM_OPT_DERIVED) continue;
        assert_true(cllm_train_option_get(&o, opt) == opt->fresh);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_row_round_trips_through_run_json),
        cmocka_unit_test(test_out_of_range_value_is_refused_naming_the_key),
        cmocka_unit_test(test_path_rows_absent_null_or_malformed),
        cmocka_unit_test(test_missing_key_reads_as_before_the_row_or_is_refused),
        cmocka_unit_test(test_defaults_are_the_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
