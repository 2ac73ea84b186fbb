/* Matrix products used by every linear layer, behind one entry point.
 *
 * Row-major single-precision GEMM:  C = alpha * op(A) * op(B) + beta * C
 * with op(X) = X or X^T. op(A) is M x K, op(B) is K x N, C is M x N.
 * The layers need three shapes of it:
 *   forward   Y  = X  · W      (W in Hugging Face Conv1D layout [in, out])
 *   backward  dX += dY · W^T
 *             dW += X^T · dY
 * and the tied LM head uses W^T in the forward and the mirrored products.
 *
 * cllm_sgemm dispatches on cllm_simd_active(); cllm_sgemm_ref is the plain
 * reference every variant is tested against.
 *
 * The fast paths are cache-blocked and register-tiled: panels of op(A) and
 * op(B) are packed into thread-local buffers (no allocation per call, safe to
 * call from many threads at once; no OpenMP inside: callers parallelise).
 * Leading dimensions are in floats and may exceed the row width. beta == 0
 * means C is not read (it may hold garbage), as in BLAS. */
#ifndef CLLM_MODEL_MATMUL_H
#define CLLM_MODEL_MATMUL_H

#include "cllm/parallel/simd.h"

void cllm_sgemm(int trans_a, int trans_b, int M, int N, int K, float alpha,
                const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);

void cllm_sgemm_ref(int trans_a, int trans_b, int M, int N, int K, float alpha,
                    const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* One path explicitly, whatever cllm_simd_active() says (tests, benchmarks).
 * A path the CPU does not support falls back to the portable one. */
void cllm_sgemm_path(cllm_simd path, int trans_a, int trans_b, int M, int N, int K, float alpha,
                     const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);

#endif
