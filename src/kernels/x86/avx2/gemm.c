/* AVX2 + FMA micro-kernel: a 6 x 16 tile held in 12 ymm accumulators, which
 * with 2 B vectors and 1 broadcast uses 15 of the 16 registers and keeps 12
 * independent FMA chains in flight (2 pipes x 4-5 cycles latency need >= 10). */
#include "../../gemm_internal.h"

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
    /* C is read only after the whole k loop; fetching it now hides the miss
     * when beta != 0 (dW accumulation over K slices). */
    if (beta != 0.0f)
        for (int r = 0; r < m; r++) {
            _mm_prefetch((const char *)(c + (long)r * ldc), _MM_HINT_T0);
            _mm_prefetch((const char *)(c + (long)r * ldc + NR - 1), _MM_HINT_T0);
        }
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

/* Transposes 8 rows of 8 floats in place: afterwards r[t] holds column t. */
__attribute__((target("avx2,fma"))) static inline void transpose8(__m256 r[8]) {
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(u0, u4, 0x20), r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    r[2] = _mm256_permute2f128_ps(u2, u6, 0x20), r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    r[4] = _mm256_permute2f128_ps(u0, u4, 0x31), r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    r[6] = _mm256_permute2f128_ps(u2, u6, 0x31), r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

/* Loads 8 floats at column k of rows first .. first+7 of src (rows >= rows: zero). */
__attribute__((target("avx2,fma"))) static inline void load_rows8(const float *src, int ld, int first, int rows,
                                                                   int k, __m256 r[8]) {
    for (int i = 0; i < 8; i++)
        r[i] = first + i < rows ? _mm256_loadu_ps(src + (size_t)(first + i) * ld + k) : _mm256_setzero_ps();
}

/* Row-major A rows into a 6-row sliver: 8 k at a time through an 8 x 8
 * transpose; each column's 8 floats are stored at stride 6, the 2 extra
 * landing where the next k (or the slack) is written afterwards. */
__attribute__((target("avx2,fma"))) static void pack_a_rows_avx2(const float *src, int ld, int rows, int kb,
                                                                  float *dst) {
    int k = 0;
    for (; k + 8 <= kb; k += 8) {
        __m256 r[8];
        load_rows8(src, ld, 0, rows, k, r);
        transpose8(r);
        for (int t = 0; t < 8; t++) _mm256_storeu_ps(dst + (size_t)(k + t) * MR, r[t]);
    }
    for (; k < kb; k++)
        for (int i = 0; i < MR; i++) dst[(size_t)k * MR + i] = i < rows ? src[(size_t)i * ld + k] : 0.0f;
}

/* Rows of B (columns of op(B) = B^T) into a 16-column sliver: two 8 x 8
 * transposes per 8 k, stored as aligned rows of the sliver. */
__attribute__((target("avx2,fma"))) static void pack_b_cols_avx2(const float *src, int ld, int rows, int kb,
                                                                  float *dst) {
    int k = 0;
    for (; k + 8 <= kb; k += 8) {
        __m256 lo[8], hi[8];
        load_rows8(src, ld, 0, rows, k, lo);
        transpose8(lo);
        if (rows > 8) {
            load_rows8(src, ld, 8, rows, k, hi);
            transpose8(hi);
        } else {
            for (int t = 0; t < 8; t++) hi[t] = _mm256_setzero_ps();
        }
        for (int t = 0; t < 8; t++) {
            _mm256_store_ps(dst + (size_t)(k + t) * NR, lo[t]);
            _mm256_store_ps(dst + (size_t)(k + t) * NR + 8, hi[t]);
        }
    }
    for (; k < kb; k++)
        for (int c = 0; c < NR; c++) dst[(size_t)k * NR + c] = c < rows ? src[(size_t)c * ld + k] : 0.0f;
}

/* Rows of A (op(A) = A^T) into 6-row slivers: each sliver row is 6
 * consecutive floats of a row of A, moved with one 8-wide load and store
 * whose 2 extra floats land on the next k's place, which is written later;
 * the sliver's last k, and slivers near the end of the row, go float by float
 * so nothing outside A is read or outside the sliver written. */
__attribute__((target("avx2,fma"))) static void pack_a_cols_avx2(const float *src, int ld, int mb, int kb,
                                                                  float *dst) {
    for (int k = 0; k < kb; k++) {
        const float *row = src + (size_t)k * ld;
        for (int ir = 0; ir < mb; ir += MR) {
            float *d = dst + (size_t)ir * kb + (size_t)k * MR;
            if (ir + 8 <= mb && k + 1 < kb) {
                _mm256_storeu_ps(d, _mm256_loadu_ps(row + ir));
                continue;
            }
            int m = mb - ir < MR ? mb - ir : MR;
            for (int r = 0; r < m; r++) d[r] = row[ir + r];
            for (int r = m; r < MR; r++) d[r] = 0.0f;
        }
    }
}

/* Rows of B (op(B) = B) into 16-column slivers: each sliver row is 16
 * consecutive floats of a row of B, two unaligned loads and two aligned
 * stores (the sliver is 64-byte aligned, kb * 16 floats long). k outer, so
 * each row of B is read once, sequentially; the last, partial sliver goes
 * float by float with zeros past nb. */
__attribute__((target("avx2,fma"))) static void pack_b_rows_avx2(const float *src, int ld, int kb, int nb,
                                                                  float *dst) {
    int full = nb / NR * NR;
    for (int k = 0; k < kb; k++) {
        const float *row = src + (size_t)k * ld;
        for (int jr = 0; jr < full; jr += NR) {
            float *d = dst + (size_t)jr * kb + (size_t)k * NR;
            _mm256_store_ps(d, _mm256_loadu_ps(row + jr));
            _mm256_store_ps(d + 8, _mm256_loadu_ps(row + jr + 8));
        }
        if (full < nb) {
            float *d = dst + (size_t)full * kb + (size_t)k * NR;
            int n = nb - full;
            for (int c = 0; c < n; c++) d[c] = row[full + c];
            for (int c = n; c < NR; c++) d[c] = 0.0f;
        }
    }
}

/* L1 (32 KiB) holds a B sliver of up to 24 KiB (kc <= 384); L2 (512 KiB+) the
 * A block of up to 216 KiB. */
const cllm_sgemm_kernel cllm_sgemm_kernel_avx2 = {MR, NR, 144, 384, 1536, 0, ukernel_avx2,
                                                  pack_a_rows_avx2, pack_b_cols_avx2, pack_a_cols_avx2,
                                                  pack_b_rows_avx2};
#else
const cllm_sgemm_kernel cllm_sgemm_kernel_avx2 = {6, 16, 144, 256, 1536, 0, 0, 0, 0, 0, 0};
#endif
