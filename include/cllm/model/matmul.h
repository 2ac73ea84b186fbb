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
 * reference every variant is tested against. */
#ifndef CLLM_MODEL_MATMUL_H
#define CLLM_MODEL_MATMUL_H

void cllm_sgemm(int trans_a, int trans_b, int M, int N, int K, float alpha,
                const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);

void cllm_sgemm_ref(int trans_a, int trans_b, int M, int N, int K, float alpha,
                    const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);

#endif
