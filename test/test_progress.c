/* The progress line: its fields and the order they go in when the terminal
 * is narrow, the display's ticker (a redraw at least every second during a
 * long step) and plain cadence, and a real `cllm train` under a
 * pseudo-terminal of 40, 80 and 120 columns. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "cllm/report/progress.h"
#include "support.h"

static cllm_progress_info full_info(void) {
    return (cllm_progress_info){.step = 120, .total = 1000, .loss = 2.34567, .has_val = 1, .val_loss = 2.5,
                                .tokens_per_s = 12345, .lr = 6e-4, .eta_s = 83, .mfu = 0.123};
}

static void test_plain_line_has_every_field(void **state) {
    (void)state;
    cllm_progress_info p = full_info();
    char buf[256];
    cllm_progress_format(&p, 0, 1, buf, sizeof buf);
    assert_string_equal(buf,
                        "step 120/1000  12%  loss 2.3457  val 2.5000  12.3k tok/s  lr 6.00e-04  ETA 1m23s  MFU 12.3%");
    cllm_progress_duration(7300, buf, sizeof buf);
    assert_string_equal(buf, "2h01m");
    cllm_progress_count(11297, buf, sizeof buf);
    assert_string_equal(buf, "11,297");
    cllm_progress_count(1000000, buf, sizeof buf);
    assert_string_equal(buf, "1,000,000");
    cllm_progress_count(999, buf, sizeof buf);
    assert_string_equal(buf, "999");
    assert_int_equal(cllm_progress_pick(NULL, 0, 1), CLLM_PROGRESS_LINE);
    assert_int_equal(cllm_progress_pick(NULL, 0, 0), CLLM_PROGRESS_PLAIN);
    assert_int_equal(cllm_progress_pick("auto", 1, 1), CLLM_PROGRESS_OFF);
    assert_int_equal(cllm_progress_pick("plain", 1, 1), CLLM_PROGRESS_PLAIN);
    assert_int_equal(cllm_progress_pick("off", 0, 1), CLLM_PROGRESS_OFF);
}

/* Every width from 10 to 200, with and without an evaluation or a long step
 * running: never more than width - 1 columns, always starting with the step. */
static void test_line_never_wider_than_the_terminal(void **state) {
    (void)state;
    for (int kind = 0; kind < 3; kind++) {
        cllm_progress_info p = full_info();
        if (kind == 1) {
            p.eval_done = 3200;
            p.eval_total = 11297;
        }
        if (kind == 2) p.step_running_s = 75;
        for (int width = 10; width <= 200; width++) {
            char buf[512];
            cllm_progress_format(&p, width, 1, buf, sizeof buf);
            assert_true(strlen(buf) <= (size_t)width - 1);
            assert_memory_equal(buf, "step 120/1000", strlen(buf) < 13 ? strlen(buf) : 13);
        }
    }
}

/* The least important fields go first: lr, then MFU, then the bar, ...;
 * the evaluation's count stays nearly to the end. */
static void test_fields_drop_in_order(void **state) {
    (void)state;
    cllm_progress_info p = full_info();
    char buf[512];
    cllm_progress_format(&p, 200, 1, buf, sizeof buf);
    assert_non_null(strstr(buf, "[#-----------]  12%"));
    assert_non_null(strstr(buf, "lr 6.00e-04"));
    cllm_progress_format(&p, 100, 1, buf, sizeof buf);
    assert_null(strstr(buf, "lr "));
    assert_non_null(strstr(buf, "MFU"));
    cllm_progress_format(&p, 90, 1, buf, sizeof buf);
    assert_null(strstr(buf, "MFU"));
    assert_non_null(strstr(buf, "[#"));
    cllm_progress_format(&p, 80, 1, buf, sizeof buf);
    assert_null(strstr(buf, "[#"));
    assert_string_equal(buf, "step 120/1000  12%  loss 2.3457  val 2.5000  12.3k tok/s  ETA 1m23s");
    cllm_progress_format(&p, 40, 1, buf, sizeof buf);
    assert_string_equal(buf, "step 120/1000  loss 2.3457  ETA 1m23s");
    p.eval_done = 3200;
    p.eval_total = 11297;
    cllm_progress_format(&p, 41, 1, buf, sizeof buf);
    assert_string_equal(buf, "step 120/1000  eval 3,200/11,297 windows");
    cllm_progress_format(&p, 0, 0, buf, sizeof buf);
    assert_non_null(strstr(buf, "step 120/1000  eval 3,200/11,297 windows  12%"));
    /* cllm eval: the evaluation is the line */
    cllm_progress_info e = {.loss = NAN, .lr = -1, .eta_s = 12, .mfu = -1, .eval_done = 3200, .eval_total = 11297};
    cllm_progress_format(&e, 80, 1, buf, sizeof buf);
    assert_string_equal(buf, "eval 3,200/11,297 windows  [###---------]  28%  ETA 12s");
}

