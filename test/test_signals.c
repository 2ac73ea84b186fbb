/* Signals, end to end: SIGINT, SIGTERM and SIGHUP in every phase of
 * `cllm train` (start-up, before the first step, training, the final
 * evaluation and sample), in `cllm tokenizer train` and `cllm plot`; SIGPIPE
 * from a reader that closes stdout; SIGXFSZ from a file size limit; and the
 * pieces underneath (the stop flag in the corpus walk and tokenizer
 * training, the atomic writer's refusal to commit after a stop request).
 * Each case is one row of the "Signals" table in docs/RELIABILITY.md.
 *
 * The binary runs as a child with the signals at their defaults whatever
 * this process inherited, so that a missing handler shows as a death by the
 * signal. Phases are found by markers (a file appearing, CPU time consumed,
 * a line in the output), never by sleeping blindly. */
#define _GNU_SOURCE /* memmem */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cllm/base/build_config.h"
#include "cllm/base/common.h"
#include "cllm/data/corpus.h"
#include "cllm/data/tokenizer.h"
#include "cllm/io/safetensors.h"
#include "support.h"

extern char **environ;

/* ---- fixtures ---------------------------------------------------------------------- */

static char *workdir;
static char *small_corpus; /* ~12 KB of words: a tiny model trains on it in milliseconds per step */
static char *big_corpus;   /* 3 MB of random words: tokenizer training with --vocab 4000 takes ~1 s */
static unsigned char *big_text;
static size_t big_len;

static uint64_t lcg(uint64_t *x) {
    *x = *x * 6364136223846793005ULL + 1442695040888963407ULL;
    return *x >> 33;
}

static int setup(void **state) {
    (void)state;
    static const char *words[] = {"the", "king", "shall", "speak", "of", "love", "and", "war", "to", "my",
                                  "lord", "now", "good", "night", "sweet", "prince", "what", "is", "honour", "air"};
    workdir = make_temp_dir();
    size_t cap = 16384, n = 0;
    char *text = malloc(cap);
    uint64_t x = 12345;
    while (n < 12000) {
        uint64_t r = lcg(&x);
        n += (size_t)snprintf(text + n, cap - n, "%s%s", words[r % 20], r % 9 == 0 ? ".\n" : " ");
    }
    small_corpus = write_file(workdir, "small.txt", text, n);
    free(text);
    /* Random lowercase words are nearly all distinct: many unique chunks and
     * pairs, so BPE training has real work to do. */
    big_len = 3000000;
    big_text = malloc(big_len);
    for (size_t i = 0; i < big_len;) {
        size_t len = 3 + lcg(&x) % 8;
        for (size_t k = 0; k < len && i < big_len; k++) big_text[i++] = (unsigned char)('a' + lcg(&x) % 26);
        if (i < big_len) big_text[i++] = ' ';
    }
    big_corpus = write_file(workdir, "big.txt", big_text, big_len);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    remove_tree(workdir);
    free(workdir);
    free(small_corpus);
    free(big_corpus);
    free(big_text);
    return 0;
}

static int exists(const char *dir, const char *name) {
    char *p = name ? path_in(dir, name) : strdup(dir);
    struct stat st;
    int ok = lstat(p, &st) == 0;
    free(p);
    return ok;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Any "*.tmp.*" below dir (temporaries of a write that did not finish). */
static int has_temporary(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int found = 0;
    struct dirent *e;
    while (!found && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        if (strstr(e->d_name, ".tmp.")) {
            fprintf(stderr, "temporary left: %s/%s\n", dir, e->d_name);
            found = 1;
        }
        char *child = path_in(dir, e->d_name);
        struct stat st;
        if (!found && lstat(child, &st) == 0 && S_ISDIR(st.st_mode)) found = has_temporary(child);
        free(child);
    }
    closedir(d);
    return found;
}

/* The folder holds no run at all: absent, or (if the run lock created it)
 * nothing but the lock file. */
static int holds_nothing(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return errno == ENOENT;
    int empty = 1;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0 && strcmp(e->d_name, ".cllm.lock") != 0) {
            fprintf(stderr, "%s holds %s\n", dir, e->d_name);
            empty = 0;
        }
    closedir(d);
    return empty;
}

