/* Environment validation: the OMP_* and CLLM_* validators one by one, the
 * typed getters, and the whole path through the binary (one line, exit 2,
 * for every command). */
#include <omp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cllm/cli/env.h"
#include "support.h"

static void expect_valid(const char *name, const char *const *values) {
    for (int i = 0; values[i]; i++) {
        cllm_status st = cllm_env_validate(name, values[i]);
        if (st != CLLM_OK) fail_msg("%s='%s' rejected: %s", name, values[i], cllm_last_error());
    }
}

/* Each bad value is an input error whose message names the variable. */
static void expect_invalid(const char *name, const char *const *values) {
    for (int i = 0; values[i]; i++) {
        cllm_status st = cllm_env_validate(name, values[i]);
        if (st != CLLM_ERR_INPUT) fail_msg("%s='%s' accepted", name, values[i]);
        if (!strstr(cllm_last_error(), name)) fail_msg("message for %s='%s' does not name it: %s", name, values[i],
                                                       cllm_last_error());
    }
}

static void test_omp_num_threads(void **state) {
    (void)state;
    const char *good[] = {"1", "3", " 4 ", "2,3", "4, 2 ,1", "64", NULL};
    const char *bad[] = {"abc", "0", "-1", "2x", "", " ", "4,", ",4", "1,,2", "99999999999", "1.5", "+3", "3 4", NULL};
    expect_valid("OMP_NUM_THREADS", good);
    expect_invalid("OMP_NUM_THREADS", bad);
    cllm_env_validate("OMP_NUM_THREADS", "abc");
    assert_string_equal(cllm_last_error(), "OMP_NUM_THREADS='abc' is not a positive integer (or list of them)");
}

static void test_omp_schedule(void **state) {
    (void)state;
    const char *good[] = {"static", "dynamic,1", "GUIDED,4", "auto", "monotonic:dynamic", "nonmonotonic:static,2",
                          " dynamic,3 ", "Dynamic", "MONOTONIC:guided", NULL};
    const char *bad[] = {"sometimes", "static,0", "static,", "dynamic,-1", "dynamic,abc", "monotonic", "monotonic:",
                         "static;2", "", "dynamicx", "static,2,3", "nonmonotonic:", "runtime",
                         /* libomp rejects inner spaces, so cllm does too */
                         "dynamic ,2", "dynamic, 2", "monotonic: static", "monotonic :static", NULL};
    expect_valid("OMP_SCHEDULE", good);
    expect_invalid("OMP_SCHEDULE", bad);
    cllm_env_validate("OMP_SCHEDULE", "sometimes");
    assert_non_null(strstr(cllm_last_error(), "static|dynamic|guided|auto"));
}

static void test_omp_proc_bind(void **state) {
    (void)state;
    const char *good[] = {"true", "FALSE", "close", "spread,close", "master", "primary", " spread ", NULL};
    const char *bad[] = {"yes", "true,close", "close,,spread", "", "1", "closer", "spread,", NULL};
    expect_valid("OMP_PROC_BIND", good);
    expect_invalid("OMP_PROC_BIND", bad);
}

static void test_omp_places(void **state) {
    (void)state;
    const char *good[] = {"threads", "cores(4)", "sockets", "ll_caches", "numa_domains(2)", "{0,1},{2,3}",
                          "{0:4}:4:4", "{0}", "CORES", " threads(2) ", "{0, 1}", NULL};
    const char *bad[] = {"thread", "cores(0)", "cores(", "cores(2", "{0,1", "{{0}}", "abc", "", "{a}", "cores(2)x",
                         "0,1", "cores (2)", "threads( 2 )", NULL};
    expect_valid("OMP_PLACES", good);
    expect_invalid("OMP_PLACES", bad);
}

