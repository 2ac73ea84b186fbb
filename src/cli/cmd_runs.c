/* cllm runs [DIR]: the run folders in DIR (default runs/), one line each. */
#include <dirent.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cllm/cli/commands.h"
#include "cllm/cli/flags.h"
#include "cllm/report/progress.h"
#include "cllm/train/runs.h"

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void loss_text(double v, char *buf, size_t n) {
    if (isfinite(v)) snprintf(buf, n, "%.4f", v);
    else snprintf(buf, n, "-");
}

static void print_row(const char *name, const cllm_run_info *r) {
    char step[48], loss[16], val[16], tokens[32], time[32];
    if (r->step < 0) snprintf(step, sizeof step, "-");
    else if (r->total > 0) snprintf(step, sizeof step, "%" PRId64 "/%" PRId64, r->step, r->total);
    else snprintf(step, sizeof step, "%" PRId64 "/?", r->step);
    loss_text(r->loss, loss, sizeof loss);
    loss_text(r->val_loss, val, sizeof val);
    cllm_progress_count((size_t)(r->tokens > 0 ? r->tokens : 0), tokens, sizeof tokens);
    cllm_progress_duration(r->seconds, time, sizeof time);
    printf("%-28s %-8s %15s %9s %9s %14s %8s", name, cllm_run_state_name(r->state), step, loss, val, tokens, time);
    if (r->state == CLLM_RUN_BROKEN) printf("  %s", r->why);
    printf("\n");
}

static void print_header(void) {
    printf("%-28s %-8s %15s %9s %9s %14s %8s\n", "run", "state", "step", "loss", "val", "tokens", "time");
}

static int is_dir(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* DIR's sub-folders that are run folders, in name order; DIR itself when it
 * is one. */
static int list_runs(const char *dir) {
    cllm_run_info r;
    if (cllm_run_describe(dir, &r) == CLLM_OK) {
        print_header();
        print_row(dir, &r);
        return 0;
    }
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "cllm runs: %s: no such folder\n", dir);
        return 2;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **grown = realloc(names, cap * sizeof *names);
            if (!grown) break;
            names = grown;
        }
        names[n] = strdup(e->d_name);
        if (names[n]) n++;
    }
    closedir(d);
    qsort(names, n, sizeof *names, by_name);
    int shown = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(dir) + strlen(names[i]) + 2;
        char *path = malloc(len);
        if (path) snprintf(path, len, "%s/%s", dir, names[i]);
        if (path && is_dir(path) && cllm_run_describe(path, &r) == CLLM_OK) {
            if (!shown++) print_header();
            print_row(names[i], &r);
        }
        free(path);
        free(names[i]);
    }
    free(names);
    if (!shown) printf("no run folders in %s\n", dir);
    return 0;
}

int cllm_cmd_runs(int argc, char **argv) {
    const cllm_command_spec spec = {
        "runs", "[DIR]",
        "Lists the run folders in DIR (default runs/), or the run DIR itself, one line each: the state\n"
        "(running: a cllm train holds its lock; stopped: a checkpoint before the end of the budget,\n"
        "cllm train --resume continues it; complete; broken: no checkpoint or a damaged file, with the\n"
        "reason), the step of the checkpoint out of the budget, the last training and validation loss,\n"
        "the tokens trained and the training time (evaluation not counted). Reads only: safe on a\n"
        "folder being trained.",
        NULL, 0, 0, 1};
    char *pos[argc > 0 ? argc : 1];
    int npos = 0;
    int rc = cllm_flags_exit_code(cllm_flags_parse(&spec, argc, argv, pos, &npos));
    if (rc >= 0) return rc;
    const char *dir = npos ? pos[0] : "runs";
    if (!is_dir(dir)) {
        fprintf(stderr, "cllm runs: %s: no such folder%s\n", dir, npos ? "" : " (no run yet here? give DIR)");
        return 2;
    }
    return list_runs(dir);
}
