/* The data-parallel engine: knows nothing of GPT-2.
 *
 * A step is M micro-batches. Workers (one per team, see
 * cllm_engine_config.teams) in one OpenMP parallel region pull
 * micro-batch indices with schedule(runtime) and compute each into a gradient
 * buffer no other thread writes meanwhile. Gradients are combined along a fixed
 * pairwise tree over micro-batch *indices* (so the float summation order never
 * depends on the thread count or schedule: results are bitwise identical), as
 * OpenMP tasks streamed while stragglers still compute. The flat parameter
 * vector is split into 64-byte-aligned segments, each owned by one thread,
 * which alone folds the last contributions to it and applies the update rule
 * to it. Atomics appear only at segment/buffer hand-over, never on data.
 *
 * Nothing here is process-global, so a later MPI layer can extend segment
 * ownership across ranks behind the same interface. */
#ifndef CLLM_DIST_ENGINE_H
#define CLLM_DIST_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "cllm/base/common.h"
#include "cllm/dist/comm.h"
#include "cllm/kernels/kernels.h"

typedef struct {
    void *ctx;
    /* Computes micro-batch number `index` (0..M-1 of this step) on worker `thread`,
     * accumulating (+=) its gradient into `grad` (n_params floats, zeroed by
     * the engine), or, with cllm_engine_config.compute_overwrites, writing
     * every one of its n_params floats (grad then holds the previous step's
     * leftovers on entry). Stores the micro-batch's loss in *loss (for
     * reporting only). Must use only per-thread scratch indexed by `thread`
     * (the worker: 0..teams-1; its team's threads share that scratch, each
     * layer splitting its work between them, see include/cllm/nn/team.h).
     * A status other than CLLM_OK (with its message set by cllm_fail on the
     * worker's thread) fails the step: no update is applied, and
     * cllm_engine_step returns that status and message, the first failure
     * by time if several workers fail. */
    cllm_status (*compute)(void *ctx, int index, int thread, float *grad, float *loss);
    /* Optional. Given the squared L2 norm of the step's full gradient, returns
     * the factor every gradient element is multiplied by before the update
     * (global-norm clipping). NULL: no norm is computed and the fused
     * sum+update path is used. */
    float (*grad_scale)(void *ctx, double grad_norm2);
    /* Applies the update rule to segment `segment`, parameters [begin, end)
     * (cllm_engine_segment gives every segment's range up front, so the job
     * can prepare per-segment work once): the gradient there is
     * grad_scale * (srcs[0][i] + ... + srcs[k-1][i]), summed in that order.
     * Called by the segment's owner only, once per segment per step. */
    void (*update)(void *ctx, int segment, size_t begin, size_t end, const float *const *srcs, int k,
                   float grad_scale);
    /* Optional: the n_params parameters `update` writes, handed to the
     * communication seam once updated (other ranks' spans arrive there). */
    float *params;
} cllm_engine_job;

typedef struct {
    size_t n_params;
    int n_micro;             /* micro-batches per optimizer step (M) */
    int segments_per_thread; /* >= 1; default 1 */
    int streaming;           /* 1: reduce with tasks while others compute; 0: reduce after all compute */
    int window;              /* extra gradient buffers beyond the thread count; 0: default */
    /* 1: the job's compute writes every element of its gradient buffer, so
     * the engine does not zero it first (saves a pass over n_params floats per
     * micro-batch). 0 (default): the buffer is zeroed and compute may add. */
    int compute_overwrites;
    /* Where the step's exchanges with other ranks go (norm, loss,
     * parameters); NULL: cllm_comm_single(), this process alone. */
    const cllm_comm *comm;
    /* The reduction kernels (sum, sum_sq, sum_adamw) the engine runs;
     * NULL: cllm_kernel_table_best(). */
    const cllm_kernel_table *kernels;
    /* The team shape: `teams` workers (0: omp_get_max_threads()), each
     * leading a team of `team_threads` threads (0 or 1: alone) that computes
     * its micro-batch together (nested OpenMP: each worker sets its inner
     * thread count, and the engine raises the runtime's active levels to 2
     * when teams have more than one thread). Gradient buffers number teams
     * + window; segments teams x team_threads x segments_per_thread, a
     * worker's team sharing its merges and its owned segments' update.
     * The results are the same bits for any shape. */
    int teams, team_threads;
} cllm_engine_config;