static int64_t optimizer_step(const char *dir) {
    char *path = path_in(dir, "optimizer.safetensors");
    cllm_st_file f;
    int64_t step = -1;
    if (cllm_st_open(path, &f) == CLLM_OK) {
        const char *s = cllm_st_metadata(&f, "step");
        step = s ? strtoll(s, NULL, 10) : -1;
        cllm_st_close(&f);
    }
    free(path);
    return step;
}

static char *slurp_text(const char *path) {
    size_t n;
    char *s = (char *)read_whole_file(path, &n);
    return s ? s : strdup("");
}

/* memmem, not strstr: a sample of an untrained model may hold NUL bytes. */
static int file_contains(const char *path, const char *needle) {
    size_t n = 0;
    char *s = (char *)read_whole_file(path, &n);
    int found = s && memmem(s, n, needle, strlen(needle)) != NULL;
    free(s);
    return found;
}

static int file_lines(const char *dir, const char *name) {
    char *p = path_in(dir, name);
    char *s = slurp_text(p);
    int n = count_lines(s);
    free(s);
    free(p);
    return n;
}

/* ---- the child --------------------------------------------------------------------- */

typedef struct {
    const char *out_path; /* stdout to this file, else to out_fd */
    int out_fd;
    const char *err_path; /* stderr to this file, else /dev/null */
    long fsize_limit;     /* RLIMIT_FSIZE in bytes; 0: none */
    int ignore_hup;       /* start with SIGHUP ignored, as under nohup */
} child_setup;

/* Everything the child needs is prepared before fork: only async-signal-safe
 * calls between fork and exec. */
static pid_t spawn_cllm(const child_setup *cs, const char *const *args) {
    const char *argv[64];
    int argc = 0;
    argv[argc++] = CLLM_BIN;
    for (int i = 0; args[i] && argc < 63; i++) argv[argc++] = args[i];
    argv[argc] = NULL;
    size_t n_env = 0;
    while (environ[n_env]) n_env++;
    const char **envp = calloc(n_env + 2, sizeof *envp);
    size_t k = 0;
    for (size_t i = 0; i < n_env; i++)
        if (strncmp(environ[i], "OMP_NUM_THREADS=", 16) != 0 && strncmp(environ[i], "CLLM_PROGRESS=", 14) != 0)
            envp[k++] = environ[i];
    envp[k++] = "OMP_NUM_THREADS=1";
    envp[k] = NULL;
    int out = cs->out_path ? open(cs->out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644) : cs->out_fd;
    int err = open(cs->err_path ? cs->err_path : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
    assert_true(out >= 0 && err >= 0 && in >= 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        sigemptyset(&dfl.sa_mask);
        const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGXFSZ, SIGALRM};
        for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) sigaction(sigs[i], &dfl, NULL);
        if (cs->ignore_hup) {
            dfl.sa_handler = SIG_IGN;
            sigaction(SIGHUP, &dfl, NULL);
        }
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        if (cs->fsize_limit > 0) {
            struct rlimit rl = {(rlim_t)cs->fsize_limit, (rlim_t)cs->fsize_limit};
            setrlimit(RLIMIT_FSIZE, &rl);
        }
        dup2(in, 0);
        dup2(out, 1);
        dup2(err, 2);
        execve(CLLM_BIN, (char *const *)argv, (char *const *)envp);
        _exit(127);
    }
    close(in);
    close(err);
    if (cs->out_path) close(out);
    free(envp);
    return pid;
}

/* Reaps the child within timeout_s, else kills it (and the test fails).
 * Returns the raw wait status. */
static int reap(pid_t pid, double timeout_s) {
    double end = now_s() + timeout_s;
    int status = 0;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) return status;
        if (now_s() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            fail_msg("cllm did not exit within %.0f s", timeout_s);
        }
        sleep_ms(5);
    }
}

/* Not exited yet (the zombie is left for reap). */
static int alive(pid_t pid) {
    siginfo_t info;
    memset(&info, 0, sizeof info);
    return waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == 0;
}

static void assert_exit_status(int status, int code) {
    if (WIFSIGNALED(status)) fail_msg("cllm was killed by signal %d (expected exit %d)", WTERMSIG(status), code);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), code);
}

/* CPU seconds the process has used (user + system), from /proc; < 0 if unknown. */
static double cpu_seconds(pid_t pid) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    if (!p) return -1;
    unsigned long utime = 0, stime = 0;
    /* after ')': state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime */
    if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2) return -1;
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

