/* The scalar bf16 specification: rounding fp32 -> bf16 and one lane of
 * VDPBF16PS, exactly as the instructions compute them (include/cllm/kernels/
 * bf16.h states the semantics; test/test_bf16.c checks them bit for bit
 * against the hardware where the CPU has AVX512_BF16), and the bf16 matrix
 * product as a sequence of those lanes. */
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "cllm/kernels/bf16.h"

static uint32_t f32_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static float f32_from_bits(uint32_t u) {
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

uint16_t cllm_bf16_from_f32(float x) {
    uint32_t u = f32_bits(x);
    uint32_t exponent = u & 0x7f800000u, mantissa = u & 0x007fffffu;
    if (exponent == 0x7f800000u && mantissa != 0) return (uint16_t)((u >> 16) | 0x0040u); /* quiet NaN */
    if (exponent == 0) return (uint16_t)((u >> 16) & 0x8000u); /* zero or denormal: signed zero */
    /* Nearest, ties to even: add just under half an ulp of bf16, plus one
     * when the kept part is odd, and truncate. A carry out of the mantissa
     * bumps the exponent, which is the right answer (up to infinity). */
    uint32_t bias = 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)((u + bias) >> 16);
}

float cllm_bf16_to_f32(uint16_t h) { return f32_from_bits((uint32_t)h << 16); }

/* Denormal in, zero of the same sign out; anything else unchanged. */
static float denormal_as_zero(float x) {
    return (fabsf(x) < 0x1p-126f && x != 0.0f) ? copysignf(0.0f, x) : x;
}

/* Whether the exact |a*b + acc| is below FLT_MIN - 2^-151, the smallest
 * value that still rounds to FLT_MIN with 24 bits and an unbounded exponent.
 * a and b are bf16 values, so a*b is exact in double; two-sum gives the sum
 * as s + e exactly, and s - threshold is exact (Sterbenz: both are within a
 * factor 2 of FLT_MIN when this is asked), so the comparison is exact. */
static int below_flush_threshold(float a, float b, float acc) {
    double p = (double)a * (double)b, c = acc;
    double s = c + p, t = s - c, e = (c - (s - t)) + (p - t);
    if (s < 0) {
        s = -s;
        e = -e;
    }
    double d = s - (0x1p-126 - 0x1p-151);
    return d != 0.0 ? d < 0.0 : e < 0.0;
}

/* One fused multiply-add as the instruction does it: operands read with DAZ,
 * one rounding to nearest-even, a tiny result flushed to a zero of its sign.
 * "Tiny" is decided after rounding as if the exponent were unbounded (IEEE's
 * after-rounding tininess, which x86 uses): observed on a Zen 5 EPYC, an
 * exact result in [FLT_MIN - 2^-150, FLT_MIN - 2^-151) is flushed although
 * fmaf, rounding on the denormal grid, returns FLT_MIN for it; one in
 * [FLT_MIN - 2^-151, FLT_MIN) is kept as FLT_MIN. */
static float fma_daz_ftz(float a, float b, float acc) {
    a = denormal_as_zero(a);
    b = denormal_as_zero(b);
    acc = denormal_as_zero(acc);
    float r = fmaf(a, b, acc);
    if (fabsf(r) == 0x1p-126f && below_flush_threshold(a, b, acc)) return copysignf(0.0f, r);
    return denormal_as_zero(r);
}

/* Which NaN a NaN result is, fixed here rather than left to how the
 * compiler orders fmaf's operands: the first NaN operand in the order
 * src1 low, src2 low, src1 high, src2 high, accumulator, made quiet; with no
 * NaN operand (inf * 0, inf - inf) the x86 default NaN, 0xffc00000. */
static float nan_result(float a_lo, float b_lo, float a_hi, float b_hi, float acc) {
    const float order[5] = {a_lo, b_lo, a_hi, b_hi, acc};
    for (int i = 0; i < 5; i++)
        if (isnan(order[i])) return f32_from_bits(f32_bits(order[i]) | 0x00400000u);
    return f32_from_bits(0xffc00000u);
}

float cllm_dpbf16_ref(float acc, uint32_t a_pair, uint32_t b_pair) {
    float a_lo = cllm_bf16_to_f32((uint16_t)a_pair), a_hi = cllm_bf16_to_f32((uint16_t)(a_pair >> 16));
    float b_lo = cllm_bf16_to_f32((uint16_t)b_pair), b_hi = cllm_bf16_to_f32((uint16_t)(b_pair >> 16));
    float r = fma_daz_ftz(a_hi, b_hi, acc); /* the odd element's product first */
    r = fma_daz_ftz(a_lo, b_lo, r);
    return isnan(r) ? nan_result(a_lo, b_lo, a_hi, b_hi, acc) : r;
}

/* Element (r, c) of op(X) as bf16 bits. */
static uint16_t operand_at(const cllm_bf16_operand *x, int r, int c) {
    size_t at = x->trans ? (size_t)c * (size_t)x->ld + (size_t)r : (size_t)r * (size_t)x->ld + (size_t)c;
    return x->bf16 ? x->bf16[at] : cllm_bf16_from_f32(x->f32[at]);
}

/* A(i, k) and B(k, j) as bf16, zero past K. */
static uint32_t a_pair(const cllm_bf16_operand *A, int i, int k, int K) {
    uint32_t lo = operand_at(A, i, k), hi = k + 1 < K ? operand_at(A, i, k + 1) : 0;
    return lo | hi << 16;
}

static uint32_t b_pair(const cllm_bf16_operand *B, int k, int j, int K) {
    uint32_t lo = operand_at(B, k, j), hi = k + 1 < K ? operand_at(B, k + 1, j) : 0;
    return lo | hi << 16;
}

void cllm_gemm_bf16_ref(int M, int N, int K, const cllm_bf16_operand *A, const cllm_bf16_operand *B, float *C,
                        int ldc, int accumulate) {
    int pairs = K > 0 ? (K + 1) / 2 : 0;
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            float *c = &C[(size_t)i * ldc + j];
            float acc = accumulate ? *c : 0.0f;
            for (int p = 0; p < pairs; p++) acc = cllm_dpbf16_ref(acc, a_pair(A, i, 2 * p, K), b_pair(B, 2 * p, j, K));
            *c = acc;
        }
    }
}

void cllm_bf16_round_array(uint16_t *dst, const float *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = cllm_bf16_from_f32(src[i]);
}
