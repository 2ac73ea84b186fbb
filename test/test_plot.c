/* Loss plots: the metrics.jsonl reader (good, odd and malformed lines) and
 * the PNG writer (signature, size, crash-safety), directly and via the CLI. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "cllm/base/build_config.h"
#include "cllm/report/plot.h"
#include "support.h"

static char *write_text(const char *dir, const char *name, const char *text) {
    return write_file(dir, name, text, strlen(text));
}

static void test_reader_takes_what_it_needs(void **state) {
    (void)state;
    char *dir = make_temp_dir();
    char *path = write_text(dir, "metrics.jsonl",
                            "{\"step\":1,\"tokens\":2048,\"loss\":5.5,\"lr\":0.0006,\"grad_norm\":1.2}\n"
                            "\n"
                            "  {\"step\":2, \"tokens\": 4096, \"loss\": 5.0, \"note\": \"a } in a string\", "
                            "\"extra\": {\"nested\": [1, 2, {\"x\": \"]\"}]}, \"ok\": true, \"none\": null}\r\n"
                            "{\"step\":3,\"tokens\":6144,\"loss\":4.5,\"val_loss\":4.75}\n"
                            "{\"event\":\"resume\",\"step\":3}\n"
                            "{\"step\":4,\"tokens\":8192,\"loss\":nan}\n"
                            "{\"step\":5,\"tokens\":10240,\"loss\":null,\"val_loss\":4.25}\n"
                            "{}\n"
                            "{\"step\":6,\"tokens\":12288,\"loss\":4.0}");
    cllm_loss_curve c;
    assert_int_equal(cllm_loss_curve_read(path, &c), CLLM_OK);
    assert_int_equal(c.n_train, 4);
    assert_true(c.train[0].tokens == 2048 && c.train[0].loss == 5.5);
    assert_true(c.train[1].tokens == 4096 && c.train[1].loss == 5.0);
    assert_true(c.train[2].tokens == 6144 && c.train[2].loss == 4.5);
    assert_true(c.train[3].tokens == 12288 && c.train[3].loss == 4.0);
    assert_int_equal(c.n_val, 2);
    assert_true(c.val[0].tokens == 6144 && c.val[0].loss == 4.75);
    assert_true(c.val[1].tokens == 10240 && c.val[1].loss == 4.25);
    cllm_loss_curve_free(&c);
    free(path);
    remove_tree(dir);
    free(dir);
}

/* Each malformed file is an input error naming the file and line. */
static void expect_malformed(const char *text, const char *line_tag) {
    char *dir = make_temp_dir();
    char *path = write_text(dir, "metrics.jsonl", text);
    cllm_loss_curve c;
    assert_int_equal(cllm_loss_curve_read(path, &c), CLLM_ERR_INPUT);
    char expected[4200];
    snprintf(expected, sizeof expected, "%.4000s%.100s", path, line_tag);
    if (!strstr(cllm_last_error(), expected)) fail_msg("'%s' does not contain '%s'", cllm_last_error(), expected);
    assert_int_equal(c.n_train, 0);
    assert_null(c.train);
    free(path);
    remove_tree(dir);
    free(dir);
}

static void test_reader_rejects_malformed_lines(void **state) {
    (void)state;
    const char *good = "{\"tokens\":1,\"loss\":2}\n";
    char buf[256];
    const char *bad_lines[] = {
        "{\"tokens\":2,\"loss\":",          /* truncated by a crash */
        "[1,2,3]",                          /* not an object */
        "{\"tokens\":2 \"loss\":3}",        /* missing comma */
        "{\"tokens\":2,\"loss\":3}}",       /* trailing garbage */
        "{\"loss\":3}",                     /* no x coordinate */
        "{tokens:2,loss:3}",                /* unquoted keys */
        "{\"tokens\":2,\"loss\":\"3}",      /* unterminated string */
        "{\"tokens\":2,\"loss\":abc}",      /* not a value */
        "{\"a\":{\"b\":[1,2}",              /* unbalanced nesting */
    };
    for (size_t i = 0; i < sizeof bad_lines / sizeof bad_lines[0]; i++) {
        snprintf(buf, sizeof buf, "%s%s\n%s", good, bad_lines[i], good);
        expect_malformed(buf, ":2:");
    }
    /* Cut short and then followed by a newline: still malformed. */
    expect_malformed("{\"tokens\":1,\"loss\":2}\n\n\n{\"tokens\":\n", ":4:");
}