/* Polls until the child has used `seconds` of CPU (it is then past exec and
 * dynamic loading, inside its own work): 1; it exited first: 0; no /proc to
 * tell: -1 (the child is then killed). */
static int wait_for_cpu(pid_t pid, double seconds) {
    double end = now_s() + 60;
    while (now_s() < end && alive(pid)) {
        double c = cpu_seconds(pid);
        if (c < 0 && alive(pid)) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            printf("skipped: no /proc/%d/stat, so the phase cannot be found\n", (int)pid);
            return -1;
        }
        if (c >= seconds) return 1;
        sleep_ms(2);
    }
    return 0;
}

/* Polls until dir/name holds at least `lines` lines. */
static int wait_for_lines(pid_t pid, const char *dir, const char *name, int lines) {
    double end = now_s() + 60;
    while (now_s() < end && alive(pid)) {
        if (file_lines(dir, name) >= lines) return 1;
        sleep_ms(5);
    }
    return 0;
}

/* Polls until the file contains `needle`. */
static int wait_for_text(pid_t pid, const char *path, const char *needle) {
    double end = now_s() + 60;
    while (now_s() < end && alive(pid)) {
        if (file_contains(path, needle)) return 1;
        sleep_ms(5);
    }
    return 0;
}

#define TINY_MODEL "--layers", "1", "--heads", "2", "--embd", "16", "--seq", "16", "--batch", "4"

/* ---- the pieces underneath ------------------------------------------------------- */

/* A stop request makes the corpus walk return CLLM_ERR_INTERRUPTED with an
 * empty corpus; without one the same folder loads. */
static void test_corpus_walk_stops_on_request(void **state) {
    (void)state;
    char *dir = path_in(workdir, "walk");
    mkdir(dir, 0755);
    free(write_file(dir, "a.txt", "alpha beta\n", 11));
    free(write_file(dir, "sub/b.txt", "gamma delta\n", 12));
    const char *paths[1] = {dir};
    cllm_stop_flag stop = SIGINT;
    cllm_corpus c;
    assert_int_equal(cllm_corpus_load_stoppable(paths, 1, &stop, &c), CLLM_ERR_INTERRUPTED);
    assert_non_null(strstr(cllm_last_error(), "interrupted"));
    assert_int_equal(c.n_bytes, 0);
    assert_null(c.bytes);
    stop = 0;
    assert_int_equal(cllm_corpus_load_stoppable(paths, 1, &stop, &c), CLLM_OK);
    assert_int_equal(c.n_bytes, 23);
    cllm_corpus_free(&c);
    free(dir);
}

static cllm_stop_flag alarm_flag;
static volatile double alarm_at;

static void on_alarm(int sig) {
    (void)sig;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    alarm_at = (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
    alarm_flag = SIGINT;
}

/* A request that a signal handler raises 30 ms into tokenizer training (about
 * 1 s of work here) ends it within 0.25 s, with nothing returned. */
static void test_tokenizer_training_stops_within_milliseconds(void **state) {
    (void)state;
    cllm_corpus c;
    assert_int_equal(cllm_corpus_from_bytes(big_text, big_len, "big", &c), CLLM_OK);
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, &old);
    alarm_flag = 0;
    alarm_at = 0;
    struct itimerval it = {{0, 0}, {0, 30000}};
    setitimer(ITIMER_REAL, &it, NULL);
    cllm_tokenizer *tok = NULL;
    double t0 = now_s();
    cllm_status st = cllm_tokenizer_train_stoppable(&c, 8000, &alarm_flag, &tok);
    double t1 = now_s();
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    sigaction(SIGALRM, &old, NULL);
    if (st == CLLM_OK) fail_msg("tokenizer training ended in %.3f s, before the stop request", t1 - t0);
    assert_int_equal(st, CLLM_ERR_INTERRUPTED);
    assert_non_null(strstr(cllm_last_error(), "tokenizer"));
    assert_null(tok);
    printf("tokenizer training stopped %.1f ms after the request\n", 1e3 * (t1 - alarm_at));
    assert_true(t1 - alarm_at < 0.25);
    cllm_corpus_free(&c);
}

/* The atomic writer under a pending stop request: with abandon_writes (what
 * `tokenizer train` and `plot` ask for) the commit is refused, the target
 * keeps its old bytes, no temporary remains; without (the trainer's saves)
 * the write completes. */
