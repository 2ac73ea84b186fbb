/* bfloat16: the one definition of rounding fp32 to bf16, an exact scalar
 * model of the VDPBF16PS instruction, and the bf16 matrix product built on
 * them, used by `--precision bf16` (docs/BF16.md).
 *
 * bf16 is the upper half of an fp32: sign, 8 exponent bits, 7 mantissa bits.
 *
 * cllm_bf16_from_f32 is what VCVTNEPS2BF16 / VCVTNE2PS2BF16 compute, bit for
 * bit (test/test_bf16.c checks it against the instructions where the CPU has
 * them):
 *   - round to nearest, ties to even, on the 16 dropped bits; a value that
 *     rounds past the largest bf16 becomes infinity;
 *   - a NaN keeps its sign and upper payload bits and is made quiet (bit 6 of
 *     the bf16 set), so a NaN never turns into an infinity;
 *   - fp32 denormals (exponent field 0, non-zero mantissa) become a zero of
 *     the same sign: the instructions treat input denormals as zero. So no
 *     bf16 denormal is ever produced by rounding.
 *
 * cllm_dpbf16_ref is one fp32 lane of VDPBF16PS:
 *   acc = fma(a.hi, b.hi, acc); acc = fma(a.lo, b.lo, acc)
 * with the high pair (element 2i+1) first, each fused multiply-add rounded
 * once to nearest-even, denormal inputs (the bf16 operands and the incoming
 * accumulator) read as zeros of their sign, and a tiny result of either
 * step flushed to a zero of its sign, tininess decided after rounding with
 * an unbounded exponent (so an exact result just under FLT_MIN that rounds
 * to FLT_MIN with 24 bits is kept; see ref/bf16.c for what was observed).
 * A NaN result is the first NaN operand in the order src1 low, src2 low,
 * src1 high, src2 high, accumulator, made quiet, or the default NaN
 * 0xffc00000 when none is a NaN (inf * 0, inf - inf): the SDM's priority,
 * and what the Zen 5 EPYC this was checked on returns, payload included. */
#ifndef CLLM_KERNELS_BF16_H
#define CLLM_KERNELS_BF16_H

#include <stddef.h>
#include <stdint.h>

uint16_t cllm_bf16_from_f32(float x);
float cllm_bf16_to_f32(uint16_t h);

/* A pair of bf16 as the instruction reads it from one dword: element 2i in
 * the low half, element 2i+1 in the high half. */
static inline uint32_t cllm_bf16_pair(float even, float odd) {
    return (uint32_t)cllm_bf16_from_f32(even) | ((uint32_t)cllm_bf16_from_f32(odd) << 16);
}

/* One lane of VDPBF16PS: acc + a.hi*b.hi + a.lo*b.lo, as described above. */
float cllm_dpbf16_ref(float acc, uint32_t a_pair, uint32_t b_pair);

/* One operand of the bf16 matrix product: op(A) is M x K, op(B) is K x N,
 * row-major, with element (r, c) of op(X) at
 *   x[r * ld + c]   (trans == 0)      x[c * ld + r]   (trans == 1).
 * Exactly one of f32 and bf16 is set: fp32 values are rounded with
 * cllm_bf16_from_f32 while packing; bf16 values are used as they are (a copy
 * made with cllm_bf16_from_f32 gives the same bits as rounding its fp32
 * source, since that rounding is idempotent). ld is in elements. */
typedef struct {
    const float *f32;
    const uint16_t *bf16;
    int ld;
    int trans;
} cllm_bf16_operand;

static inline cllm_bf16_operand cllm_bf16_op_f32(const float *x, int ld, int trans) {
    return (cllm_bf16_operand){x, 0, ld, trans};
}
static inline cllm_bf16_operand cllm_bf16_op_bf16(const uint16_t *x, int ld, int trans) {
    return (cllm_bf16_operand){0, x, ld, trans};
}

/* The bf16 matrix product:
 *   C[M,N] = op(A) . op(B)           (accumulate == 0: C is not read)
 *   C[M,N] = C + op(A) . op(B)       (accumulate != 0)
 * with K padded to even with zeros. Each C[i][j] is the sequence of
 * VDPBF16PS lanes over the pairs p = 0, 1, ..., ceil(K/2)-1 in order:
 *   acc = cllm_dpbf16_ref(acc, pair(A(i,2p), A(i,2p+1)), pair(B(2p,j), B(2p+1,j)))
 * starting from acc = 0 or C[i][j]. Every build (the reference, the portable
 * kernel, the AVX512_BF16 kernel) gives exactly these bits, for any shape,
 * transposition, operand type and alignment. M, N <= 0 do nothing; K <= 0
 * writes zeros (or leaves C as it is when accumulating). ld >= the stored
 * row width, ldc >= N. */
typedef void (*cllm_gemm_bf16_fn)(int M, int N, int K, const cllm_bf16_operand *A, const cllm_bf16_operand *B,
                                  float *C, int ldc, int accumulate);

void cllm_gemm_bf16_ref(int M, int N, int K, const cllm_bf16_operand *A, const cllm_bf16_operand *B, float *C,
                        int ldc, int accumulate);

/* dst[i] = cllm_bf16_from_f32(src[i]) for i < n: the weights' bf16 copy. */
void cllm_bf16_round_array(uint16_t *dst, const float *src, size_t n);

/* The bare instructions, for the tests that check the reference against the
 * hardware: NULL when this CPU or build has no AVX512_BF16. n is any length.
 *   cvtneps:  dst[i] = VCVTNEPS2BF16(src[i])
 *   cvtne2ps: dst[i] = VCVTNE2PS2BF16 of the same floats (the two-source form)
 *   dpbf16:   acc[i] = VDPBF16PS lane of (acc[i], a[i], b[i]) */
typedef struct {
    void (*cvtneps)(uint16_t *dst, const float *src, int n);
    void (*cvtne2ps)(uint16_t *dst, const float *src, int n);
    void (*dpbf16)(float *acc, const uint32_t *a, const uint32_t *b, int n);
} cllm_bf16_hw_ops;

const cllm_bf16_hw_ops *cllm_bf16_hw(void);

#endif
