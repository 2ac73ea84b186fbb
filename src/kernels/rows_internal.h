/* Private to src/kernels: what the builds of the row kernels share.
 *
 * Each row kernel has ONE text, a macro below parameterised by what differs
 * between builds (libm or call-free exp/tanh, the max, `omp simd` pragmas);
 * ref/rows.c, portable/rows.c, x86/avx2/rows.c and x86/avx512/rows.c
 * instantiate it with their own parameters and target attribute. The
 * hand-written AVX-512 rows (x86/avx512/rows.c) compute the same functions
 * with intrinsics. test_layers holds every build to the reference. */
#ifndef CLLM_KERNELS_ROWS_INTERNAL_H
#define CLLM_KERNELS_ROWS_INTERNAL_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "cllm/kernels/kernels.h"

/* ---------------------------------------------------------------- call-free exp */

/* exp(x) for x clamped to [-87, 88]: 2^n * p(r), n = round(x / ln 2),
 * r = x - n ln 2 in [-0.35, 0.35] (ln 2 split in two so r is exact), p the
 * degree-6 Taylor polynomial, whose truncation error r^7/7! < 1.3e-7 is
 * about one float ulp. 2^n is built from its exponent bits. */
static inline __attribute__((always_inline)) float exp_arith(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    /* Adding and subtracting 1.5 * 2^23 rounds to the nearest integer
     * without floorf/roundf, which SSE2 cannot vectorise. */
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693145751953125f;  /* ln 2, high bits (exact product) */
    r = r - n * 1.428606765330187e-06f;    /* ln 2, low bits */
    float p = 1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 + r * (1.0f / 720))))));
    /* NaN passes the clamps (a diverged run): converting it to int and
     * shifting the result is undefined behaviour, so it takes exponent 0 and
     * the NaN still propagates through p. */
    int32_t ni = n == n ? (int32_t)n : 0;
    union {
        int32_t i;
        float f;
    } two_n = {.i = (ni + 127) << 23};
    return p * two_n.f;
}

/* Saturates to exactly +-1 where exp(2u) is clamped (|u| >= 43). */
static inline __attribute__((always_inline)) float tanh_arith(float u) {
    return 1.0f - 2.0f / (1.0f + exp_arith(2.0f * u));
}

/* GCC keeps floating-point compares as branches under its default
 * -ftrapping-math (a compare could raise an FP exception), which stops it from
 * vectorising the clamps in exp_arith; nothing here reads FP exception flags. */
#if defined(__GNUC__) && !defined(__clang__)
#define VECTORIZABLE_FP __attribute__((optimize("no-trapping-math")))
#else
#define VECTORIZABLE_FP
#endif

/* ---------------------------------------------------------------- layernorm */

/* Row kernels shared by layernorm_forward and the fused
 * residual_layernorm_forward. The sums need reassociating to vectorise, so
 * the scalar path (CLLM_SIMD=scalar) keeps them sequential as the reference
 * and the fast paths use `omp simd` reductions (test_layers compares them).
 * Two passes (mean, then centred squares) rather than E[x^2]-E[x]^2, which
 * cancels catastrophically when |mean| >> std. */
#define LN_ROW(SIMD_M, SIMD_V, SIMD)                                         \
    float m = 0.0f;                                                          \
    SIMD_M                                                                   \
    for (int c = 0; c < C; c++) m += x[c];                                   \
    m /= (float)C;                                                           \
    float var = 0.0f;                                                        \
    SIMD_V                                                                   \
    for (int c = 0; c < C; c++) {                                            \
        float d = x[c] - m;                                                  \
        var += d * d;                                                        \
    }                                                                        \
    var /= (float)C;                                                         \
    float s = 1.0f / sqrtf(var + CLLM_LAYERNORM_EPS);                        \
    SIMD                                                                     \
    for (int c = 0; c < C; c++) o[c] = (x[c] - m) * s * weight[c] + bias[c]; \
    *mean = m;                                                               \
    *rstd = s;

/* dx = s * (g - mean(g) - xhat * mean(g * xhat)) with g = dout * weight:
 * the two means are the projections removed by centring and scaling. */
#define LN_BACK_ROW(SIMD_SUMS, SIMD)                                         \
    float mean_g = 0.0f, mean_gx = 0.0f;                                     \
    SIMD_SUMS                                                                \
    for (int c = 0; c < C; c++) {                                            \
        float xhat = (x[c] - m) * s;                                         \
        float g = d[c] * weight[c];                                          \
        mean_g += g;                                                         \
        mean_gx += g * xhat;                                                 \
    }                                                                        \
    mean_g /= (float)C;                                                      \
    mean_gx /= (float)C;                                                     \
    SIMD                                                                     \
    for (int c = 0; c < C; c++) {                                            \
        float xhat = (x[c] - m) * s;                                         \
        float g = d[c] * weight[c];                                          \
        dbias[c] += d[c];                                                    \
        dweight[c] += d[c] * xhat;                                           \
        dx[c] += s * (g - mean_g - xhat * mean_gx);                          \
    }

