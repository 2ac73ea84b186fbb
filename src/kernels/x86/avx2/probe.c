/* The AVX2 FMA peak probe (kernels/probe_internal.h). */
#include <immintrin.h>

#include "../../probe_internal.h"

__attribute__((target("avx2,fma"))) float cllm_fma_probe_avx2(long iters) {
    __m256 acc[CLLM_PROBE_AVX2_CHAINS];
    const __m256 m = _mm256_set1_ps(CLLM_PROBE_MUL), a = _mm256_set1_ps(CLLM_PROBE_ADD);
    for (int c = 0; c < CLLM_PROBE_AVX2_CHAINS; c++) acc[c] = _mm256_set1_ps((float)c);
    for (long i = 0; i < iters; i++)
        for (int c = 0; c < CLLM_PROBE_AVX2_CHAINS; c++) acc[c] = _mm256_fmadd_ps(acc[c], m, a);
    __m256 s = acc[0];
    for (int c = 1; c < CLLM_PROBE_AVX2_CHAINS; c++) s = _mm256_add_ps(s, acc[c]);
    float out[8];
    _mm256_storeu_ps(out, s);
    return out[0] + out[7];
}