/* The last line without its newline and unparsable is a row being appended
 * by a live run, or cut by a kill: the rows before it are the curve. */
static void test_reader_skips_a_cut_last_line(void **state) {
    (void)state;
    char *dir = make_temp_dir();
    char *path = write_text(dir, "metrics.jsonl", "{\"tokens\":1,\"loss\":2}\n{\"tokens\":2,\"loss\":1.5}\n{\"tok");
    cllm_loss_curve c;
    assert_int_equal(cllm_loss_curve_read(path, &c), CLLM_OK);
    assert_int_equal(c.n_train, 2);
    assert_true(c.train[1].loss == 1.5);
    cllm_loss_curve_free(&c);
    free(path);
    remove_tree(dir);
    free(dir);
}

static void test_reader_missing_file(void **state) {
    (void)state;
    cllm_loss_curve c;
    assert_int_equal(cllm_loss_curve_read("/nonexistent/metrics.jsonl", &c), CLLM_ERR_INPUT);
    assert_non_null(strstr(cllm_last_error(), "/nonexistent/metrics.jsonl"));
}

#if CLLM_HAVE_CAIRO

/* dir + "/" + name, malloc'd. */
static char *path_join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* A run folder with `steps` lines of falling loss and a validation loss every 10. */
static void write_run(const char *root, const char *name, int steps, double scale) {
    size_t cap = (size_t)steps * 128 + 1;
    char *text = malloc(cap), *p = text;
    for (int s = 1; s <= steps; s++) {
        double loss = 1.5 + 4.0 * scale / (1.0 + 0.05 * s);
        p += sprintf(p, "{\"step\":%d,\"tokens\":%d,\"loss\":%.4f%s", s, s * 1024, loss, s % 10 ? "}\n" : "");
        if (s % 10 == 0) p += sprintf(p, ",\"val_loss\":%.4f}\n", loss + 0.1);
    }
    char rel[256];
    snprintf(rel, sizeof rel, "%s/metrics.jsonl", name);
    free(write_file(root, rel, text, (size_t)(p - text)));
    free(text);
}

static unsigned read_be32(const unsigned char *b) {
    return (unsigned)b[0] << 24 | (unsigned)b[1] << 16 | (unsigned)b[2] << 8 | b[3];
}

/* PNG signature, then the IHDR chunk first with the requested size. */
static void expect_png(const char *path, unsigned width, unsigned height) {
    unsigned char head[24];
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fread(head, 1, sizeof head, f), sizeof head);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    static const unsigned char signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    assert_memory_equal(head, signature, 8);
    assert_memory_equal(head + 12, "IHDR", 4);
    assert_int_equal(read_be32(head + 16), width);
    assert_int_equal(read_be32(head + 20), height);
    assert_true(size > 2000); /* a drawn plot, not an empty canvas */
}

static int count_entries(const char *dir) {
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "ls -A '%.4000s' | wc -l", dir);
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (p && fscanf(p, "%d", &n) != 1) n = -1;
    if (p) pclose(p);
    return n;
}

static void test_plot_writes_png_of_requested_size(void **state) {
    (void)state;
    char *root = make_temp_dir();
    write_run(root, "small-lr", 200, 1.0);
    write_run(root, "big-lr", 120, 0.7);
    char *a = path_join(root, "small-lr"), *b = path_join(root, "big-lr/");
    char *plots = path_join(root, "plots"), *out = path_join(root, "plots/loss.png");
    mkdir(plots, 0755);
    const char *dirs[] = {a, b};
    if (cllm_plot_runs_sized(dirs, 2, out, "two runs", 640, 480) != CLLM_OK) fail_msg("%s", cllm_last_error());
    expect_png(out, 640, 480);
    assert_int_equal(cllm_plot_runs(dirs, 1, out, NULL), CLLM_OK);
    expect_png(out, CLLM_PLOT_WIDTH, CLLM_PLOT_HEIGHT);
    /* Nothing but the PNG: the temporary file was renamed, not left behind. */
    assert_int_equal(count_entries(plots), 1);
    free(a), free(b), free(plots), free(out);
    remove_tree(root);
    free(root);
}

