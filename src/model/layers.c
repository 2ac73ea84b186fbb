/* GPT-2 layers. See include/cllm/model/layers.h for the shared conventions
 * (row-major, backward accumulates, no allocation, no global state). */
#include "cllm/model/layers.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

#include "cllm/model/matmul.h"
#include "cllm/parallel/simd.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

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

#if defined(__x86_64__) || defined(__i386__)
#define GELU_HAVE_AVX2 1 /* AVX2 + FMA builds of the loops, chosen at run time */
#else
#define GELU_HAVE_AVX2 0
#endif

/* ---------------------------------------------------------------- embedding */

void embedding_forward(float *out, const int32_t *tokens, const float *wte, const float *wpe, int B, int T, int C) {
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            float *o = out + ((size_t)b * T + t) * C;
            const float *te = wte + (size_t)tokens[(size_t)b * T + t] * C;
            const float *pe = wpe + (size_t)t * C;
            for (int c = 0; c < C; c++) o[c] = te[c] + pe[c];
        }
    }
}

/* Sequences from b0 on; sequence b0 (when set_wpe) writes dwpe instead of
 * adding, so each dwpe element is summed over the batch in the same order
 * either way. */
static void embedding_backward_from(float *dwte, float *dwpe, const float *dout, const int32_t *tokens, int b0,
                                    int B, int T, int C) {
    for (int b = b0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            const float *d = dout + ((size_t)b * T + t) * C;
            float *dte = dwte + (size_t)tokens[(size_t)b * T + t] * C;
            float *dpe = dwpe + (size_t)t * C;
            for (int c = 0; c < C; c++) {
                dte[c] += d[c];
                dpe[c] += d[c];
            }
        }
    }
}

void embedding_backward(float *dwte, float *dwpe, const float *dout, const int32_t *tokens, int B, int T, int C) {
    embedding_backward_from(dwte, dwpe, dout, tokens, 0, B, T, C);
}

void embedding_backward_write_wpe(float *dwte, float *dwpe, const float *dout, const int32_t *tokens, int B, int T,
                                  int C) {
    for (int t = 0; t < T; t++) {
        const float *d = dout + (size_t)t * C;
        float *dte = dwte + (size_t)tokens[t] * C;
        float *dpe = dwpe + (size_t)t * C;
        for (int c = 0; c < C; c++) {
            dte[c] += d[c];
            dpe[c] = d[c];
        }
    }
    embedding_backward_from(dwte, dwpe, dout, tokens, 1, B, T, C);
}

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

typedef void (*ln_row_fn)(float *o, float *mean, float *rstd, const float *x, const float *weight, const float *bias,
                          int C);
typedef void (*ln_back_row_fn)(float *dx, float *dweight, float *dbias, const float *d, const float *x,
                               const float *weight, float m, float s, int C);

static void ln_row_ref(float *o, float *mean, float *rstd, const float *x, const float *weight, const float *bias,
                       int C) {
    LN_ROW(, , )
}
static void ln_back_row_ref(float *dx, float *dweight, float *dbias, const float *d, const float *x,
                            const float *weight, float m, float s, int C) {
    LN_BACK_ROW(, )
}
static void ln_row_simd(float *o, float *mean, float *rstd, const float *x, const float *weight, const float *bias,
                        int C) {
    LN_ROW(OMP_SUM_M, OMP_SUM_V, OMP_SIMD_LOOP)
}
static void ln_back_row_simd(float *dx, float *dweight, float *dbias, const float *d, const float *x,
                             const float *weight, float m, float s, int C) {
    LN_BACK_ROW(OMP_SUMS_G, OMP_SIMD_LOOP)
}
#if GELU_HAVE_AVX2
__attribute__((target("avx2,fma"))) static void ln_row_avx2(float *o, float *mean, float *rstd, const float *x,
                                                            const float *weight, const float *bias, int C) {
    LN_ROW(OMP_SUM_M, OMP_SUM_V, OMP_SIMD_LOOP)
}
__attribute__((target("avx2,fma"))) static void ln_back_row_avx2(float *dx, float *dweight, float *dbias,
                                                                 const float *d, const float *x, const float *weight,
                                                                 float m, float s, int C) {
    LN_BACK_ROW(OMP_SUMS_G, OMP_SIMD_LOOP)
}
#endif

