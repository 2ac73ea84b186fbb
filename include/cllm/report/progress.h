/* What the user sees while training or evaluating: on a terminal one line
 * redrawn in place ("\r" + clear to end of line), never wider than the
 * terminal; elsewhere (CI logs, pipes) plain lines; or nothing.
 *
 * A display (cllm_progress_open) owns the line: the caller reports each
 * finished step and each finished evaluation window, and a ticker thread of
 * the display redraws the line at least every second in between (a long
 * step, a long evaluation), with the ETA counting down; in plain mode it
 * prints a line every `plain_every_s` seconds (30 in cllm) when the steps
 * are slower than that. */
#ifndef CLLM_REPORT_PROGRESS_H
#define CLLM_REPORT_PROGRESS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum { CLLM_PROGRESS_OFF, CLLM_PROGRESS_LINE, CLLM_PROGRESS_PLAIN } cllm_progress_mode;

/* CLLM_PROGRESS (env: "auto", "line", "plain", "off"; NULL = auto) overrides
 * --quiet; auto means off when quiet, else line on a terminal, plain
 * otherwise. */
cllm_progress_mode cllm_progress_pick(const char *env, int quiet, int is_terminal);

typedef struct {
    int64_t step, total; /* total 0: no step field (cllm eval) */
    double loss;         /* NAN: no step yet */
    int has_val;
    double val_loss;
    double tokens_per_s; /* <= 0: unknown */
    double lr;           /* < 0: none */
    double eta_s;        /* < 0: unknown */
    double mfu;          /* share of peak, 0..1; < 0: unknown */
    size_t eval_done, eval_total; /* eval_total > 0: an evaluation is running */
    double step_running_s;        /* > 0: how long the step in progress has run */
} cllm_progress_info;

/* The fields, most important first: step, eval, loss, ETA, val, percentage,
 * tok/s, running step, bar, MFU, lr. With width > 0 the least important are
 * dropped until the line has at most width - 1 columns (the last column is
 * left free, so no terminal wraps); the step field alone is cut to fit.
 * `bar` adds "[#####-----]" where there is room. width <= 0: every field,
 * no bar:
 * "step 120/1000  12%  loss 2.3456  val 2.4567  12.3k tok/s  lr 6.00e-04  ETA 1m23s  MFU 12.3%" */
void cllm_progress_format(const cllm_progress_info *p, int width, int bar, char *buf, size_t n);

/* Durations as "45s", "12m03s", "2h05m". */
void cllm_progress_duration(double seconds, char *buf, size_t n);

/* Counts as "11,297". */
void cllm_progress_count(size_t v, char *buf, size_t n);

/* The width of the terminal `out` is on (TIOCGWINSZ), else `columns` (the
 * COLUMNS variable, 0 when unset), else 80. */
int cllm_progress_width(FILE *out, int columns);

typedef struct cllm_progress cllm_progress;

/* NULL only when out of memory (then nothing is shown). */
cllm_progress *cllm_progress_open(cllm_progress_mode mode, FILE *out, int columns, double plain_every_s);
/* A new state of the run. Drawn on a terminal at most 10 times a second
 * unless `now` is set; printed in plain mode when `now` is set or
 * plain_every_s has passed since the last plain line. */
void cllm_progress_update(cllm_progress *p, const cllm_progress_info *info, int now);
/* A window of an evaluation is done (a cllm_eval_progress_fn: thread-safe). */
void cllm_progress_eval(void *p, size_t done, size_t total);
/* Ends the line, so that the caller can print something of its own; nothing
 * is drawn until the next update. */
void cllm_progress_hold(cllm_progress *p);
/* Holds, stops the ticker, frees. NULL is fine. */
void cllm_progress_close(cllm_progress *p);

#endif
