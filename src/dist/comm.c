/* The single-process communication seam (include/cllm/dist/comm.h). */
#include "cllm/dist/comm.h"

#include <string.h>

#include "cllm/dist/segments.h"

void cllm_comm_span(const cllm_comm *c, size_t n, int rank, size_t *begin, size_t *end) {
    /* cllm_segments_split's rule for one segment, without its array. */
    size_t grains = (n + CLLM_SEGMENT_GRAIN - 1) / CLLM_SEGMENT_GRAIN, size = (size_t)c->size;
    size_t b = grains * (size_t)rank / size * CLLM_SEGMENT_GRAIN;
    size_t e = grains * (size_t)(rank + 1) / size * CLLM_SEGMENT_GRAIN;
    *begin = b < n ? b : n;
    *end = e < n ? e : n;
}

static double single_norm2(const cllm_comm *c, const double *chunk_sq, size_t n_chunks) {
    (void)c;
    double norm2 = 0.0;
    for (size_t i = 0; i < n_chunks; i++) norm2 += chunk_sq[i]; /* chunk order: independent of the segmentation */
    return norm2;
}

static double single_mean_loss(const cllm_comm *c, const float *losses, int n) {
    (void)c;
    double sum = 0.0;
    for (int i = 0; i < n; i++) sum += losses[i]; /* index order: independent of the schedule */
    return n > 0 ? sum / n : 0.0;
}

static cllm_status single_params_updated(const cllm_comm *c, float *params, size_t n) {
    (void)c, (void)params, (void)n; /* one process already holds every span */
    return CLLM_OK;
}

static cllm_status single_exchange_begin(const cllm_comm *c, size_t n, float *recv) {
    (void)c, (void)n, (void)recv;
    return CLLM_OK;
}

static cllm_status single_exchange_send(const cllm_comm *c, const float *partial, size_t n, int q, float *recv) {
    (void)c;
    CLLM_ASSERT(q == 0);
    if (recv != partial) memcpy(recv, partial, n * sizeof *recv); /* its own span is the whole vector */
    return CLLM_OK;
}

static void single_exchange_poll(const cllm_comm *c) { (void)c; }

static cllm_status single_exchange_end(const cllm_comm *c) {
    (void)c;
    return CLLM_OK;
}

static cllm_status single_gather(const cllm_comm *c, const float *own, size_t n, float *full) {
    (void)c;
    if (full != own) memcpy(full, own, n * sizeof *full);
    return CLLM_OK;
}

static int single_first_flagged(const cllm_comm *c, int flag) {
    (void)c;
    return flag ? 0 : -1;
}

static uint64_t single_bytes_sent(const cllm_comm *c) {
    (void)c;
    return 0;
}

static const cllm_comm single = {0,
                                 1,
                                 single_norm2,
                                 single_mean_loss,
                                 single_params_updated,
                                 single_exchange_begin,
                                 single_exchange_send,
                                 single_exchange_poll,
                                 single_exchange_end,
                                 single_gather,
                                 single_first_flagged,
                                 single_bytes_sent,
                                 NULL};

const cllm_comm *cllm_comm_single(void) { return &single; }
