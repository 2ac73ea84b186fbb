/* What the user sees while training: on a terminal one line redrawn in
 * place ("\r" + clear to end of line), elsewhere (CI logs, pipes) one plain
 * line every --log-every steps, or nothing. */
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
    int64_t step, total;
    double loss;
    int has_val;
    double val_loss;
    double tokens_per_s, lr;
    double eta_s; /* < 0: unknown */
    double mfu;   /* share of peak, 0..1; < 0: unknown */
} cllm_progress_info;

/* "step 120/1000  loss 2.3456  val 2.4567  12.3k tok/s  lr 6.00e-04  ETA 1m23s  MFU 12.3%" */
void cllm_progress_format(const cllm_progress_info *p, char *buf, size_t n);

/* Durations as "45s", "12m03s", "2h05m". */
void cllm_progress_duration(double seconds, char *buf, size_t n);

/* Shows one update. Plain mode prints only when `log_now` is set. */
void cllm_progress_show(cllm_progress_mode mode, const cllm_progress_info *p, int log_now, FILE *out);
/* Ends an in-place line so that what follows starts on a fresh line. */
void cllm_progress_end(cllm_progress_mode mode, FILE *out);

#endif
