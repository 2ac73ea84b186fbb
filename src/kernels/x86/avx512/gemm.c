/* AVX-512F micro-kernel: a 12 x 32 tile in 24 zmm accumulators (+2 B vectors
 * +1 broadcast = 27 of 32 registers): 24 independent FMA chains cover the
 * latency of two 512-bit pipes, and each B load feeds 12 FMAs. */
#include "../../gemm_internal.h"
#include "../lanes.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#define MR 12
#define NR 32


/* One row of C, c[j] = alpha * acc[j] + beta * c[j] for the columns in the
 * two masks (lo: 0..15, hi: 16..31); beta == 0 does not read C. Full and
 * edge tiles share it, so every element of C gets the same arithmetic. */
__attribute__((target("avx512f"))) static inline void store_row(float *c, __m512 lo, __m512 hi, __m512 va,
                                                                 float beta, __mmask16 mlo, __mmask16 mhi) {
    if (beta == 0.0f) {
        lo = _mm512_mul_ps(va, lo);
        hi = _mm512_mul_ps(va, hi);
    } else if (beta == 1.0f) {
        lo = _mm512_fmadd_ps(va, lo, _mm512_maskz_loadu_ps(mlo, c));
        hi = _mm512_fmadd_ps(va, hi, _mm512_maskz_loadu_ps(mhi, c + 16));
    } else {
        __m512 vb = _mm512_set1_ps(beta);
        lo = _mm512_fmadd_ps(va, lo, _mm512_mul_ps(vb, _mm512_maskz_loadu_ps(mlo, c)));
        hi = _mm512_fmadd_ps(va, hi, _mm512_mul_ps(vb, _mm512_maskz_loadu_ps(mhi, c + 16)));
    }
    _mm512_mask_storeu_ps(c, mlo, lo);
    _mm512_mask_storeu_ps(c + 16, mhi, hi);
}

/* The k loop and write-out for a tile of `rows` (12, 8 or 4) rows; inlined
 * with rows constant, so the accumulator arrays live in registers. Edge
 * tiles of C (m <= 8 or m <= 4 rows) take a shorter variant instead of
 * computing 12 rows and discarding some: each element still sums its k
 * products in the same order, so the result is the same bits. */
__attribute__((target("avx512f"), always_inline)) static inline void tile_rows(const int rows, int kc,
                                                                              const float *a, const float *b,
                                                                              float *c, int ldc, int m, int n,
                                                                              float alpha, float beta) {
    __m512 lo[MR], hi[MR];
    for (int r = 0; r < rows; r++) lo[r] = hi[r] = _mm512_setzero_ps();
    for (int k = 0; k < kc; k++) {
        __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
#pragma GCC unroll 12
        for (int r = 0; r < rows; r++) {
            __m512 ar = _mm512_set1_ps(a[r]);
            lo[r] = _mm512_fmadd_ps(ar, b0, lo[r]);
            hi[r] = _mm512_fmadd_ps(ar, b1, hi[r]);
        }
        a += MR;
        b += NR;
    }
    __m512 va = _mm512_set1_ps(alpha);
    __mmask16 mlo = cllm_first_lanes16(n), mhi = cllm_first_lanes16(n - 16);
#pragma GCC unroll 12
    for (int r = 0; r < rows; r++)
        if (r < m) store_row(c + (long)r * ldc, lo[r], hi[r], va, beta, mlo, mhi);
}

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
    if (m > 8)
        tile_rows(MR, kc, a, b, c, ldc, m, n, alpha, beta);
    else if (m > 4)
        tile_rows(8, kc, a, b, c, ldc, m, n, alpha, beta);
    else
        tile_rows(4, kc, a, b, c, ldc, m, n, alpha, beta);
}

/* Packing. Generic C packs the two transposing layouts one float at a time;
 * here 16 k of up to 16 rows go through one in-register 16 x 16 transpose,
 * and the k tail (kb not a multiple of 16) uses masked loads, so nothing
 * past the source rows is read and no scalar loop is needed. */

