#include "cllm/report/progress.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "cllm/base/common.h"

cllm_progress_mode cllm_progress_pick(const char *env, int quiet, int is_terminal) {
    if (env && strcmp(env, "off") == 0) return CLLM_PROGRESS_OFF;
    if (env && strcmp(env, "line") == 0) return CLLM_PROGRESS_LINE;
    if (env && strcmp(env, "plain") == 0) return CLLM_PROGRESS_PLAIN;
    if (quiet) return CLLM_PROGRESS_OFF;
    return is_terminal ? CLLM_PROGRESS_LINE : CLLM_PROGRESS_PLAIN;
}

void cllm_progress_duration(double seconds, char *buf, size_t n) {
    if (!isfinite(seconds) || seconds < 0) {
        snprintf(buf, n, "?");
        return;
    }
    long s = (long)(seconds + 0.5);
    if (s < 60) snprintf(buf, n, "%lds", s);
    else if (s < 3600) snprintf(buf, n, "%ldm%02lds", s / 60, s % 60);
    else snprintf(buf, n, "%ldh%02ldm", s / 3600, (s % 3600) / 60);
}

void cllm_progress_count(size_t v, char *buf, size_t n) {
    char digits[24], out[32];
    int len = snprintf(digits, sizeof digits, "%zu", v), k = 0;
    for (int i = 0; i < len; i++) {
        if (i > 0 && (len - i) % 3 == 0) out[k++] = ',';
        out[k++] = digits[i];
    }
    out[k] = '\0';
    snprintf(buf, n, "%s", out);
}

static void format_rate(double tokens_per_s, char *buf, size_t n) {
    if (tokens_per_s >= 1e6) snprintf(buf, n, "%.2fM", tokens_per_s / 1e6);
    else if (tokens_per_s >= 1e3) snprintf(buf, n, "%.1fk", tokens_per_s / 1e3);
    else snprintf(buf, n, "%.0f", tokens_per_s);
}

/* ---- the line: fields with a rank, the least important dropped first ---- */

enum { FIELD_LEN = 64, MAX_FIELDS = 12 };

typedef struct {
    char text[FIELD_LEN];
    int rank; /* higher: kept longer */
} field;

typedef struct {
    field f[MAX_FIELDS];
    int n;
} fields;