static char *file_text(FILE *f) {
    fflush(f);
    long n = ftell(f);
    char *s = calloc((size_t)n + 1, 1);
    rewind(f);
    assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
    return s;
}

static int count_of(const char *s, const char *needle) {
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

static void sleep_s(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* A step that takes long: the line is redrawn meanwhile (every 0.5 s), the
 * ETA counting down; nothing is drawn after a hold. */
static void test_ticker_redraws_during_a_long_step(void **state) {
    (void)state;
    FILE *f = tmpfile();
    assert_non_null(f);
    cllm_progress *p = cllm_progress_open(CLLM_PROGRESS_LINE, f, 120, 30);
    cllm_progress_info i = full_info();
    i.eta_s = 100;
    cllm_progress_update(p, &i, 1);
    sleep_s(1.3);
    cllm_progress_hold(p);
    char *before = file_text(f);
    sleep_s(0.7);
    cllm_progress_close(p);
    char *text = file_text(f);
    assert_true(count_of(text, "\rstep 120/1000") >= 2);
    assert_non_null(strstr(text, "ETA 1m40s"));
    assert_true(strstr(text, "ETA 1m39s") || strstr(text, "ETA 1m38s"));
    assert_string_equal(text, before); /* held: the ticker stayed quiet */
    assert_int_equal(text[strlen(text) - 1], '\n');
    free(before);
    free(text);
    fclose(f);
}

/* Plain mode: a line when asked (every --log-every steps), and one every
 * plain_every_s when the steps are slower than that. */
static void test_plain_lines_every_interval(void **state) {
    (void)state;
    FILE *f = tmpfile();
    cllm_progress *p = cllm_progress_open(CLLM_PROGRESS_PLAIN, f, 0, 0.3);
    cllm_progress_info i = full_info();
    cllm_progress_update(p, &i, 1);
    cllm_progress_update(p, &i, 0); /* not due: no line */
    char *first = file_text(f);
    assert_int_equal(count_lines(first), 1);
    sleep_s(1.0);
    cllm_progress_close(p);
    char *text = file_text(f);
    assert_true(count_lines(text) >= 2);
    assert_null(strchr(text, '\r'));
    free(first);
    free(text);
    fclose(f);
}

/* ---- under a pseudo-terminal --------------------------------------------------- */

/* Runs `cllm ARGS` with stdout and stderr on a new pty of `cols` columns
 * (0: the pty does not say, so COLUMNS decides) and returns what it wrote,
 * or NULL when this machine gives no pty (the caller skips). */
static char *run_on_pty(int cols, const char *columns_env, const char *args) {
    int master = posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0) {
        if (master >= 0) close(master);
        return NULL;
    }
    const char *slave_name = ptsname(master);
    struct winsize ws = {.ws_row = 24, .ws_col = (unsigned short)cols};
    ioctl(master, TIOCSWINSZ, &ws);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "exec %s %s", CLLM_BIN, args);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        setsid();
        int s = open(slave_name, O_RDWR);
        if (s < 0) _exit(126);
        dup2(s, 1);
        dup2(s, 2);
        close(s);
        close(master);
        if (columns_env) setenv("COLUMNS", columns_env, 1);
        else unsetenv("COLUMNS");
        unsetenv("CLLM_PROGRESS");
        setenv("OMP_NUM_THREADS", "1", 1);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    size_t cap = 1 << 16, len = 0;
    char *out = malloc(cap);
    for (;;) {
        if (len + 4096 > cap) out = realloc(out, cap *= 2);
        ssize_t n = read(master, out + len, 4096);
        if (n > 0) len += (size_t)n;
        else if (n < 0 && errno == EINTR) continue;
        else break; /* EIO: every holder of the slave has gone */
    }
    out[len] = '\0';
    int status = 0;
    waitpid(pid, &status, 0);
    close(master);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    return out;
}

/* Every progress line the terminal shows: the text between "\r"s and
 * newlines, without the clear-to-end-of-line sequence. */
