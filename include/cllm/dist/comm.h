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
 * Today there is one implementation, a single process (rank 0 of 1), for
 * which every exchange is local; an MPI implementation (issue 12) provides
 * the same table. */
#ifndef CLLM_DIST_COMM_H
#define CLLM_DIST_COMM_H

#include <stddef.h>

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
    void *impl;
};

/* The single-process implementation: rank 0 of 1, every exchange local. */
const cllm_comm *cllm_comm_single(void);

#endif
