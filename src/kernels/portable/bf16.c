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

/* Row i, columns [0, nb) of the block, pairs [p0, p0 + np): acc[j] starts
 * from C or 0; the lanes whose fp32 path left the normal range are redone
 * by the reference. */
static void row_chunk(const cllm_bf16_operand *A, int K, int i, int nb, int p0, int np, float *c, int load_c) {
    float ah[KC_PAIRS], al[KC_PAIRS], acc[NB];
    int bad[NB];
    for (int p = 0; p < np; p++) {
        int k = 2 * (p0 + p);
        al[p] = a_value(A, i, k, K);
        ah[p] = a_value(A, i, k + 1, K);
    }
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
    if (M <= 0 || N <= 0) return;
    int pairs = K > 0 ? (K + 1) / 2 : 0;
    if (pairs == 0) {
        if (!accumulate)
            for (int i = 0; i < M; i++) memset(C + (size_t)i * ldc, 0, (size_t)N * sizeof *C);
        return;
    }
    for (int p0 = 0; p0 < pairs; p0 += KC_PAIRS) {
        int np = pairs - p0 < KC_PAIRS ? pairs - p0 : KC_PAIRS;
        int load_c = accumulate || p0 > 0;
        for (int j0 = 0; j0 < N; j0 += NB) {
            int nb = N - j0 < NB ? N - j0 : NB;
            for (int p = 0; p < np; p++) {
                int k = 2 * (p0 + p);
                for (int j = 0; j < nb; j++) {
                    b_lo[(size_t)p * NB + j] = b_value(B, k, j0 + j, K);
                    b_hi[(size_t)p * NB + j] = b_value(B, k + 1, j0 + j, K);
                }
            }
            for (int i = 0; i < M; i++) row_chunk(A, K, i, nb, p0, np, C + (size_t)i * ldc + j0, load_c);
        }
    }
}
