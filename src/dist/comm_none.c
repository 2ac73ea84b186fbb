/* include/cllm/dist/comm_mpi.h for a build without MPI (CLLM_MPI=OFF, or
 * AUTO where CMake found none). */
#include "cllm/dist/comm_mpi.h"

#include <stdio.h>

int cllm_mpi_built(void) { return 0; }

void cllm_mpi_library(char *buf, size_t n) { snprintf(buf, n, "not built with MPI"); }

cllm_status cllm_mpi_start(int launcher_ranks, const cllm_comm **out) {
    *out = cllm_comm_single();
    if (launcher_ranks > 1)
        return cllm_fail(CLLM_ERR_INPUT, "started by mpirun as one of %d ranks, but this cllm was built without MPI "
                         "(install libopenmpi-dev and rebuild; cllm info shows the build)", launcher_ranks);
    return CLLM_OK;
}

void cllm_mpi_finish(void) {}

void cllm_mpi_abort(int code) { (void)code; }