static void test_cllm_variables(void **state) {
    (void)state;
    const char *simd_good[] = {"auto", "scalar", "omp", "", NULL};
    const char *simd_bad[] = {"avx9", "AVX", "fast", NULL};
    expect_valid("CLLM_SIMD", simd_good);
    expect_invalid("CLLM_SIMD", simd_bad);
    assert_int_equal(cllm_env_validate("CLLM_SIMD", "avx512") == CLLM_OK, cllm_simd_supported(CLLM_SIMD_AVX512));
    assert_int_equal(cllm_env_validate("CLLM_SIMD", "avx2") == CLLM_OK, cllm_simd_supported(CLLM_SIMD_AVX2));

    const char *stream_good[] = {"1", "0", "on", "off", "ON", NULL};
    const char *stream_bad[] = {"2", "yes", "", "onn", NULL};
    expect_valid("CLLM_STREAMING", stream_good);
    expect_invalid("CLLM_STREAMING", stream_bad);

    const char *seg_good[] = {"1", "64", "8", NULL};
    const char *seg_bad[] = {"0", "65", "-1", "abc", "", "4x", "2.5", NULL};
    expect_valid("CLLM_SEGMENTS", seg_good);
    expect_invalid("CLLM_SEGMENTS", seg_bad);

    const char *win_good[] = {"0", "4096", "16", NULL};
    const char *win_bad[] = {"-1", "4097", "x", "", NULL};
    expect_valid("CLLM_GRAD_WINDOW", win_good);
    expect_invalid("CLLM_GRAD_WINDOW", win_bad);

    const char *prog_good[] = {"auto", "line", "plain", "off", NULL};
    const char *prog_bad[] = {"fancy", "", "on", NULL};
    expect_valid("CLLM_PROGRESS", prog_good);
    expect_invalid("CLLM_PROGRESS", prog_bad);

    const char *peak_good[] = {"1", "12.5", "1e2", NULL};
    const char *peak_bad[] = {"0", "-1", "abc", "nan", "inf", "", "3 GF", NULL};
    expect_valid("CLLM_PEAK_GFLOPS", peak_good);
    expect_invalid("CLLM_PEAK_GFLOPS", peak_bad);

    const char *team_good[] = {"auto", "AUTO", "1", "4", "4096", NULL};
    const char *team_bad[] = {"0", "-2", "4097", "2x2", "", "many", NULL};
    expect_valid("CLLM_TEAM", team_good);
    expect_invalid("CLLM_TEAM", team_bad);
}

static void test_unknown_cllm_variable_is_an_error(void **state) {
    (void)state;
    assert_int_equal(cllm_env_validate("CLLM_SIMDD", "avx2"), CLLM_ERR_INPUT);
    assert_non_null(strstr(cllm_last_error(), "unknown variable CLLM_SIMDD"));
    assert_non_null(strstr(cllm_last_error(), "CLLM_SEGMENTS"));
    /* Variables cllm does not read are none of its business. */
    assert_int_equal(cllm_env_validate("PATH", "/bin"), CLLM_OK);
    assert_int_equal(cllm_env_validate("OMP_DYNAMIC", "whatever"), CLLM_OK);
}

static void test_check_reads_the_environment(void **state) {
    (void)state;
    assert_int_equal(cllm_env_check(), CLLM_OK);
    setenv("CLLM_SEGMENTS", "0", 1);
    assert_int_equal(cllm_env_check(), CLLM_ERR_INPUT);
    assert_non_null(strstr(cllm_last_error(), "CLLM_SEGMENTS"));
    unsetenv("CLLM_SEGMENTS");
    setenv("CLLM_TYPO", "1", 1);
    assert_int_equal(cllm_env_check(), CLLM_ERR_INPUT);
    assert_non_null(strstr(cllm_last_error(), "CLLM_TYPO"));
    unsetenv("CLLM_TYPO");
    assert_int_equal(cllm_env_check(), CLLM_OK);
}

static void clear_cllm_variables(void) {
    for (int i = 0; cllm_env_documented[i]; i++) unsetenv(cllm_env_documented[i]);
}

static void test_getters_defaults_and_values(void **state) {
    (void)state;
    clear_cllm_variables();
    assert_int_equal(cllm_env_simd(), cllm_simd_best());
    assert_int_equal(cllm_env_streaming(), 1);
    assert_int_equal(cllm_env_segments(), 1);
    assert_int_equal(cllm_env_grad_window(), 0);
    assert_string_equal(cllm_env_progress(), "auto");
    assert_true(cllm_env_peak_gflops() == 0.0);

    setenv("CLLM_SIMD", "scalar", 1);
    setenv("CLLM_STREAMING", "off", 1);
    setenv("CLLM_SEGMENTS", "12", 1);
    setenv("CLLM_GRAD_WINDOW", "7", 1);
    setenv("CLLM_PROGRESS", "PLAIN", 1);
    setenv("CLLM_PEAK_GFLOPS", "31.5", 1);
    assert_int_equal(cllm_env_simd(), CLLM_SIMD_SCALAR);
    assert_int_equal(cllm_env_streaming(), 0);
    assert_int_equal(cllm_env_segments(), 12);
    assert_int_equal(cllm_env_grad_window(), 7);
    assert_string_equal(cllm_env_progress(), "plain");
    assert_true(cllm_env_peak_gflops() == 31.5);

    /* A value the check would reject gives the default, not garbage. */
    setenv("CLLM_SEGMENTS", "999", 1);
    assert_int_equal(cllm_env_segments(), 1);
    clear_cllm_variables();
}

