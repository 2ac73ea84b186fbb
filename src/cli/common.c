#include "cllm/common.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static _Thread_local char last_error[512];

cllm_status cllm_fail(cllm_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return status;
}

const char *cllm_last_error(void) { return last_error; }

void *cllm_alloc(size_t bytes) {
    /* Round up: aligned_alloc requires a multiple of the alignment. */
    size_t rounded = (bytes + CLLM_ALIGN - 1) / CLLM_ALIGN * CLLM_ALIGN;
    if (rounded == 0) rounded = CLLM_ALIGN;
    void *p = aligned_alloc(CLLM_ALIGN, rounded);
    if (!p) {
        cllm_fail(CLLM_ERR_INTERNAL, "out of memory allocating %zu bytes", bytes);
        return NULL;
    }
    memset(p, 0, rounded);
    return p;
}

void cllm_free(void *p) { free(p); }

double cllm_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
