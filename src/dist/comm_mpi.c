/* The MPI communication seam (include/cllm/dist/comm_mpi.h). Compiled only
 * when CMake found MPI; the only file of cllm that includes mpi.h. */
#include "cllm/dist/comm_mpi.h"

#include <limits.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    MPI_Comm world;
    int *counts, *displs;       /* per rank, rebuilt by each call that needs them */
    int *rcounts, *rdispls;
    void *scratch;              /* gathered chunk squares or losses */
    size_t scratch_bytes;
    uint64_t sent; /* bytes_sent */
    MPI_Request *reqs;          /* the exchange in flight: receipts, then sends */
    MPI_Status *statuses;       /* theirs (MPICH's MPI_STATUSES_IGNORE trips gcc's access checks) */
    int n_reqs;
    float *recv;
    size_t n;
} mpi_state;

enum { TAG_SPAN = 12 };

static mpi_state state;
static cllm_comm mpi_comm;
static int started, have_world;

static cllm_status mpi_failed(const cllm_comm *c, const char *call, int code) {
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(code, text, &len) != MPI_SUCCESS) snprintf(text, sizeof text, "error %d", code);
    (void)c; /* the CLI names the rank */
    return cllm_fail(CLLM_ERR_INTERNAL, "%s failed: %s", call, text);
}

static void *scratch(size_t bytes) {
    if (bytes <= state.scratch_bytes) return state.scratch;
    void *p = realloc(state.scratch, bytes);
    if (!p) return NULL;
    state.scratch = p;
    state.scratch_bytes = bytes;
    return p;
}

/* counts/displs: every rank's span of the n-float vector. */
static cllm_status span_layout(const cllm_comm *c, size_t n) {
    if (n > INT_MAX) return cllm_fail(CLLM_ERR_INPUT, "%zu parameters: MPI counts are ints (at most %d)", n, INT_MAX);
    for (int r = 0; r < c->size; r++) {
        size_t b, e;
        cllm_comm_span(c, n, r, &b, &e);
        state.counts[r] = (int)(e - b);
        state.displs[r] = (int)b;
    }
    return CLLM_OK;
}

/* Every rank's `n` items, gathered in rank order into scratch; *total set. */
static void *allgather_items(const cllm_comm *c, const void *mine, int n, MPI_Datatype type, size_t size,
                             int *total) {
    *total = 0;
    if (MPI_Allgather(&n, 1, MPI_INT, state.rcounts, 1, MPI_INT, state.world) != MPI_SUCCESS) return NULL;
    state.sent += (uint64_t)(c->size - 1) * (sizeof(int) + (uint64_t)n * size);
    for (int r = 0; r < c->size; r++) {
        state.rdispls[r] = *total;
        *total += state.rcounts[r];
    }
    void *all = scratch((size_t)(*total > 0 ? *total : 1) * size);
    if (!all) return NULL;
    if (MPI_Allgatherv(mine, n, type, all, state.rcounts, state.rdispls, type, state.world) != MPI_SUCCESS) return NULL;
    return all;
}

/* A failed exchange gives NaN: the step is then refused as diverged on
 * every rank that got this far (a dead rank ends the job through mpirun). */
static double mpi_norm2(const cllm_comm *c, const double *chunk_sq, size_t n_chunks) {
    int total;
    const double *all = allgather_items(c, chunk_sq, (int)n_chunks, MPI_DOUBLE, sizeof(double), &total);
    if (!all) return NAN;
    double norm2 = 0.0;
    for (int i = 0; i < total; i++) norm2 += all[i]; /* global chunk order, as one process adds them */
    return norm2;
}

static double mpi_mean_loss(const cllm_comm *c, const float *losses, int n) {
    int total;
    const float *all = allgather_items(c, losses, n, MPI_FLOAT, sizeof(float), &total);
    if (!all) return NAN;
    double sum = 0.0;
    for (int i = 0; i < total; i++) sum += all[i]; /* global micro-batch order */
    return total > 0 ? sum / total : 0.0;
}

static cllm_status mpi_params_updated(const cllm_comm *c, float *params, size_t n) {
    cllm_status st = span_layout(c, n);
    if (st != CLLM_OK) return st;
    int rc = MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, params, state.counts, state.displs, MPI_FLOAT,
                            state.world);
    state.sent += (uint64_t)(c->size - 1) * (uint64_t)state.counts[c->rank] * sizeof(float);
    return rc == MPI_SUCCESS ? CLLM_OK : mpi_failed(c, "MPI_Allgatherv (parameters)", rc);
}

static cllm_status mpi_exchange_begin(const cllm_comm *c, size_t n, float *recv) {
    cllm_status st = span_layout(c, n);
    if (st != CLLM_OK) return st;
    state.recv = recv;
    state.n = n;
    state.n_reqs = 0;
    int own = state.counts[c->rank];
    for (int r = 0; r < c->size; r++) {
        if (r == c->rank) continue;
        int rc = MPI_Irecv(recv + (size_t)r * (size_t)own, own, MPI_FLOAT, r, TAG_SPAN, state.world,
                           &state.reqs[state.n_reqs++]);
        if (rc != MPI_SUCCESS) return mpi_failed(c, "MPI_Irecv (gradient span)", rc);
    }
    return CLLM_OK;
}

