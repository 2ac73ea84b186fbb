#include "cllm/report/metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cllm/base/json.h"

static size_t append_number(char *buf, size_t n, size_t at, const char *key, double v) {
    if (at >= n) return at;
    char num[40];
    cllm_json_format_number(num, sizeof num, v, 9);
    int w = snprintf(buf + at, n - at, ",\"%s\":%s", key, num);
    return at + (w > 0 ? (size_t)w : 0);
}

size_t cllm_metrics_format(const cllm_metrics_row *r, char *buf, size_t n) {
    int w = snprintf(buf, n, "{\"step\":%" PRId64 ",\"tokens\":%" PRId64, r->step, r->tokens);
    size_t at = w > 0 ? (size_t)w : 0;
    at = append_number(buf, n, at, "loss", r->loss);
    if (r->has_val) at = append_number(buf, n, at, "val_loss", r->val_loss);
    at = append_number(buf, n, at, "lr", r->lr);
    at = append_number(buf, n, at, "grad_norm", r->grad_norm);
    at = append_number(buf, n, at, "tokens_per_s", r->tokens_per_s);
    at = append_number(buf, n, at, "exposed_reduction", r->exposed_reduction);
    at = append_number(buf, n, at, "utilisation", r->utilisation);
    if (at < n) {
        w = snprintf(buf + at, n - at, ",\"atomics\":%" PRId64, r->atomics);
        at += w > 0 ? (size_t)w : 0;
    }
    at = append_number(buf, n, at, "compute_min", r->compute_min);
    at = append_number(buf, n, at, "compute_median", r->compute_median);
    at = append_number(buf, n, at, "compute_max", r->compute_max);
    at = append_number(buf, n, at, "reduce", r->reduce);
    at = append_number(buf, n, at, "rank_wait", r->rank_wait);
    at = append_number(buf, n, at, "exposed_comm", r->exposed_comm);
    if (at < n) {
        w = snprintf(buf + at, n - at, ",\"comm_bytes\":%" PRId64, r->comm_bytes);
        at += w > 0 ? (size_t)w : 0;
    }
    if (at < n) {
        w = snprintf(buf + at, n - at, "}\n");
        at += w > 0 ? (size_t)w : 0;
    }
    return at < n ? at : n - 1;
}

/* The step of one log line, or -1 if it has none ("step" is always the
 * first key we write). */
static int64_t line_step(const char *line) {
    const char *p = strstr(line, "\"step\":");
    if (!p) return -1;
    return strtoll(p + 7, NULL, 10);
}

/* Rewrites the log keeping the lines up to the checkpoint's step. Lines after
 * it belong to steps the resumed run will compute again. */
static cllm_status truncate_log(const char *path, int64_t keep_upto_step) {
    FILE *in = fopen(path, "rb");
    if (!in) return CLLM_OK; /* no log yet: nothing to keep */
    cllm_atomic_file af;
    cllm_status st = cllm_atomic_open(&af, path);
    if (st != CLLM_OK) {
        fclose(in);
        return st;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, in)) > 0) {
        int64_t s = line_step(line);
        if (s < 0 || s > keep_upto_step) continue;
        if (line[len - 1] != '\n') continue; /* a line cut by a crash */
        if (fwrite(line, 1, (size_t)len, af.f) != (size_t)len) {
            free(line);
            fclose(in);
            cllm_atomic_abort(&af);
            return cllm_fail(CLLM_ERR_INTERNAL, "cannot write %s: %s", path, strerror(errno));
        }
    }
    free(line);
    fclose(in);
    return cllm_atomic_commit(&af);
}

cllm_status cllm_metrics_open(cllm_metrics_log *log, const char *dir, int64_t keep_upto_step) {
    log->f = NULL;
    size_t n = strlen(dir) + 32;
    char *path = malloc(n);
    if (!path) return cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
    snprintf(path, n, "%s/metrics.jsonl", dir);
    cllm_status st = CLLM_OK;
    if (keep_upto_step >= 0) st = truncate_log(path, keep_upto_step);
    if (st == CLLM_OK) {
        log->f = fopen(path, keep_upto_step >= 0 ? "ab" : "wb");
        if (!log->f) st = cllm_fail(CLLM_ERR_INTERNAL, "cannot write %s: %s", path, strerror(errno));
    }
    free(path);
    return st;
}

cllm_status cllm_metrics_append(cllm_metrics_log *log, const cllm_metrics_row *r) {
    char buf[1024];
    size_t n = cllm_metrics_format(r, buf, sizeof buf);
    if (fwrite(buf, 1, n, log->f) != n || fflush(log->f) != 0)
        return cllm_fail(CLLM_ERR_INTERNAL, "cannot append to metrics.jsonl: %s", strerror(errno));
    return CLLM_OK;
}

void cllm_metrics_close(cllm_metrics_log *log) {
    if (log->f) fclose(log->f);
    log->f = NULL;
}