static void add(fields *fs, int rank, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void add(fields *fs, int rank, const char *fmt, ...) {
    CLLM_ASSERT(fs->n < MAX_FIELDS);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(fs->f[fs->n].text, FIELD_LEN, fmt, ap);
    va_end(ap);
    fs->f[fs->n++].rank = rank;
}

/* The share done as "[#####-------]" (12 cells). */
static void bar_text(double share, char *buf) {
    enum { CELLS = 12 };
    int full = (int)(share * CELLS + 1e-9);
    if (full > CELLS) full = CELLS;
    buf[0] = '[';
    for (int i = 0; i < CELLS; i++) buf[1 + i] = i < full ? '#' : '-';
    buf[CELLS + 1] = ']';
    buf[CELLS + 2] = '\0';
}

/* Ranks: the step (or the evaluation, for cllm eval) is never dropped. */
enum { R_STEP = 100, R_EVAL = 95, R_LOSS = 90, R_ETA = 85, R_VAL = 80, R_PCT = 70, R_RATE = 50, R_RUNNING = 45,
       R_BAR = 30, R_MFU = 20, R_LR = 10 };

static void collect(const cllm_progress_info *p, int bar, fields *fs) {
    fs->n = 0;
    double share = -1;
    if (p->total > 0) {
        add(fs, R_STEP, "step %lld/%lld", (long long)p->step, (long long)p->total);
        share = (double)p->step / (double)p->total;
    }
    if (p->eval_total > 0) {
        char done[32], total[32];
        cllm_progress_count(p->eval_done, done, sizeof done);
        cllm_progress_count(p->eval_total, total, sizeof total);
        add(fs, p->total > 0 ? R_EVAL : R_STEP, "eval %s/%s windows", done, total);
        if (p->total <= 0) share = (double)p->eval_done / (double)p->eval_total;
    }
    if (share >= 0) {
        if (bar) {
            char b[FIELD_LEN];
            bar_text(share, b);
            add(fs, R_BAR, "%s", b);
        }
        add(fs, R_PCT, "%d%%", (int)(100.0 * share + 1e-9));
    }
    if (p->step_running_s > 0 && p->eval_total == 0) {
        char d[32];
        cllm_progress_duration(p->step_running_s, d, sizeof d);
        add(fs, R_RUNNING, "step %lld running %s", (long long)p->step + 1, d);
    }
    if (p->total > 0 && isfinite(p->loss)) add(fs, R_LOSS, "loss %.4f", p->loss);
    if (p->has_val) add(fs, R_VAL, "val %.4f", p->val_loss);
    if (p->tokens_per_s > 0) {
        char r[32];
        format_rate(p->tokens_per_s, r, sizeof r);
        add(fs, R_RATE, "%s tok/s", r);
    }
    if (p->lr >= 0) add(fs, R_LR, "lr %.2e", p->lr);
    char eta[32];
    cllm_progress_duration(p->eta_s, eta, sizeof eta);
    add(fs, R_ETA, "ETA %s", eta);
    if (p->mfu >= 0) add(fs, R_MFU, "MFU %.1f%%", 100.0 * p->mfu);
}

static size_t joined_length(const fields *fs) {
    size_t len = 0;
    for (int i = 0; i < fs->n; i++) len += strlen(fs->f[i].text) + (i ? 2 : 0);
    return len;
}

static void drop_least_important(fields *fs) {
    int worst = -1;
    for (int i = 0; i < fs->n; i++)
        if (fs->f[i].rank < R_STEP && (worst < 0 || fs->f[i].rank < fs->f[worst].rank)) worst = i;
    if (worst < 0) return;
    memmove(&fs->f[worst], &fs->f[worst + 1], (size_t)(fs->n - worst - 1) * sizeof fs->f[0]);
    fs->n--;
}

void cllm_progress_format(const cllm_progress_info *p, int width, int bar, char *buf, size_t n) {
    fields fs;
    collect(p, bar && width > 0, &fs);
    size_t limit = width > 0 ? (size_t)width - 1 : (size_t)-1;
    while (joined_length(&fs) > limit) {
        int before = fs.n;
        drop_least_important(&fs);
        if (fs.n == before) break; /* only the step field is left */
    }
    size_t k = 0;
    buf[0] = '\0';
    for (int i = 0; i < fs.n && k + 1 < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%s", i ? "  " : "", fs.f[i].text);
    if (k >= n) k = n - 1;
    if (width > 0 && k > limit) buf[limit] = '\0';
}

int cllm_progress_width(FILE *out, int columns) {
    struct winsize ws;
    if (ioctl(fileno(out), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
    return columns > 0 ? columns : 80;
}

/* ---- the display -------------------------------------------------------------- */

struct cllm_progress {
    cllm_progress_mode mode;
    FILE *out;
    int columns;
    double plain_every_s;
    pthread_mutex_t lock; /* everything below, and every write to out */
    pthread_cond_t wake;
    pthread_t ticker;
    int has_ticker, quit;
    int active;             /* an update came since the last hold: the ticker may draw */
    int shown;              /* the terminal line holds something of ours */
    cllm_progress_info info;
    double info_time;       /* when info came */
    double last_draw, last_plain;
};

/* The state as of now: the ETA counts down from the last update, a step
 * that has run for over 2 s says so, a running evaluation shows its count. */
static cllm_progress_info current(const cllm_progress *p, double now) {
    cllm_progress_info i = p->info;
    double since = now - p->info_time;
    if (i.eta_s >= 0) i.eta_s = i.eta_s > since ? i.eta_s - since : 0;
    if (i.eval_total == 0 && i.total > 0 && i.step < i.total && since > 2) i.step_running_s = since;
    /* An evaluation alone (cllm eval) times itself from its start. */
    if (i.total == 0 && i.eval_total > 0 && i.eval_done > 0)
        i.eta_s = since / (double)i.eval_done * (double)(i.eval_total - i.eval_done);
    return i;
}

/* Called with the lock held. A stream that failed a write (EPIPE: its
 * reader has gone) gets nothing more. */
static void draw(cllm_progress *p, double now) {
    if (ferror(p->out)) return;
    cllm_progress_info i = current(p, now);
    char line[512];
    if (p->mode == CLLM_PROGRESS_LINE) {
        cllm_progress_format(&i, cllm_progress_width(p->out, p->columns), 1, line, sizeof line);
        fprintf(p->out, "\r%s\033[K", line);
        p->shown = 1;
    } else {
        cllm_progress_format(&i, 0, 0, line, sizeof line);
        fprintf(p->out, "%s\n", line);
        p->last_plain = now;
    }
    fflush(p->out);
    p->last_draw = now;
}

static void *tick(void *arg) {
    cllm_progress *p = arg;
    double period = p->mode == CLLM_PROGRESS_LINE ? 0.5 : p->plain_every_s / 4 < 1 ? p->plain_every_s / 4 : 1;
    pthread_mutex_lock(&p->lock);
    while (!p->quit) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        long ns = ts.tv_nsec + (long)(period * 1e9);
        ts.tv_sec += ns / 1000000000L;
        ts.tv_nsec = ns % 1000000000L;
        int rc = pthread_cond_timedwait(&p->wake, &p->lock, &ts);
        if (p->quit) break;
        if (rc != ETIMEDOUT || !p->active) continue;
        double now = cllm_now();
        if (p->mode == CLLM_PROGRESS_LINE ? now - p->last_draw >= 0.5 : now - p->last_plain >= p->plain_every_s)
            draw(p, now);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* The ticker takes no signal: SIGINT and friends stay with the threads that
 * were there before (their handler only records the request anyway). */
static int start_ticker(cllm_progress *p) {
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&p->ticker, NULL, tick, p);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc == 0;
}

cllm_progress *cllm_progress_open(cllm_progress_mode mode, FILE *out, int columns, double plain_every_s) {
    cllm_progress *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->mode = mode;
    p->out = out;
    p->columns = columns;
    p->plain_every_s = plain_every_s > 0 ? plain_every_s : 30;
    pthread_mutex_init(&p->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->wake, &ca);
    pthread_condattr_destroy(&ca);
    p->last_plain = cllm_now();
    if (mode != CLLM_PROGRESS_OFF) p->has_ticker = start_ticker(p); /* without one: updates still draw */
    return p;
}

void cllm_progress_update(cllm_progress *p, const cllm_progress_info *info, int now_flag) {
    if (!p || p->mode == CLLM_PROGRESS_OFF) return;
    pthread_mutex_lock(&p->lock);
    double now = cllm_now();
    p->info = *info;
    p->info_time = now;
    p->active = 1;
    int due = p->mode == CLLM_PROGRESS_LINE ? now_flag || now - p->last_draw >= 0.1
                                            : now_flag || now - p->last_plain >= p->plain_every_s;
    if (due) draw(p, now);
    pthread_mutex_unlock(&p->lock);
}

void cllm_progress_eval(void *ctx, size_t done, size_t total) {
    cllm_progress *p = ctx;
    if (!p) return;
    pthread_mutex_lock(&p->lock); /* before reading anything: the callers are worker threads */
    p->info.eval_done = done;
    p->info.eval_total = total;
    double now = cllm_now();
    if (p->active && p->mode == CLLM_PROGRESS_LINE && now - p->last_draw >= 0.1) draw(p, now);
    /* plain mode: the ticker's line every plain_every_s shows the count */
    pthread_mutex_unlock(&p->lock);
}

void cllm_progress_hold(cllm_progress *p) {
    if (!p) return;
    pthread_mutex_lock(&p->lock);
    p->active = 0;
    if (p->shown && !ferror(p->out)) {
        fputc('\n', p->out);
        fflush(p->out);
    }
    p->shown = 0;
    pthread_mutex_unlock(&p->lock);
}

void cllm_progress_close(cllm_progress *p) {
    if (!p) return;
    cllm_progress_hold(p);
    if (p->has_ticker) {
        pthread_mutex_lock(&p->lock);
        p->quit = 1;
        pthread_cond_signal(&p->wake);
        pthread_mutex_unlock(&p->lock);
        pthread_join(p->ticker, NULL);
    }
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->lock);
    free(p);
}