static void pick_layernorm_rows(ln_row_fn *fwd, ln_back_row_fn *back) {
    cllm_simd path = cllm_simd_active();
    *fwd = ln_row_simd, *back = ln_back_row_simd;
    if (path == CLLM_SIMD_SCALAR) *fwd = ln_row_ref, *back = ln_back_row_ref;
#if GELU_HAVE_AVX2
    if (path >= CLLM_SIMD_AVX2) *fwd = ln_row_avx2, *back = ln_back_row_avx2;
#endif
}

void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *weight, const float *bias,
                       int N, int C) {
    ln_row_fn row;
    ln_back_row_fn unused;
    pick_layernorm_rows(&row, &unused);
    for (int i = 0; i < N; i++)
        row(out + (size_t)i * C, mean + i, rstd + i, inp + (size_t)i * C, weight, bias, C);
}

/* The row is summed while it is still in L1, instead of a residual pass over
 * the whole stream followed by a LayerNorm pass that reads it back. */
void residual_layernorm_forward(float *res, float *out, float *mean, float *rstd, const float *a, const float *b,
                                const float *b_bias, const float *weight, const float *bias, int N, int C) {
    ln_row_fn row;
    ln_back_row_fn unused;
    pick_layernorm_rows(&row, &unused);
    for (int i = 0; i < N; i++) {
        float *r = res + (size_t)i * C;
        const float *ai = a + (size_t)i * C, *bi = b + (size_t)i * C;
        /* Same rounding as the unfused path: b + bias first (what the product
         * with a bias writes), then the skip. */
        if (b_bias)
            for (int c = 0; c < C; c++) r[c] = ai[c] + (bi[c] + b_bias[c]);
        else
            for (int c = 0; c < C; c++) r[c] = ai[c] + bi[c];
        row(out + (size_t)i * C, mean + i, rstd + i, r, weight, bias, C);
    }
}

void layernorm_backward_write(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                              const float *weight, const float *mean, const float *rstd, int N, int C) {
    /* 2C floats; the rows then accumulate in the same order as after a zeroed buffer. */
    memset(dweight, 0, (size_t)C * sizeof(float));
    memset(dbias, 0, (size_t)C * sizeof(float));
    layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C);
}

void layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                        const float *weight, const float *mean, const float *rstd, int N, int C) {
    ln_row_fn unused;
    ln_back_row_fn row;
    pick_layernorm_rows(&unused, &row);
    for (int i = 0; i < N; i++)
        row(dinp + (size_t)i * C, dweight, dbias, dout + (size_t)i * C, inp + (size_t)i * C, weight, mean[i],
            rstd[i], C);
}

/* ---------------------------------------------------------------- linear */

void linear_forward(float *out, const float *inp, const float *weight, const float *bias, int N, int n_in, int n_out,
                    linear_layout layout) {
    float beta = 0.0f;
    if (bias) {
        /* Start from the bias and let the product accumulate onto it. */
        for (int i = 0; i < N; i++) memcpy(out + (size_t)i * n_out, bias, (size_t)n_out * sizeof(float));
        beta = 1.0f;
    }
    if (layout == LINEAR_W_IN_OUT)
        cllm_sgemm(0, 0, N, n_out, n_in, 1.0f, inp, n_in, weight, n_out, beta, out, n_out);
    else
        cllm_sgemm(0, 1, N, n_out, n_in, 1.0f, inp, n_in, weight, n_in, beta, out, n_out);
}

/* dinp_beta 1 accumulates into dinp, 0 overwrites it without reading it:
 * the backward pass then needs no zeroing pass over its scratch. */
static void linear_backward_beta(float *dinp, float dinp_beta, float *dweight, float *dbias, float dparam_beta,
                                 const float *dout, const float *inp, const float *weight, int N, int n_in, int n_out,
                                 linear_layout layout) {
    if (layout == LINEAR_W_IN_OUT) {
        if (dinp) cllm_sgemm(0, 1, N, n_in, n_out, 1.0f, dout, n_out, weight, n_out, dinp_beta, dinp, n_in);
        cllm_sgemm(1, 0, n_in, n_out, N, 1.0f, inp, n_in, dout, n_out, dparam_beta, dweight, n_out);
    } else {
        if (dinp) cllm_sgemm(0, 0, N, n_in, n_out, 1.0f, dout, n_out, weight, n_in, dinp_beta, dinp, n_in);
        cllm_sgemm(1, 0, n_out, n_in, N, 1.0f, dout, n_out, inp, n_in, dparam_beta, dweight, n_in);
    }
    if (dbias) {
        /* n_out floats: zeroing them keeps the summation order of the
         * accumulating path, so both give the same bits. */
        if (dparam_beta == 0.0f) memset(dbias, 0, (size_t)n_out * sizeof(float));
        for (int i = 0; i < N; i++) {
            const float *d = dout + (size_t)i * n_out;
            for (int j = 0; j < n_out; j++) dbias[j] += d[j];
        }
    }
}

