/* The portable bf16 matrix product: bitwise cllm_gemm_bf16_ref on any CPU,
 * without the instruction, at a usable speed (bf16 mode on a CPU without
 * AVX512_BF16 runs on it).
 *
 * Why plain fp32 arithmetic can give the instruction's bits: a bf16 value
 * has 8 significant bits, so the product of two is exact in fp32 unless it
 * overflows or underflows; and fma(a, b, acc) with an exact product is the
 * correctly rounded acc + p, which is what an fp32 add computes. The
 * instruction's extras only show outside the normal range: denormal operands
 * read as zero, tiny results flushed (tininess after rounding), infinities
 * and NaN payloads. So each lane runs the two adds in fp32 (vectorizable, the
 * file is compiled with -ffp-contract=off so the adds stay adds) and checks
 * that every operand, product and sum stayed in the normal range (or is an
 * exact zero that a zero operand produced); an output whose check fails
 * anywhere in a K chunk is recomputed from the chunk's start with
 * cllm_dpbf16_ref. Ordinary training data never takes that path.
 *
 * The checks cost more than the arithmetic, so most of the time they are
 * made in bulk instead (fast_range below): when every operand of a chunk is
 * zero or within [2^-40, 2^40] and the accumulator starts at zero or within
 * [2^-70, 2^100], no product or partial sum can leave the normal range, and
 * the lanes are the two adds alone, four rows sharing each load of B.
 *
 * Blocking: K in chunks of KC_PAIRS pairs, N in blocks of NB columns; per
 * chunk and block op(B) is widened once into two float planes (the high and
 * the low element of each pair, [p][j]) in a thread-local buffer, and each
 * row of op(A) once into its pairs. No call allocates. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "cllm/kernels/bf16.h"
#include "../bf16_internal.h"

enum { KC_PAIRS = 128, NB = 256 };

static _Thread_local float b_hi[KC_PAIRS * NB], b_lo[KC_PAIRS * NB];

static uint16_t element(const cllm_bf16_operand *x, int r, int c) {
    size_t at = x->trans ? (size_t)c * (size_t)x->ld + (size_t)r : (size_t)r * (size_t)x->ld + (size_t)c;
    return x->bf16 ? x->bf16[at] : cllm_bf16_from_f32(x->f32[at]);
}

/* op(X)(r, c) as a float holding the bf16 value; 0 at c == K (padding). */
static float a_value(const cllm_bf16_operand *A, int i, int k, int K) {
    return k < K ? cllm_bf16_to_f32(element(A, i, k)) : 0.0f;
}

static float b_value(const cllm_bf16_operand *B, int k, int j, int K) {
    return k < K ? cllm_bf16_to_f32(element(B, k, j)) : 0.0f;
}

static uint32_t pair_bits(float lo, float hi) {
    uint32_t l, h;
    memcpy(&l, &lo, sizeof l);
    memcpy(&h, &hi, sizeof h);
    return (l >> 16) | (h & 0xffff0000u);
}

/* Normal, or an exact zero: the range where fp32 arithmetic is the instruction's. */
static inline int plain(float x) { return x == 0.0f || (fabsf(x) > FLT_MIN && fabsf(x) <= FLT_MAX); }

/* The product a * b is exact and what the instruction multiplies: both
 * operands plain and the product normal, or a zero operand (exact zero). */
static inline int exact_product(float p, float a, float b) {
    return plain(a) && plain(b) && (a == 0.0f || b == 0.0f || (fabsf(p) > FLT_MIN && fabsf(p) <= FLT_MAX));
}

/* Why the bulk range is safe. A nonzero bf16 x with |x| >= 2^-40 is a
 * multiple of 2^-47 (8 significant bits), so a product of two such is exact,
 * within [2^-80, 2^80] and a multiple of 2^-94; a nonzero accumulator with
 * |acc| >= 2^-70 is a multiple of 2^-93. A sum of multiples of 2^-94 is one
 * too: if it is below 2^-70 it needs fewer than 24 bits and is exact, so it is
 * zero or at least 2^-94 (never denormal), and if it is larger it rounds to a
 * multiple of its own ulp (>= 2^-93); so every partial sum is zero or normal,
 * and stays a multiple of 2^-94. Upwards, a chunk adds at most 2 x KC_PAIRS x
 * 2^80 = 2^88 to an accumulator of at most 2^100: far from FLT_MAX. Between
 * chunks the accumulator goes through C and is checked again. */
static inline int fast_operand(float x) {
    float a = fabsf(x); /* false for NaN */
    return x == 0.0f || (a >= 0x1p-40f && a <= 0x1p40f);
}
static inline int fast_accumulator(float x) {
    float a = fabsf(x);
    return x == 0.0f || (a >= 0x1p-70f && a <= 0x1p100f);
}

static int all_fast_operands(const float *x, size_t n) {
    int ok = 1;
    for (size_t i = 0; i < n; i++) ok &= fast_operand(x[i]);
    return ok;
}

/* Row i of op(A), pairs [p0, p0 + np), as the low and high elements. */
static void widen_row(const cllm_bf16_operand *A, int K, int i, int p0, int np, float *al, float *ah) {
    for (int p = 0; p < np; p++) {
        int k = 2 * (p0 + p);
        al[p] = a_value(A, i, k, K);
        ah[p] = a_value(A, i, k + 1, K);
    }
}

/* Rows i0 .. i0 + R of the block, all operands and accumulators in the fast
 * range (the caller checked): the two adds per lane and nothing else, B's
 * loads shared by the R rows. */