static cllm_status mpi_exchange_send(const cllm_comm *c, const float *partial, size_t n, int q, float *recv) {
    CLLM_ASSERT(n == state.n && recv == state.recv && q >= 0 && q < c->size);
    const float *span = partial + state.displs[q];
    if (q == c->rank) {
        memcpy(recv + (size_t)q * (size_t)state.counts[q], span, (size_t)state.counts[q] * sizeof(float));
        return CLLM_OK;
    }
    state.sent += (uint64_t)state.counts[q] * sizeof(float);
    int rc = MPI_Isend(span, state.counts[q], MPI_FLOAT, q, TAG_SPAN, state.world, &state.reqs[state.n_reqs++]);
    return rc == MPI_SUCCESS ? CLLM_OK : mpi_failed(c, "MPI_Isend (gradient span)", rc);
}

/* MPI progresses transfers only inside its calls: a test now and then keeps
 * them moving while this thread does its share of the fold. */
static void mpi_exchange_poll(const cllm_comm *c) {
    (void)c;
    int done = 0;
    MPI_Testall(state.n_reqs, state.reqs, &done, state.statuses);
}

static cllm_status mpi_exchange_end(const cllm_comm *c) {
    int rc = MPI_Waitall(state.n_reqs, state.reqs, state.statuses);
    state.n_reqs = 0;
    return rc == MPI_SUCCESS ? CLLM_OK : mpi_failed(c, "MPI_Waitall (gradient spans)", rc);
}

static cllm_status mpi_gather(const cllm_comm *c, const float *own, size_t n, float *full) {
    cllm_status st = span_layout(c, n);
    if (st != CLLM_OK) return st;
    if (c->rank != 0) state.sent += (uint64_t)state.counts[c->rank] * sizeof(float);
    int rc = MPI_Gatherv(own, state.counts[c->rank], MPI_FLOAT, full, state.counts, state.displs, MPI_FLOAT, 0,
                         state.world);
    return rc == MPI_SUCCESS ? CLLM_OK : mpi_failed(c, "MPI_Gatherv (optimizer state)", rc);
}

static int mpi_first_flagged(const cllm_comm *c, int flag) {
    int f = flag != 0;
    state.sent += (uint64_t)(c->size - 1) * sizeof f;
    if (MPI_Allgather(&f, 1, MPI_INT, state.rcounts, 1, MPI_INT, state.world) != MPI_SUCCESS)
        return c->rank; /* cannot agree: this rank stops, naming itself */
    for (int r = 0; r < c->size; r++)
        if (state.rcounts[r]) return r;
    return -1;
}

static uint64_t mpi_bytes_sent(const cllm_comm *c) {
    (void)c;
    return state.sent;
}

int cllm_mpi_built(void) { return 1; }

void cllm_mpi_library(char *buf, size_t n) {
    char lib[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0, version = 0, subversion = 0;
    MPI_Get_library_version(lib, &len);
    MPI_Get_version(&version, &subversion);
    lib[strcspn(lib, "\n,")] = '\0'; /* Open MPI adds build details after a comma, MPICH lines */
    for (char *p = lib; *p; p++)
        if (*p == '\t') *p = ' '; /* MPICH: "MPICH Version:<tab>4.0.2" */
    snprintf(buf, n, "%s (MPI %d.%d)", lib, version, subversion);
}

cllm_status cllm_mpi_start(int launcher_ranks, const cllm_comm **out) {
    *out = cllm_comm_single();
    if (launcher_ranks <= 0) return CLLM_OK;
    int provided = 0;
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return cllm_fail(CLLM_ERR_INTERNAL, "MPI_Init_thread failed");
    started = 1;
    if (provided < MPI_THREAD_FUNNELED)
        return cllm_fail(CLLM_ERR_INTERNAL, "the MPI library offers no MPI_THREAD_FUNNELED (it gave level %d)",
                         provided);
    MPI_Comm_dup(MPI_COMM_WORLD, &state.world);
    have_world = 1;
    MPI_Comm_set_errhandler(state.world, MPI_ERRORS_RETURN);
    int rank = 0, size = 1;
    MPI_Comm_rank(state.world, &rank);
    MPI_Comm_size(state.world, &size);
    state.counts = calloc((size_t)size, sizeof(int));
    state.displs = calloc((size_t)size, sizeof(int));
    state.rcounts = calloc((size_t)size, sizeof(int));
    state.rdispls = calloc((size_t)size, sizeof(int));
    state.reqs = calloc(2 * (size_t)size, sizeof(MPI_Request));
    state.statuses = calloc(2 * (size_t)size, sizeof(MPI_Status));
    if (!state.counts || !state.displs || !state.rcounts || !state.rdispls || !state.reqs || !state.statuses)
        return cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
    mpi_comm = (cllm_comm){rank,
                           size,
                           mpi_norm2,
                           mpi_mean_loss,
                           mpi_params_updated,
                           mpi_exchange_begin,
                           mpi_exchange_send,
                           mpi_exchange_poll,
                           mpi_exchange_end,
                           mpi_gather,
                           mpi_first_flagged,
                           mpi_bytes_sent,
                           &state};
    *out = &mpi_comm;
    return CLLM_OK;
}

void cllm_mpi_finish(void) {
    if (!started) return;
    started = 0;
    if (have_world) MPI_Comm_free(&state.world);
    have_world = 0;
    MPI_Finalize();
    free(state.counts);
    free(state.displs);
    free(state.rcounts);
    free(state.rdispls);
    free(state.reqs);
    free(state.statuses);
    free(state.scratch);
    memset(&state, 0, sizeof state);
}

void cllm_mpi_abort(int code) {
    if (started && mpi_comm.size > 1) MPI_Abort(MPI_COMM_WORLD, code);
}
