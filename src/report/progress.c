#include "cllm/report/progress.h"

#include <math.h>
#include <string.h>

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

static void format_rate(double tokens_per_s, char *buf, size_t n) {
    if (tokens_per_s >= 1e6) snprintf(buf, n, "%.2fM", tokens_per_s / 1e6);
    else if (tokens_per_s >= 1e3) snprintf(buf, n, "%.1fk", tokens_per_s / 1e3);
    else snprintf(buf, n, "%.0f", tokens_per_s);
}

void cllm_progress_format(const cllm_progress_info *p, char *buf, size_t n) {
    char rate[32], eta[32], val[32] = "", mfu[32] = "";
    format_rate(p->tokens_per_s, rate, sizeof rate);
    cllm_progress_duration(p->eta_s, eta, sizeof eta);
    if (p->has_val) snprintf(val, sizeof val, "  val %.4f", p->val_loss);
    if (p->mfu >= 0) snprintf(mfu, sizeof mfu, "  MFU %.1f%%", 100.0 * p->mfu);
    snprintf(buf, n, "step %lld/%lld  loss %.4f%s  %s tok/s  lr %.2e  ETA %s%s", (long long)p->step,
             (long long)p->total, p->loss, val, rate, p->lr, eta, mfu);
}

/* A stream that failed a write (EPIPE: its reader has gone) gets nothing
 * more: each further line would only fail again. */
void cllm_progress_show(cllm_progress_mode mode, const cllm_progress_info *p, int log_now, FILE *out) {
    if (mode == CLLM_PROGRESS_OFF || (mode == CLLM_PROGRESS_PLAIN && !log_now) || ferror(out)) return;
    char line[256];
    cllm_progress_format(p, line, sizeof line);
    if (mode == CLLM_PROGRESS_LINE) fprintf(out, "\r%s\033[K", line);
    else fprintf(out, "%s\n", line);
    fflush(out);
}

void cllm_progress_end(cllm_progress_mode mode, FILE *out) {
    if (mode == CLLM_PROGRESS_LINE && !ferror(out)) {
        fputc('\n', out);
        fflush(out);
    }
}