#define OMP_SUM_M _Pragma("omp simd reduction(+ : m)")
#define OMP_SUM_V _Pragma("omp simd reduction(+ : var)")
#define OMP_SUMS_G _Pragma("omp simd reduction(+ : mean_g, mean_gx)")
#define OMP_SIMD_LOOP _Pragma("omp simd")


/* The residual sum in front of a LayerNorm, one row: b + bias first (what
 * the product with a bias writes), then the skip, so the fused path rounds
 * as the unfused one. Element-wise adds only: every build gives the same
 * bits, the wider ones just take fewer instructions. */
#define RESIDUAL_ROW(SIMD)                                                   \
    if (b_bias) {                                                            \
        SIMD                                                                 \
        for (int c = 0; c < C; c++) r[c] = a[c] + (b[c] + b_bias[c]);        \
    } else {                                                                 \
        SIMD                                                                 \
        for (int c = 0; c < C; c++) r[c] = a[c] + b[c];                      \
    }



/* dbias[j] += sum over rows of dout[i][j], rows in order: each column's
 * sum is the same sequence of adds in every build (the wide ones run 8 or 16
 * columns at once), so the bits never depend on the path. */
#define COLUMN_SUMS(SIMD)                                                    \
    for (int i = 0; i < N; i++) {                                            \
        const float *d = dout + (size_t)i * n;                               \
        SIMD                                                                 \
        for (int j = 0; j < n; j++) dbias[j] += d[j];                        \
    }


/* ---------------------------------------------------------------- attention */

/* Row t of a causal score matrix: softmax over columns 0..t with the maximum
 * subtracted (no overflow), zeros above the diagonal up to T. The backward row
 * turns dL/d(att) into dL/d(scores): ds_j = a_j (datt_j - sum_i a_i datt_i),
 * zeros from t+1 up to r1 (the columns the next product reads).
 * The scalar path (libm expf, sequential sums) is the reference; the fast
 * paths use the call-free exp and vectorised sums (test_layers compares them).
 * MAX is a plain loop on the portable path: clang will not vectorise a float
 * max reduction without fast-math. */
#define SOFTMAX_ROW(EXP, MAX, SIMD_SUM, SIMD)                     \
    float mx = MAX;                                               \
    float sum = 0.0f;                                             \
    SIMD_SUM                                                      \
    for (int j = 0; j <= t; j++) {                                \
        row[j] = EXP(row[j] - mx);                                \
        sum += row[j];                                            \
    }                                                             \
    float inv = 1.0f / sum;                                       \
    SIMD                                                          \
    for (int j = 0; j <= t; j++) row[j] *= inv;                   \
    for (int j = t + 1; j < T; j++) row[j] = 0.0f;

#define SOFTMAX_BACK_ROW(SIMD_DOT, SIMD)                          \
    float dot = 0.0f;                                             \
    SIMD_DOT                                                      \
    for (int j = 0; j <= t; j++) dot += ar[j] * dr[j];            \
    SIMD                                                          \
    for (int j = 0; j <= t; j++) dr[j] = ar[j] * (dr[j] - dot);   \
    for (int j = t + 1; j < r1; j++) dr[j] = 0.0f;

#define OMP_DOT _Pragma("omp simd reduction(+ : dot)")
#define OMP_SUM _Pragma("omp simd reduction(+ : sum)")
#define OMP_SIMD _Pragma("omp simd")

static inline float row_max(const float *x, int n) {
    float mx = x[0];
    for (int j = 1; j < n; j++) mx = x[j] > mx ? x[j] : mx;
    return mx;
}


/* ---------------------------------------------------------------- gelu */

#define GELU_SCALE 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_CUBIC 0.044715f

/* GELU was a quarter of a training step when it called libm's tanhf per
 * element. The fast paths compute tanh(u) = 1 - 2 / (1 + exp(2u)) with an
 * exp written out in plain arithmetic (no calls), so `omp simd` turns the
 * loops into SSE2 / AVX2 code; the scalar path keeps libm's tanhf as the
 * reference they are tested against (test_layers: |diff| <= 1e-6). */

#define GELU_FORWARD_LOOP(TANH)                                     \
    for (int i = 0; i < n; i++) {                                   \
        float x = inp[i];                                           \
        float u = GELU_SCALE * (x + GELU_CUBIC * x * x * x);        \
        out[i] = 0.5f * x * (1.0f + TANH(u));                       \
    }