static void check_lines_fit(const char *out, int cols, int *n_lines, int *saw_eval, int *saw_bar) {
    *n_lines = *saw_eval = *saw_bar = 0;
    const char *p = out;
    while (*p) {
        size_t n = strcspn(p, "\r\n");
        char seg[1024];
        size_t k = 0;
        for (size_t i = 0; i < n && k + 1 < sizeof seg; i++) {
            if (p[i] == '\033' && i + 2 < n && p[i + 1] == '[' && p[i + 2] == 'K') {
                i += 2;
                continue;
            }
            seg[k++] = p[i];
        }
        seg[k] = '\0';
        if (k >= 5 && memcmp(seg, "step ", 5) == 0) {
            if (k > (size_t)cols - 1) fprintf(stderr, "%d columns, %zu wide: '%s'\n", cols, k, seg);
            assert_true(k <= (size_t)cols - 1);
            (*n_lines)++;
            *saw_eval |= strstr(seg, " eval ") != NULL;
            *saw_bar |= strstr(seg, "[#") != NULL;
        }
        p += n;
        if (*p) p++;
    }
}

static void test_train_and_eval_lines_fit_40_80_120_columns_under_a_pty(void **state) {
    (void)state;
    char *dir = make_temp_dir();
    const int widths[3] = {40, 80, 120};
    for (int i = 0; i < 3; i++) {
        for (int via_env = 0; via_env < 2; via_env++) {
            char args[512], cols[16];
            snprintf(args, sizeof args,
                     "train --preset tiny --steps 40 --eval-every 10 --sample-tokens 0 --out %s/w%d-%d", dir,
                     widths[i], via_env);
            snprintf(cols, sizeof cols, "%d", widths[i]);
            /* via_env: the pty says 0 columns and COLUMNS gives the width;
               else the pty says it, and a wrong COLUMNS must not matter. */
            char *out = run_on_pty(via_env ? 0 : widths[i], via_env ? cols : "300", args);
            if (!out) {
                printf("skipped: no pseudo-terminal on this machine (posix_openpt failed: %s)\n", strerror(errno));
                remove_tree(dir);
                free(dir);
                skip();
            }
            int n, saw_eval, saw_bar;
            check_lines_fit(out, widths[i], &n, &saw_eval, &saw_bar);
            assert_true(n >= 3);         /* the first line, steps, the end */
            assert_true(strstr(out, "final: step 40") != NULL);
            if (widths[i] >= 80) assert_true(saw_eval); /* the passes are shown with their count */
            if (widths[i] == 120) assert_true(saw_bar);
            free(out);
        }
    }
    /* cllm eval on a terminal: its own line on stderr, counting windows, then the result
       (the counts as `eval --json` gives them off the terminal: they depend on the tokenizer) */
    char args[512];
    snprintf(args, sizeof args, "eval %s/w80-0 --eval-tokens 0 --json", dir);
    run_result plain = run_cllm(NULL, args);
    assert_int_equal(plain.exit_code, 0);
    long windows = -1, tokens = -1;
    const char *w = strstr(plain.out, "\"windows\":"), *t = strstr(plain.out, "\"tokens\":");
    assert_true(w && t && sscanf(w + 10, "%ld", &windows) == 1 && sscanf(t + 9, "%ld", &tokens) == 1);
    run_result_free(&plain);
    assert_true(windows > 0 && tokens > 0);
    char want_count[64], want_tokens[64];
    snprintf(want_count, sizeof want_count, "\reval 0/%ld windows", windows);
    snprintf(want_tokens, sizeof want_tokens, "tokens %ld", tokens);
    snprintf(args, sizeof args, "eval %s/w80-0 --eval-tokens 0", dir);
    char *out = run_on_pty(80, NULL, args);
    assert_non_null(out);
    assert_non_null(strstr(out, want_count));
    assert_non_null(strstr(out, "loss "));
    assert_non_null(strstr(out, want_tokens));
    const char *p = out;
    while ((p = strstr(p, "\reval "))) {
        size_t n = strcspn(p + 1, "\r\n\033");
        assert_true(n <= 79);
        p += 1 + n;
    }
    free(out);
    remove_tree(dir);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_line_has_every_field),
        cmocka_unit_test(test_line_never_wider_than_the_terminal),
        cmocka_unit_test(test_fields_drop_in_order),
        cmocka_unit_test(test_ticker_redraws_during_a_long_step),
        cmocka_unit_test(test_plain_lines_every_interval),
        cmocka_unit_test(test_train_and_eval_lines_fit_40_80_120_columns_under_a_pty),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
