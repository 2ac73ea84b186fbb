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
#define GELU_HAVE_AVX2 1   /* AVX2 + FMA builds of the loops, chosen at run time */
#define LAYERS_HAVE_AVX512 1 /* AVX-512F builds, chosen when the path is avx512 */
#else
#define GELU_HAVE_AVX2 0
#define LAYERS_HAVE_AVX512 0
#endif

/* Which build of the element-wise loops runs: every pick_* below asks this
 * one function, so the path test_layers forces is the build that runs. */
static cllm_simd elementwise_build(void) {
    cllm_simd path = cllm_simd_active();
    if (path == CLLM_SIMD_SCALAR) return CLLM_SIMD_SCALAR;
#if LAYERS_HAVE_AVX512
    if (path >= CLLM_SIMD_AVX512) return CLLM_SIMD_AVX512;
#endif
#if GELU_HAVE_AVX2
    if (path >= CLLM_SIMD_AVX2) return CLLM_SIMD_AVX2;
#endif
    return CLLM_SIMD_OMP;
}

const char *layers_simd_build(void) { return cllm_simd_name(elementwise_build()); }

#if LAYERS_HAVE_AVX512
/* GCC vectorises `omp simd` loops in an avx512f function with 256-bit
 * vectors when the tuning prefers them (-mtune=skylake-avx512 and later), so
 * it is asked for 512 explicitly; clang has no such target option (it warns
 * and drops the whole attribute) and uses 512-bit vectors under avx512f. */
#if defined(__clang__)
#define TARGET_AVX512 __attribute__((target("avx512f,fma")))
#else
#define TARGET_AVX512 __attribute__((target("avx512f,fma,prefer-vector-width=512")))
#endif
#define AVX512_INLINE TARGET_AVX512 static inline __attribute__((always_inline))

/* The tails of the hand-written loops are masked loads and stores
 * (cllm_first_lanes16), which never touch the masked-out memory, instead of a
 * scalar remainder loop. */

/* exp_arith on 16 lanes: the same clamp, range reduction and degree-6
 * polynomial; 2^n is applied by vscalefps, exact and NaN-preserving, instead
 * of building exponent bits. max/min return their second operand when either
 * is NaN, so a NaN x passes the clamps and propagates. */
AVX512_INLINE __m512 exp512(__m512 x) {
    x = _mm512_min_ps(_mm512_set1_ps(88.0f), _mm512_max_ps(_mm512_set1_ps(-87.0f), x));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187e-06f), r);
    __m512 p = _mm512_set1_ps(1.0f / 720);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

/* 1/d for d >= 1 (1 + exp): a 14-bit estimate and one Newton step, about one
 * ulp, at a fraction of vdivps's cost (GELU's division bounded its loop). */
AVX512_INLINE __m512 recip512(__m512 d) {
    __m512 r = _mm512_rcp14_ps(d);
    return _mm512_fmadd_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(1.0f)), r);
}

/* Horizontal sums in one fixed order, so a row's result never depends on
 * anything but its data. */
AVX512_INLINE float sum512(__m512 v) { return _mm512_reduce_add_ps(v); }
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
#if LAYERS_HAVE_AVX512
TARGET_AVX512 static void ln_row_avx512(float *o, float *mean, float *rstd, const float *x, const float *weight,
                                        const float *bias, int C) {
    LN_ROW(OMP_SUM_M, OMP_SUM_V, OMP_SIMD_LOOP)
}
TARGET_AVX512 static void ln_back_row_avx512(float *dx, float *dweight, float *dbias, const float *d,
                                             const float *x, const float *weight, float m, float s, int C) {
    LN_BACK_ROW(OMP_SUMS_G, OMP_SIMD_LOOP)
}
#endif

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

typedef void (*residual_row_fn)(float *r, const float *a, const float *b, const float *b_bias, int C);

static void residual_row_plain(float *r, const float *a, const float *b, const float *b_bias, int C) {
    RESIDUAL_ROW()
}
#if GELU_HAVE_AVX2
__attribute__((target("avx2,fma"))) static void residual_row_avx2(float *r, const float *a, const float *b,
                                                                  const float *b_bias, int C) {
    RESIDUAL_ROW(OMP_SIMD_LOOP)
}
#endif
#if LAYERS_HAVE_AVX512
TARGET_AVX512 static void residual_row_avx512(float *r, const float *a, const float *b, const float *b_bias,
                                              int C) {
    RESIDUAL_ROW(OMP_SIMD_LOOP)
}
#endif

