/* AVX2 (+FMA CPU) reduction kernels. Compiled with a target attribute so the
 * generic build runs on any x86-64; chosen only when the CPU and OS support
 * AVX2. No FMA instruction is used on purpose: the results must be bitwise
 * those of the scalar reference (see include/cllm/kernels/kernels.h). */
#include "../../reduce_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma")))

AVX2 static inline __m256 sum8(const float *const *srcs, int k, size_t i) {
    __m256 acc = _mm256_loadu_ps(srcs[0] + i);
    for (int j = 1; j < k; j++) acc = _mm256_add_ps(acc, _mm256_loadu_ps(srcs[j] + i));
    return acc;
}

AVX2 void cllm_sum_avx2(float *dst, const float *const *srcs, int k, size_t n) {
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256 a0 = _mm256_loadu_ps(srcs[0] + i), a1 = _mm256_loadu_ps(srcs[0] + i + 8);
        __m256 a2 = _mm256_loadu_ps(srcs[0] + i + 16), a3 = _mm256_loadu_ps(srcs[0] + i + 24);
        for (int j = 1; j < k; j++) {
            const float *s = srcs[j] + i;
            a0 = _mm256_add_ps(a0, _mm256_loadu_ps(s));
            a1 = _mm256_add_ps(a1, _mm256_loadu_ps(s + 8));
            a2 = _mm256_add_ps(a2, _mm256_loadu_ps(s + 16));
            a3 = _mm256_add_ps(a3, _mm256_loadu_ps(s + 24));
        }
        _mm256_storeu_ps(dst + i, a0);
        _mm256_storeu_ps(dst + i + 8, a1);
        _mm256_storeu_ps(dst + i + 16, a2);
        _mm256_storeu_ps(dst + i + 24, a3);
    }
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, sum8(srcs, k, i));
    for (; i < n; i++) dst[i] = sum_element(srcs, k, i);
}

AVX2 static inline __m256d square_pd(__m128 x) {
    __m256d d = _mm256_cvtps_pd(x);
    return _mm256_mul_pd(d, d);
}

AVX2 void cllm_sum_sq_avx2(float *dst, const float *const *srcs, int k, size_t n, double *sq) {
    for (size_t start = 0; start < n; start += CLLM_SQ_CHUNK) {
        size_t len = n - start < CLLM_SQ_CHUNK ? n - start : CLLM_SQ_CHUNK;
        size_t full = len / CLLM_SQ_LANES * CLLM_SQ_LANES;
        /* acc[r] holds lanes 4r..4r+3 of the 16-lane pattern. */
        __m256d acc0 = _mm256_setzero_pd(), acc1 = _mm256_setzero_pd();
        __m256d acc2 = _mm256_setzero_pd(), acc3 = _mm256_setzero_pd();
        for (size_t g = 0; g < full; g += CLLM_SQ_LANES) {
            size_t i = start + g;
            __m256 x0 = sum8(srcs, k, i), x1 = sum8(srcs, k, i + 8);
            _mm256_storeu_ps(dst + i, x0);
            _mm256_storeu_ps(dst + i + 8, x1);
            acc0 = _mm256_add_pd(acc0, square_pd(_mm256_castps256_ps128(x0)));
            acc1 = _mm256_add_pd(acc1, square_pd(_mm256_extractf128_ps(x0, 1)));
            acc2 = _mm256_add_pd(acc2, square_pd(_mm256_castps256_ps128(x1)));
            acc3 = _mm256_add_pd(acc3, square_pd(_mm256_extractf128_ps(x1, 1)));
        }
        double lanes[CLLM_SQ_LANES];
        _mm256_storeu_pd(lanes, acc0);
        _mm256_storeu_pd(lanes + 4, acc1);
        _mm256_storeu_pd(lanes + 8, acc2);
        _mm256_storeu_pd(lanes + 12, acc3);
        for (size_t j = full; j < len; j++) {
            float x = sum_element(srcs, k, start + j);
            dst[start + j] = x;
            lanes[j % CLLM_SQ_LANES] += (double)x * (double)x;
        }
        sq[start / CLLM_SQ_CHUNK] = sq_lanes_total(lanes);
    }
}

AVX2 void cllm_sum_adamw_avx2(float *params, float *m, float *v, const float *const *srcs, int k, float grad_scale,
                              size_t n, const cllm_adamw_step *h, int decay) {
    adamw_consts c = adamw_consts_make(h, decay);
    const __m256 scale = _mm256_set1_ps(grad_scale), df = _mm256_set1_ps(c.decay_factor);
    const __m256 b1 = _mm256_set1_ps(c.beta1), omb1 = _mm256_set1_ps(c.one_minus_beta1);
    const __m256 b2 = _mm256_set1_ps(c.beta2), omb2 = _mm256_set1_ps(c.one_minus_beta2);
    const __m256 bc1 = _mm256_set1_ps(c.bc1), bc2 = _mm256_set1_ps(c.bc2);
    const __m256 lr = _mm256_set1_ps(c.lr), eps = _mm256_set1_ps(c.eps);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 g = _mm256_mul_ps(sum8(srcs, k, i), scale);
        __m256 x = _mm256_loadu_ps(params + i);
        __m256 decayed = _mm256_sub_ps(x, _mm256_mul_ps(df, x));
        __m256 mi = _mm256_add_ps(_mm256_mul_ps(b1, _mm256_loadu_ps(m + i)), _mm256_mul_ps(omb1, g));
        __m256 vi = _mm256_add_ps(_mm256_mul_ps(b2, _mm256_loadu_ps(v + i)), _mm256_mul_ps(_mm256_mul_ps(omb2, g), g));
        __m256 m_hat = _mm256_div_ps(mi, bc1);
        __m256 v_hat = _mm256_div_ps(vi, bc2);
        __m256 step = _mm256_div_ps(_mm256_mul_ps(lr, m_hat), _mm256_add_ps(_mm256_sqrt_ps(v_hat), eps));
        _mm256_storeu_ps(params + i, _mm256_sub_ps(decayed, step));
        _mm256_storeu_ps(m + i, mi);
        _mm256_storeu_ps(v + i, vi);
    }
    for (; i < n; i++) adamw_element(&c, sum_element(srcs, k, i) * grad_scale, &params[i], &m[i], &v[i]);
}
#endif
