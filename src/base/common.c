#include "cllm/base/common.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static _Thread_local char last_error[512];

cllm_status cllm_fail(cllm_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return status;
}

const char *cllm_last_error(void) { return last_error; }

_Noreturn void cllm_assert_failed(const char *cond, const char *file, int line) {
    fprintf(stderr, "cllm: internal error: %s:%d: assertion %s failed\n", file, line, cond);
    abort();
}

void *cllm_alloc(size_t bytes) {
    /* Round up: aligned_alloc requires a multiple of the alignment. */
    size_t rounded = (bytes + CLLM_ALIGN - 1) / CLLM_ALIGN * CLLM_ALIGN;
    if (rounded == 0) rounded = CLLM_ALIGN;
    void *p = aligned_alloc(CLLM_ALIGN, rounded);
    if (!p) {
        cllm_fail(CLLM_ERR_INTERNAL, "out of memory allocating %zu bytes", bytes);
        return NULL;
    }
    memset(p, 0, rounded);
    return p;
}

void cllm_free(void *p) { free(p); }

double cllm_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <unistd.h>

char *cllm_path_join(const char *dir, const char *name) {
    size_t n = strlen(dir);
    int slash = n > 0 && dir[n - 1] == '/';
    char *p = malloc(n + strlen(name) + 2);
    if (p) sprintf(p, "%s%s%s", dir, slash ? "" : "/", name);
    return p;
}

uint64_t cllm_fnv1a64(const void *data, size_t n, uint64_t h) {
    const uint8_t *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* Insertion sort: n is a thread count or a repeat count, and this never allocates
 * (the engine calls it after every step). */
double cllm_median(double *v, int n) {
    for (int i = 1; i < n; i++) {
        double x = v[i];
        int j = i;
        for (; j > 0 && v[j - 1] > x; j--) v[j] = v[j - 1];
        v[j] = x;
    }
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

size_t cllm_first_non_finite(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return i;
    return n;
}

cllm_status cllm_atomic_open(cllm_atomic_file *af, const char *path) {
    memset(af, 0, sizeof *af);
    size_t n = strlen(path);
    af->final_path = strdup(path);
    af->tmp_path = malloc(n + 32);
    if (!af->final_path || !af->tmp_path) {
        cllm_atomic_abort(af);
        return cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
    }
    snprintf(af->tmp_path, n + 32, "%s.tmp.%ld", path, (long)getpid());
    af->f = fopen(af->tmp_path, "wb");
    if (!af->f) {
        int e = errno;
        cllm_atomic_abort(af);
        return cllm_fail(e == ENOENT || e == EACCES || e == ENOTDIR ? CLLM_ERR_INPUT : CLLM_ERR_INTERNAL,
                         "cannot write %s: %s", path, strerror(e));
    }
    return CLLM_OK;
}

static void fsync_parent_folder(const char *path) {
    char *copy = strdup(path);
    if (!copy) return;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(copy);
}

static volatile sig_atomic_t stop_flag = 0;
static int abandon_writes_on_stop = 0;

cllm_status cllm_atomic_commit(cllm_atomic_file *af) {
    if (abandon_writes_on_stop && stop_flag) {
        cllm_status st = cllm_fail(CLLM_ERR_INTERRUPTED, "interrupted by %s: %s not written",
                                   cllm_signal_name(stop_flag), af->final_path);
        cllm_atomic_abort(af);
        return st;
    }
    int failed = fflush(af->f) != 0 || ferror(af->f) || fsync(fileno(af->f)) != 0;
    int e = errno;
    failed |= fclose(af->f) != 0;
    af->f = NULL;
    if (failed || rename(af->tmp_path, af->final_path) != 0) {
        if (!failed) e = errno;
        cllm_status st = cllm_fail(CLLM_ERR_INTERNAL, "cannot write %s: %s", af->final_path, strerror(e));
        cllm_atomic_abort(af);
        return st;
    }
    fsync_parent_folder(af->final_path);
    free(af->tmp_path);
    free(af->final_path);
    af->tmp_path = af->final_path = NULL;
    return CLLM_OK;
}

void cllm_atomic_abort(cllm_atomic_file *af) {
    if (af->f) fclose(af->f);
    if (af->tmp_path) unlink(af->tmp_path);
    free(af->tmp_path);
    free(af->final_path);
    memset(af, 0, sizeof *af);
}

cllm_status cllm_write_file_atomic(const char *path, const void *data, size_t n) {
    cllm_atomic_file af;
    cllm_status st = cllm_atomic_open(&af, path);
    if (st != CLLM_OK) return st;
    if (n && fwrite(data, 1, n, af.f) != n) {
        cllm_atomic_abort(&af);
        return cllm_fail(CLLM_ERR_INTERNAL, "cannot write %s: %s", path, strerror(errno));
    }
    return cllm_atomic_commit(&af);
}

/* ---- stop requests ------------------------------------------------------------ */

static const int stop_signals[] = {SIGINT, SIGTERM, SIGHUP};
#define N_STOP_SIGNALS (int)(sizeof stop_signals / sizeof stop_signals[0])
static struct sigaction saved_actions[N_STOP_SIGNALS];
static int caught[N_STOP_SIGNALS];

/* Only the first request is kept: it names the signal in the message. */
static void note_stop_request(int sig) {
    if (!stop_flag) stop_flag = sig;
}

void cllm_stop_catch(int abandon_writes) {
    stop_flag = 0;
    abandon_writes_on_stop = abandon_writes;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = note_stop_request;
    sigemptyset(&sa.sa_mask);
    /* Restart interrupted system calls: the flag is polled, so no read or
     * write needs to fail with EINTR for the request to be seen. */
    sa.sa_flags = SA_RESTART;
    for (int i = 0; i < N_STOP_SIGNALS; i++) {
        if (caught[i]) continue;
        struct sigaction old;
        if (sigaction(stop_signals[i], NULL, &old) != 0) continue;
        /* nohup ignores SIGHUP so that a closed terminal leaves the job
         * running: honour that. */
        if (stop_signals[i] == SIGHUP && old.sa_handler == SIG_IGN) continue;
        if (sigaction(stop_signals[i], &sa, &saved_actions[i]) == 0) caught[i] = 1;
    }
}

void cllm_stop_release(void) {
    for (int i = 0; i < N_STOP_SIGNALS; i++) {
        if (caught[i]) sigaction(stop_signals[i], &saved_actions[i], NULL);
        caught[i] = 0;
    }
    abandon_writes_on_stop = 0;
}

const cllm_stop_flag *cllm_stop_flag_ptr(void) { return &stop_flag; }

int cllm_stop_signal(void) { return stop_flag; }

const char *cllm_signal_name(int sig) {
    switch (sig) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    case SIGHUP: return "SIGHUP";
    default: return "a signal";
    }
}