static void test_failed_plot_keeps_previous_png(void **state) {
    (void)state;
    char *root = make_temp_dir();
    write_run(root, "good", 30, 1.0);
    free(write_text(root, "bad/metrics.jsonl", "{\"tokens\":1,\"loss\":2}\n{\"tokens\":\n"));
    free(write_text(root, "empty/metrics.jsonl", "{\"step\":1}\n"));
    char *old = write_text(root, "loss.png", "previous plot");
    char *good = path_join(root, "good"), *bad = path_join(root, "bad"), *empty = path_join(root, "empty");
    const char *dirs[] = {good, bad};
    assert_int_equal(cllm_plot_runs(dirs, 2, old, "t"), CLLM_ERR_INPUT);
    assert_non_null(strstr(cllm_last_error(), ":2:"));
    FILE *f = fopen(old, "rb");
    char buf[64] = {0};
    assert_non_null(f);
    assert_true(fread(buf, 1, sizeof buf - 1, f) > 0);
    fclose(f);
    assert_string_equal(buf, "previous plot");
    /* No run at all, an empty run, and a silly size are input errors too. */
    assert_int_equal(cllm_plot_runs(dirs, 0, old, "t"), CLLM_ERR_INPUT);
    const char *empty_dirs[] = {empty};
    assert_int_equal(cllm_plot_runs(empty_dirs, 1, old, "t"), CLLM_ERR_INPUT);
    assert_non_null(strstr(cllm_last_error(), "no loss values"));
    assert_int_equal(cllm_plot_runs_sized(dirs, 1, old, "t", 10, 10), CLLM_ERR_INPUT);
    assert_int_equal(count_entries(root), 4);
    free(old), free(good), free(bad), free(empty);
    remove_tree(root);
    free(root);
}

static void test_cli_plot(void **state) {
    (void)state;
    char *root = make_temp_dir();
    write_run(root, "run1", 50, 1.0);
    size_t cap = 3 * strlen(root) + 256;
    char *args = malloc(cap);
    snprintf(args, cap, "plot '%s/run1' -o '%s/out.png' --width 800 --height 400 --title 'a run'", root, root);
    run_result r = run_cllm(NULL, args);
    if (r.exit_code != 0) fail_msg("exit %d: %s", r.exit_code, r.err);
    run_result_free(&r);
    char *png = path_join(root, "out.png");
    expect_png(png, 800, 400);

    free(write_text(root, "broken/metrics.jsonl", "{\"tokens\":1,\"loss\":2}\n{\"tokens\":1,\"loss\":2,\n"));
    snprintf(args, cap, "plot '%s/broken' -o '%s/b.png'", root, root);
    r = run_cllm(NULL, args);
    assert_int_equal(r.exit_code, 2);
    assert_int_equal(count_lines(r.err), 1);
    assert_non_null(strstr(r.err, "metrics.jsonl:2:"));
    run_result_free(&r);
    free(args), free(png);
    remove_tree(root);
    free(root);
}


/* The legend name of "." (or of a bare metrics.jsonl) comes from the current
 * folder's name; it used to point into a buffer whose scope had ended (ASan:
 * stack-use-after-scope), so these run from inside the run folder. */
static void test_plot_from_inside_the_run_folder(void **state) {
    (void)state;
    char *root = make_temp_dir();
    write_run(root, "here", 20, 1.0);
    char *here = path_join(root, "here"), *out = path_join(root, "dot.png");
    char old_cwd[4096];
    assert_non_null(getcwd(old_cwd, sizeof old_cwd));
    assert_int_equal(chdir(here), 0);
    const char *dot[] = {"."}, *file[] = {"metrics.jsonl"}, *dot_slash[] = {"./"};
    cllm_status a = cllm_plot_runs_sized(dot, 1, out, NULL, 320, 240);
    cllm_status b = cllm_plot_runs_sized(file, 1, out, NULL, 320, 240);
    cllm_status c = cllm_plot_runs_sized(dot_slash, 1, out, NULL, 320, 240);
    assert_int_equal(chdir(old_cwd), 0);
    assert_int_equal(a, CLLM_OK);
    assert_int_equal(b, CLLM_OK);
    assert_int_equal(c, CLLM_OK);
    expect_png(out, 320, 240);
    /* The same through the CLI: `cd RUN && cllm plot .` */
    size_t cap = 2 * strlen(root) + 64;
    char *env = malloc(cap);
    snprintf(env, cap, "cd '%s/here' &&", root);
    run_result r = run_cllm(env, "plot . metrics.jsonl -o ../cli.png --width 300 --height 200");
    if (r.exit_code != 0) fail_msg("exit %d: %s", r.exit_code, r.err);
    run_result_free(&r);
    /* `cllm train --out .` draws loss.png the same way at the end. */
    snprintf(env, cap, "mkdir '%s/fresh' && cd '%s/fresh' &&", root, root);
    r = run_cllm(env, "train --preset tiny --steps 2 --vocab 260 --out . --quiet");
    if (r.exit_code != 0) fail_msg("train --out .: exit %d: %s", r.exit_code, r.err);
    run_result_free(&r);
    char *fresh_png = path_join(root, "fresh/loss.png");
    struct stat sb;
    assert_int_equal(stat(fresh_png, &sb), 0);
    free(fresh_png);
    free(env), free(here), free(out);
    remove_tree(root);
    free(root);
}