/* STORE is `+=` (accumulate, the layer convention) or `=` (overwrite: the
 * model's backward then needs no zeroing pass over the 4C-wide scratch). */
#define GELU_BACKWARD_LOOP(TANH, STORE)                                           \
    for (int i = 0; i < n; i++) {                                                 \
        float x = inp[i];                                                         \
        float u = GELU_SCALE * (x + GELU_CUBIC * x * x * x);                      \
        float th = TANH(u);                                                       \
        float du = GELU_SCALE * (1.0f + 3.0f * GELU_CUBIC * x * x);               \
        float grad = 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * du;       \
        dinp[i] STORE grad * dout[i];                                             \
    }


/* Fused bias + GELU: the c_fc product runs with beta = 0 and no bias copy
 * (no pass writing N x 4C bias rows, no read of them inside the product),
 * and the bias is added here on the way into GELU. */
#define BIAS_GELU_ROWS(TANH, SIMD)                                       \
    for (int i = 0; i < N; i++) {                                        \
        float *p = pre + (size_t)i * C, *o = out + (size_t)i * C;        \
        SIMD                                                             \
        for (int j = 0; j < C; j++) {                                    \
            float x = p[j] + bias[j];                                    \
            float u = GELU_SCALE * (x + GELU_CUBIC * x * x * x);         \
            p[j] = x;                                                    \
            o[j] = 0.5f * x * (1.0f + TANH(u));                          \
        }                                                                \
    }


/* ---------------------------------------------------------------- loss */

/* Per row: log-sum-exp with the maximum subtracted, and the gradient
 * exp(l - lse) * dloss. expf over the vocabulary was the largest cost after
 * the matrix products, so the fast paths use exp_arith like GELU; the scalar
 * path (libm expf, sequential sums) is the reference. */
/* The max is a plain loop on the portable paths: clang will not vectorise
 * a float max reduction without fast-math. The AVX2 build takes row_max_avx2
 * (the scalar max was most of its row time once the exps were vectorised). */
#define LSE_ROW(EXP, MAX, SIMD_SUM)                               \
    float mx = MAX;                                               \
    float sum = 0.0f;                                             \
    SIMD_SUM                                                      \
    for (int j = 0; j < V; j++) sum += EXP(l[j] - mx);            \
    return mx + logf(sum);

#define GRAD_ROW(EXP, SIMD)                                       \
    SIMD                                                          \
    for (int j = 0; j < V; j++) d[j] = EXP(l[j] - s) * dloss;


/* ---------------------------------------------------------------- the builds */

/* The row kernels of one build, named cllm_<kernel>_<isa>; their contracts
 * are the table fields of the same names (include/cllm/kernels/kernels.h). */
#define CLLM_DECLARE_ROWS(isa)                                                                                     \
    void cllm_gelu_##isa(float *out, const float *inp, int n);                                                     \
    void cllm_gelu_backward_##isa(float *dinp, const float *inp, const float *dout, int n);                        \
    void cllm_gelu_backward_set_##isa(float *dinp, const float *inp, const float *dout, int n);                    \
    void cllm_bias_gelu_##isa(float *out, float *pre, const float *bias, int N, int C);                            \
    void cllm_layernorm_row_##isa(float *o, float *mean, float *rstd, const float *x, const float *weight,         \
                                  const float *bias, int C);                                                       \
    void cllm_layernorm_backward_row_##isa(float *dx, float *dweight, float *dbias, const float *d, const float *x, \
                                           const float *weight, float m, float s, int C);                          \
    void cllm_softmax_row_##isa(float *row, int t, int T);                                                         \
    void cllm_softmax_backward_row_##isa(float *dr, const float *ar, int t, int r1);                               \
    float cllm_logsumexp_row_##isa(const float *l, int V);                                                         \
    void cllm_softmax_grad_row_##isa(float *d, const float *l, float s, float dloss, int V);

/* Element-wise adds and row-ordered sums: the same bits in every build,
 * so the omp table takes the reference's plain loops. */
#define CLLM_DECLARE_SUM_ROWS(isa)                                                                       \
    void cllm_residual_row_##isa(float *r, const float *a, const float *b, const float *b_bias, int C); \
    void cllm_column_sums_##isa(float *dbias, const float *dout, int N, int n);

CLLM_DECLARE_ROWS(ref)
CLLM_DECLARE_SUM_ROWS(ref)
CLLM_DECLARE_ROWS(omp)
#if defined(__x86_64__) || defined(__i386__)
CLLM_DECLARE_ROWS(avx2)
CLLM_DECLARE_SUM_ROWS(avx2)
CLLM_DECLARE_ROWS(avx512)
CLLM_DECLARE_SUM_ROWS(avx512)
#endif

#endif