/* The team shape: CLLM_TEAM=K over omp_get_max_threads(), a nested
 * OMP_NUM_THREADS list, or 0, 0 (the run chooses). */
static void test_team_shape_from_the_environment(void **state) {
    (void)state;
    int teams, team_threads, threads = omp_get_max_threads();
    clear_cllm_variables();
    const char *saved = getenv("OMP_NUM_THREADS");
    char *saved_copy = saved ? strdup(saved) : NULL;
    unsetenv("OMP_NUM_THREADS");
    cllm_env_team(&teams, &team_threads);
    assert_int_equal(teams, 0);
    assert_int_equal(team_threads, 0);
    setenv("CLLM_TEAM", "auto", 1);
    cllm_env_team(&teams, &team_threads);
    assert_int_equal(teams, 0);
    setenv("CLLM_TEAM", "2", 1);
    cllm_env_team(&teams, &team_threads);
    assert_int_equal(team_threads, 2);
    assert_int_equal(teams, threads / 2 > 0 ? threads / 2 : 1);
    unsetenv("CLLM_TEAM");
    setenv("OMP_NUM_THREADS", "3, 5", 1);
    cllm_env_team(&teams, &team_threads);
    assert_int_equal(teams, 3);
    assert_int_equal(team_threads, 5);
    setenv("OMP_NUM_THREADS", "3", 1); /* not a list: the run chooses */
    cllm_env_team(&teams, &team_threads);
    assert_int_equal(teams, 0);
    if (saved_copy) setenv("OMP_NUM_THREADS", saved_copy, 1);
    else unsetenv("OMP_NUM_THREADS");
    free(saved_copy);
}

/* ---- through the binary ---- */

static void expect_one_line_exit_2(const char *env, const char *args, const char *must_name) {
    run_result r = run_cllm(env, args);
    if (r.exit_code != 2 || count_lines(r.err) != 1 || !strstr(r.err, must_name))
        fail_msg("'%s cllm %s': exit %d, stderr '%s' (expected exit 2 and one line naming %s)", env ? env : "",
                 args, r.exit_code, r.err, must_name);
    run_result_free(&r);
}

/* "max_threads":N from `cllm info --json`, or -1. */
static int json_int_field(const char *json, const char *key) {
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\"%s\":", key);
    const char *p = strstr(json, pattern);
    return p ? atoi(p + strlen(pattern)) : -1;
}

static void test_binary_reports_thread_count(void **state) {
    (void)state;
    run_result r = run_cllm("OMP_NUM_THREADS=3", "info --json");
    assert_int_equal(r.exit_code, 0);
    assert_int_equal(json_int_field(r.out, "max_threads"), 3);
    run_result_free(&r);
    r = run_cllm("OMP_NUM_THREADS=1", "info --json");
    assert_int_equal(json_int_field(r.out, "max_threads"), 1);
    run_result_free(&r);
}

static void test_binary_rejects_bad_openmp_variables(void **state) {
    (void)state;
    expect_one_line_exit_2("OMP_NUM_THREADS=abc", "info", "OMP_NUM_THREADS");
    expect_one_line_exit_2("OMP_NUM_THREADS=0", "info --json", "OMP_NUM_THREADS");
    expect_one_line_exit_2("OMP_NUM_THREADS=", "info", "OMP_NUM_THREADS");
    expect_one_line_exit_2("OMP_SCHEDULE=sometimes", "info", "OMP_SCHEDULE");
    expect_one_line_exit_2("OMP_PROC_BIND=maybe", "info", "OMP_PROC_BIND");
    expect_one_line_exit_2("OMP_PLACES=everywhere", "info", "OMP_PLACES");
    /* Before any command runs: even a command's --help. */
    expect_one_line_exit_2("OMP_NUM_THREADS=abc", "train --help", "OMP_NUM_THREADS");
}

/* A malformed value for each documented variable; the test fails if a new
 * variable is documented without one here. */