void linear_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                     const float *weight, int N, int n_in, int n_out, linear_layout layout) {
    linear_backward_beta(dinp, 1.0f, dweight, dbias, 1.0f, dout, inp, weight, N, n_in, n_out, layout);
}

void linear_backward_overwrite(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                               const float *weight, int N, int n_in, int n_out, linear_layout layout) {
    linear_backward_beta(dinp, 0.0f, dweight, dbias, 1.0f, dout, inp, weight, N, n_in, n_out, layout);
}

void linear_backward_write(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                           const float *weight, int N, int n_in, int n_out, linear_layout layout) {
    linear_backward_beta(dinp, 0.0f, dweight, dbias, 0.0f, dout, inp, weight, N, n_in, n_out, layout);
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

typedef void (*softmax_row_fn)(float *row, int t, int T);
typedef void (*softmax_back_row_fn)(float *dr, const float *ar, int t, int r1);

static float row_max(const float *x, int n) {
    float mx = x[0];
    for (int j = 1; j < n; j++) mx = x[j] > mx ? x[j] : mx;
    return mx;
}

static void softmax_row_ref(float *row, int t, int T) { SOFTMAX_ROW(expf, row_max(row, t + 1), , ) }
static void softmax_back_row_ref(float *dr, const float *ar, int t, int r1) { SOFTMAX_BACK_ROW(, ) }
VECTORIZABLE_FP static void softmax_row_simd(float *row, int t, int T) {
    SOFTMAX_ROW(exp_arith, row_max(row, t + 1), OMP_SUM, OMP_SIMD)
}
static void softmax_back_row_simd(float *dr, const float *ar, int t, int r1) { SOFTMAX_BACK_ROW(OMP_DOT, OMP_SIMD) }

#if GELU_HAVE_AVX2
/* Eight running maxima, folded at the end (max is exact in any order). */
__attribute__((target("avx2,fma"))) static float row_max_avx2(const float *x, int n) {
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
VECTORIZABLE_FP __attribute__((target("avx2,fma"))) static void softmax_row_avx2(float *row, int t, int T) {
    SOFTMAX_ROW(exp_arith, row_max_avx2(row, t + 1), OMP_SUM, OMP_SIMD)
}
__attribute__((target("avx2,fma"))) static void softmax_back_row_avx2(float *dr, const float *ar, int t, int r1) {
    SOFTMAX_BACK_ROW(OMP_DOT, OMP_SIMD)
}
#endif

static void pick_attention_rows(softmax_row_fn *fwd, softmax_back_row_fn *back) {
    cllm_simd path = cllm_simd_active();
    *fwd = softmax_row_simd, *back = softmax_back_row_simd;
    if (path == CLLM_SIMD_SCALAR) *fwd = softmax_row_ref, *back = softmax_back_row_ref;
#if GELU_HAVE_AVX2
    if (path >= CLLM_SIMD_AVX2) *fwd = softmax_row_avx2, *back = softmax_back_row_avx2;
#endif
}

/* The per-head products are GEMMs over strided views of qkv (row stride 3C),
 * so attention speeds up with cllm_sgemm. Causality is used block-wise: rows
 * [r0, r1) only need columns [0, r1), so the products cover a staircase
 * instead of the full T x T square (for T = 256: 62.5% of it with blocks of
 * 64). Blocks of 32 would compute 56% of the square but ran a step 3-5%
 * slower: every product is repacked per block (twice the packing), the dK/dV
 * products sum over only 32 positions per pass over C, and 32 rows fill the
 * 6-row register tile less well than 64. */
#ifndef ATT_ROW_BLOCK
#define ATT_ROW_BLOCK 64
#endif

void attention_forward(float *out, float *att, const float *qkv, int B, int T, int C, int NH) {
    int hs = C / NH;
    int ld = 3 * C;
    float scale = 1.0f / sqrtf((float)hs);
    softmax_row_fn softmax_row;
    softmax_back_row_fn unused;
    pick_attention_rows(&softmax_row, &unused);
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            const float *q = qkv + (size_t)b * T * ld + (size_t)h * hs;
            const float *k = q + C;
            const float *v = q + 2 * C;
            float *a = att + ((size_t)b * NH + h) * T * T;
            float *y = out + (size_t)b * T * C + (size_t)h * hs;
            for (int r0 = 0; r0 < T; r0 += ATT_ROW_BLOCK) {
                int r1 = r0 + ATT_ROW_BLOCK < T ? r0 + ATT_ROW_BLOCK : T, m = r1 - r0;
                float *ab = a + (size_t)r0 * T;
                cllm_sgemm(0, 1, m, r1, hs, scale, q + (size_t)r0 * ld, ld, k, ld, 0.0f, ab, T);
                for (int t = r0; t < r1; t++) softmax_row(a + (size_t)t * T, t, T);
                cllm_sgemm(0, 0, m, hs, r1, 1.0f, ab, T, v, ld, 0.0f, y + (size_t)r0 * C, C);
            }
        }
    }
}

