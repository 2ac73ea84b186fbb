/* AVX-512F micro-kernel: a 12 x 32 tile in 24 zmm accumulators (+2 B vectors
 * +1 broadcast = 27 of 32 registers): 24 independent FMA chains cover the
 * latency of two 512-bit pipes, and each B load feeds 12 FMAs. */
#include "matmul_internal.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#define MR 12
#define NR 32

__attribute__((target("avx512f"))) static inline void store_row(float *c, __m512 lo, __m512 hi, __m512 va,
                                                                 float beta) {
    if (beta == 0.0f) {
        _mm512_storeu_ps(c, _mm512_mul_ps(va, lo));
        _mm512_storeu_ps(c + 16, _mm512_mul_ps(va, hi));
    } else if (beta == 1.0f) {
        _mm512_storeu_ps(c, _mm512_fmadd_ps(va, lo, _mm512_loadu_ps(c)));
        _mm512_storeu_ps(c + 16, _mm512_fmadd_ps(va, hi, _mm512_loadu_ps(c + 16)));
    } else {
        __m512 vb = _mm512_set1_ps(beta);
        _mm512_storeu_ps(c, _mm512_fmadd_ps(va, lo, _mm512_mul_ps(vb, _mm512_loadu_ps(c))));
        _mm512_storeu_ps(c + 16, _mm512_fmadd_ps(va, hi, _mm512_mul_ps(vb, _mm512_loadu_ps(c + 16))));
    }
}

#define ROW(r, lo, hi)                                      \
    do {                                                    \
        __m512 a_ = _mm512_set1_ps(a[r]);                   \
        lo = _mm512_fmadd_ps(a_, b0, lo);                   \
        hi = _mm512_fmadd_ps(a_, b1, hi);                   \
    } while (0)

__attribute__((target("avx512f"))) static void ukernel_avx512(int kc, const float *a, const float *b, float *c,
                                                              int ldc, int m, int n, float alpha, float beta) {
    /* C is read only after the whole k loop; fetching it now hides the miss
     * when beta != 0 (dW accumulation over K slices). */
    if (beta != 0.0f)
        for (int r = 0; r < m; r++) {
            _mm_prefetch((const char *)(c + (long)r * ldc), _MM_HINT_T0);
            _mm_prefetch((const char *)(c + (long)r * ldc + 16), _MM_HINT_T0);
            _mm_prefetch((const char *)(c + (long)r * ldc + NR - 1), _MM_HINT_T0);
        }
    __m512 z = _mm512_setzero_ps();
    __m512 l0 = z, h0 = z, l1 = z, h1 = z, l2 = z, h2 = z, l3 = z, h3 = z, l4 = z, h4 = z, l5 = z, h5 = z;
    __m512 l6 = z, h6 = z, l7 = z, h7 = z, l8 = z, h8 = z, l9 = z, h9 = z, l10 = z, h10 = z, l11 = z, h11 = z;
    for (int k = 0; k < kc; k++) {
        __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
        ROW(0, l0, h0);
        ROW(1, l1, h1);
        ROW(2, l2, h2);
        ROW(3, l3, h3);
        ROW(4, l4, h4);
        ROW(5, l5, h5);
        ROW(6, l6, h6);
        ROW(7, l7, h7);
        ROW(8, l8, h8);
        ROW(9, l9, h9);
        ROW(10, l10, h10);
        ROW(11, l11, h11);
        a += MR;
        b += NR;
    }
    __m512 lo[MR] = {l0, l1, l2, l3, l4, l5, l6, l7, l8, l9, l10, l11};
    __m512 hi[MR] = {h0, h1, h2, h3, h4, h5, h6, h7, h8, h9, h10, h11};
    __m512 va = _mm512_set1_ps(alpha);
    if (m == MR && n == NR) {
        for (int r = 0; r < MR; r++) store_row(c + (long)r * ldc, lo[r], hi[r], va, beta);
        return;
    }
    float t[MR * NR] __attribute__((aligned(64)));
    for (int r = 0; r < MR; r++) {
        _mm512_store_ps(t + r * NR, lo[r]);
        _mm512_store_ps(t + r * NR + 16, hi[r]);
    }
    cllm_sgemm_store_tile(t, NR, c, ldc, m, n, alpha, beta);
}

/* B sliver 256 x 32 floats = 32 KiB (L1 is 32-48 KiB); A block 144 x 256 in L2. */
const cllm_sgemm_kernel cllm_sgemm_kernel_avx512 = {MR, NR, 144, 256, 1536, ukernel_avx512, 0, 0, 0, 0};
#else
const cllm_sgemm_kernel cllm_sgemm_kernel_avx512 = {12, 32, 144, 256, 1536, 0, 0, 0, 0};
#endif
