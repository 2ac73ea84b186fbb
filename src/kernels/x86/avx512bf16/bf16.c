/* AVX512_BF16 (Zen 4/5, Cooper Lake, Sapphire Rapids onward): the bare
 * conversion and dot-product instructions for the tests, and the bf16
 * matrix product on VDPBF16PS. Compiled with target attributes, like the
 * other x86 kernels, so one binary runs on any x86-64; the table hands these
 * out only where CPUID says AVX512_BF16. */
#include "../../bf16_internal.h"

#if CLLM_KERNELS_BF16_X86

#include <immintrin.h>
#include <string.h>

#define BF16_TARGET __attribute__((target("avx512f,avx512bf16")))

/* ------------------------------------------------------------ bare instructions */

BF16_TARGET static void hw_cvtneps(uint16_t *dst, const float *src, int n) {
    for (int i = 0; i < n; i += 16) {
        int len = n - i < 16 ? n - i : 16;
        __m512 x = _mm512_maskz_loadu_ps((__mmask16)((1u << len) - 1u), src + i);
        uint16_t out[16];
        _mm256_storeu_si256((__m256i *)out, (__m256i)_mm512_cvtneps_pbh(x));
        memcpy(dst + i, out, (size_t)len * sizeof *out);
    }
}

BF16_TARGET static void hw_cvtne2ps(uint16_t *dst, const float *src, int n) {
    for (int i = 0; i < n; i += 32) {
        int len = n - i < 32 ? n - i : 32;
        int lo_len = len < 16 ? len : 16, hi_len = len - lo_len;
        __m512 lo = _mm512_maskz_loadu_ps((__mmask16)((1u << lo_len) - 1u), src + i);
        __m512 hi = _mm512_maskz_loadu_ps((__mmask16)((1u << hi_len) - 1u), src + i + 16);
        uint16_t out[32];
        /* The second source fills the low 16 elements, the first the high. */
        _mm512_storeu_si512(out, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
        memcpy(dst + i, out, (size_t)len * sizeof *out);
    }
}

BF16_TARGET static void hw_dpbf16(float *acc, const uint32_t *a, const uint32_t *b, int n) {
    for (int i = 0; i < n; i += 16) {
        int len = n - i < 16 ? n - i : 16;
        __mmask16 m = (__mmask16)((1u << len) - 1u);
        __m512 c = _mm512_maskz_loadu_ps(m, acc + i);
        __m512i va = _mm512_maskz_loadu_epi32(m, a + i), vb = _mm512_maskz_loadu_epi32(m, b + i);
        c = _mm512_dpbf16_ps(c, (__m512bh)va, (__m512bh)vb);
        _mm512_mask_storeu_ps(acc + i, m, c);
    }
}

const cllm_bf16_hw_ops cllm_bf16_hw_avx512bf16 = {
    .cvtneps = hw_cvtneps, .cvtne2ps = hw_cvtne2ps, .dpbf16 = hw_dpbf16,
};

/* ------------------------------------------------------------ matrix product
 *
 * K is cut into chunks of KC_PAIRS pairs and N into blocks of NC columns;
 * per chunk and block, B is packed once as bf16 pairs in 32-column panels
 * (pair p of column c of a panel at panel[p * NR + c]), then each 8-row tile
 * of A is packed once as pairs (row r's pair p at ap[p * MR + r]) and run
 * against every panel of the block. The tile keeps 8 x 32 fp32 accumulators
 * in 16 registers; between chunks they go through C in fp32, which is exact,
 * so the sequence of VDPBF16PS per output is the reference's: pairs in
 * order, one instruction each. The B block lives in a thread-local buffer
 * (384 KiB, sized once), so no call allocates and threads may call at once. */
enum { MR = 8, NR = 32, KC_PAIRS = 192, NC = 512 };

static __mmask16 lanes(int n) { return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n > 0 ? n : 0)) - 1u); }

/* 16 floats (masked) as bf16, zero-extended to one per dword. */
BF16_TARGET static __m512i bf16_dwords(__mmask16 m, const float *x) {
    return _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, x)));
}

/* Pairs [p0, p0 + np) of columns j0 .. j0 + n (n <= NR) of B; zeros past K and n. */
BF16_TARGET static void pack_b(const float *B, int ldb, int K, int p0, int np, int j0, int n, uint32_t *bp) {
    for (int p = 0; p < np; p++) {
        int k = 2 * (p0 + p);
        for (int h = 0; h < NR; h += 16) {
            __mmask16 m = lanes(n - h);
            __m512i even = bf16_dwords(m, B + (size_t)k * ldb + j0 + h);
            __m512i odd = k + 1 < K ? bf16_dwords(m, B + (size_t)(k + 1) * ldb + j0 + h) : _mm512_setzero_si512();
            _mm512_storeu_si512(bp + (size_t)p * NR + h, _mm512_or_si512(even, _mm512_slli_epi32(odd, 16)));
        }
    }
}