static void test_atomic_commit_after_a_stop_request(void **state) {
    (void)state;
    char *dir = path_in(workdir, "atomic");
    mkdir(dir, 0755);
    char *target = write_file(dir, "file", "old", 3);
    struct sigaction before;
    sigaction(SIGINT, NULL, &before);

    cllm_stop_catch(1);
    raise(SIGINT);
    assert_int_equal(cllm_stop_signal(), SIGINT);
    assert_int_equal(cllm_write_file_atomic(target, "new", 3), CLLM_ERR_INTERRUPTED);
    assert_non_null(strstr(cllm_last_error(), "SIGINT"));
    cllm_stop_release();
    size_t n;
    char *got = (char *)read_whole_file(target, &n);
    assert_string_equal(got, "old");
    free(got);
    assert_false(has_temporary(dir));

    cllm_stop_catch(0);
    raise(SIGTERM);
    assert_int_equal(cllm_stop_signal(), SIGTERM);
    assert_int_equal(cllm_write_file_atomic(target, "new", 3), CLLM_OK);
    cllm_stop_release();
    got = (char *)read_whole_file(target, &n);
    assert_string_equal(got, "new");
    free(got);

    /* release puts back what was there */
    struct sigaction after;
    sigaction(SIGINT, NULL, &after);
    assert_true(after.sa_handler == before.sa_handler);
    free(target);
    free(dir);
}

/* Under nohup (SIGHUP ignored at start) SIGHUP stays ignored. */
static void test_ignored_sighup_stays_ignored(void **state) {
    (void)state;
    struct sigaction ign, old, now;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    sigemptyset(&ign.sa_mask);
    sigaction(SIGHUP, &ign, &old);
    cllm_stop_catch(0);
    sigaction(SIGHUP, NULL, &now);
    assert_true(now.sa_handler == SIG_IGN);
    sigaction(SIGTERM, NULL, &now);
    assert_true(now.sa_handler != SIG_IGN && now.sa_handler != SIG_DFL);
    cllm_stop_release();
    sigaction(SIGHUP, &old, NULL);
}

/* ---- cllm train ----------------------------------------------------------------------- */

/* A signal while the corpus is read or the tokenizer trained: exit 130
 * within a second, one line on stderr, nothing on stdout, no run folder. */
static void check_signal_during_startup(int sig) {
    char name[32];
    snprintf(name, sizeof name, "startup-%d", sig);
    char *dir = path_in(workdir, name);
    char *out = path_in(workdir, "startup.out"), *err = path_in(workdir, "startup.err");
    const char *args[] = {"train", big_corpus, TINY_MODEL, "--vocab", "4000", "--steps", "100000",
                          "--sample-tokens", "0", "--out", dir, NULL};
    child_setup cs = {.out_path = out, .err_path = err};
    pid_t pid = spawn_cllm(&cs, args);
    int found = wait_for_cpu(pid, 0.2);
    if (found < 0) skip();
    if (found == 0) fail_msg("cllm ended before using 0.2 s of CPU (status %d)", reap(pid, 10));
    /* The folder is claimed (and locked) first, but its run.json is written
     * only after start-up: if it exists already, the signal would not test
     * start-up. */
    if (exists(dir, "run.json")) fail_msg("start-up ended before the signal (make the corpus bigger)");
    double t0 = now_s();
    kill(pid, sig);
    int status = reap(pid, 30);
    double latency = now_s() - t0;
    printf("signal %d during start-up: exit after %.0f ms\n", sig, 1e3 * latency);
    assert_exit_status(status, 130);
    assert_true(latency < 3.0); /* ~1 s promised; slack for a loaded machine and sanitizers */
    char *e = slurp_text(err), *o = slurp_text(out);
    assert_int_equal(count_lines(e), 1);
    assert_non_null(strstr(e, "interrupted by SIG"));
    assert_non_null(strstr(e, "nothing written"));
    assert_string_equal(o, "");
    assert_true(holds_nothing(dir));
    free(e);
    free(o);
    free(out);
    free(err);
    free(dir);
}

static void test_signal_during_startup_exits_130_and_writes_nothing(void **state) {
    (void)state;
    check_signal_during_startup(SIGINT);
    check_signal_during_startup(SIGTERM);
    check_signal_during_startup(SIGHUP);
}