static residual_row_fn pick_residual_row(void) {
    switch (elementwise_build()) {
#if LAYERS_HAVE_AVX512
    case CLLM_SIMD_AVX512: return residual_row_avx512;
#endif
#if GELU_HAVE_AVX2
    case CLLM_SIMD_AVX2: return residual_row_avx2;
#endif
    default: return residual_row_plain;
    }
}

static void pick_layernorm_rows(ln_row_fn *fwd, ln_back_row_fn *back) {
    switch (elementwise_build()) {
    case CLLM_SIMD_SCALAR: *fwd = ln_row_ref, *back = ln_back_row_ref; return;
#if LAYERS_HAVE_AVX512
    case CLLM_SIMD_AVX512: *fwd = ln_row_avx512, *back = ln_back_row_avx512; return;
#endif
#if GELU_HAVE_AVX2
    case CLLM_SIMD_AVX2: *fwd = ln_row_avx2, *back = ln_back_row_avx2; return;
#endif
    default: *fwd = ln_row_simd, *back = ln_back_row_simd; return;
    }
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
    residual_row_fn residual = pick_residual_row();
    for (int i = 0; i < N; i++) {
        float *r = res + (size_t)i * C;
        residual(r, a + (size_t)i * C, b + (size_t)i * C, b_bias, C);
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

/* dbias[j] += sum over rows of dout[i][j], rows in order: each column's
 * sum is the same sequence of adds in every build (the wide ones run 8 or 16
 * columns at once), so the bits never depend on the path. */
#define COLUMN_SUMS(SIMD)                                                    \
    for (int i = 0; i < N; i++) {                                            \
        const float *d = dout + (size_t)i * n;                               \
        SIMD                                                                 \
        for (int j = 0; j < n; j++) dbias[j] += d[j];                        \
    }

typedef void (*column_sums_fn)(float *dbias, const float *dout, int N, int n);

static void column_sums_plain(float *dbias, const float *dout, int N, int n) { COLUMN_SUMS() }
#if GELU_HAVE_AVX2
__attribute__((target("avx2,fma"))) static void column_sums_avx2(float *dbias, const float *dout, int N, int n) {
    COLUMN_SUMS(OMP_SIMD_LOOP)
}
#endif
#if LAYERS_HAVE_AVX512
TARGET_AVX512 static void column_sums_avx512(float *dbias, const float *dout, int N, int n) {
    COLUMN_SUMS(OMP_SIMD_LOOP)
}
#endif

static void add_column_sums(float *dbias, const float *dout, int N, int n) {
    switch (elementwise_build()) {
#if LAYERS_HAVE_AVX512
    case CLLM_SIMD_AVX512: column_sums_avx512(dbias, dout, N, n); return;
#endif
#if GELU_HAVE_AVX2
    case CLLM_SIMD_AVX2: column_sums_avx2(dbias, dout, N, n); return;
#endif
    default: column_sums_plain(dbias, dout, N, n); return;
    }
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
        add_column_sums(dbias, dout, N, n_out);
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

#if LAYERS_HAVE_AVX512
/* Sixteen running maxima, folded at the end; the masked tail keeps the
 * running value in the lanes past n. */
AVX512_INLINE float row_max_avx512(const float *x, int n) {
    __m512 m = _mm512_set1_ps(x[0]);
    int j = 0;
    for (; j + 16 <= n; j += 16) m = _mm512_max_ps(m, _mm512_loadu_ps(x + j));
    if (j < n) m = _mm512_mask_max_ps(m, cllm_first_lanes16(n - j), m, _mm512_maskz_loadu_ps(cllm_first_lanes16(n - j), x + j));
    return _mm512_reduce_max_ps(m);
}

/* Fills [from, to) with zeros, 16 at a time. */
AVX512_INLINE void zero_avx512(float *p, int from, int to) {
    int j = from;
    for (; j + 16 <= to; j += 16) _mm512_storeu_ps(p + j, _mm512_setzero_ps());
    if (j < to) _mm512_mask_storeu_ps(p + j, cllm_first_lanes16(to - j), _mm512_setzero_ps());
}

TARGET_AVX512 static void softmax_row_avx512(float *row, int t, int T) {
    int n = t + 1, j = 0;
    __m512 mx = _mm512_set1_ps(row_max_avx512(row, n)), sum = _mm512_setzero_ps();
    for (; j + 16 <= n; j += 16) {
        __m512 e = exp512(_mm512_sub_ps(_mm512_loadu_ps(row + j), mx));
        _mm512_storeu_ps(row + j, e);
        sum = _mm512_add_ps(sum, e);
    }
    __mmask16 tail = cllm_first_lanes16(n - j);
    if (tail) {
        __m512 e = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, row + j), mx));
        _mm512_mask_storeu_ps(row + j, tail, e);
        sum = _mm512_mask_add_ps(sum, tail, sum, e);
    }
    __m512 inv = _mm512_set1_ps(1.0f / sum512(sum));
    for (j = 0; j + 16 <= n; j += 16) _mm512_storeu_ps(row + j, _mm512_mul_ps(_mm512_loadu_ps(row + j), inv));
    if (tail) _mm512_mask_storeu_ps(row + j, tail, _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, row + j), inv));
    zero_avx512(row, n, T);
}