/* Lanes (128-bit) of 4 rows x 16 columns regrouped by column: afterwards
 * q[j], lane L, holds rows r0..r3 at column 4L + j. */
__attribute__((target("avx512f"))) static inline void transpose_4_rows_in_lanes(__m512 r0, __m512 r1, __m512 r2,
                                                                                __m512 r3, __m512 q[4]) {
    __m512 t0 = _mm512_unpacklo_ps(r0, r1), t1 = _mm512_unpackhi_ps(r0, r1);
    __m512 t2 = _mm512_unpacklo_ps(r2, r3), t3 = _mm512_unpackhi_ps(r2, r3);
    q[0] = _mm512_shuffle_ps(t0, t2, 0x44), q[1] = _mm512_shuffle_ps(t0, t2, 0xEE);
    q[2] = _mm512_shuffle_ps(t1, t3, 0x44), q[3] = _mm512_shuffle_ps(t1, t3, 0xEE);
}

/* Transposes 16 rows of 16 floats: afterwards r[t] holds column t. The
 * rows are first transposed within 128-bit lanes by groups of 4, then the
 * 4 x 4 grid of lanes is transposed with two rounds of lane shuffles. */
__attribute__((target("avx512f"))) static inline void transpose16(__m512 r[16]) {
    __m512 q[4][4]; /* q[g][j] lane L: rows 4g..4g+3 at column 4L + j */
    for (int g = 0; g < 4; g++) transpose_4_rows_in_lanes(r[4 * g], r[4 * g + 1], r[4 * g + 2], r[4 * g + 3], q[g]);
    for (int j = 0; j < 4; j++) {
        __m512 a = _mm512_shuffle_f32x4(q[0][j], q[1][j], 0x44), b = _mm512_shuffle_f32x4(q[2][j], q[3][j], 0x44);
        __m512 c = _mm512_shuffle_f32x4(q[0][j], q[1][j], 0xEE), d = _mm512_shuffle_f32x4(q[2][j], q[3][j], 0xEE);
        r[j] = _mm512_shuffle_f32x4(a, b, 0x88), r[4 + j] = _mm512_shuffle_f32x4(a, b, 0xDD);
        r[8 + j] = _mm512_shuffle_f32x4(c, d, 0x88), r[12 + j] = _mm512_shuffle_f32x4(c, d, 0xDD);
    }
}

/* Loads columns k .. k+16 (those in kmask) of rows first .. first+15 of src;
 * rows at or past `rows` are zero and not read. */
__attribute__((target("avx512f"))) static inline void load_rows16(const float *src, int ld, int first, int rows,
                                                                   int k, __mmask16 kmask, __m512 r[16]) {
    for (int i = 0; i < 16; i++)
        r[i] = first + i < rows ? _mm512_maskz_loadu_ps(kmask, src + (size_t)(first + i) * ld + k)
                                : _mm512_setzero_ps();
}

/* Row-major A rows into a 12-row sliver, dst[k * 12 + r]: 16 k per
 * transpose, each column stored as 12 floats with a masked store. */
__attribute__((target("avx512f"))) static void pack_a_rows_avx512(const float *src, int ld, int rows, int kb,
                                                                  float *dst) {
    for (int k = 0; k < kb; k += 16) {
        int width = kb - k < 16 ? kb - k : 16;
        __m512 r[16];
        load_rows16(src, ld, 0, rows < MR ? rows : MR, k, cllm_first_lanes16(width), r);
        transpose16(r);
        for (int t = 0; t < width; t++) _mm512_mask_storeu_ps(dst + (size_t)(k + t) * MR, 0x0FFF, r[t]);
    }
}

/* Rows of B (columns of op(B) = B^T) into a 32-column sliver, dst[k * 32 + c]:
 * two 16 x 16 transposes per 16 k (the second is skipped, zeros stored,
 * when at most 16 rows remain), each column an aligned 64-byte store. */