/* A signal after the run folder exists but before step 1 (here: while the
 * start-up summary is blocked on a full stdout pipe): no checkpoint is
 * written, the folder stays one that never reached a checkpoint, and
 * `train --out` starts it afresh. */
static void test_signal_before_first_step_leaves_a_folder_without_checkpoint(void **state) {
    (void)state;
    char *dir = path_in(workdir, "before-step-1");
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    /* Fill the pipe so that the child's first flush blocks. */
    fcntl(fds[1], F_SETFL, O_NONBLOCK);
    char junk[4096];
    memset(junk, 'x', sizeof junk);
    while (write(fds[1], junk, sizeof junk) > 0) {}
    fcntl(fds[1], F_SETFL, 0);
    fcntl(fds[0], F_SETFD, FD_CLOEXEC);
    char *err = path_in(workdir, "before-step-1.err");
    const char *args[] = {"train", small_corpus, TINY_MODEL, "--vocab", "300", "--steps", "100000",
                          "--sample-tokens", "0", "--out", dir, NULL};
    child_setup cs = {.out_fd = fds[1], .err_path = err};
    pid_t pid = spawn_cllm(&cs, args);
    close(fds[1]);
    /* tokenizer.bin is the last file the folder gets before the summary. */
    double end = now_s() + 60;
    while (now_s() < end && alive(pid) && !exists(dir, "tokenizer.bin")) sleep_ms(5);
    assert_true(exists(dir, "tokenizer.bin"));
    /* Wherever the request lands from here on, the loop cannot start before
     * the summary's blocked write completes. */
    assert_int_equal(file_lines(dir, "metrics.jsonl"), 0);
    kill(pid, SIGINT);
    /* Drain the pipe: the summary gets through, the loop sees the request. */
    char *out = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&out, &len);
    ssize_t got;
    while ((got = read(fds[0], junk, sizeof junk)) > 0) fwrite(junk, 1, (size_t)got, mem);
    fclose(mem);
    close(fds[0]);
    int status = reap(pid, 30);
    assert_exit_status(status, 130);
    assert_non_null(strstr(out, "before step 1: no checkpoint saved"));
    assert_false(exists(dir, "model.safetensors"));
    assert_false(exists(dir, "optimizer.safetensors"));
    assert_false(exists(dir, "latest"));
    assert_false(has_temporary(dir));
    char *e = slurp_text(err);
    assert_string_equal(e, "");
    free(e);
    free(out);
    /* The folder can be started again. */
    const char *again[] = {"train", small_corpus, TINY_MODEL, "--vocab", "300", "--steps", "2",
                           "--sample-tokens", "0", "--quiet", "--out", dir, NULL};
    child_setup cs2 = {.out_path = "/dev/null", .err_path = err};
    status = reap(spawn_cllm(&cs2, again), 60);
    assert_exit_status(status, 0);
    assert_int_equal(optimizer_step(dir), 2);
    free(err);
    free(dir);
}

/* SIGHUP (the terminal closed) during training: like SIGTERM, the step
 * finishes, the checkpoint is saved, exit 130, and the saved step is the
 * last one logged. */
static void test_sighup_during_training_saves_and_exits_130(void **state) {
    (void)state;
    char *dir = path_in(workdir, "hup");
    char *out = path_in(workdir, "hup.out");
    const char *args[] = {"train", small_corpus, TINY_MODEL, "--vocab", "300", "--steps", "1000000",
                          "--eval-every", "0", "--save-every", "0", "--sample-tokens", "0", "--quiet", "--out", dir, NULL};
    child_setup cs = {.out_path = out};
    pid_t pid = spawn_cllm(&cs, args);
    assert_true(wait_for_lines(pid, dir, "metrics.jsonl", 1));
    kill(pid, SIGHUP);
    assert_exit_status(reap(pid, 30), 130);
    int64_t step = optimizer_step(dir);
    assert_true(step >= 1);
    assert_int_equal(file_lines(dir, "metrics.jsonl"), step);
    char *o = slurp_text(out);
    assert_non_null(strstr(o, "interrupted at step"));
    assert_non_null(strstr(o, "--resume"));
    free(o);
    free(out);
    free(dir);
}

