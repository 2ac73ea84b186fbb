/* The MPI communication seam: ranks of one job started by mpirun.
 *
 * Built only when CMake found MPI (-DCLLM_MPI=AUTO|ON|OFF); a build without
 * it has the same functions, reporting that MPI is absent. MPI is started
 * with MPI_THREAD_FUNNELED and called only from the thread that started it
 * (the engine's collectives run on the OpenMP primary thread, outside or
 * between parallel regions). No transport does arithmetic: every operation
 * of the table moves data, and the receiver adds in a fixed order. */
#ifndef CLLM_DIST_COMM_MPI_H
#define CLLM_DIST_COMM_MPI_H

#include <stddef.h>

#include "cllm/base/common.h"
#include "cllm/dist/comm.h"

/* Whether this build links MPI. */
int cllm_mpi_built(void);

/* The MPI library's own description (MPI_Get_library_version, first line)
 * and the standard version it implements; "not built with MPI" otherwise. */
void cllm_mpi_library(char *buf, size_t n);

/* launcher_ranks: the job size the launcher announced (mpirun's
 * environment, read by the CLI), 0 when the process was started alone.
 * Started alone: *out is the single-process table and MPI is not touched.
 * Under a launcher: MPI_Init_thread(FUNNELED) and the MPI table (size and
 * rank from MPI_COMM_WORLD). A build without MPI under a launcher of more
 * than one rank is an input error: the ranks would train alone, each. */
cllm_status cllm_mpi_start(int launcher_ranks, const cllm_comm **out);

/* MPI_Finalize, when cllm_mpi_start initialised MPI. */
void cllm_mpi_finish(void);

/* Ends the whole job (MPI_Abort) when MPI runs with more than one rank: a
 * rank that fails where the others cannot know must not leave them waiting
 * in a collective. Returns (doing nothing) otherwise. */
void cllm_mpi_abort(int code);

#endif