__attribute__((target("avx512f"))) static void pack_b_cols_avx512(const float *src, int ld, int rows, int kb,
                                                                  float *dst) {
    for (int k = 0; k < kb; k += 16) {
        int width = kb - k < 16 ? kb - k : 16;
        __mmask16 kmask = cllm_first_lanes16(width);
        __m512 lo[16], hi[16];
        load_rows16(src, ld, 0, rows, k, kmask, lo);
        transpose16(lo);
        if (rows > 16) {
            load_rows16(src, ld, 16, rows, k, kmask, hi);
            transpose16(hi);
        } else {
            for (int t = 0; t < 16; t++) hi[t] = _mm512_setzero_ps();
        }
        for (int t = 0; t < width; t++) {
            _mm512_store_ps(dst + (size_t)(k + t) * NR, lo[t]);
            _mm512_store_ps(dst + (size_t)(k + t) * NR + 16, hi[t]);
        }
    }
}

/* Rows of A (op(A) = A^T) into 12-row slivers: each sliver row is 12
 * consecutive floats of a row of A, one masked load and store (the mask
 * also cuts the last sliver at mb and zero-fills it). k outer, so each row
 * of A is read once, sequentially. */
__attribute__((target("avx512f"))) static void pack_a_cols_avx512(const float *src, int ld, int mb, int kb,
                                                                  float *dst) {
    for (int k = 0; k < kb; k++) {
        const float *row = src + (size_t)k * ld;
        for (int ir = 0; ir < mb; ir += MR) {
            __m512 v = _mm512_maskz_loadu_ps(cllm_first_lanes16(mb - ir < MR ? mb - ir : MR), row + ir);
            _mm512_mask_storeu_ps(dst + (size_t)ir * kb + (size_t)k * MR, 0x0FFF, v);
        }
    }
}

/* Rows of B (op(B) = B) into 32-column slivers: each sliver row is 32
 * consecutive floats of a row of B, two loads and two aligned stores
 * (slivers are 64-byte aligned, kb * 32 floats long); the last sliver's
 * loads are masked at nb, which also zero-fills it. */
__attribute__((target("avx512f"))) static void pack_b_rows_avx512(const float *src, int ld, int kb, int nb,
                                                                  float *dst) {
    int full = nb / NR * NR;
    for (int k = 0; k < kb; k++) {
        const float *row = src + (size_t)k * ld;
        for (int jr = 0; jr < full; jr += NR) {
            float *d = dst + (size_t)jr * kb + (size_t)k * NR;
            _mm512_store_ps(d, _mm512_loadu_ps(row + jr));
            _mm512_store_ps(d + 16, _mm512_loadu_ps(row + jr + 16));
        }
        if (full < nb) {
            float *d = dst + (size_t)full * kb + (size_t)k * NR;
            _mm512_store_ps(d, _mm512_maskz_loadu_ps(cllm_first_lanes16(nb - full), row + full));
            _mm512_store_ps(d + 16, _mm512_maskz_loadu_ps(cllm_first_lanes16(nb - full - 16), row + full + 16));
        }
    }
}

/* A sliver 12 x 384 floats = 18 KiB stays in L1 (48 KiB) while the B panel,
 * 384 x 768 floats = 1.2 MiB, streams from L2 (2 MiB): K up to 384 runs as
 * one slice, so C is written once. Measured on the training step (one
 * sequence of 256 rows per thread), this order and kc = 384 beat the B sliver
 * kept in L1 with kc = 256 by about 4% in tokens/s. */
const cllm_sgemm_kernel cllm_sgemm_kernel_avx512 = {MR,
                                                    NR,
                                                    144,
                                                    384,
                                                    768,
                                                    1,
                                                    ukernel_avx512,
                                                    pack_a_rows_avx512,
                                                    pack_b_cols_avx512,
                                                    pack_a_cols_avx512,
                                                    pack_b_rows_avx512};
#else
const cllm_sgemm_kernel cllm_sgemm_kernel_avx512 = {12, 32, 144, 384, 768, 1, 0, 0, 0, 0, 0};
#endif