/* Under nohup a hang-up changes nothing: the run trains its whole budget. */
static void test_sighup_under_nohup_is_ignored(void **state) {
    (void)state;
    char *dir = path_in(workdir, "nohup");
    const char *args[] = {"train", small_corpus, TINY_MODEL, "--vocab", "300", "--steps", "40",
                          "--eval-every", "0", "--sample-tokens", "0", "--quiet", "--out", dir, NULL};
    child_setup cs = {.out_path = "/dev/null", .ignore_hup = 1};
    pid_t pid = spawn_cllm(&cs, args);
    assert_true(wait_for_lines(pid, dir, "metrics.jsonl", 1));
    kill(pid, SIGHUP);
    assert_exit_status(reap(pid, 60), 0);
    assert_int_equal(optimizer_step(dir), 40);
    free(dir);
}

/* A signal during the last step or the final evaluation (long here: half the
 * data is validation, all of it evaluated): the step and the save finish, the run is complete
 * (not "interrupted ... --resume"), the evaluation is cut short and the
 * output says how to get it; exit 130 since something asked for was
 * skipped. The save runs with the request already pending: this is also
 * the case of a signal during the final save (the save never polls). */
static void test_signal_during_final_evaluation_keeps_the_run_complete(void **state) {
    (void)state;
    char *dir = path_in(workdir, "final-eval");
    char *out = path_in(workdir, "final-eval.out");
    const char *args[] = {"train", "--layers", "2", "--heads", "2", "--embd", "64", "--seq", "64", "--batch", "1",
                          "--val-fraction", "0.5", "--eval-tokens", "0", "--steps", "3", "--eval-every", "0",
                          "--sample-tokens", "0", "--quiet", "--out", dir, NULL};
    child_setup cs = {.out_path = out};
    pid_t pid = spawn_cllm(&cs, args);
    assert_true(wait_for_lines(pid, dir, "metrics.jsonl", 2)); /* step 3, then its evaluation, come next */
    kill(pid, SIGINT);
    int status = reap(pid, 60);
    char *o = slurp_text(out);
    if (strstr(o, "validation loss")) fail_msg("the evaluation ended before the signal:\n%s", o);
    assert_exit_status(status, 130);
    assert_null(strstr(o, "interrupted at step"));
    assert_non_null(strstr(o, "final: step 3 (the run is complete)"));
    assert_non_null(strstr(o, "validation skipped by SIGINT"));
    assert_non_null(strstr(o, "cllm eval"));
    assert_int_equal(optimizer_step(dir), 3);
    assert_int_equal(file_lines(dir, "metrics.jsonl"), 3);
    assert_false(has_temporary(dir));
    free(o);
    free(out);
    free(dir);
}

/* A signal during the final sample: the sample is cut short, the run is
 * complete and saved, exit 130. */
static void test_signal_during_final_sample_keeps_the_run_complete(void **state) {
    (void)state;
    char *dir = path_in(workdir, "final-sample");
    char *out = path_in(workdir, "final-sample.out");
    const char *args[] = {"train", small_corpus, TINY_MODEL, "--vocab", "300", "--steps", "5",
                          "--sample-tokens", "1000000", "--quiet", "--out", dir, NULL};
    child_setup cs = {.out_path = out};
    pid_t pid = spawn_cllm(&cs, args);
    assert_true(wait_for_text(pid, out, "--- sample ---"));
    kill(pid, SIGTERM);
    assert_exit_status(reap(pid, 30), 130);
    assert_true(file_contains(out, "final: step 5"));
    assert_false(file_contains(out, "interrupted at step"));
    assert_true(file_contains(out, "sample cut short by SIGTERM"));
    assert_int_equal(optimizer_step(dir), 5);
#if CLLM_HAVE_CAIRO
    assert_true(exists(dir, "loss.png"));
#endif
    free(out);
    free(dir);
}

/* `cllm train | head -1`: the reader goes away after the first line; the run
 * keeps training, saves every checkpoint, and exits 0 at the end of its
 * budget. */
static void test_closed_stdout_keeps_training_and_saving(void **state) {
    (void)state;
    char *dir = path_in(workdir, "pipe");
    char *err = path_in(workdir, "pipe.err");
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fcntl(fds[0], F_SETFD, FD_CLOEXEC);
    const char *args[] = {"train", small_corpus, TINY_MODEL, "--vocab", "300", "--steps", "30", "--eval-every", "5",
                          "--save-every", "10", "--log-every", "1", "--sample-every", "7", "--out", dir, NULL};
    child_setup cs = {.out_fd = fds[1], .err_path = err};
    pid_t pid = spawn_cllm(&cs, args);
    close(fds[1]);
    char c;
    while (read(fds[0], &c, 1) == 1 && c != '\n') {}
    close(fds[0]);
    assert_exit_status(reap(pid, 60), 0);
    assert_int_equal(optimizer_step(dir), 30);
    assert_int_equal(file_lines(dir, "metrics.jsonl"), 30);
#if CLLM_HAVE_CAIRO /* else "no loss.png" is the one expected line */
    char *e = slurp_text(err);
    assert_string_equal(e, "");
    free(e);
#endif
    free(err);
    free(dir);
}