TARGET_AVX512 static void softmax_back_row_avx512(float *dr, const float *ar, int t, int r1) {
    int n = t + 1, j = 0;
    __m512 dot = _mm512_setzero_ps();
    for (; j + 16 <= n; j += 16) dot = _mm512_fmadd_ps(_mm512_loadu_ps(ar + j), _mm512_loadu_ps(dr + j), dot);
    __mmask16 tail = cllm_first_lanes16(n - j);
    /* Masked-off lanes load as zeros and add nothing. */
    if (tail) dot = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, ar + j), _mm512_maskz_loadu_ps(tail, dr + j), dot);
    __m512 d = _mm512_set1_ps(sum512(dot));
    for (j = 0; j + 16 <= n; j += 16)
        _mm512_storeu_ps(dr + j, _mm512_mul_ps(_mm512_loadu_ps(ar + j), _mm512_sub_ps(_mm512_loadu_ps(dr + j), d)));
    if (tail) {
        __m512 a = _mm512_maskz_loadu_ps(tail, ar + j), g = _mm512_maskz_loadu_ps(tail, dr + j);
        _mm512_mask_storeu_ps(dr + j, tail, _mm512_mul_ps(a, _mm512_sub_ps(g, d)));
    }
    zero_avx512(dr, n, r1);
}
#endif

static void pick_attention_rows(softmax_row_fn *fwd, softmax_back_row_fn *back) {
    switch (elementwise_build()) {
    case CLLM_SIMD_SCALAR: *fwd = softmax_row_ref, *back = softmax_back_row_ref; return;
#if LAYERS_HAVE_AVX512
    case CLLM_SIMD_AVX512: *fwd = softmax_row_avx512, *back = softmax_back_row_avx512; return;
#endif
#if GELU_HAVE_AVX2
    case CLLM_SIMD_AVX2: *fwd = softmax_row_avx2, *back = softmax_back_row_avx2; return;
#endif
    default: *fwd = softmax_row_simd, *back = softmax_back_row_simd; return;
    }
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

#if LAYERS_HAVE_AVX512
/* Written by hand rather than from the macros: with tanh(u) =
 * 1 - 2 sigma(-2u), sigma(z) = 1 / (1 + e^-z), GELU is x * sigma(2u) and its
 * derivative sigma(2u) * (1 + 2x (1 - sigma(2u)) du/dx), one exp and one
 * reciprocal (recip512, not a division) per element and no cancellation in
 * 1 + tanh. The same algebra, just fewer operations; test_layers holds it
 * to the libm reference like the other paths. */
#define GELU_M2S (-2.0f * GELU_SCALE)              /* -2u = x (M2S + M2SC x^2) */
#define GELU_M2SC (-2.0f * GELU_SCALE * GELU_CUBIC)
#define GELU_2S (2.0f * GELU_SCALE)                /* 2 du/dx = 2S + 2S3C x^2 */
#define GELU_2S3C (2.0f * GELU_SCALE * 3.0f * GELU_CUBIC)

/* sigma(2u) for input x. */
AVX512_INLINE __m512 gelu_sigma512(__m512 x, __m512 x2) {
    __m512 minus_2u = _mm512_mul_ps(x, _mm512_fmadd_ps(x2, _mm512_set1_ps(GELU_M2SC), _mm512_set1_ps(GELU_M2S)));
    return recip512(_mm512_add_ps(_mm512_set1_ps(1.0f), exp512(minus_2u)));
}

AVX512_INLINE __m512 gelu512(__m512 x) { return _mm512_mul_ps(x, gelu_sigma512(x, _mm512_mul_ps(x, x))); }

AVX512_INLINE __m512 gelu_grad512(__m512 x) {
    __m512 x2 = _mm512_mul_ps(x, x);
    __m512 sg = gelu_sigma512(x, x2);
    __m512 x_2du = _mm512_mul_ps(x, _mm512_fmadd_ps(x2, _mm512_set1_ps(GELU_2S3C), _mm512_set1_ps(GELU_2S)));
    __m512 m = _mm512_fnmadd_ps(sg, x_2du, x_2du); /* 2x du (1 - sigma) */
    return _mm512_fmadd_ps(sg, m, sg);
}

TARGET_AVX512 static void gelu_forward_avx512(float *out, const float *inp, int n) {
    int i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(out + i, gelu512(_mm512_loadu_ps(inp + i)));
    __mmask16 tail = cllm_first_lanes16(n - i);
    if (tail) _mm512_mask_storeu_ps(out + i, tail, gelu512(_mm512_maskz_loadu_ps(tail, inp + i)));
}

/* accumulate 1: dinp += grad * dout; 0: dinp = grad * dout (dinp may alias
 * dout: each lane is read before it is written). */
AVX512_INLINE __m512 gelu_backward16(__m512 x, __m512 d, __m512 old, int accumulate) {
    __m512 g = _mm512_mul_ps(gelu_grad512(x), d);
    return accumulate ? _mm512_add_ps(old, g) : g;
}

AVX512_INLINE void gelu_backward_avx512_loop(float *dinp, const float *inp, const float *dout, int n,
                                             int accumulate) {
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 old = accumulate ? _mm512_loadu_ps(dinp + i) : _mm512_setzero_ps();
        __m512 v = gelu_backward16(_mm512_loadu_ps(inp + i), _mm512_loadu_ps(dout + i), old, accumulate);
        _mm512_storeu_ps(dinp + i, v);
    }
    __mmask16 tail = cllm_first_lanes16(n - i);
    if (tail) {
        __m512 old = accumulate ? _mm512_maskz_loadu_ps(tail, dinp + i) : _mm512_setzero_ps();
        __m512 v = gelu_backward16(_mm512_maskz_loadu_ps(tail, inp + i), _mm512_maskz_loadu_ps(tail, dout + i), old,
                                   accumulate);
        _mm512_mask_storeu_ps(dinp + i, tail, v);
    }
}
TARGET_AVX512 static void gelu_backward_avx512(float *dinp, const float *inp, const float *dout, int n) {
    gelu_backward_avx512_loop(dinp, inp, dout, n, 1);
}
TARGET_AVX512 static void gelu_backward_avx512_set(float *dinp, const float *inp, const float *dout, int n) {
    gelu_backward_avx512_loop(dinp, inp, dout, n, 0);
}
#endif

