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
 * per block, op(B) is packed once as bf16 pairs in 32-column panels (pair
 * p of column c of a panel at panel[p * NR + c]), then each 12-row tile of
 * op(A) is packed once per chunk (see pack_a) and run against every panel
 * of the block. The tile keeps 12 x 32 fp32 accumulators in 24 registers
 * (+2 B vectors +1 broadcast of 32: each B load feeds 12 rows; docs/PERFORMANCE.md
 * has 8 against 12); between chunks they go through C in fp32, which is
 * exact, so the sequence of VDPBF16PS per output is the reference's: pairs
 * in order, one instruction each.
 *
 * Packing converts on the fly: fp32 operands go through VCVTNE(2)PS2BF16
 * (bitwise cllm_bf16_from_f32), bf16 operands (the weights' copy) are moved
 * as they are. Which of two packers an operand takes depends on where its K
 * runs in memory:
 *   strided: K runs down the stored rows (B as stored, or A transposed): a
 *            pair is the same column of two consecutive rows;
 *   contig:  K runs along a stored row (A as stored, or B transposed): a
 *            pair is two neighbouring elements of one row. */
enum { MR = 12, NR = 32, KC_PAIRS = 192, NC = 512 };

static __mmask16 lanes(int n) { return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n > 0 ? n : 0)) - 1u); }

/* 16 floats (masked) as bf16, zero-extended to one per dword. */
BF16_TARGET static __m512i bf16_dwords(__mmask16 m, const float *x) {
    return _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, x)));
}

/* n <= 16 bf16 values, zero-extended to one per dword (zeros past n). No
 * masked 16-bit load without AVX512BW, so a short row goes through a copy. */
BF16_TARGET static __m512i u16_dwords(int n, const uint16_t *x) {
    if (n >= 16) return _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)x));
    uint16_t tmp[16] = {0};
    if (n > 0) memcpy(tmp, x, (size_t)n * sizeof *tmp);
    return _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)tmp));
}

/* Row `k` of X from column c0, n <= 16 columns, as zero-extended bf16. */
BF16_TARGET static __m512i row_dwords(const cllm_bf16_operand *x, int k, int c0, int n) {
    size_t at = (size_t)k * (size_t)x->ld + (size_t)c0;
    return x->bf16 ? u16_dwords(n, x->bf16 + at) : bf16_dwords(lanes(n), x->f32 + at);
}

/* Strided packing: pairs [p0, p0 + np) of stored columns c0 .. c0 + n
 * (n <= W) into out[p * W + c]; zeros past K and past n. */
BF16_TARGET static void pack_strided(const cllm_bf16_operand *x, int K, int p0, int np, int c0, int n, int W,
                                     uint32_t *out) {
    for (int p = 0; p < np; p++) {
        int k = 2 * (p0 + p);
        for (int h = 0; h < W; h += 16) {
            int w = n - h < 16 ? n - h : 16;
            __m512i even = row_dwords(x, k, c0 + h, w);
            __m512i odd = k + 1 < K ? row_dwords(x, k + 1, c0 + h, w) : _mm512_setzero_si512();
            _mm512_mask_storeu_epi32(out + (size_t)p * W + h, lanes(W - h),
                                     _mm512_or_si512(even, _mm512_slli_epi32(odd, 16)));
        }
    }
}

/* 16 x 16 dwords transposed in registers: r[i] lane j becomes r[j] lane i.
 * Four rounds of 16 shuffles (pairs of dwords, of qwords, then of 128-bit
 * lanes twice), instead of 16 gathers: a gather costs a load per element,
 * and on Zen 4/5 it is the slowest way to read 16 rows. */
BF16_TARGET static void transpose16(__m512i r[16]) {
    __m512i t[16];
    for (int i = 0; i < 16; i += 2) { /* within each 128-bit lane: a0 b0 a1 b1, a2 b2 a3 b3 */
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int g = 0; g < 16; g += 4) { /* r[g + j], lane L: column 4L + j of rows g .. g + 3 */
        r[g] = _mm512_unpacklo_epi64(t[g], t[g + 2]);
        r[g + 1] = _mm512_unpackhi_epi64(t[g], t[g + 2]);
        r[g + 2] = _mm512_unpacklo_epi64(t[g + 1], t[g + 3]);
        r[g + 3] = _mm512_unpackhi_epi64(t[g + 1], t[g + 3]);
    }
    for (int j = 0; j < 4; j++) { /* gather lane L of the four row groups: column 4L + j */
        __m512i v0 = _mm512_shuffle_i32x4(r[j], r[4 + j], 0x88), v1 = _mm512_shuffle_i32x4(r[j], r[4 + j], 0xdd);
        __m512i w0 = _mm512_shuffle_i32x4(r[8 + j], r[12 + j], 0x88);
        __m512i w1 = _mm512_shuffle_i32x4(r[8 + j], r[12 + j], 0xdd);
        t[j] = _mm512_shuffle_i32x4(v0, w0, 0x88);      /* lane 0 */
        t[4 + j] = _mm512_shuffle_i32x4(v1, w1, 0x88);  /* lane 1 */
        t[8 + j] = _mm512_shuffle_i32x4(v0, w0, 0xdd);  /* lane 2 */
        t[12 + j] = _mm512_shuffle_i32x4(v1, w1, 0xdd); /* lane 3 */
    }
    for (int i = 0; i < 16; i++) r[i] = t[i];
}

