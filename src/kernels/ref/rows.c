/* The scalar reference row kernels (CLLM_SIMD=scalar): libm expf and tanhf,
 * sums in sequential order, no vector pragmas. The specification every
 * other build is tested against (test_layers). */
#include "../rows_internal.h"

void cllm_gelu_ref(float *out, const float *inp, int n) { GELU_FORWARD_LOOP(tanhf) }
void cllm_gelu_backward_ref(float *dinp, const float *inp, const float *dout, int n) {
    GELU_BACKWARD_LOOP(tanhf, +=)
}
void cllm_gelu_backward_set_ref(float *dinp, const float *inp, const float *dout, int n) {
    GELU_BACKWARD_LOOP(tanhf, =)
}
void cllm_bias_gelu_ref(float *out, float *pre, const float *bias, int N, int C) { BIAS_GELU_ROWS(tanhf, ) }

void cllm_layernorm_row_ref(float *o, float *mean, float *rstd, const float *x, const float *weight,
                            const float *bias, int C) {
    LN_ROW(, , )
}
void cllm_layernorm_backward_row_ref(float *dx, float *dweight, float *dbias, const float *d, const float *x,
                                     const float *weight, float m, float s, int C) {
    LN_BACK_ROW(, )
}

/* Plain loops: the omp table uses these two as well (element-wise adds and
 * row-ordered column sums give the same bits in every build). */
void cllm_residual_row_ref(float *r, const float *a, const float *b, const float *b_bias, int C) { RESIDUAL_ROW() }
void cllm_column_sums_ref(float *dbias, const float *dout, int N, int n) { COLUMN_SUMS() }

void cllm_softmax_row_ref(float *row, int t, int T) { SOFTMAX_ROW(expf, row_max(row, t + 1), , ) }
void cllm_softmax_backward_row_ref(float *dr, const float *ar, int t, int r1) { SOFTMAX_BACK_ROW(, ) }

float cllm_logsumexp_row_ref(const float *l, int V) { LSE_ROW(expf, row_max(l, V), ) }
void cllm_softmax_grad_row_ref(float *d, const float *l, float s, float dloss, int V) { GRAD_ROW(expf, ) }
