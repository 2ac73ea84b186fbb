/* What a run folder holds, in a few figures: what `cllm runs` lists. Read
 * only: no lock is taken, nothing is written, so it is safe on a folder
 * being trained. */
#ifndef CLLM_TRAIN_RUNS_H
#define CLLM_TRAIN_RUNS_H

#include <stdint.h>

#include "cllm/base/common.h"

typedef enum {
    CLLM_RUN_RUNNING,  /* a cllm train holds the folder's lock now */
    CLLM_RUN_STOPPED,  /* a checkpoint before the end of the budget: --resume continues it */
    CLLM_RUN_COMPLETE, /* the checkpoint is at the end of the budget */
    CLLM_RUN_BROKEN    /* no checkpoint, or a file that cannot be read: `why` says */
} cllm_run_state;

typedef struct {
    cllm_run_state state;
    int64_t step;    /* of the committed checkpoint (else the last logged step); -1: none */
    int64_t total;   /* the budget in steps; -1: not known (an --epochs run written before run.json said) */
    double loss;     /* the last logged training loss; NAN: none */
    double val_loss; /* the last logged validation loss; NAN: none */
    int64_t tokens;  /* trained, at the last logged step */
    double seconds;  /* training time: the logged steps' tokens over their tokens/s (evaluation not counted) */
    char why[200];   /* broken: what is wrong */
} cllm_run_info;

/* CLLM_ERR_INPUT when DIR has no run.json (not a run folder: a lister
 * skips it); otherwise CLLM_OK, with a broken state for damaged folders. */
cllm_status cllm_run_describe(const char *dir, cllm_run_info *info);

/* "running", "stopped", "complete", "broken". */
const char *cllm_run_state_name(cllm_run_state s);

#endif
