/* CPU feature detection: what this processor and its OS can run.
 *
 * The build never assumes a CPU (no -march=native): the kernels' AVX2 and
 * AVX-512 builds are compiled with target attributes, and which of them may
 * run is decided from CPUID and the OS's saved-state mask (XGETBV), so one
 * binary runs on any x86-64. On other processors every flag is 0. */
#ifndef CLLM_BASE_CPU_H
#define CLLM_BASE_CPU_H

typedef struct {
    int sse42, avx, avx2, fma, avx512f; /* usable: CPUID bit and OS-enabled state */
    int avx512bf16;                     /* VDPBF16PS/VCVTNE(2)PS2BF16: CPUID.(7,1):EAX[5] and ZMM state */
    int amx_bf16;                       /* AMX-TILE and AMX-BF16: CPUID.(7,0):EDX[24] and [22], and the
                                           OS's tile state (XCR0 bits 17-18). Reported only: cllm has no
                                           AMX kernel (docs/BF16.md) */
    char model[64];                     /* CPU brand string, "" if unknown */
} cllm_cpu_features;

/* Detected on first call and cached: the answer never changes. */
const cllm_cpu_features *cllm_cpu(void);

#endif
