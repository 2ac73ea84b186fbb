/* Describing a run folder (include/cllm/train/runs.h). */
#include "cllm/train/runs.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cllm/base/json.h"
#include "cllm/train/options.h"
#include "cllm/train/runfolder.h"

const char *cllm_run_state_name(cllm_run_state s) {
    static const char *const names[] = {"running", "stopped", "complete", "broken"};
    return names[s];
}

/* The step `latest` names (checkpoint-<k>); -1 when there is none. */
static int64_t committed_step(const char *dir) {
    char *latest = cllm_path_join(dir, CLLM_RUN_LATEST), target[PATH_MAX];
    ssize_t n = latest ? readlink(latest, target, sizeof target - 1) : -1;
    free(latest);
    if (n <= 0) return -1;
    target[n] = '\0';
    long long k;
    return sscanf(target, "checkpoint-%lld", &k) == 1 ? (int64_t)k : -1;
}

static double number_or_nan(const cllm_json *v, const char *key) {
    const cllm_json *x = cllm_json_get(v, key);
    return x && x->type == CLLM_JSON_NUMBER ? x->number : NAN;
}

/* The last logged step, tokens and losses, and the training time; a line cut
 * by a kill is skipped, as `cllm plot` does. */
static void read_metrics(const char *dir, cllm_run_info *r, int64_t *last_step) {
    char *path = cllm_path_join(dir, "metrics.jsonl");
    FILE *f = path ? fopen(path, "r") : NULL;
    free(path);
    *last_step = -1;
    if (!f) return;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int64_t prev_tokens = 0;
    while ((len = getline(&line, &cap, f)) > 0) {
        cllm_json *v = NULL;
        if (cllm_json_parse(line, (size_t)len, &v) != CLLM_OK) continue;
        double step = number_or_nan(v, "step"), tokens = number_or_nan(v, "tokens");
        double loss = number_or_nan(v, "loss"), val = number_or_nan(v, "val_loss");
        double rate = number_or_nan(v, "tokens_per_s");
        if (isfinite(step) && isfinite(tokens)) {
            *last_step = (int64_t)step;
            if (isfinite(rate) && rate > 0) r->seconds += ((double)tokens - (double)prev_tokens) / rate;
            prev_tokens = (int64_t)tokens;
            r->tokens = (int64_t)tokens;
            r->loss = loss;
            if (isfinite(val)) r->val_loss = val;
        }
        cllm_json_free(v);
    }
    free(line);
    fclose(f);
}

/* The budget in steps: as the trainer wrote it, else from --steps or
 * --tokens (an --epochs budget needs the data: unknown). */
static int64_t budget_steps(const cllm_train_options *o) {
    if (o->total_steps > 0) return o->total_steps;
    if (o->steps > 0) return o->steps;
    int64_t per_step = (int64_t)o->batch * o->grad_accum * o->model.seq_len;
    if (o->tokens > 0 && per_step > 0) return (o->tokens + per_step - 1) / per_step;
    return -1;
}

cllm_status cllm_run_describe(const char *dir, cllm_run_info *r) {
    memset(r, 0, sizeof *r);
    r->step = r->total = -1;
    r->loss = r->val_loss = NAN;
    char *json = cllm_path_join(dir, "run.json");
    int has_json = json && access(json, F_OK) == 0;
    free(json);
    if (!has_json) return cllm_fail(CLLM_ERR_INPUT, "%s is not a run folder (no run.json)", dir);
    cllm_train_options o;
    uint64_t hash;
    size_t bytes;
    int64_t logged = -1;
    read_metrics(dir, r, &logged);
    int running = cllm_run_lock_held(dir);
    if (cllm_run_json_read(dir, &o, &hash, &bytes) != CLLM_OK) {
        r->state = running ? CLLM_RUN_RUNNING : CLLM_RUN_BROKEN;
        snprintf(r->why, sizeof r->why, "%s", cllm_last_error());
        return CLLM_OK;
    }
    r->total = budget_steps(&o);
    cllm_train_options_free_paths(&o);
    int has_checkpoint = cllm_run_has_checkpoint(dir);
    r->step = committed_step(dir);
    if (r->step < 0 && has_checkpoint) r->step = logged; /* the earlier layout: no `latest` */
    if (running) {
        r->state = CLLM_RUN_RUNNING;
        if (logged > r->step) r->step = logged; /* where it is, not where it last saved */
    } else if (!has_checkpoint) {
        r->state = CLLM_RUN_BROKEN;
        snprintf(r->why, sizeof r->why, "no checkpoint (stopped before its first save: cllm train --out %s "
                 "starts it again)", dir);
    } else {
        char *model = cllm_path_join(dir, "model.safetensors"); /* a link through `latest` */
        int readable = model && access(model, R_OK) == 0;
        free(model);
        if (!readable) {
            r->state = CLLM_RUN_BROKEN;
            snprintf(r->why, sizeof r->why, "model.safetensors cannot be read");
        } else {
            r->state = r->total > 0 && r->step >= r->total ? CLLM_RUN_COMPLETE : CLLM_RUN_STOPPED;
        }
    }
    return CLLM_OK;
}
