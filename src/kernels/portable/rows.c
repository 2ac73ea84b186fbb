/* The portable row kernels (CLLM_SIMD=omp): the reference's loops with
 * `omp simd` pragmas and the call-free exp, vectorised for the compiler's
 * baseline ISA. */
#include "../rows_internal.h"

VECTORIZABLE_FP void cllm_gelu_omp(float *out, const float *inp, int n) {
    #pragma omp simd
    GELU_FORWARD_LOOP(tanh_arith)
}
VECTORIZABLE_FP void cllm_gelu_backward_omp(float *dinp, const float *inp, const float *dout, int n) {
    #pragma omp simd
    GELU_BACKWARD_LOOP(tanh_arith, +=)
}
VECTORIZABLE_FP void cllm_gelu_backward_set_omp(float *dinp, const float *inp, const float *dout, int n) {
    #pragma omp simd
    GELU_BACKWARD_LOOP(tanh_arith, =)
}
VECTORIZABLE_FP void cllm_bias_gelu_omp(float *out, float *pre, const float *bias, int N, int C) {
    BIAS_GELU_ROWS(tanh_arith, OMP_SIMD_LOOP)
}

void cllm_layernorm_row_omp(float *o, float *mean, float *rstd, const float *x, const float *weight,
                            const float *bias, int C) {
    LN_ROW(OMP_SUM_M, OMP_SUM_V, OMP_SIMD_LOOP)
}
void cllm_layernorm_backward_row_omp(float *dx, float *dweight, float *dbias, const float *d, const float *x,
                                     const float *weight, float m, float s, int C) {
    LN_BACK_ROW(OMP_SUMS_G, OMP_SIMD_LOOP)
}

/* No residual row or column sums of its own: the omp table takes the
 * reference's plain loops (see ref/rows.c). */

VECTORIZABLE_FP void cllm_softmax_row_omp(float *row, int t, int T) {
    SOFTMAX_ROW(exp_arith, row_max(row, t + 1), OMP_SUM, OMP_SIMD)
}
void cllm_softmax_backward_row_omp(float *dr, const float *ar, int t, int r1) { SOFTMAX_BACK_ROW(OMP_DOT, OMP_SIMD) }

VECTORIZABLE_FP float cllm_logsumexp_row_omp(const float *l, int V) { LSE_ROW(exp_arith, row_max(l, V), OMP_SUM) }
VECTORIZABLE_FP void cllm_softmax_grad_row_omp(float *d, const float *l, float s, float dloss, int V) {
    GRAD_ROW(exp_arith, OMP_SIMD)
}
