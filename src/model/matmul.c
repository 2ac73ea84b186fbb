/* Dispatch of the matrix product. For now the reference with a cache-friendly
 * loop order; the performance issue adds blocked AVX2/AVX-512 kernels here. */
#include "cllm/model/matmul.h"

#include <stddef.h>

/* i-k-j order for the non-transposed B case streams rows of B and C, which
 * is far faster than the reference's dot products and still exact enough. */
static void sgemm_nn_rows(int M, int N, int K, float alpha, const float *A, int lda, int trans_a,
                          const float *B, int ldb, float beta, float *C, int ldc) {
    for (int i = 0; i < M; i++) {
        float *c = &C[(size_t)i * ldc];
        if (beta == 0.0f) {
            for (int j = 0; j < N; j++) c[j] = 0.0f;
        } else if (beta != 1.0f) {
            for (int j = 0; j < N; j++) c[j] *= beta;
        }
        for (int k = 0; k < K; k++) {
            float a = alpha * (trans_a ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k]);
            const float *b = &B[(size_t)k * ldb];
            #pragma omp simd
            for (int j = 0; j < N; j++) c[j] += a * b[j];
        }
    }
}

void cllm_sgemm(int trans_a, int trans_b, int M, int N, int K, float alpha,
                const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    if (!trans_b) {
        sgemm_nn_rows(M, N, K, alpha, A, lda, trans_a, B, ldb, beta, C, ldc);
        return;
    }
    cllm_sgemm_ref(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