/* Pairs [p0, p0 + np) of rows i0 .. i0 + m (m <= MR) of A; zero rows past m. */
BF16_TARGET static void pack_a(const float *A, int lda, int K, int p0, int np, int i0, int m, uint32_t *ap) {
    uint32_t row[KC_PAIRS];
    for (int r = 0; r < MR; r++) {
        if (r < m) {
            const float *a = A + (size_t)(i0 + r) * lda;
            int k0 = 2 * p0, kn = K - k0; /* floats left in this row from k0 */
            for (int p = 0; p < np; p += 16) {
                int f = kn - 2 * p; /* floats available for these 16 pairs */
                __m512 lo = _mm512_maskz_loadu_ps(lanes(f), a + k0 + 2 * p);
                __m512 hi = _mm512_maskz_loadu_ps(lanes(f - 16), a + k0 + 2 * p + 16);
                uint32_t out[16];
                _mm512_storeu_si512(out, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
                memcpy(row + p, out, (size_t)(np - p < 16 ? np - p : 16) * sizeof *out);
            }
        } else {
            memset(row, 0, (size_t)np * sizeof *row);
        }
        for (int p = 0; p < np; p++) ap[(size_t)p * MR + r] = row[p];
    }
}

BF16_TARGET static void tile(int np, const uint32_t *ap, const uint32_t *bp, float *C, int ldc, int m, int n,
                             int load_c) {
    __m512 acc[MR][2];
    __mmask16 m0 = lanes(n), m1 = lanes(n - 16);
    for (int r = 0; r < MR; r++) {
        int live = load_c && r < m;
        acc[r][0] = live ? _mm512_maskz_loadu_ps(m0, C + (size_t)r * ldc) : _mm512_setzero_ps();
        acc[r][1] = live ? _mm512_maskz_loadu_ps(m1, C + (size_t)r * ldc + 16) : _mm512_setzero_ps();
    }
    for (int p = 0; p < np; p++) {
        __m512bh b0 = (__m512bh)_mm512_loadu_si512(bp + (size_t)p * NR);
        __m512bh b1 = (__m512bh)_mm512_loadu_si512(bp + (size_t)p * NR + 16);
        for (int r = 0; r < MR; r++) {
            __m512bh a = (__m512bh)_mm512_set1_epi32((int)ap[(size_t)p * MR + r]);
            acc[r][0] = _mm512_dpbf16_ps(acc[r][0], a, b0);
            acc[r][1] = _mm512_dpbf16_ps(acc[r][1], a, b1);
        }
    }
    for (int r = 0; r < m; r++) {
        _mm512_mask_storeu_ps(C + (size_t)r * ldc, m0, acc[r][0]);
        _mm512_mask_storeu_ps(C + (size_t)r * ldc + 16, m1, acc[r][1]);
    }
}

static _Thread_local uint32_t b_block[KC_PAIRS * NC] __attribute__((aligned(64)));

BF16_TARGET void cllm_gemm_bf16_avx512bf16(int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                                           float *C, int ldc, int accumulate) {
    if (M <= 0 || N <= 0) return;
    int pairs = K > 0 ? (K + 1) / 2 : 0;
    if (pairs == 0) {
        if (!accumulate)
            for (int i = 0; i < M; i++) memset(C + (size_t)i * ldc, 0, (size_t)N * sizeof *C);
        return;
    }
    uint32_t ap[KC_PAIRS * MR] __attribute__((aligned(64)));
    for (int p0 = 0; p0 < pairs; p0 += KC_PAIRS) {
        int np = pairs - p0 < KC_PAIRS ? pairs - p0 : KC_PAIRS;
        int load_c = accumulate || p0 > 0;
        for (int jb = 0; jb < N; jb += NC) {
            int nb = N - jb < NC ? N - jb : NC;
            for (int j0 = 0; j0 < nb; j0 += NR)
                pack_b(B, ldb, K, p0, np, jb + j0, nb - j0 < NR ? nb - j0 : NR, b_block + (size_t)j0 * np);
            for (int i0 = 0; i0 < M; i0 += MR) {
                int m = M - i0 < MR ? M - i0 : MR;
                pack_a(A, lda, K, p0, np, i0, m, ap);
                for (int j0 = 0; j0 < nb; j0 += NR)
                    tile(np, ap, b_block + (size_t)j0 * np, C + (size_t)i0 * ldc + jb + j0, ldc, m,
                         nb - j0 < NR ? nb - j0 : NR, load_c);
            }
        }
    }
}

#endif