/* Plots `text` as a metrics.jsonl in a child process that gets `seconds` to
 * finish, so a renderer that loops forever fails the test instead of hanging
 * it. Returns the child's exit status: 0 plotted, 1 refused; a hang fails. */
static int plot_in_child(const char *text, unsigned seconds) {
    char *dir = make_temp_dir();
    char *metrics = write_text(dir, "metrics.jsonl", text);
    char *out = path_join(dir, "out.png");
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(seconds);
        const char *runs[] = {metrics};
        _exit(cllm_plot_runs_sized(runs, 1, out, NULL, 200, 200) == CLLM_OK ? 0 : 1);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (WIFSIGNALED(status))
        fail_msg("plotting %s: killed by signal %d (%s)", text, WTERMSIG(status),
                 WTERMSIG(status) == SIGALRM ? "it did not finish: an endless loop" : "a crash");
    int rc = WEXITSTATUS(status);
    if (rc == 0) expect_png(out, 200, 200);
    free(metrics), free(out);
    remove_tree(dir);
    free(dir);
    return rc;
}

/* Axis ranges narrower than the spacing of doubles once made `v += step`
 * stand still; extreme ranges must finish too. Each must plot. */
static void test_plot_tiny_and_extreme_ranges_finish(void **state) {
    (void)state;
    const char *inputs[] = {
        "{\"tokens\":1,\"loss\":3}\n{\"tokens\":2,\"loss\":3.0000000000000004}\n",
        "{\"tokens\":-9999999999999998,\"loss\":3}\n",
        "{\"tokens\":1e300,\"loss\":1e-300}\n{\"tokens\":-1e300,\"loss\":-1e300}\n",
        "{\"tokens\":1.7e308,\"loss\":1.7e308}\n{\"tokens\":-1.7e308,\"loss\":-1.7e308}\n",
        "{\"tokens\":5e-324,\"loss\":5e-324}\n{\"tokens\":0,\"loss\":0}\n",
        "{\"tokens\":1e-300,\"loss\":-1e-300}\n{\"tokens\":0,\"loss\":1e-300}\n",
        "{\"tokens\":123456789012345678,\"loss\":2}\n{\"tokens\":123456789012345680,\"loss\":2}\n",
    };
    for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++)
        if (plot_in_child(inputs[i], 5) != 0) fail_msg("could not plot %s: exit 1", inputs[i]);
}

#else

static void test_without_cairo_says_what_to_install(void **state) {
    (void)state;
    const char *dirs[] = {"."};
    assert_int_equal(cllm_plot_runs(dirs, 1, "x.png", "t"), CLLM_ERR_INPUT);
    assert_non_null(strstr(cllm_last_error(), "libcairo2-dev"));
    run_result r = run_cllm(NULL, "plot . -o x.png");
    assert_int_equal(r.exit_code, 2);
    assert_int_equal(count_lines(r.err), 1);
    assert_non_null(strstr(r.err, "libcairo2-dev"));
    run_result_free(&r);
}

#endif

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reader_takes_what_it_needs),
        cmocka_unit_test(test_reader_rejects_malformed_lines),
        cmocka_unit_test(test_reader_skips_a_cut_last_line),
        cmocka_unit_test(test_reader_missing_file),
#if CLLM_HAVE_CAIRO
        cmocka_unit_test(test_plot_writes_png_of_requested_size),
        cmocka_unit_test(test_failed_plot_keeps_previous_png),
        cmocka_unit_test(test_cli_plot),
        cmocka_unit_test(test_plot_from_inside_the_run_folder),
        cmocka_unit_test(test_plot_tiny_and_extreme_ranges_finish),
#else
        cmocka_unit_test(test_without_cairo_says_what_to_install),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
