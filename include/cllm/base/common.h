/* Status codes and error messages shared by every part of cllm.
 *
 * Library functions return a cllm_status and leave a one-line message in a
 * thread-local buffer; the CLI prints that message and exits with the status
 * (2 for bad input, 1 for internal failure). Nothing in the library aborts on
 * user input. */
#ifndef CLLM_BASE_COMMON_H
#define CLLM_BASE_COMMON_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    CLLM_OK = 0,
    CLLM_ERR_INTERNAL = 1, /* our fault or the system's: out of memory, I/O failure */
    CLLM_ERR_INPUT = 2,    /* the user's input is wrong: bad flag, corrupt file, ... */
    /* A stop request (SIGINT, SIGTERM, SIGHUP) cut the work short; nothing was
     * left half-written. The value is the exit status, as a shell reports Ctrl-C. */
    CLLM_ERR_INTERRUPTED = 130
} cllm_status;

/* Records a printf-style message for the calling thread and returns `status`,
 * so that `return cllm_fail(CLLM_ERR_INPUT, "...")` reads naturally. */
cllm_status cllm_fail(cllm_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The last message recorded by cllm_fail on this thread ("" if none). */
const char *cllm_last_error(void);

/* A programmer's invariant, never a check of user input (that is a status):
 * when it does not hold, the program is wrong, so it says where and aborts. */
#define CLLM_ASSERT(cond) ((cond) ? (void)0 : cllm_assert_failed(#cond, __FILE__, __LINE__))
_Noreturn void cllm_assert_failed(const char *cond, const char *file, int line);

/* Aligned allocation helpers (64-byte lines: no false sharing, aligned SIMD). */
#define CLLM_ALIGN 64
void *cllm_alloc(size_t bytes);      /* zeroed, 64-byte aligned; NULL on failure (message set) */
void cllm_free(void *p);

/* Wall-clock seconds from a monotonic clock. */
double cllm_now(void);

/* "dir/name" in a malloc'd string (no doubled slash when dir ends in one); NULL on OOM. */
char *cllm_path_join(const char *dir, const char *name);

/* FNV-1a 64 of n bytes, continuing from h (start with CLLM_FNV1A64_OFFSET): a
 * cheap fingerprint for checksums and "did this change" checks, not security. */
#define CLLM_FNV1A64_OFFSET 0xcbf29ce484222325ULL
uint64_t cllm_fnv1a64(const void *data, size_t n, uint64_t h);

/* Median of v[0..n), n > 0; sorts v in place (so v[0] and v[n-1] are then the extremes). */
double cllm_median(double *v, int n);

/* Index of the first NaN or infinity in x[0..n), or n when all are finite. */
size_t cllm_first_non_finite(const float *x, size_t n);



/* Crash-safe file writing: data goes to a temporary file in the same folder,
 * which is fsynced and renamed over the target, then the folder is fsynced.
 * The previous file stays intact until the new one is complete. */
#include <stdio.h>
typedef struct {
    FILE *f;
    char *tmp_path;
    char *final_path;
} cllm_atomic_file;

cllm_status cllm_atomic_open(cllm_atomic_file *af, const char *path);
/* fflush + fsync + close + rename + fsync(folder). On failure the target is untouched. */
cllm_status cllm_atomic_commit(cllm_atomic_file *af);
/* Closes and removes the temporary file; the target is untouched. */
void cllm_atomic_abort(cllm_atomic_file *af);
cllm_status cllm_write_file_atomic(const char *path, const void *data, size_t n);

/* Stop requests. cllm_stop_catch() makes SIGINT, SIGTERM and SIGHUP set a
 * flag (to the signal's number) instead of killing the process, so that long
 * work can notice it, finish or abandon what it is doing without leaving a
 * half-written file, and return CLLM_ERR_INTERRUPTED. A SIGHUP that was
 * ignored when the process started (nohup) stays ignored.
 *
 * abandon_writes != 0 also makes cllm_atomic_commit refuse to commit once a
 * stop was requested (the temporary is removed, the target left untouched):
 * for commands whose only product is the file. 0 lets a save that has begun
 * finish (the trainer's checkpoints). cllm_stop_release() puts back the
 * dispositions found by cllm_stop_catch(). */
#include <signal.h>
typedef volatile sig_atomic_t cllm_stop_flag;
void cllm_stop_catch(int abandon_writes);
void cllm_stop_release(void);
/* The process's flag (0: no request; else the signal number), for code that
 * polls it; the data layer takes it as a parameter rather than knowing it. */
const cllm_stop_flag *cllm_stop_flag_ptr(void);
int cllm_stop_signal(void);
/* "SIGINT", "SIGTERM", "SIGHUP", else "a signal". */
const char *cllm_signal_name(int sig);
/* For code handed a flag that may be NULL (no cancellation). */
static inline int cllm_stop_requested(const cllm_stop_flag *stop) { return stop && *stop != 0; }
#endif
