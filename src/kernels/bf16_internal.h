/* Private to src/kernels: whether this build has the AVX512_BF16 kernels
 * (x86-64 and a compiler that knows the instructions: gcc >= 10, clang >= 9),
 * and their entry points in x86/avx512bf16/. */
#ifndef CLLM_KERNELS_BF16_INTERNAL_H
#define CLLM_KERNELS_BF16_INTERNAL_H

#include <string.h>

#include "cllm/kernels/bf16.h"

#if defined(__x86_64__) && ((defined(__clang__) && __clang_major__ >= 9) || \
                            (!defined(__clang__) && defined(__GNUC__) && __GNUC__ >= 10))
#define CLLM_KERNELS_BF16_X86 1
#else
#define CLLM_KERNELS_BF16_X86 0
#endif

/* The edges the fast products share: the number of pairs of K, or 0 when
 * there is nothing left to do (an empty C; K = 0, where C is zeroed unless
 * accumulating). */
static inline int cllm_bf16_pairs_after_edges(int M, int N, int K, float *C, int ldc, int accumulate) {
    if (M <= 0 || N <= 0) return 0;
    int pairs = K > 0 ? (K + 1) / 2 : 0;
    if (pairs == 0 && !accumulate)
        for (int i = 0; i < M; i++) memset(C + (size_t)i * ldc, 0, (size_t)N * sizeof *C);
    return pairs;
}

/* The portable product (portable/bf16.c), bitwise cllm_gemm_bf16_ref. */
void cllm_gemm_bf16_portable(int M, int N, int K, const cllm_bf16_operand *A, const cllm_bf16_operand *B, float *C,
                             int ldc, int accumulate);

#if CLLM_KERNELS_BF16_X86
extern const cllm_bf16_hw_ops cllm_bf16_hw_avx512bf16;
void cllm_gemm_bf16_avx512bf16(int M, int N, int K, const cllm_bf16_operand *A, const cllm_bf16_operand *B,
                               float *C, int ldc, int accumulate);
void cllm_bf16_round_avx512bf16(uint16_t *dst, const float *src, size_t n);
#endif

#endif