/* beta 1 accumulates into dqkv, 0 overwrites it. Row blocks run last to
 * first: the last block's dK and dV products cover every key position, so
 * with beta 0 they write all of dK and dV before the earlier blocks add onto
 * them; each dQ row belongs to one block only. */
static void attention_backward_beta(float *dqkv, float beta, float *scratch, const float *dout, const float *qkv,
                                    const float *att, int B, int T, int C, int NH) {
    int hs = C / NH;
    int ld = 3 * C;
    float scale = 1.0f / sqrtf((float)hs);
    softmax_row_fn unused;
    softmax_back_row_fn softmax_back_row;
    pick_attention_rows(&unused, &softmax_back_row);
    int last_r0 = (T - 1) / ATT_ROW_BLOCK * ATT_ROW_BLOCK;
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            size_t head = (size_t)b * T * ld + (size_t)h * hs;
            const float *q = qkv + head, *k = q + C, *v = q + 2 * C;
            float *dq = dqkv + head, *dk = dq + C, *dv = dq + 2 * C;
            const float *a = att + ((size_t)b * NH + h) * T * T;
            const float *dy = dout + (size_t)b * T * C + (size_t)h * hs;
            for (int r0 = last_r0; r0 >= 0; r0 -= ATT_ROW_BLOCK) {
                int r1 = r0 + ATT_ROW_BLOCK < T ? r0 + ATT_ROW_BLOCK : T, m = r1 - r0;
                float kv_beta = r0 == last_r0 ? beta : 1.0f;
                const float *ab = a + (size_t)r0 * T, *dyb = dy + (size_t)r0 * C;
                float *ds = scratch + (size_t)r0 * T; /* dL/d(att), then dL/d(scores) in place */
                cllm_sgemm(0, 1, m, r1, hs, 1.0f, dyb, C, v, ld, 0.0f, ds, T);
                cllm_sgemm(1, 0, r1, hs, m, 1.0f, ab, T, dyb, C, kv_beta, dv, ld);
                for (int t = r0; t < r1; t++) softmax_back_row(scratch + (size_t)t * T, a + (size_t)t * T, t, r1);
                cllm_sgemm(0, 0, m, hs, r1, scale, ds, T, k, ld, beta, dq + (size_t)r0 * ld, ld);
                cllm_sgemm(1, 0, r1, hs, m, scale, ds, T, q + (size_t)r0 * ld, ld, kv_beta, dk, ld);
            }
        }
    }
}

void attention_backward(float *dqkv, float *scratch, const float *dout, const float *qkv, const float *att, int B,
                        int T, int C, int NH) {
    attention_backward_beta(dqkv, 1.0f, scratch, dout, qkv, att, B, T, C, NH);
}

