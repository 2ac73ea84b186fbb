/* include/cllm/cli/ranks.h */
#include "cllm/cli/ranks.h"

#include <stdio.h>

#include "cllm/cli/env.h"
#include "cllm/dist/comm_mpi.h"

static const cllm_comm *job;
static int agreed;

cllm_status cllm_ranks_start(void) { return cllm_mpi_start(cllm_env_launcher_ranks(), &job); }

const cllm_comm *cllm_ranks_comm(void) { return job ? job : cllm_comm_single(); }

void cllm_ranks_agreed_failure(void) { agreed = 1; }

void cllm_ranks_finish(int rc) {
    /* Before anything can end the process: once one rank has exited
     * non-zero (130 included), Open MPI may kill the others at any moment. */
    fflush(stdout);
    fflush(stderr);
    if (rc != 0 && rc != 130 && !agreed) cllm_mpi_abort(rc);
    cllm_mpi_finish();
}

const char *cllm_ranks_prefix(void) {
    static char buf[32];
    const cllm_comm *c = cllm_ranks_comm();
    if (c->size <= 1) return "";
    snprintf(buf, sizeof buf, "rank %d: ", c->rank);
    return buf;
}
