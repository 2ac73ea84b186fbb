/* The AVX-512F row kernels (CLLM_SIMD=avx512): GELU, softmax and the
 * cross-entropy rows written with intrinsics (16 lanes, masked tails, exp by
 * vscalefps, a Newton-refined reciprocal), and the LayerNorm, residual and
 * column-sum loops of the other builds compiled for 512-bit vectors. */
#include "../../rows_internal.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#include "../lanes.h"

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

/* ---------------------------------------------------------------- layernorm, residual, column sums */

TARGET_AVX512 void cllm_layernorm_row_avx512(float *o, float *mean, float *rstd, const float *x, const float *weight,
                                            const float *bias, int C) {
    LN_ROW(OMP_SUM_M, OMP_SUM_V, OMP_SIMD_LOOP)
}
TARGET_AVX512 void cllm_layernorm_backward_row_avx512(float *dx, float *dweight, float *dbias, const float *d,
                                                     const float *x, const float *weight, float m, float s, int C) {
    LN_BACK_ROW(OMP_SUMS_G, OMP_SIMD_LOOP)
}
TARGET_AVX512 void cllm_residual_row_avx512(float *r, const float *a, const float *b, const float *b_bias, int C) {
    RESIDUAL_ROW(OMP_SIMD_LOOP)
}
TARGET_AVX512 void cllm_column_sums_avx512(float *dbias, const float *dout, int N, int n) {
    COLUMN_SUMS(OMP_SIMD_LOOP)
}

/* ---------------------------------------------------------------- attention */

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

TARGET_AVX512 void cllm_softmax_row_avx512(float *row, int t, int T) {
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

TARGET_AVX512 void cllm_softmax_backward_row_avx512(float *dr, const float *ar, int t, int r1) {
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

/* ---------------------------------------------------------------- gelu */

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

TARGET_AVX512 void cllm_gelu_avx512(float *out, const float *inp, int n) {
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
TARGET_AVX512 void cllm_gelu_backward_avx512(float *dinp, const float *inp, const float *dout, int n) {
    gelu_backward_avx512_loop(dinp, inp, dout, n, 1);
}
TARGET_AVX512 void cllm_gelu_backward_set_avx512(float *dinp, const float *inp, const float *dout, int n) {
    gelu_backward_avx512_loop(dinp, inp, dout, n, 0);
}

AVX512_INLINE void bias_gelu16(float *o, float *p, const float *bias, __mmask16 lanes) {
    __m512 x = _mm512_add_ps(_mm512_maskz_loadu_ps(lanes, p), _mm512_maskz_loadu_ps(lanes, bias));
    _mm512_mask_storeu_ps(p, lanes, x);
    _mm512_mask_storeu_ps(o, lanes, gelu512(x));
}
TARGET_AVX512 void cllm_bias_gelu_avx512(float *out, float *pre, const float *bias, int N, int C) {
    for (int i = 0; i < N; i++) {
        float *p = pre + (size_t)i * C, *o = out + (size_t)i * C;
        int j = 0;
        for (; j + 16 <= C; j += 16) bias_gelu16(o + j, p + j, bias + j, (__mmask16)0xFFFF);
        if (j < C) bias_gelu16(o + j, p + j, bias + j, cllm_first_lanes16(C - j));
    }
}

/* ---------------------------------------------------------------- loss */

TARGET_AVX512 float cllm_logsumexp_row_avx512(const float *l, int V) {
    float mx = row_max_avx512(l, V);
    __m512 m = _mm512_set1_ps(mx), sum = _mm512_setzero_ps();
    int j = 0;
    for (; j + 16 <= V; j += 16) sum = _mm512_add_ps(sum, exp512(_mm512_sub_ps(_mm512_loadu_ps(l + j), m)));
    __mmask16 tail = cllm_first_lanes16(V - j);
    if (tail) sum = _mm512_mask_add_ps(sum, tail, sum, exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, l + j), m)));
    return mx + logf(sum512(sum));
}
TARGET_AVX512 void cllm_softmax_grad_row_avx512(float *d, const float *l, float s, float dloss, int V) {
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
