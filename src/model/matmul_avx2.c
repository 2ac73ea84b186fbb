/* AVX2 + FMA micro-kernel: a 6 x 16 tile held in 12 ymm accumulators, which
 * with 2 B vectors and 1 broadcast uses 15 of the 16 registers and keeps 12
 * independent FMA chains in flight (2 pipes x 4-5 cycles latency need >= 10). */
#include "matmul_internal.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#define MR 6
#define NR 16

__attribute__((target("avx2,fma"))) static inline void store_row(float *c, __m256 lo, __m256 hi, __m256 va,
                                                                  float beta) {
    if (beta == 0.0f) {
        _mm256_storeu_ps(c, _mm256_mul_ps(va, lo));
        _mm256_storeu_ps(c + 8, _mm256_mul_ps(va, hi));
    } else if (beta == 1.0f) {
        _mm256_storeu_ps(c, _mm256_fmadd_ps(va, lo, _mm256_loadu_ps(c)));
        _mm256_storeu_ps(c + 8, _mm256_fmadd_ps(va, hi, _mm256_loadu_ps(c + 8)));
    } else {
        __m256 vb = _mm256_set1_ps(beta);
        _mm256_storeu_ps(c, _mm256_fmadd_ps(va, lo, _mm256_mul_ps(vb, _mm256_loadu_ps(c))));
        _mm256_storeu_ps(c + 8, _mm256_fmadd_ps(va, hi, _mm256_mul_ps(vb, _mm256_loadu_ps(c + 8))));
    }
}

#define ROW(r)                                              \
    do {                                                    \
        __m256 a_ = _mm256_broadcast_ss(a + (r));           \
        c##r##0 = _mm256_fmadd_ps(a_, b0, c##r##0);         \
        c##r##1 = _mm256_fmadd_ps(a_, b1, c##r##1);         \
    } while (0)

__attribute__((target("avx2,fma"))) static void ukernel_avx2(int kc, const float *a, const float *b, float *c,
                                                             int ldc, int m, int n, float alpha, float beta) {
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    for (int k = 0; k < kc; k++) {
        __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
        ROW(0);
        ROW(1);
        ROW(2);
        ROW(3);
        ROW(4);
        ROW(5);
        a += MR;
        b += NR;
    }
    __m256 va = _mm256_set1_ps(alpha);
    if (m == MR && n == NR) {
        store_row(c, c00, c01, va, beta);
        store_row(c + ldc, c10, c11, va, beta);
        store_row(c + 2 * ldc, c20, c21, va, beta);
        store_row(c + 3 * ldc, c30, c31, va, beta);
        store_row(c + 4 * ldc, c40, c41, va, beta);
        store_row(c + 5 * ldc, c50, c51, va, beta);
        return;
    }
    float t[MR * NR] __attribute__((aligned(32)));
    _mm256_store_ps(t + 0, c00), _mm256_store_ps(t + 8, c01);
    _mm256_store_ps(t + 16, c10), _mm256_store_ps(t + 24, c11);
    _mm256_store_ps(t + 32, c20), _mm256_store_ps(t + 40, c21);
    _mm256_store_ps(t + 48, c30), _mm256_store_ps(t + 56, c31);
    _mm256_store_ps(t + 64, c40), _mm256_store_ps(t + 72, c41);
    _mm256_store_ps(t + 80, c50), _mm256_store_ps(t + 88, c51);
    cllm_sgemm_store_tile(t, NR, c, ldc, m, n, alpha, beta);
}

/* L1 (32 KiB) holds the 16 KiB B sliver; L2 (512 KiB+) the 144 KiB A block. */
const cllm_sgemm_kernel cllm_sgemm_kernel_avx2 = {MR, NR, 144, 256, 1536, ukernel_avx2};
#else
const cllm_sgemm_kernel cllm_sgemm_kernel_avx2 = {6, 16, 144, 256, 1536, 0};
#endif
