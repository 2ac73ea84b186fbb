/* The AVX2 row kernels (CLLM_SIMD=avx2): the portable loops compiled for
 * 8-wide AVX2 + FMA with a target attribute (so the rest of the build keeps
 * the baseline ISA), and an intrinsic running max where the scalar max was
 * most of a row's time once the exps were vectorised. */
#include "../../rows_internal.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma")))

VECTORIZABLE_FP AVX2 void cllm_gelu_avx2(float *out, const float *inp, int n) {
    #pragma omp simd
    GELU_FORWARD_LOOP(tanh_arith)
}
VECTORIZABLE_FP AVX2 void cllm_gelu_backward_avx2(float *dinp, const float *inp, const float *dout, int n) {
    #pragma omp simd
    GELU_BACKWARD_LOOP(tanh_arith, +=)
}
VECTORIZABLE_FP AVX2 void cllm_gelu_backward_set_avx2(float *dinp, const float *inp, const float *dout, int n) {
    #pragma omp simd
    GELU_BACKWARD_LOOP(tanh_arith, =)
}
VECTORIZABLE_FP AVX2 void cllm_bias_gelu_avx2(float *out, float *pre, const float *bias, int N, int C) {
    BIAS_GELU_ROWS(tanh_arith, OMP_SIMD_LOOP)
}

AVX2 void cllm_layernorm_row_avx2(float *o, float *mean, float *rstd, const float *x, const float *weight,
                                  const float *bias, int C) {
    LN_ROW(OMP_SUM_M, OMP_SUM_V, OMP_SIMD_LOOP)
}
AVX2 void cllm_layernorm_backward_row_avx2(float *dx, float *dweight, float *dbias, const float *d, const float *x,
                                           const float *weight, float m, float s, int C) {
    LN_BACK_ROW(OMP_SUMS_G, OMP_SIMD_LOOP)
}
AVX2 void cllm_residual_row_avx2(float *r, const float *a, const float *b, const float *b_bias, int C) {
    RESIDUAL_ROW(OMP_SIMD_LOOP)
}
AVX2 void cllm_column_sums_avx2(float *dbias, const float *dout, int N, int n) { COLUMN_SUMS(OMP_SIMD_LOOP) }

/* Eight running maxima, folded at the end (max is exact in any order). */
AVX2 static float row_max_avx2(const float *x, int n) {
    if (n < 8) return row_max(x, n);
    __m256 m = _mm256_loadu_ps(x);
    int j = 8;
    for (; j + 8 <= n; j += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(x + j));
    float lanes[8];
    _mm256_storeu_ps(lanes, m);
    float mx = row_max(lanes, 8);
    for (; j < n; j++) mx = x[j] > mx ? x[j] : mx;
    return mx;
}
VECTORIZABLE_FP AVX2 void cllm_softmax_row_avx2(float *row, int t, int T) {
    SOFTMAX_ROW(exp_arith, row_max_avx2(row, t + 1), OMP_SUM, OMP_SIMD)
}
AVX2 void cllm_softmax_backward_row_avx2(float *dr, const float *ar, int t, int r1) {
    SOFTMAX_BACK_ROW(OMP_DOT, OMP_SIMD)
}

VECTORIZABLE_FP AVX2 float cllm_logsumexp_row_avx2(const float *l, int V) {
    LSE_ROW(exp_arith, row_max_avx2(l, V), OMP_SUM)
}
VECTORIZABLE_FP AVX2 void cllm_softmax_grad_row_avx2(float *d, const float *l, float s, float dloss, int V) {
    GRAD_ROW(exp_arith, OMP_SIMD)
}
#endif