void attention_backward_overwrite(float *dqkv, float *scratch, const float *dout, const float *qkv, const float *att,
                                  int B, int T, int C, int NH) {
    attention_backward_beta(dqkv, 0.0f, scratch, dout, qkv, att, B, T, C, NH);
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

typedef void (*gelu_backward_fn)(float *dinp, const float *inp, const float *dout, int n);

static void gelu_forward_ref(float *out, const float *inp, int n) { GELU_FORWARD_LOOP(tanhf) }
static void gelu_backward_ref(float *dinp, const float *inp, const float *dout, int n) {
    GELU_BACKWARD_LOOP(tanhf, +=)
}
static void gelu_backward_ref_set(float *dinp, const float *inp, const float *dout, int n) {
    GELU_BACKWARD_LOOP(tanhf, =)
}

VECTORIZABLE_FP static void gelu_forward_simd(float *out, const float *inp, int n) {
    #pragma omp simd
    GELU_FORWARD_LOOP(tanh_arith)
}
VECTORIZABLE_FP static void gelu_backward_simd(float *dinp, const float *inp, const float *dout, int n) {
    #pragma omp simd
    GELU_BACKWARD_LOOP(tanh_arith, +=)
}
VECTORIZABLE_FP static void gelu_backward_simd_set(float *dinp, const float *inp, const float *dout, int n) {
    #pragma omp simd
    GELU_BACKWARD_LOOP(tanh_arith, =)
}

#if GELU_HAVE_AVX2
/* The same loops compiled for 8-wide AVX2 + FMA, chosen at run time. */
VECTORIZABLE_FP __attribute__((target("avx2,fma"))) static void gelu_forward_avx2(float *out, const float *inp, int n) {
    #pragma omp simd
    GELU_FORWARD_LOOP(tanh_arith)
}
VECTORIZABLE_FP __attribute__((target("avx2,fma"))) static void gelu_backward_avx2(float *dinp, const float *inp,
                                                                                   const float *dout, int n) {
    #pragma omp simd
    GELU_BACKWARD_LOOP(tanh_arith, +=)
}
VECTORIZABLE_FP __attribute__((target("avx2,fma"))) static void gelu_backward_avx2_set(float *dinp, const float *inp,
                                                                                       const float *dout, int n) {
    #pragma omp simd
    GELU_BACKWARD_LOOP(tanh_arith, =)
}
#endif

void gelu_forward(float *out, const float *inp, int n) {
    cllm_simd path = cllm_simd_active();
    if (path == CLLM_SIMD_SCALAR) {
        gelu_forward_ref(out, inp, n);
        return;
    }
#if GELU_HAVE_AVX2
    if (path >= CLLM_SIMD_AVX2) {
        gelu_forward_avx2(out, inp, n);
        return;
    }
#endif
    gelu_forward_simd(out, inp, n);
}

static gelu_backward_fn pick_gelu_backward(int overwrite) {
    cllm_simd path = cllm_simd_active();
    if (path == CLLM_SIMD_SCALAR) return overwrite ? gelu_backward_ref_set : gelu_backward_ref;
#if GELU_HAVE_AVX2
    if (path >= CLLM_SIMD_AVX2) return overwrite ? gelu_backward_avx2_set : gelu_backward_avx2;
#endif
    return overwrite ? gelu_backward_simd_set : gelu_backward_simd;
}

void gelu_backward(float *dinp, const float *inp, const float *dout, int n) {
    pick_gelu_backward(0)(dinp, inp, dout, n);
}

void gelu_backward_overwrite(float *dinp, const float *inp, const float *dout, int n) {
    pick_gelu_backward(1)(dinp, inp, dout, n);
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

static void bias_gelu_ref(float *out, float *pre, const float *bias, int N, int C) { BIAS_GELU_ROWS(tanhf, ) }
VECTORIZABLE_FP static void bias_gelu_simd(float *out, float *pre, const float *bias, int N, int C) {
    BIAS_GELU_ROWS(tanh_arith, OMP_SIMD_LOOP)
}
#if GELU_HAVE_AVX2
VECTORIZABLE_FP __attribute__((target("avx2,fma"))) static void bias_gelu_avx2(float *out, float *pre,
                                                                               const float *bias, int N, int C) {
    BIAS_GELU_ROWS(tanh_arith, OMP_SIMD_LOOP)
}
#endif

void bias_gelu_forward(float *out, float *pre, const float *bias, int N, int C) {
    cllm_simd path = cllm_simd_active();
    if (path == CLLM_SIMD_SCALAR) {
        bias_gelu_ref(out, pre, bias, N, C);
        return;
    }
#if GELU_HAVE_AVX2
    if (path >= CLLM_SIMD_AVX2) {
        bias_gelu_avx2(out, pre, bias, N, C);
        return;
    }
#endif
    bias_gelu_simd(out, pre, bias, N, C);
}

/* ---------------------------------------------------------------- residual */

void residual_forward(float *out, const float *a, const float *b, int n) {
    for (int i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void residual_backward(float *da, float *db, const float *dout, int n) {
    for (int i = 0; i < n; i++) {
        da[i] += dout[i];
        db[i] += dout[i];
    }
}

/* ---------------------------------------------------------------- loss */

/* Per row: log-sum-exp with the maximum subtracted, and the gradient
 * exp(l - lse) * dloss. expf over the vocabulary was the largest cost after
 * the matrix products, so the fast paths use exp_arith like GELU; the scalar
 * path (libm expf, sequential sums) is the reference. */
/* The max stays a plain loop: clang will not vectorise a float max
 * reduction without fast-math, and it is cheap next to the exps. */
#define LSE_ROW(EXP, SIMD_SUM)                                    \
    float mx = l[0];                                              \
    for (int j = 1; j < V; j++) mx = l[j] > mx ? l[j] : mx;       \
    float sum = 0.0f;                                             \
    SIMD_SUM                                                      \
    for (int j = 0; j < V; j++) sum += EXP(l[j] - mx);            \
    return mx + logf(sum);

#define GRAD_ROW(EXP, SIMD)                                       \
    SIMD                                                          \
    for (int j = 0; j < V; j++) d[j] = EXP(l[j] - s) * dloss;

typedef float (*lse_row_fn)(const float *l, int V);
typedef void (*grad_row_fn)(float *d, const float *l, float s, float dloss, int V);

static float lse_row_ref(const float *l, int V) { LSE_ROW(expf, ) }
static void grad_row_ref(float *d, const float *l, float s, float dloss, int V) { GRAD_ROW(expf, ) }
VECTORIZABLE_FP static float lse_row_simd(const float *l, int V) { LSE_ROW(exp_arith, OMP_SUM) }
VECTORIZABLE_FP static void grad_row_simd(float *d, const float *l, float s, float dloss, int V) {
    GRAD_ROW(exp_arith, OMP_SIMD)
}
#if GELU_HAVE_AVX2
VECTORIZABLE_FP __attribute__((target("avx2,fma"))) static float lse_row_avx2(const float *l, int V) {
    LSE_ROW(exp_arith, OMP_SUM)
}
VECTORIZABLE_FP __attribute__((target("avx2,fma"))) static void grad_row_avx2(float *d, const float *l, float s,
                                                                              float dloss, int V) {
    GRAD_ROW(exp_arith, OMP_SIMD)
}
#endif

static void pick_softmax_rows(lse_row_fn *lse, grad_row_fn *grad) {
    cllm_simd path = cllm_simd_active();
    *lse = lse_row_simd, *grad = grad_row_simd;
    if (path == CLLM_SIMD_SCALAR) *lse = lse_row_ref, *grad = grad_row_ref;
#if GELU_HAVE_AVX2
    if (path >= CLLM_SIMD_AVX2) *lse = lse_row_avx2, *grad = grad_row_avx2;
#endif
}

void softmax_crossentropy_forward(float *losses, float *lse, const float *logits, const int32_t *targets, int N,
                                  int V) {
    lse_row_fn row_lse;
    grad_row_fn unused;
    pick_softmax_rows(&row_lse, &unused);
    for (int i = 0; i < N; i++) {
        const float *l = logits + (size_t)i * V;
        lse[i] = row_lse(l, V);
        losses[i] = lse[i] - l[targets[i]];
    }
}

void softmax_crossentropy_backward(float *dlogits, const float *logits, const float *lse, const int32_t *targets,
                                   float dloss, int N, int V) {
    lse_row_fn unused;
    grad_row_fn row_grad;
    pick_softmax_rows(&unused, &row_grad);
    for (int i = 0; i < N; i++) {
        float *d = dlogits + (size_t)i * V;
        row_grad(d, logits + (size_t)i * V, lse[i], dloss, V); /* elementwise: d may alias the logits */
        d[targets[i]] -= dloss;
    }
}