static const char *bad_value_of(const char *name) {
    static const char *const table[][2] = {
        {"CLLM_SIMD", "avx9"},          {"CLLM_STREAMING", "maybe"},  {"CLLM_SEGMENTS", "0"},
        {"CLLM_GRAD_WINDOW", "-1"},     {"CLLM_PROGRESS", "fancy"},   {"CLLM_PEAK_GFLOPS", "fast"},
        {"CLLM_TEAM", "0"},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (!strcmp(table[i][0], name)) return table[i][1];
    return NULL;
}

static void test_binary_rejects_bad_cllm_variables_for_every_command(void **state) {
    (void)state;
    static const char *const commands[] = {"info",        "train",          "eval x",     "sample x",
                                           "tokenizer train x", "bench reduce", "plot x -o y.png", "bench step"};
    char env[128];
    for (int i = 0; cllm_env_documented[i]; i++) {
        const char *name = cllm_env_documented[i];
        const char *bad = bad_value_of(name);
        if (!bad) fail_msg("no malformed value in this test for documented %s", name);
        snprintf(env, sizeof env, "%s=%s", name, bad);
        for (size_t c = 0; c < sizeof commands / sizeof commands[0]; c++) expect_one_line_exit_2(env, commands[c], name);
    }
    expect_one_line_exit_2("CLLM_SIMDD=avx2", "info", "CLLM_SIMDD");
    expect_one_line_exit_2("CLLM_TYPO=1", "train", "CLLM_TYPO");
}

static void test_binary_schedule_defaults_to_dynamic(void **state) {
    (void)state;
    run_result r = run_cllm("env -u OMP_SCHEDULE", "info --json");
    assert_int_equal(r.exit_code, 0);
    assert_non_null(strstr(r.out, "\"schedule\":\"dynamic,1\""));
    run_result_free(&r);
    r = run_cllm("OMP_SCHEDULE=guided,4", "info --json");
    assert_non_null(strstr(r.out, "\"schedule\":\"guided,4\""));
    run_result_free(&r);
    r = run_cllm("OMP_SCHEDULE=static", "info");
    assert_non_null(strstr(r.out, "static,"));
    run_result_free(&r);
}

static void test_binary_usage_errors(void **state) {
    (void)state;
    expect_one_line_exit_2(NULL, "frobnicate", "frobnicate");
    expect_one_line_exit_2(NULL, "info --bogus", "--bogus");
    expect_one_line_exit_2(NULL, "info extra", "extra");
    expect_one_line_exit_2(NULL, "info extra", "(usage: cllm info)"); /* no synopsis, no dangling space */
    expect_one_line_exit_2(NULL, "plot somewhere --out", "--out");
    expect_one_line_exit_2(NULL, "plot somewhere", "-o");
    expect_one_line_exit_2(NULL, "", "missing command");
    expect_one_line_exit_2(NULL, "bench", "missing benchmark");
}

/* Every documented variable has its own entry in the README's environment section. */
static void test_readme_documents_every_variable(void **state) {
    (void)state;
    FILE *f = fopen(CLLM_SOURCE_DIR "/README.md", "r");
    assert_non_null(f);
    static char text[1 << 16];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    const char *section = strstr(text, "<!-- section: environment -->");
    assert_non_null(section);
    for (int i = 0; cllm_env_documented[i]; i++) {
        char needle[64];
        snprintf(needle, sizeof needle, "`%s`", cllm_env_documented[i]);
        if (!strstr(section, needle)) fail_msg("README environment section lacks %s", needle);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_omp_num_threads),
        cmocka_unit_test(test_omp_schedule),
        cmocka_unit_test(test_omp_proc_bind),
        cmocka_unit_test(test_omp_places),
        cmocka_unit_test(test_cllm_variables),
        cmocka_unit_test(test_unknown_cllm_variable_is_an_error),
        cmocka_unit_test(test_check_reads_the_environment),
        cmocka_unit_test(test_team_shape_from_the_environment),
        cmocka_unit_test(test_getters_defaults_and_values),
        cmocka_unit_test(test_binary_reports_thread_count),
        cmocka_unit_test(test_binary_rejects_bad_openmp_variables),
        cmocka_unit_test(test_binary_rejects_bad_cllm_variables_for_every_command),
        cmocka_unit_test(test_binary_schedule_defaults_to_dynamic),
        cmocka_unit_test(test_binary_usage_errors),
        cmocka_unit_test(test_readme_documents_every_variable),
    };
    /* The suite's own process must start from a clean CLLM_* slate. */
    clear_cllm_variables();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
