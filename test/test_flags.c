/* The shared flag parser: values, ranges, unknown flags, help. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cllm/cli/flags.h"

static int steps = 10;
static double lr = 0.001;
static const char *out_dir = NULL;
static int quiet = 0;
static const cllm_flag flags[] = {
    {"steps", CLLM_FLAG_INT, &steps, "N", "steps", 1, 1e9, NULL},
    {"lr", CLLM_FLAG_DOUBLE, &lr, "X", "learning rate", 0, 10, NULL},
    {"out", CLLM_FLAG_STRING, &out_dir, "DIR", "output", 1, 0, NULL},
    {"quiet", CLLM_FLAG_BOOL, &quiet, NULL, "quiet", 1, 0, NULL},
};
static const cllm_command_spec spec = {"test", "[DATA...]", "a test", flags, 4, 0, -1};

static int parse(int argc, char **argv, int *npos) {
    char *pos[16];
    return cllm_flags_parse(&spec, argc, argv, pos, npos);
}

static void test_values_are_stored(void **state) {
    (void)state;
    char *argv[] = {"--steps", "42", "--lr=0.5", "a.txt", "--out", "dir", "--quiet", "b"};
    int npos = 0;
    assert_int_equal(parse(8, argv, &npos), CLLM_FLAGS_OK);
    assert_int_equal(steps, 42);
    assert_true(lr == 0.5);
    assert_string_equal(out_dir, "dir");
    assert_int_equal(quiet, 1);
    assert_int_equal(npos, 2);
}

static void test_bad_values_are_errors(void **state) {
    (void)state;
    int npos;
    char *a1[] = {"--steps", "abc"};
    assert_int_equal(parse(2, a1, &npos), CLLM_FLAGS_ERROR);
    char *a2[] = {"--steps", "0"};
    assert_int_equal(parse(2, a2, &npos), CLLM_FLAGS_ERROR);
    char *a3[] = {"--nope"};
    assert_int_equal(parse(1, a3, &npos), CLLM_FLAGS_ERROR);
    char *a4[] = {"--lr"};
    assert_int_equal(parse(1, a4, &npos), CLLM_FLAGS_ERROR);
    char *a5[] = {"--lr", "nan"};
    assert_int_equal(parse(2, a5, &npos), CLLM_FLAGS_ERROR);
    char *a6[] = {"--steps", "99999999999"};
    assert_int_equal(parse(2, a6, &npos), CLLM_FLAGS_ERROR);
}

static void test_short_o_means_out(void **state) {
    (void)state;
    int npos = 0;
    char *argv[] = {"-o", "there", "a.txt"};
    assert_int_equal(parse(3, argv, &npos), CLLM_FLAGS_OK);
    assert_string_equal(out_dir, "there");
    assert_int_equal(npos, 1);
    static const cllm_command_spec no_out = {"test", "", "no --out here", flags, 2, 0, -1}; /* steps, lr only */
    char *pos[4];
    char *argv2[] = {"-o", "x"};
    assert_int_equal(cllm_flags_parse(&no_out, 2, argv2, pos, &npos), CLLM_FLAGS_ERROR);
}

static void test_help(void **state) {
    (void)state;
    int npos;
    char *a[] = {"--help"};
    assert_int_equal(parse(1, a, &npos), CLLM_FLAGS_HELP);
    assert_int_equal(cllm_flags_exit_code(CLLM_FLAGS_HELP), 0);
    assert_int_equal(cllm_flags_exit_code(CLLM_FLAGS_ERROR), 2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values_are_stored),
        cmocka_unit_test(test_bad_values_are_errors),
        cmocka_unit_test(test_short_o_means_out),
        cmocka_unit_test(test_help),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
