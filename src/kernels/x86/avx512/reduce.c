/* AVX-512F reduction kernels. Compiled with a target attribute so the generic
 * build runs on any x86-64; chosen only when the CPU and OS support AVX-512F
 * (ZMM state enabled in XCR0). Only AVX-512F instructions are used (no DQ/VL),
 * and no FMA: the results must be bitwise those of the scalar reference (see
 * include/cllm/kernels/kernels.h). */
#include "../../reduce_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f")))

AVX512 static inline __m512 sum16(const float *const *srcs, int k, size_t i) {
    __m512 acc = _mm512_loadu_ps(srcs[0] + i);
    for (int j = 1; j < k; j++) acc = _mm512_add_ps(acc, _mm512_loadu_ps(srcs[j] + i));
    return acc;
}

AVX512 void cllm_sum_avx512(float *dst, const float *const *srcs, int k, size_t n) {
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        __m512 a0 = _mm512_loadu_ps(srcs[0] + i), a1 = _mm512_loadu_ps(srcs[0] + i + 16);
        __m512 a2 = _mm512_loadu_ps(srcs[0] + i + 32), a3 = _mm512_loadu_ps(srcs[0] + i + 48);
        for (int j = 1; j < k; j++) {
            const float *s = srcs[j] + i;
            a0 = _mm512_add_ps(a0, _mm512_loadu_ps(s));
            a1 = _mm512_add_ps(a1, _mm512_loadu_ps(s + 16));
            a2 = _mm512_add_ps(a2, _mm512_loadu_ps(s + 32));
            a3 = _mm512_add_ps(a3, _mm512_loadu_ps(s + 48));
        }
        _mm512_storeu_ps(dst + i, a0);
        _mm512_storeu_ps(dst + i + 16, a1);
        _mm512_storeu_ps(dst + i + 32, a2);
        _mm512_storeu_ps(dst + i + 48, a3);
    }
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, sum16(srcs, k, i));
    for (; i < n; i++) dst[i] = sum_element(srcs, k, i);
}

AVX512 static inline __m512d square_pd(__m256 x) {
    __m512d d = _mm512_cvtps_pd(x);
    return _mm512_mul_pd(d, d);
}

AVX512 void cllm_sum_sq_avx512(float *dst, const float *const *srcs, int k, size_t n, double *sq) {
    for (size_t start = 0; start < n; start += CLLM_SQ_CHUNK) {
        size_t len = n - start < CLLM_SQ_CHUNK ? n - start : CLLM_SQ_CHUNK;
        size_t full = len / CLLM_SQ_LANES * CLLM_SQ_LANES;
        /* acc_lo: lanes 0..7, acc_hi: lanes 8..15 of the 16-lane pattern. */
        __m512d acc_lo = _mm512_setzero_pd(), acc_hi = _mm512_setzero_pd();
        for (size_t g = 0; g < full; g += CLLM_SQ_LANES) {
            size_t i = start + g;
            __m512 x = sum16(srcs, k, i);
            _mm512_storeu_ps(dst + i, x);
            __m256 lo = _mm512_castps512_ps256(x);
            __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1));
            acc_lo = _mm512_add_pd(acc_lo, square_pd(lo));
            acc_hi = _mm512_add_pd(acc_hi, square_pd(hi));
        }
        double lanes[CLLM_SQ_LANES];
        _mm512_storeu_pd(lanes, acc_lo);
        _mm512_storeu_pd(lanes + 8, acc_hi);
        for (size_t j = full; j < len; j++) {
            float x = sum_element(srcs, k, start + j);
            dst[start + j] = x;
            lanes[j % CLLM_SQ_LANES] += (double)x * (double)x;
        }
        sq[start / CLLM_SQ_CHUNK] = sq_lanes_total(lanes);
    }
}

AVX512 void cllm_sum_adamw_avx512(float *params, float *m, float *v, const float *const *srcs, int k,
                                  float grad_scale, size_t n, const cllm_adamw_step *h, int decay) {
    adamw_consts c = adamw_consts_make(h, decay);
    const __m512 scale = _mm512_set1_ps(grad_scale), df = _mm512_set1_ps(c.decay_factor);
    const __m512 b1 = _mm512_set1_ps(c.beta1), omb1 = _mm512_set1_ps(c.one_minus_beta1);
    const __m512 b2 = _mm512_set1_ps(c.beta2), omb2 = _mm512_set1_ps(c.one_minus_beta2);
    const __m512 bc1 = _mm512_set1_ps(c.bc1), bc2 = _mm512_set1_ps(c.bc2);
    const __m512 lr = _mm512_set1_ps(c.lr), eps = _mm512_set1_ps(c.eps);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 g = _mm512_mul_ps(sum16(srcs, k, i), scale);
        __m512 x = _mm512_loadu_ps(params + i);
        __m512 decayed = _mm512_sub_ps(x, _mm512_mul_ps(df, x));
        __m512 mi = _mm512_add_ps(_mm512_mul_ps(b1, _mm512_loadu_ps(m + i)), _mm512_mul_ps(omb1, g));
        __m512 vi = _mm512_add_ps(_mm512_mul_ps(b2, _mm512_loadu_ps(v + i)), _mm512_mul_ps(_mm512_mul_ps(omb2, g), g));
        __m512 m_hat = _mm512_div_ps(mi, bc1);
        __m512 v_hat = _mm512_div_ps(vi, bc2);
        __m512 step = _mm512_div_ps(_mm512_mul_ps(lr, m_hat), _mm512_add_ps(_mm512_sqrt_ps(v_hat), eps));
        _mm512_storeu_ps(params + i, _mm512_sub_ps(decayed, step));
        _mm512_storeu_ps(m + i, mi);
        _mm512_storeu_ps(v + i, vi);
    }
    for (; i < n; i++) adamw_element(&c, sum_element(srcs, k, i) * grad_scale, &params[i], &m[i], &v[i]);
}
#endif