/* Pairs [p, p + len) (len <= 16) of one stored row as dwords, zeros past K.
 * fp32: masked loads of the elements the row has, converted in pairs. bf16:
 * the whole pairs as dwords, and the last pair of an odd K (its low half
 * alone) from one element, so nothing past element K - 1 is read. */
BF16_TARGET static __m512i contig_pairs16(const cllm_bf16_operand *x, int row, int K, int p, int len) {
    size_t at = (size_t)row * (size_t)x->ld + 2 * (size_t)p;
    int f = K - 2 * p; /* elements left in the row from pair p */
    if (!x->bf16) {
        const float *e = x->f32 + at;
        int want = f < 2 * len ? f : 2 * len;
        __m512 lo = _mm512_maskz_loadu_ps(lanes(want), e);
        __m512 hi = _mm512_maskz_loadu_ps(lanes(want - 16), e + 16);
        return (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
    }
    const uint16_t *e = x->bf16 + at;
    int whole = f / 2 < len ? f / 2 : len;
    __m512i v = _mm512_maskz_loadu_epi32(lanes(whole), e);
    if (whole < len && f > 2 * whole) v = _mm512_mask_set1_epi32(v, (__mmask16)(1u << whole), e[2 * whole]);
    return v;
}

/* Contiguous packing: pairs [p0, p0 + np) of stored rows r0 .. r0 + m
 * (m <= W, W a multiple of 16) into out[p * W + r]; zero rows past m. 16
 * rows by 16 pairs at a time: each row's 16 pairs in one vector, then
 * transposed in registers so that pair p of the 16 rows is one store. */
BF16_TARGET static void pack_contig(const cllm_bf16_operand *x, int K, int p0, int np, int r0, int m, int W,
                                    uint32_t *out) {
    for (int h = 0; h < W; h += 16) {
        int rows = m - h < 16 ? (m - h > 0 ? m - h : 0) : 16;
        for (int pb = 0; pb < np; pb += 16) {
            int len = np - pb < 16 ? np - pb : 16;
            __m512i v[16];
            for (int i = 0; i < 16; i++)
                v[i] = i < rows ? contig_pairs16(x, r0 + h + i, K, p0 + pb, len) : _mm512_setzero_si512();
            transpose16(v);
            for (int j = 0; j < len; j++) _mm512_storeu_si512(out + (size_t)(pb + j) * W + h, v[j]);
        }
    }
}

/* One stored row's pairs [p0, p0 + np) as dwords, zero past K. */
BF16_TARGET static void row_pairs(const cllm_bf16_operand *x, int row, int K, int p0, int np, uint32_t *dst) {
    for (int p = 0; p < np; p += 16) {
        int len = np - p < 16 ? np - p : 16;
        _mm512_mask_storeu_epi32(dst + p, lanes(len), contig_pairs16(x, row, K, p0 + p, len));
    }
}

/* Columns j0 .. j0 + n of op(B), pairs [p0, p0 + np), as one NR panel. */
BF16_TARGET static void pack_b(const cllm_bf16_operand *B, int K, int p0, int np, int j0, int n, uint32_t *bp) {
    if (B->trans)
        pack_contig(B, K, p0, np, j0, n, NR, bp);
    else
        pack_strided(B, K, p0, np, j0, n, NR, bp);
}

/* Rows i0 .. i0 + m of op(A), pairs [p0, p0 + np), as one MR tile: pair p
 * of row r at ap[p * MR + r] when A is transposed (the strided packer
 * writes it that way at no cost), at ap[r * KC_PAIRS + p] when it is not
 * (each row's pairs as converted, without a transposition: the tile's
 * broadcasts then read MR short streams). Returns whether rows are contiguous. */
BF16_TARGET static int pack_a(const cllm_bf16_operand *A, int K, int p0, int np, int i0, int m, uint32_t *ap) {
    if (A->trans) {
        pack_strided(A, K, p0, np, i0, m, MR, ap);
        return 0;
    }
    for (int r = 0; r < MR; r++) {
        if (r < m)
            row_pairs(A, i0 + r, K, p0, np, ap + (size_t)r * KC_PAIRS);
        else
            memset(ap + (size_t)r * KC_PAIRS, 0, (size_t)np * sizeof *ap);
    }
    return 1;
}

/* The MR x NR tile over np pairs; pair p of A's row r at ap[p * ps + r * rs]. */
BF16_TARGET __attribute__((always_inline)) static inline void tile_strided(int np, const uint32_t *ap, const int ps,
                                                                          const int rs, const uint32_t *bp, float *C,
                                                                          int ldc, int m, int n, int load_c) {
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
            __m512bh a = (__m512bh)_mm512_set1_epi32((int)ap[(size_t)p * ps + (size_t)r * rs]);
            acc[r][0] = _mm512_dpbf16_ps(acc[r][0], a, b0);
            acc[r][1] = _mm512_dpbf16_ps(acc[r][1], a, b1);
        }
    }
    for (int r = 0; r < m; r++) {
        _mm512_mask_storeu_ps(C + (size_t)r * ldc, m0, acc[r][0]);
        _mm512_mask_storeu_ps(C + (size_t)r * ldc + 16, m1, acc[r][1]);
    }
}

