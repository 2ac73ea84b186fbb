/* The portable FMA peak probe (kernels/probe_internal.h). */
#include "../probe_internal.h"

/* The portable path: whatever the compiler makes of independent chains for
 * the baseline ISA (SSE2 mul + add on x86-64 without -mfma). */
float cllm_fma_probe_portable(long iters) {
    float acc[CLLM_PROBE_PORTABLE_CHAINS];
    for (int c = 0; c < CLLM_PROBE_PORTABLE_CHAINS; c++) acc[c] = (float)c;
    for (long i = 0; i < iters; i++) {
#pragma omp simd
        for (int c = 0; c < CLLM_PROBE_PORTABLE_CHAINS; c++) acc[c] = acc[c] * CLLM_PROBE_MUL + CLLM_PROBE_ADD;
    }
    float s = 0.0f;
    for (int c = 0; c < CLLM_PROBE_PORTABLE_CHAINS; c++) s += acc[c];
    return s;
}

