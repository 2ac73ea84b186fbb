/* CPU feature detection and the run-time choice of SIMD path.
 *
 * The build never assumes a CPU (no -march=native): AVX2/AVX-512 variants are
 * compiled with target attributes and chosen once at start-up from CPUID and
 * the OS's saved-state mask (XGETBV), so one binary runs on any x86-64 and
 * non-x86 builds keep the portable paths. CLLM_SIMD=auto|scalar|omp|avx2|avx512
 * forces a path; asking for one the CPU lacks is an input error. */
#ifndef CLLM_PARALLEL_SIMD_H
#define CLLM_PARALLEL_SIMD_H

#include "cllm/common.h"

typedef enum {
    CLLM_SIMD_SCALAR = 0, /* plain C reference loops */
    CLLM_SIMD_OMP = 1,    /* #pragma omp simd, portable */
    CLLM_SIMD_AVX2 = 2,   /* AVX2 + FMA intrinsics */
    CLLM_SIMD_AVX512 = 3  /* AVX-512F intrinsics */
} cllm_simd;

typedef struct {
    int sse42, avx, avx2, fma, avx512f; /* usable: CPUID bit and OS-enabled state */
    char model[64];                     /* CPU brand string, "" if unknown */
} cllm_cpu_features;

/* Detected once, cached. */
const cllm_cpu_features *cllm_cpu(void);

/* Name of a path: "scalar", "omp", "avx2", "avx512". */
const char *cllm_simd_name(cllm_simd s);

/* Whether this CPU (and build) can run path s. */
int cllm_simd_supported(cllm_simd s);

/* The best path this CPU supports. */
cllm_simd cllm_simd_best(void);

/* Parses a CLLM_SIMD value ("auto" -> best). Unknown name or unsupported path:
 * CLLM_ERR_INPUT with a message naming CLLM_SIMD. NULL or "" means auto. */
cllm_status cllm_simd_parse(const char *value, cllm_simd *out);

/* The path in force: CLLM_SIMD if set (validated by cllm_env_check), else best.
 * Kernels dispatch on this; tests may override it with cllm_simd_force. */
cllm_simd cllm_simd_active(void);
void cllm_simd_force(cllm_simd s);

/* Bits of the first n of 16 vector lanes (n <= 0: none, n >= 16: all), the
 * AVX-512 mask of a loop's tail: plain integer code, so any file may use it
 * and the masked loads and stores convert it to __mmask16. */
static inline unsigned short cllm_first_lanes16(int n) {
    return n >= 16 ? (unsigned short)0xFFFF : n <= 0 ? (unsigned short)0 : (unsigned short)((1u << n) - 1u);
}

#endif
