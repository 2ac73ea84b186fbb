/* The process's place in an MPI job, for the commands: started once by
 * main (MPI only when mpirun launched this process), finished at exit. */
#ifndef CLLM_CLI_RANKS_H
#define CLLM_CLI_RANKS_H

#include "cllm/base/common.h"
#include "cllm/dist/comm.h"

/* Starts MPI when a launcher started this process (cllm_env_launcher_ranks). */
cllm_status cllm_ranks_start(void);

/* The job's communication seam: MPI's after cllm_ranks_start under mpirun,
 * else the single process's. */
const cllm_comm *cllm_ranks_comm(void);

/* Ends MPI with the command's exit status rc: with several ranks, a status
 * other than 0 or 130 (an error the other ranks may not share) ends the
 * whole job (MPI_Abort), so no rank is left waiting for this one. */
void cllm_ranks_finish(int rc);

/* The command's failure is every rank's own (they agreed on it): the job
 * ends with its status on every rank, without MPI_Abort. */
void cllm_ranks_agreed_failure(void);

/* "rank K: " with several ranks, "" with one: the prefix of a message on
 * stderr, so that an error names the rank it happened on. */
const char *cllm_ranks_prefix(void);

#endif
