/* The communication seam between processes (ranks).
 *
 * The engine reaches other ranks only through these operations, at the
 * points of a step where data-parallel training across processes must
 * exchange: the gradient norm for clipping (from fixed per-chunk partials,
 * so that it is the same for any split), the step's loss (from per-micro-
 * batch losses, in micro-batch order), and the parameters once each owner
 * has updated its spans. None of them does floating-point arithmetic in a
 * transport: partials move, and their owner adds them in a fixed order, so
 * results stay bitwise independent of the number of ranks.
 *
 * Two implementations: a single process (rank 0 of 1), for which every
 * exchange is local, and MPI (comm_mpi.h, when the build found MPI and the
 * process was started by mpirun). Every operation is collective: all ranks
 * call it, in the same order, from the thread that initialised MPI. */
#ifndef CLLM_DIST_COMM_H
#define CLLM_DIST_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "cllm/base/common.h"

typedef struct cllm_comm cllm_comm;

struct cllm_comm {
    int rank, size;
    /* The squared norm of the whole gradient: chunk_sq[c] for the chunks
     * c in [0, n_chunks) of the flat vector that this rank holds reduced,
     * all ranks' chunks added in global chunk order. Same value on every rank. */
    double (*norm2)(const cllm_comm *c, const double *chunk_sq, size_t n_chunks);
    /* The step's mean loss from this rank's micro-batch losses (n of them,
     * in index order), all ranks' losses added in global index order. */
    double (*mean_loss)(const cllm_comm *c, const float *losses, int n);
    /* Called once the owners have updated their spans: afterwards every
     * rank holds all n parameters (an all-gather of owned spans). */
    cllm_status (*params_updated)(const cllm_comm *c, float *params, size_t n);
    /* The reduce-scatter as pure data movement, in parts so that a span can
     * leave as soon as it is reduced: span q (cllm_comm_span) of this rank's
     * `partial` (n floats) goes to rank q, and `recv` receives every rank's
     * piece of this rank's span, rank after rank (size x span length
     * floats); the owner adds them itself, in tree order.
     * exchange_begin posts the receipts; exchange_send sends span q, once
     * for each q (this rank's own: copied into recv), without waiting;
     * exchange_poll lets transfers progress between other work;
     * exchange_end returns once every piece has arrived and every send has
     * left. Called in that order by every rank. */
    cllm_status (*exchange_begin)(const cllm_comm *c, size_t n, float *recv);
    cllm_status (*exchange_send)(const cllm_comm *c, const float *partial, size_t n, int q, float *recv);
    void (*exchange_poll)(const cllm_comm *c);
    cllm_status (*exchange_end)(const cllm_comm *c);
    /* Rank 0's `full` (n floats) receives every rank's span; `own` is this
     * rank's span (its length from cllm_comm_span). Other ranks' `full` is
     * not touched (may be NULL). */
    cllm_status (*gather)(const cllm_comm *c, const float *own, size_t n, float *full);
    /* The lowest rank whose flag is non-zero, or -1 when none is: the same
     * answer on every rank (flags are exchanged, not reduced). How ranks
     * agree to stop together (a signal, a failure on one rank). */
    int (*first_flagged)(const cllm_comm *c, int flag);
    /* Payload bytes this rank has handed over for other ranks so far, each
     * destination counted once (what a direct exchange moves; an MPI
     * library's algorithm may forward more). Local: not a collective. */
    uint64_t (*bytes_sent)(const cllm_comm *c);
    void *impl;
};

/* The span of the flat n-float vector that `rank` owns (updates, holds the
 * AdamW moments of): [*begin, *end), boundaries on multiples of
 * CLLM_SEGMENT_GRAIN, so the per-chunk squares of the norm never straddle
 * two ranks. One rank owns everything. */
void cllm_comm_span(const cllm_comm *c, size_t n, int rank, size_t *begin, size_t *end);

/* The single-process implementation: rank 0 of 1, every exchange local. */
const cllm_comm *cllm_comm_single(void);

#endif