void gelu_forward(float *out, const float *inp, int n) {
    switch (elementwise_build()) {
    case CLLM_SIMD_SCALAR: gelu_forward_ref(out, inp, n); return;
#if LAYERS_HAVE_AVX512
    case CLLM_SIMD_AVX512: gelu_forward_avx512(out, inp, n); return;
#endif
#if GELU_HAVE_AVX2
    case CLLM_SIMD_AVX2: gelu_forward_avx2(out, inp, n); return;
#endif
    default: gelu_forward_simd(out, inp, n); return;
    }
}

static gelu_backward_fn pick_gelu_backward(int overwrite) {
    switch (elementwise_build()) {
    case CLLM_SIMD_SCALAR: return overwrite ? gelu_backward_ref_set : gelu_backward_ref;
#if LAYERS_HAVE_AVX512
    case CLLM_SIMD_AVX512: return overwrite ? gelu_backward_avx512_set : gelu_backward_avx512;
#endif
#if GELU_HAVE_AVX2
    case CLLM_SIMD_AVX2: return overwrite ? gelu_backward_avx2_set : gelu_backward_avx2;
#endif
    default: return overwrite ? gelu_backward_simd_set : gelu_backward_simd;
    }
}

void gelu_backward(float *dinp, const float *inp, const float *dout, int n) {
    pick_gelu_backward(0)(dinp, inp, dout, n);
}

void gelu_backward_overwrite(float *dinp, const float *inp, const float *dout, int n) {
    pick_gelu_backward(1)(dinp, inp, dout, n);
}

