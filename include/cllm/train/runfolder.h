/* A run folder's life: one writer at a time, and a checkpoint protocol under
 * which every instant of a save leaves a complete, loadable folder.
 *
 * The protocol (docs/RELIABILITY.md has the states a crash can leave):
 *   DIR/checkpoint-<k>/{optimizer.safetensors, model.safetensors, config.json}
 *       the files of step k, each written crash-safely, the folder fsynced;
 *   DIR/latest -> checkpoint-<k>
 *       a relative symbolic link, replaced by ONE rename: the commit point;
 *   DIR/model.safetensors, config.json, optimizer.safetensors -> latest/...
 *       fixed links, so any reader of DIR/model.safetensors (transformers
 *       too) opens the committed checkpoint.
 * tokenizer.bin and run.json are plain files written before the first
 * checkpoint. Leftovers of a dead save (temporary files, checkpoint folders
 * that `latest` does not name) are removed by the next writer, which holds
 * the lock. Folders of the earlier layout (plain model.safetensors and
 * optimizer[.prev].safetensors, no `latest`) still load and resume; their
 * first save converts them. */
#ifndef CLLM_TRAIN_RUNFOLDER_H
#define CLLM_TRAIN_RUNFOLDER_H

#include <stdint.h>

#include "cllm/base/common.h"

#define CLLM_RUN_LOCK_FILE ".cllm.lock"
#define CLLM_RUN_LATEST "latest"

/* The exclusive lock of a writer, held from start-up to exit; the kernel
 * drops it when the process dies, however it dies. */
typedef struct {
    int fd; /* -1: not held */
    char *path;
} cllm_run_lock;

/* Takes DIR's lock without waiting. Held by another process: CLLM_ERR_INPUT
 * naming the folder and the holder's pid. DIR must exist. */
cllm_status cllm_run_lock_acquire(const char *dir, cllm_run_lock *lock);
/* Releases it (a no-op when not held); with remove_file, the lock file goes
 * too (for a folder about to be removed). */
void cllm_run_lock_release(cllm_run_lock *lock, int remove_file);

/* 1 when a process holds DIR's lock (a `cllm train` is writing it now);
 * the check takes no lock itself. */
int cllm_run_lock_held(const char *dir);

/* 1 when DIR holds a committed checkpoint (`latest`, or the earlier layout's
 * plain model.safetensors). */
int cllm_run_has_checkpoint(const char *dir);

/* The folder whose files form the committed checkpoint: "DIR/latest" when it
 * exists, else DIR itself (earlier layout). malloc'd; NULL on OOM. */
char *cllm_run_checkpoint_dir(const char *dir);

/* 1 when every entry of DIR is one a cllm run folder can hold (so a fresh
 * run may start there), 0 when DIR holds anything else (the user's files).
 * A missing or empty folder counts as 1. */
int cllm_run_folder_is_ours(const char *dir);

/* Removes what a dead writer left: temporary files (NAME.tmp.PID) in DIR and
 * in the committed checkpoint, `latest.tmp.*`, and checkpoint folders that
 * `latest` does not point to. Call with the lock held. */
cllm_status cllm_run_remove_leftovers(const char *dir);

/* Step 1 of a save: an empty DIR/checkpoint-<step>/ (a stale one from a
 * dead save is removed first). *ckpt_dir: malloc'd path to write into.
 * Refuses to touch the committed checkpoint's own folder. */
cllm_status cllm_run_checkpoint_begin(const char *dir, int64_t step, char **ckpt_dir);

/* Step 2: fsyncs the new folder, points `latest` at it with one rename
 * (the commit), makes sure the fixed top-level links exist, then removes the
 * earlier checkpoint folders and the earlier layout's optimizer.prev file. */
cllm_status cllm_run_checkpoint_commit(const char *dir, int64_t step);

#endif