/* `ulimit -f`: the checkpoint write fails with EFBIG instead of SIGXFSZ
 * killing the process; one line, exit 1, no temporary left. */
static void test_file_size_limit_fails_with_one_line_and_no_temporary(void **state) {
    (void)state;
    char *dir = path_in(workdir, "fsize");
    char *err = path_in(workdir, "fsize.err");
    /* run.json, tokenizer.bin and a few metrics lines fit; the model (~35 KB) does not. */
    const char *args[] = {"train", small_corpus, TINY_MODEL, "--vocab", "300", "--steps", "4", "--save-every", "2",
                          "--sample-tokens", "0", "--quiet", "--out", dir, NULL};
    child_setup cs = {.out_path = "/dev/null", .err_path = err, .fsize_limit = 20000};
    assert_exit_status(reap(spawn_cllm(&cs, args), 60), 1);
    char *e = slurp_text(err);
    assert_int_equal(count_lines(e), 1);
    assert_non_null(strstr(e, strerror(EFBIG)));
    assert_false(has_temporary(dir));
    free(e);
    free(err);
    free(dir);
}

/* ---- the other commands that write files ------------------------------------------- */

/* `cllm tokenizer train -o FILE`: a signal during training leaves FILE as it
 * was (here: an older file), no temporary, one line, exit 130. */
static void test_signal_during_tokenizer_train_leaves_the_file_alone(void **state) {
    (void)state;
    char *dir = path_in(workdir, "tok");
    mkdir(dir, 0755);
    char *file = write_file(dir, "tok.bin", "older", 5);
    char *err = path_in(workdir, "tok.err");
    const char *args[] = {"tokenizer", "train", big_corpus, "--vocab", "8000", "-o", file, NULL};
    child_setup cs = {.out_path = "/dev/null", .err_path = err};
    pid_t pid = spawn_cllm(&cs, args);
    int found = wait_for_cpu(pid, 0.2);
    if (found < 0) skip();
    if (found == 0) fail_msg("cllm ended before using 0.2 s of CPU (status %d)", reap(pid, 10));
    kill(pid, SIGINT);
    assert_exit_status(reap(pid, 30), 130);
    char *e = slurp_text(err);
    assert_int_equal(count_lines(e), 1);
    assert_non_null(strstr(e, "interrupted by SIGINT while"));
    assert_non_null(strstr(e, "not written"));
    size_t n;
    char *got = (char *)read_whole_file(file, &n);
    assert_string_equal(got, "older");
    assert_false(has_temporary(dir));
    free(got);
    free(e);
    free(err);
    free(file);
    free(dir);
}

/* `cllm plot`: a signal while the metrics are read (metrics.jsonl is a fifo
 * this test writes, so the phase is exact) means no PNG and no temporary,
 * exit 130. */
static void test_signal_during_plot_writes_no_png(void **state) {
    (void)state;
#if !CLLM_HAVE_CAIRO
    printf("skipped: cllm was built without cairo, so plot writes nothing\n");
    skip();
#else
    char *run = path_in(workdir, "plot-run");
    mkdir(run, 0755);
    char *fifo = path_in(run, "metrics.jsonl");
    assert_int_equal(mkfifo(fifo, 0644), 0);
    char *png = path_in(workdir, "plot.png");
    char *err = path_in(workdir, "plot.err");
    const char *args[] = {"plot", run, "-o", png, NULL};
    child_setup cs = {.out_path = "/dev/null", .err_path = err};
    pid_t pid = spawn_cllm(&cs, args);
    int w = open(fifo, O_WRONLY); /* returns once cllm has opened it: its handlers are in place */
    assert_true(w >= 0);
    const char *line1 = "{\"step\":1,\"tokens\":64,\"loss\":3.5}\n";
    const char *line2 = "{\"step\":2,\"tokens\":128,\"loss\":3.1}\n";
    assert_int_equal(write(w, line1, strlen(line1)), (ssize_t)strlen(line1));
    kill(pid, SIGINT);
    assert_int_equal(write(w, line2, strlen(line2)), (ssize_t)strlen(line2));
    close(w);
    assert_exit_status(reap(pid, 30), 130);
    assert_false(exists(png, NULL));
    assert_false(has_temporary(workdir));
    char *e = slurp_text(err);
    assert_int_equal(count_lines(e), 1);
    assert_non_null(strstr(e, "interrupted by SIGINT"));
    free(e);
    free(err);
    free(png);
    free(fifo);
    free(run);
#endif
}