void gelu_backward_overwrite_bias_sums(float *dinp, float *dbias, const float *inp, const float *dout, int N, int C) {
    gelu_backward_fn row = pick_gelu_backward(1);
    /* Row by row, so each gradient row is summed from L1 right after it is
     * written; the sums are add_column_sums' (rows in order), so the bits
     * equal gelu_backward_overwrite followed by the product's bias sums. */
    for (int i = 0; i < N; i++) {
        float *d = dinp + (size_t)i * C;
        row(d, inp + (size_t)i * C, dout + (size_t)i * C, C);
        add_column_sums(dbias, d, 1, C);
    }
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

#if LAYERS_HAVE_AVX512
AVX512_INLINE void bias_gelu16(float *o, float *p, const float *bias, __mmask16 lanes) {
    __m512 x = _mm512_add_ps(_mm512_maskz_loadu_ps(lanes, p), _mm512_maskz_loadu_ps(lanes, bias));
    _mm512_mask_storeu_ps(p, lanes, x);
    _mm512_mask_storeu_ps(o, lanes, gelu512(x));
}
TARGET_AVX512 static void bias_gelu_avx512(float *out, float *pre, const float *bias, int N, int C) {
    for (int i = 0; i < N; i++) {
        float *p = pre + (size_t)i * C, *o = out + (size_t)i * C;
        int j = 0;
        for (; j + 16 <= C; j += 16) bias_gelu16(o + j, p + j, bias + j, (__mmask16)0xFFFF);
        if (j < C) bias_gelu16(o + j, p + j, bias + j, cllm_first_lanes16(C - j));
    }
}
#endif

void bias_gelu_forward(float *out, float *pre, const float *bias, int N, int C) {
    switch (elementwise_build()) {
    case CLLM_SIMD_SCALAR: bias_gelu_ref(out, pre, bias, N, C); return;
#if LAYERS_HAVE_AVX512
    case CLLM_SIMD_AVX512: bias_gelu_avx512(out, pre, bias, N, C); return;
#endif
#if GELU_HAVE_AVX2
    case CLLM_SIMD_AVX2: bias_gelu_avx2(out, pre, bias, N, C); return;
#endif
    default: bias_gelu_simd(out, pre, bias, N, C); return;
    }
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

typedef float (*lse_row_fn)(const float *l, int V);
typedef void (*grad_row_fn)(float *d, const float *l, float s, float dloss, int V);

static float lse_row_ref(const float *l, int V) { LSE_ROW(expf, row_max(l, V), ) }
static void grad_row_ref(float *d, const float *l, float s, float dloss, int V) { GRAD_ROW(expf, ) }
VECTORIZABLE_FP static float lse_row_simd(const float *l, int V) { LSE_ROW(exp_arith, row_max(l, V), OMP_SUM) }
VECTORIZABLE_FP static void grad_row_simd(float *d, const float *l, float s, float dloss, int V) {
    GRAD_ROW(exp_arith, OMP_SIMD)
}
#if GELU_HAVE_AVX2
VECTORIZABLE_FP __attribute__((target("avx2,fma"))) static float lse_row_avx2(const float *l, int V) {
    LSE_ROW(exp_arith, row_max_avx2(l, V), OMP_SUM)
}
VECTORIZABLE_FP __attribute__((target("avx2,fma"))) static void grad_row_avx2(float *d, const float *l, float s,
                                                                              float dloss, int V) {
    GRAD_ROW(exp_arith, OMP_SIMD)
}
#endif

#if LAYERS_HAVE_AVX512
TARGET_AVX512 static float lse_row_avx512(const float *l, int V) {
    float mx = row_max_avx512(l, V);
    __m512 m = _mm512_set1_ps(mx), sum = _mm512_setzero_ps();
    int j = 0;
    for (; j + 16 <= V; j += 16) sum = _mm512_add_ps(sum, exp512(_mm512_sub_ps(_mm512_loadu_ps(l + j), m)));
    __mmask16 tail = cllm_first_lanes16(V - j);
    if (tail) sum = _mm512_mask_add_ps(sum, tail, sum, exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, l + j), m)));
    return mx + logf(sum512(sum));
}
TARGET_AVX512 static void grad_row_avx512(float *d, const float *l, float s, float dloss, int V) {
    __m512 sv = _mm512_set1_ps(s), scale = _mm512_set1_ps(dloss);
    int j = 0;
    for (; j + 16 <= V; j += 16)
        _mm512_storeu_ps(d + j, _mm512_mul_ps(exp512(_mm512_sub_ps(_mm512_loadu_ps(l + j), sv)), scale));
    __mmask16 tail = cllm_first_lanes16(V - j);
    if (tail) {
        __m512 e = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, l + j), sv));
        _mm512_mask_storeu_ps(d + j, tail, _mm512_mul_ps(e, scale));
    }
}
#endif

static void pick_softmax_rows(lse_row_fn *lse, grad_row_fn *grad) {
    switch (elementwise_build()) {
    case CLLM_SIMD_SCALAR: *lse = lse_row_ref, *grad = grad_row_ref; return;
#if LAYERS_HAVE_AVX512
    case CLLM_SIMD_AVX512: *lse = lse_row_avx512, *grad = grad_row_avx512; return;
#endif
#if GELU_HAVE_AVX2
    case CLLM_SIMD_AVX2: *lse = lse_row_avx2, *grad = grad_row_avx2; return;
#endif
    default: *lse = lse_row_simd, *grad = grad_row_simd; return;
    }
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
