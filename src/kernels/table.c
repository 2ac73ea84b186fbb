/* The four kernel tables and the choice among them: the one place that
 * knows which build of each kernel belongs to which ISA. */
#include <string.h>

#include "cllm/base/cpu.h"
#include "cllm/kernels/kernels.h"
#include "bf16_internal.h"
#include "gemm_internal.h"
#include "probe_internal.h"
#include "reduce_internal.h"
#include "rows_internal.h"

#if defined(__x86_64__)
#define CLLM_KERNELS_X86 1
#else
#define CLLM_KERNELS_X86 0
#endif

const char *cllm_simd_name(cllm_simd s) {
    switch (s) {
    case CLLM_SIMD_SCALAR: return "scalar";
    case CLLM_SIMD_OMP: return "omp";
    case CLLM_SIMD_AVX2: return "avx2";
    case CLLM_SIMD_AVX512: return "avx512";
    }
    return "?";
}

int cllm_simd_supported(cllm_simd s) {
    const cllm_cpu_features *f = cllm_cpu();
    switch (s) {
    case CLLM_SIMD_SCALAR:
    case CLLM_SIMD_OMP: return 1;
    case CLLM_SIMD_AVX2: return CLLM_KERNELS_X86 && f->avx2 && f->fma;
    case CLLM_SIMD_AVX512: return CLLM_KERNELS_X86 && f->avx512f;
    }
    return 0;
}

cllm_simd cllm_simd_best(void) {
    if (cllm_simd_supported(CLLM_SIMD_AVX512)) return CLLM_SIMD_AVX512;
    if (cllm_simd_supported(CLLM_SIMD_AVX2)) return CLLM_SIMD_AVX2;
    return CLLM_SIMD_OMP;
}

/* Every field of one ISA's table, in the struct's order. */
#define ROW_KERNELS(isa)                                                                                            \
    .gelu = cllm_gelu_##isa, .gelu_backward = cllm_gelu_backward_##isa,                                             \
    .gelu_backward_set = cllm_gelu_backward_set_##isa, .bias_gelu = cllm_bias_gelu_##isa,                           \
    .layernorm_row = cllm_layernorm_row_##isa, .layernorm_backward_row = cllm_layernorm_backward_row_##isa,         \
    .softmax_row = cllm_softmax_row_##isa, .softmax_backward_row = cllm_softmax_backward_row_##isa,                 \
    .logsumexp_row = cllm_logsumexp_row_##isa, .softmax_grad_row = cllm_softmax_grad_row_##isa

/* Without AVX512_BF16: the portable product, bitwise the reference. */
#define BF16_PORTABLE .gemm_bf16 = cllm_gemm_bf16_portable, .bf16_round = cllm_bf16_round_array, .bf16_fast = 0

static const cllm_kernel_table table_scalar = {
    .isa = CLLM_SIMD_SCALAR, .name = "scalar", .gemm = cllm_gemm_ref, .gemm_bf16 = cllm_gemm_bf16_ref,
    .bf16_round = cllm_bf16_round_array, .bf16_fast = 0, ROW_KERNELS(ref),
    .residual_row = cllm_residual_row_ref, .column_sums = cllm_column_sums_ref,
    .sum = cllm_sum_scalar, .sum_sq = cllm_sum_sq_scalar, .sum_adamw = cllm_sum_adamw_scalar,
    .fma_probe = cllm_fma_probe_portable, .fma_probe_flops = 2.0 * CLLM_PROBE_PORTABLE_CHAINS,
};

static const cllm_kernel_table table_omp = {
    .isa = CLLM_SIMD_OMP, .name = "omp", .gemm = cllm_gemm_omp, BF16_PORTABLE, ROW_KERNELS(omp),
    .residual_row = cllm_residual_row_ref, .column_sums = cllm_column_sums_ref,
    .sum = cllm_sum_omp, .sum_sq = cllm_sum_sq_omp, .sum_adamw = cllm_sum_adamw_omp,
    .fma_probe = cllm_fma_probe_portable, .fma_probe_flops = 2.0 * CLLM_PROBE_PORTABLE_CHAINS,
};

#if CLLM_KERNELS_X86
static void gemm_avx2(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                      const float *B, int ldb, float beta, float *C, int ldc) {
    cllm_gemm_blocked(&cllm_sgemm_kernel_avx2, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

static void gemm_avx512(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                        const float *B, int ldb, float beta, float *C, int ldc) {
    cllm_gemm_blocked(&cllm_sgemm_kernel_avx512, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

static const cllm_kernel_table table_avx2 = {
    .isa = CLLM_SIMD_AVX2, .name = "avx2", .gemm = gemm_avx2, BF16_PORTABLE, ROW_KERNELS(avx2),
    .residual_row = cllm_residual_row_avx2, .column_sums = cllm_column_sums_avx2,
    .sum = cllm_sum_avx2, .sum_sq = cllm_sum_sq_avx2, .sum_adamw = cllm_sum_adamw_avx2,
    .fma_probe = cllm_fma_probe_avx2, .fma_probe_flops = 2.0 * 8 * CLLM_PROBE_AVX2_CHAINS,
};

#define AVX512_KERNELS                                                                                              \
    .isa = CLLM_SIMD_AVX512, .name = "avx512", .gemm = gemm_avx512, ROW_KERNELS(avx512),                            \
    .residual_row = cllm_residual_row_avx512, .column_sums = cllm_column_sums_avx512,                               \
    .sum = cllm_sum_avx512, .sum_sq = cllm_sum_sq_avx512, .sum_adamw = cllm_sum_adamw_avx512,                       \
    .fma_probe = cllm_fma_probe_avx512, .fma_probe_flops = 2.0 * 16 * CLLM_PROBE_AVX512_CHAINS

static const cllm_kernel_table table_avx512 = {AVX512_KERNELS, BF16_PORTABLE};

/* AVX-512F with AVX512_BF16 (not an ISA of its own: the same fp32 kernels,
 * plus the VDPBF16PS product, handed out as "avx512" where CPUID has it). */
#if CLLM_KERNELS_BF16_X86
static const cllm_kernel_table table_avx512_bf16 = {AVX512_KERNELS, .gemm_bf16 = cllm_gemm_bf16_avx512bf16,
                                                     .bf16_round = cllm_bf16_round_avx512bf16, .bf16_fast = 1};
#endif
#endif

/* Whether the AVX512_BF16 kernels may run: built in, and the CPU has them. */
static int bf16_x86_usable(void) { return CLLM_KERNELS_BF16_X86 && cllm_cpu()->avx512bf16; }

const cllm_bf16_hw_ops *cllm_bf16_hw(void) {
    if (!bf16_x86_usable()) return NULL;
#if CLLM_KERNELS_BF16_X86
    return &cllm_bf16_hw_avx512bf16;
#else
    return NULL;
#endif
}

const cllm_kernel_table *cllm_kernel_table_for(cllm_simd s) {
    if (!cllm_simd_supported(s)) return NULL;
    switch (s) {
    case CLLM_SIMD_SCALAR: return &table_scalar;
    case CLLM_SIMD_OMP: return &table_omp;
#if CLLM_KERNELS_X86
    case CLLM_SIMD_AVX2: return &table_avx2;
    case CLLM_SIMD_AVX512:
#if CLLM_KERNELS_BF16_X86
        if (bf16_x86_usable()) return &table_avx512_bf16;
#endif
        return &table_avx512;
#else
    default: return NULL;
#endif
    }
    return NULL;
}

const cllm_kernel_table *cllm_kernel_table_best(void) { return cllm_kernel_table_for(cllm_simd_best()); }
