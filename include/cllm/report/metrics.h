/* metrics.jsonl: one flat JSON object per optimizer step, appended as the
 * run goes, read back by `cllm plot`. Keys: step, tokens, loss, val_loss (on
 * evaluation steps only), lr, grad_norm, tokens_per_s, exposed_reduction
 * (share of the step), utilisation, atomics, the engine's timings
 * compute_min/compute_median/compute_max/reduce (seconds), and with MPI
 * ranks rank_wait (share of the step rank 0 waited for the others'
 * compute), exposed_comm (share in exchanges nothing hid) and comm_bytes
 * (bytes it sent; all 0 with one rank). */
#ifndef CLLM_REPORT_METRICS_H
#define CLLM_REPORT_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cllm/base/common.h"

typedef struct {
    int64_t step, tokens;
    double loss;
    int has_val;
    double val_loss;
    double lr, grad_norm, tokens_per_s;
    double exposed_reduction, utilisation;
    int64_t atomics;
    double compute_min, compute_median, compute_max, reduce;
    double rank_wait, exposed_comm;
    int64_t comm_bytes;
} cllm_metrics_row;

/* Formats one row as a JSON object plus newline into buf; returns the length
 * (truncated rows are not possible with n >= 512). Non-finite numbers become
 * null, since JSON has no NaN. */
size_t cllm_metrics_format(const cllm_metrics_row *r, char *buf, size_t n);

typedef struct {
    FILE *f;
} cllm_metrics_log;

/* Opens DIR/metrics.jsonl for appending. keep_upto_step >= 0: first drops
 * (crash-safely) every line whose step is greater, so that a resumed run's
 * log continues exactly where its checkpoint was taken; < 0: starts a new
 * log. */
cllm_status cllm_metrics_open(cllm_metrics_log *log, const char *dir, int64_t keep_upto_step);
/* Appends and flushes one row. */
cllm_status cllm_metrics_append(cllm_metrics_log *log, const cllm_metrics_row *r);
void cllm_metrics_close(cllm_metrics_log *log);

#endif