typedef struct {
    int threads;
    double wall;               /* seconds for the whole step */
    double compute_min, compute_median, compute_max; /* per-worker busy compute seconds */
    double reduce;             /* seconds of reduction work, summed over threads */
    /* After the last micro-batch's compute: the reduction still to do (the
     * last merges and, with clipping, the norm), then the optimizer update. */
    double exposed_reduction;  /* last compute end -> gradient reduced, seconds */
    double exposed_share;      /* exposed_reduction / wall */
    double exposed_update;     /* gradient reduced -> update done, seconds */
    double update_share;       /* exposed_update / wall */
    int folded_nodes;          /* non-root nodes folded by the owners, not merged by tasks */
    double utilisation;        /* busy (compute + reduce + update) / (threads * wall) */
    int64_t atomics;           /* atomic operations this step (hand-over only, never on data) */
    int64_t atomics_extra;     /* of which lost races and helping while starved; 0 when no worker waited */
    int64_t waits;             /* polls by workers waiting for a buffer or for the index window */
    double reduce_merge;       /* of `reduce`: tree merges (tasks and helping workers) */
    double buffer_zero;        /* seconds zeroing gradient buffers, summed over threads */
    double grad_norm;          /* sqrt of the gradient norm2 (0 if not computed) */
    double loss;               /* mean of the micro-batch losses, in index order */
    /* With several ranks (0 with one): rank_wait, the seconds this rank
     * waited for the others to finish computing (the agreement that every
     * compute succeeded: load imbalance and skew, not transfers), and comm,
     * the seconds of exchanges after it that nothing hid (gradient spans not
     * hidden by the fold, norm, parameters, loss); each also as a share of
     * the step. */
    double rank_wait, rank_wait_share;
    double comm, comm_share;
    uint64_t comm_bytes;       /* bytes this rank sent to the others this step (comm->bytes_sent) */
} cllm_engine_stats;

typedef struct cllm_engine cllm_engine;

/* Allocates all buffers once (threads from omp_get_max_threads()). With a
 * comm of R > 1 ranks, fails (CLLM_ERR_INPUT) when R exceeds n_micro. */
cllm_status cllm_engine_create(const cllm_engine_config *cfg, cllm_engine **out);
void cllm_engine_free(cllm_engine *e);

/* The gradient buffers an engine of `workers` (teams) with this window
 * holds for n_micro micro-batches: workers + window (default: 2 + the
 * tree's depth), at least what progress needs, at most n_micro. */
int cllm_engine_pool_buffers(int n_micro, int workers, int window);
/* The parameters this rank updates, [*begin, *end) (the whole vector with
 * one rank): where it holds optimizer state. */
void cllm_engine_owned(const cllm_engine *e, size_t *begin, size_t *end);
/* This rank's micro-batches of a step: global indices [first, first + n). */
void cllm_engine_block(const cllm_engine *e, int *first_micro, int *n_micro);

/* Bytes of gradient buffers the engine holds, for the start-up report. */
size_t cllm_engine_buffer_bytes(const cllm_engine *e);
int cllm_engine_threads(const cllm_engine *e);
/* Threads in each worker's team (1: flat). */
int cllm_engine_team_threads(const cllm_engine *e);

/* One optimizer step: computes all micro-batches, reduces, updates. */
cllm_status cllm_engine_step(cllm_engine *e, const cllm_engine_job *job, cllm_engine_stats *stats);

/* Gradient buffers in the pool (each n_params floats) and the number of
 * segments (threads x segments_per_thread). */
int cllm_engine_buffers(const cllm_engine *e);
int cllm_engine_segments(const cllm_engine *e);
/* The range [*begin, *end) of segment s (0 <= s < cllm_engine_segments), fixed for the engine's life. */
void cllm_engine_segment(const cllm_engine *e, int s, size_t *begin, size_t *end);

/* The hand-over atomics of a step when no worker had to wait (docs/ENGINE.md):
 * 4M - 2 + (M - 2)(3S + 1) for M >= 2 micro-batches and S segments, 2 for
 * M = 1. Independent of n_params. */
int64_t cllm_engine_atomics_formula(int n_micro, int segments);

/* The same when `folded_nodes` (stats.folded_nodes) of the tree's nodes were
 * left to the owners' fold, each saving 3S + 2 atomics: once every
 * micro-batch is computed, merges are no longer hidden behind compute, and
 * the owners fold them in one pass. */
int64_t cllm_engine_atomics_expected(int n_micro, int segments, int folded_nodes);

/* Trace of the last step, for tests and diagnostics. Times are seconds since
 * the step began. Internal nodes of the tree are listed children first, the
 * root last; the root is never merged (its owners fold it into the update),
 * so its done_at is the end of the update. A node the owners folded has
 * done_at = the moment the gradient was reduced. */
typedef struct {
    int lo, mid, hi;     /* node (lo, hi) = node (lo, mid) + node (mid, hi) */
    double ready_at;     /* both children complete */
    double done_at;      /* merge complete, right child's buffer released */
} cllm_engine_node_trace;

int cllm_engine_trace_nodes(const cllm_engine *e, const cllm_engine_node_trace **nodes);
/* compute_end[i]: when micro-batch i finished computing (n_micro entries). */
const double *cllm_engine_trace_compute_end(const cllm_engine *e);

#endif