BF16_TARGET static void tile(int rows_contiguous, int np, const uint32_t *ap, const uint32_t *bp, float *C, int ldc,
                             int m, int n, int load_c) {
    if (rows_contiguous)
        tile_strided(np, ap, 1, KC_PAIRS, bp, C, ldc, m, n, load_c);
    else
        tile_strided(np, ap, MR, 1, bp, C, ldc, m, n, load_c);
}

/* The packed B of one column block, for as many pairs as fit: a
 * thread-local buffer of B_CAP dwords (384 KiB, sized once), so no call
 * allocates and threads may call at once. */
enum { B_CAP = KC_PAIRS * NC };
static _Thread_local uint32_t b_block[B_CAP] __attribute__((aligned(64)));

/* Loop order. The column block is all of N up to NC columns; a pass
 * covers as many pairs as the buffer holds for that block (B_CAP / block
 * width: all of K for narrow products, one 192-pair chunk for 512 columns).
 * Per pass and block B is packed once, then each 12-row tile of A walks the
 * pass's chunks with its C tiles staying in cache, so a narrow product
 * sweeps C once per pass instead of once per chunk, and A is still read
 * once per block (a narrower block would re-read and re-pack A). */
static int pass_pairs(int N) {
    int width = N < NC ? (N + NR - 1) / NR * NR : NC;
    return B_CAP / width;
}

BF16_TARGET void cllm_gemm_bf16_avx512bf16(int M, int N, int K, const cllm_bf16_operand *A,
                                           const cllm_bf16_operand *B, float *C, int ldc, int accumulate) {
    int pairs = cllm_bf16_pairs_after_edges(M, N, K, C, ldc, accumulate);
    if (pairs == 0) return;
    uint32_t ap[KC_PAIRS * MR] __attribute__((aligned(64)));
    int pass = pass_pairs(N);
    for (int p0 = 0; p0 < pairs; p0 += pass) {
        int np = pairs - p0 < pass ? pairs - p0 : pass;
        for (int jb = 0; jb < N; jb += NC) {
            int nb = N - jb < NC ? N - jb : NC;
            for (int j0 = 0; j0 < nb; j0 += NR)
                pack_b(B, K, p0, np, jb + j0, nb - j0 < NR ? nb - j0 : NR, b_block + (size_t)j0 * np);
            for (int i0 = 0; i0 < M; i0 += MR) {
                int m = M - i0 < MR ? M - i0 : MR;
                for (int q = 0; q < np; q += KC_PAIRS) {
                    int nq = np - q < KC_PAIRS ? np - q : KC_PAIRS;
                    int load_c = accumulate || p0 + q > 0;
                    int contiguous = pack_a(A, K, p0 + q, nq, i0, m, ap);
                    for (int j0 = 0; j0 < nb; j0 += NR)
                        tile(contiguous, nq, ap, b_block + (size_t)j0 * np + (size_t)q * NR,
                             C + (size_t)i0 * ldc + jb + j0, ldc, m, nb - j0 < NR ? nb - j0 : NR, load_c);
                }
            }
        }
    }
}

/* The weights' bf16 copy, 16 at a time through VCVTNEPS2BF16. */
BF16_TARGET void cllm_bf16_round_avx512bf16(uint16_t *dst, const float *src, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(dst + i), (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(src + i)));
    if (i < n) hw_cvtneps(dst + i, src + i, (int)(n - i));
}

#endif