enum { FAST_ROWS = 4 };
static void rows_fast(float (*al)[KC_PAIRS], float (*ah)[KC_PAIRS], int R, int nb, int np, float *C, int ldc,
                      int load_c) {
    float acc[FAST_ROWS][NB];
    for (int r = 0; r < R; r++)
        for (int j = 0; j < nb; j++) acc[r][j] = load_c ? C[(size_t)r * ldc + j] : 0.0f;
    for (int p = 0; p < np; p++) {
        const float *bh = b_hi + (size_t)p * NB, *bl = b_lo + (size_t)p * NB;
        if (R == FAST_ROWS) {
            float h0 = ah[0][p], h1 = ah[1][p], h2 = ah[2][p], h3 = ah[3][p];
            float l0 = al[0][p], l1 = al[1][p], l2 = al[2][p], l3 = al[3][p];
#pragma omp simd
            for (int j = 0; j < nb; j++) { /* the high pair first, as the instruction */
                float vh = bh[j], vl = bl[j];
                acc[0][j] = (acc[0][j] + h0 * vh) + l0 * vl;
                acc[1][j] = (acc[1][j] + h1 * vh) + l1 * vl;
                acc[2][j] = (acc[2][j] + h2 * vh) + l2 * vl;
                acc[3][j] = (acc[3][j] + h3 * vh) + l3 * vl;
            }
        } else {
            for (int r = 0; r < R; r++) {
                float h = ah[r][p], l = al[r][p];
#pragma omp simd
                for (int j = 0; j < nb; j++) acc[r][j] = (acc[r][j] + h * bh[j]) + l * bl[j];
            }
        }
    }
    for (int r = 0; r < R; r++) memcpy(C + (size_t)r * ldc, acc[r], (size_t)nb * sizeof(float));
}

/* Row i, columns [0, nb) of the block, pairs [p0, p0 + np), its pairs
 * widened in al/ah: acc[j] starts from C or 0; the lanes whose fp32 path
 * left the normal range are redone by the reference. */
static void row_chunk_checked(const float *al, const float *ah, int nb, int np, float *c, int load_c) {
    float acc[NB];
    int bad[NB];
    for (int j = 0; j < nb; j++) {
        acc[j] = load_c ? c[j] : 0.0f;
        bad[j] = !plain(acc[j]);
    }
    for (int p = 0; p < np; p++) {
        float h = ah[p], l = al[p];
        const float *bh = b_hi + (size_t)p * NB, *bl = b_lo + (size_t)p * NB;
#pragma omp simd
        for (int j = 0; j < nb; j++) {
            float p1 = h * bh[j], r1 = acc[j] + p1; /* the high pair first, as the instruction */
            float p2 = l * bl[j], r2 = r1 + p2;
            bad[j] |= !(exact_product(p1, h, bh[j]) && plain(r1) && exact_product(p2, l, bl[j]) && plain(r2));
            acc[j] = r2;
        }
    }
    for (int j = 0; j < nb; j++) {
        if (bad[j]) {
            float r = load_c ? c[j] : 0.0f;
            for (int p = 0; p < np; p++)
                r = cllm_dpbf16_ref(r, pair_bits(al[p], ah[p]),
                                    pair_bits(b_lo[(size_t)p * NB + j], b_hi[(size_t)p * NB + j]));
            acc[j] = r;
        }
        c[j] = acc[j];
    }
}

void cllm_gemm_bf16_portable(int M, int N, int K, const cllm_bf16_operand *A, const cllm_bf16_operand *B, float *C,
                             int ldc, int accumulate) {
    int pairs = cllm_bf16_pairs_after_edges(M, N, K, C, ldc, accumulate);
    if (pairs == 0) return;
    for (int p0 = 0; p0 < pairs; p0 += KC_PAIRS) {
        int np = pairs - p0 < KC_PAIRS ? pairs - p0 : KC_PAIRS;
        int load_c = accumulate || p0 > 0;
        for (int j0 = 0; j0 < N; j0 += NB) {
            int nb = N - j0 < NB ? N - j0 : NB;
            int b_fast = 1;
            for (int p = 0; p < np; p++) {
                int k = 2 * (p0 + p);
                float *lo = b_lo + (size_t)p * NB, *hi = b_hi + (size_t)p * NB;
                for (int j = 0; j < nb; j++) {
                    lo[j] = b_value(B, k, j0 + j, K);
                    hi[j] = b_value(B, k + 1, j0 + j, K);
                }
                b_fast = b_fast && all_fast_operands(lo, (size_t)nb) && all_fast_operands(hi, (size_t)nb);
            }
            for (int i0 = 0; i0 < M; i0 += FAST_ROWS) {
                int R = M - i0 < FAST_ROWS ? M - i0 : FAST_ROWS, fast = b_fast;
                float al[FAST_ROWS][KC_PAIRS], ah[FAST_ROWS][KC_PAIRS];
                float *c0 = C + (size_t)i0 * ldc + j0;
                for (int r = 0; r < R; r++) {
                    widen_row(A, K, i0 + r, p0, np, al[r], ah[r]);
                    fast = fast && all_fast_operands(al[r], (size_t)np) && all_fast_operands(ah[r], (size_t)np);
                    for (int j = 0; fast && load_c && j < nb; j++) fast = fast_accumulator(c0[(size_t)r * ldc + j]);
                }
                if (fast) {
                    rows_fast(al, ah, R, nb, np, c0, ldc, load_c);
                    continue;
                }
                for (int r = 0; r < R; r++) row_chunk_checked(al[r], ah[r], nb, np, c0 + (size_t)r * ldc, load_c);
            }
        }
    }
}