/* `cllm export`: a signal while the run is read (its tokenizer.bin is a fifo
 * this test writes, so the phase is exact) means no GGUF file, an older one
 * untouched, no temporary, one line, exit 130. */
static void test_signal_during_export_leaves_the_file_alone(void **state) {
    (void)state;
    if (!cllm_pretok_available(CLLM_PRETOK_GPT2)) {
        printf("skipped: built without libutf8proc, so no run can be exported\n");
        skip();
    }
    char *run = path_in(workdir, "export-run"), *out = path_in(workdir, "export"), *err = path_in(workdir, "export.err");
    const char *train[] = {"train", small_corpus, TINY_MODEL, "--vocab", "300", "--steps", "1", "--pretokenize",
                           "gpt2", "--sample-tokens", "0", "--quiet", "--out", run, NULL};
    child_setup quiet = {.out_path = "/dev/null"};
    assert_exit_status(reap(spawn_cllm(&quiet, train), 60), 0);
    mkdir(out, 0755);
    char *gguf = path_in(out, "m.gguf");
    free(write_file(out, "m.gguf", "old", 3));
    char *tok = path_in(run, "tokenizer.bin");
    size_t n;
    unsigned char *bytes = read_whole_file(tok, &n);
    assert_non_null(bytes);
    assert_int_equal(unlink(tok), 0);
    assert_int_equal(mkfifo(tok, 0644), 0);
    const char *args[] = {"export", run, "--gguf", gguf, NULL};
    child_setup cs = {.out_path = "/dev/null", .err_path = err};
    pid_t pid = spawn_cllm(&cs, args);
    int w = open(tok, O_WRONLY); /* returns once cllm has opened it: its handlers are in place */
    assert_true(w >= 0);
    kill(pid, SIGINT);
    assert_int_equal(write(w, bytes, n), (ssize_t)n);
    close(w);
    assert_exit_status(reap(pid, 30), 130);
    size_t m;
    unsigned char *kept = read_whole_file(gguf, &m);
    assert_non_null(kept);
    assert_int_equal(m, 3);
    assert_memory_equal(kept, "old", 3);
    assert_false(has_temporary(out));
    char *e = slurp_text(err);
    assert_int_equal(count_lines(e), 1);
    assert_non_null(strstr(e, "interrupted by SIGINT"));
    free(e);
    free(kept);
    free(bytes);
    free(tok);
    free(gguf);
    free(err);
    free(out);
    free(run);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_corpus_walk_stops_on_request),
        cmocka_unit_test(test_tokenizer_training_stops_within_milliseconds),
        cmocka_unit_test(test_atomic_commit_after_a_stop_request),
        cmocka_unit_test(test_ignored_sighup_stays_ignored),
        cmocka_unit_test(test_signal_during_startup_exits_130_and_writes_nothing),
        cmocka_unit_test(test_signal_before_first_step_leaves_a_folder_without_checkpoint),
        cmocka_unit_test(test_sighup_during_training_saves_and_exits_130),
        cmocka_unit_test(test_sighup_under_nohup_is_ignored),
        cmocka_unit_test(test_signal_during_final_evaluation_keeps_the_run_complete),
        cmocka_unit_test(test_signal_during_final_sample_keeps_the_run_complete),
        cmocka_unit_test(test_closed_stdout_keeps_training_and_saving),
        cmocka_unit_test(test_file_size_limit_fails_with_one_line_and_no_temporary),
        cmocka_unit_test(test_signal_during_tokenizer_train_leaves_the_file_alone),
        cmocka_unit_test(test_signal_during_plot_writes_no_png),
        cmocka_unit_test(test_signal_during_export_leaves_the_file_alone),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
