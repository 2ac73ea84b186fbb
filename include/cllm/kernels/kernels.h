/* The kernel table: every numeric inner loop the product runs, for one
 * instruction set, chosen once and passed down as data.
 *
 * There is no global switch. cllm_kernel_table_for(isa) returns a static
 * const table (or NULL when this CPU or build cannot run that ISA); whoever
 * creates a model, an engine or a trainer hands it the table, and the layers
 * (include/cllm/nn/layers.h) call through it. Which table a command uses is
 * decided once by the CLI (CLLM_SIMD, src/cli/env.c), defaulting to
 * cllm_kernel_table_best().
 *
 * The builds (src/kernels/):
 *   ref/        "scalar": plain C loops, libm expf/tanhf, sequential sums.
 *               The specification every other build is tested against.
 *   portable/   "omp": #pragma omp simd loops and a call-free exp, for the
 *               compiler's baseline ISA; the blocked GEMM driver.
 *   x86/avx2/   "avx2": the same loops compiled for AVX2 + FMA, AVX2
 *               intrinsics where a loop needed them, the 6x16 GEMM tile.
 *   x86/avx512/ "avx512": AVX-512F intrinsics, the 12x32 GEMM tile.
 *   x86/avx512bf16/  the VDPBF16PS bf16 product (gemm_bf16), in the
 *               "avx512" table where the CPU has AVX512_BF16 (bf16.h);
 *               elsewhere portable/bf16.c gives the same bits.
 * The kernels' intrinsics appear only under x86/, compiled with target
 * attributes, so one binary runs on any x86-64 (other processors build ref/
 * and portable/ only).
 *
 * Conventions of the row kernels: arrays row-major, C (or V, n) floats per
 * row, any alignment, any length >= 1. Nothing allocates, keeps state or uses
 * OpenMP: threads may call any kernel at once on their own buffers. */
#ifndef CLLM_KERNELS_KERNELS_H
#define CLLM_KERNELS_KERNELS_H

#include <stddef.h>

#include "cllm/base/common.h"
#include "cllm/kernels/bf16.h"

typedef enum {
    CLLM_SIMD_SCALAR = 0, /* plain C reference loops */
    CLLM_SIMD_OMP = 1,    /* #pragma omp simd, portable */
    CLLM_SIMD_AVX2 = 2,   /* AVX2 + FMA intrinsics */
    CLLM_SIMD_AVX512 = 3  /* AVX-512F intrinsics */
} cllm_simd;

#define CLLM_SIMD_COUNT 4

/* Name of an ISA: "scalar", "omp", "avx2", "avx512". */
const char *cllm_simd_name(cllm_simd s);

/* Whether this CPU (and build) can run ISA s. */
int cllm_simd_supported(cllm_simd s);

/* The fastest ISA this CPU supports. */
cllm_simd cllm_simd_best(void);

/* ------------------------------------------------------------ reductions
 *
 * Gradient reduction kernels: "sum k sources into a destination", the same
 * with per-chunk sums of squares (for global-norm clipping), and the fused
 * "sum + AdamW" on a range.
 *
 * Every build (scalar reference, #pragma omp simd, AVX2, AVX-512F) gives
 * BITWISE the same result as the scalar reference, for any length and any
 * alignment:
 *  - sums add the sources in source order, ((s0 + s1) + s2) + ..., and the
 *    reduction files are compiled with -ffp-contract=off;
 *  - sums of squares are taken in double, where the square of a float is
 *    exact, over a fixed lane pattern (element j of a chunk goes to lane
 *    j % 16, lanes are added 0..15 in order) that vector and scalar code both
 *    follow;
 *  - AdamW uses no FMA and only IEEE-correctly-rounded sqrt and division, in
 *    the operation order of cllm_adamw_update_ref (src/train/adamw.c).
 * So the AdamW error bound against the reference is 0 ulp, and the tests
 * assert bitwise equality for all three kernels.
 *
 * Pointers are already offset to the range: element i of the range is
 * dst[i], srcs[j][i]. dst may alias srcs[0] (in-place fold) but no other
 * source. k >= 1. */

/* Floats per sum-of-squares partial. Partials are taken per chunk, not per
 * call, so that the global norm (chunk partials added in chunk order) does
 * not depend on how the vector was split into segments, i.e. on the thread
 * count. Callers that want that property split on multiples of it. */
#define CLLM_SQ_CHUNK 256
#define CLLM_SQ_LANES 16

/* Number of sum-of-squares chunks of a range of n floats. */
static inline size_t cllm_sq_chunks(size_t n) { return (n + CLLM_SQ_CHUNK - 1) / CLLM_SQ_CHUNK; }

/* Everything one AdamW step's update needs, in the float precision the
 * kernels use (made by cllm_adamw_step_make, include/cllm/train/adamw.h). */
typedef struct {
    float lr, beta1, beta2, eps, weight_decay;
    float bias_correction1, bias_correction2; /* 1 - beta^t, computed in double */
} cllm_adamw_step;

/* dst[i] = srcs[0][i] + ... + srcs[k-1][i] for i in [0, n). */
typedef void (*cllm_sum_fn)(float *dst, const float *const *srcs, int k, size_t n);

/* Same sum, and sq[c] = sum of dst[i]^2 over chunk c (elements
 * [c*CLLM_SQ_CHUNK, (c+1)*CLLM_SQ_CHUNK) of the range), for
 * c < cllm_sq_chunks(n). */
typedef void (*cllm_sum_sq_fn)(float *dst, const float *const *srcs, int k, size_t n, double *sq);

/* g = grad_scale * (srcs[0][i] + ... + srcs[k-1][i]), then the AdamW update
 * of params/m/v exactly as cllm_adamw_update_ref. */
typedef void (*cllm_sum_adamw_fn)(float *params, float *m, float *v, const float *const *srcs, int k,
                                  float grad_scale, size_t n, const cllm_adamw_step *h, int decay);

/* ------------------------------------------------------------ matrix product
 *
 * Row-major single-precision GEMM:  C = alpha * op(A) * op(B) + beta * C
 * with op(X) = X or X^T. op(A) is M x K, op(B) is K x N, C is M x N.
 * Leading dimensions are in floats and may exceed the row width. beta == 0
 * means C is not read (it may hold garbage), as in BLAS. The scalar table's
 * gemm is the reference: obvious loops accumulating each output in float in
 * k order. The others are cache-blocked and register-tiled with thread-local
 * packing buffers (no allocation per call, safe from many threads at once). */
typedef void (*cllm_gemm_fn)(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                             const float *B, int ldb, float beta, float *C, int ldc);

/* ------------------------------------------------------------ the table */

#define CLLM_LAYERNORM_EPS 1e-5f

typedef struct {
    cllm_simd isa;
    const char *name; /* cllm_simd_name(isa) */

    cllm_gemm_fn gemm;
    /* The bf16 matrix product (include/cllm/kernels/bf16.h), bitwise
     * cllm_gemm_bf16_ref in every table: the reference in the scalar table,
     * the VDPBF16PS kernel in the avx512 table where the CPU has
     * AVX512_BF16, the portable kernel (fp32 arithmetic that is exact in the
     * normal range, the reference outside it) everywhere else. bf16_round
     * makes the weights' bf16 copy (cllm_bf16_round_array's bits);
     * bf16_fast is 1 where both run on the bf16 instructions. */
    cllm_gemm_bf16_fn gemm_bf16;
    void (*bf16_round)(uint16_t *dst, const float *src, size_t n);
    int bf16_fast;

    /* GELU, tanh approximation as GPT-2, over n floats:
     * gelu: out = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), out may alias inp;
     * gelu_backward: dinp += gelu'(inp) * dout; gelu_backward_set: dinp = ...,
     * never read, and dinp may alias dout. */
    void (*gelu)(float *out, const float *inp, int n);
    void (*gelu_backward)(float *dinp, const float *inp, const float *dout, int n);
    void (*gelu_backward_set)(float *dinp, const float *inp, const float *dout, int n);
    /* N rows of C: pre += bias per column, then out = gelu(pre). */
    void (*bias_gelu)(float *out, float *pre, const float *bias, int N, int C);

    /* One LayerNorm row: o = (x - mean) * rstd * weight + bias with
     * rstd = 1 / sqrt(var + CLLM_LAYERNORM_EPS); *mean and *rstd saved (two
     * passes: mean, then centred squares). */
    void (*layernorm_row)(float *o, float *mean, float *rstd, const float *x, const float *weight,
                          const float *bias, int C);
    /* Its backward for one row: dx += rstd * (g - mean(g) - xhat * mean(g * xhat)),
     * g = d * weight; dweight += d * xhat, dbias += d. */
    void (*layernorm_backward_row)(float *dx, float *dweight, float *dbias, const float *d, const float *x,
                                   const float *weight, float mean, float rstd, int C);
    /* One residual row in front of a LayerNorm: r = a + (b + b_bias), or
     * a + b when b_bias is NULL. Element-wise adds: every build gives the same bits. */
    void (*residual_row)(float *r, const float *a, const float *b, const float *b_bias, int C);
    /* sums[j] += rows[i][j] over N rows of n, rows in order: each column's sum
     * is the same sequence of adds in every build. */
    void (*column_sums)(float *sums, const float *rows, int N, int n);

    /* Causal attention rows. softmax_row: row[0..t] = softmax (max
     * subtracted), row[t+1..T) = 0. softmax_backward_row turns dL/d(att) into
     * dL/d(scores) in place: dr_j = ar_j (dr_j - sum_i ar_i dr_i) for j <= t,
     * zeros from t+1 up to r1. */
    void (*softmax_row)(float *row, int t, int T);
    void (*softmax_backward_row)(float *dr, const float *ar, int t, int r1);

    /* Cross-entropy rows over V logits: logsumexp (max subtracted), and the
     * gradient d[j] = exp(l[j] - lse) * dloss (d may alias l). */
    float (*logsumexp_row)(const float *l, int V);
    void (*softmax_grad_row)(float *d, const float *l, float lse, float dloss, int V);

    cllm_sum_fn sum;
    cllm_sum_sq_fn sum_sq;
    cllm_sum_adamw_fn sum_adamw;
    /* The FMA peak probe: `iters` rounds of independent multiply-add chains
     * (report/peak.c times it), and its floating-point operations per round. */
    float (*fma_probe)(long iters);
    double fma_probe_flops;
} cllm_kernel_table;

/* The table of ISA s, or NULL when this CPU or build cannot run it. */
const cllm_kernel_table *cllm_kernel_table_for(cllm_simd s);

/* The table of cllm_simd_best(): never NULL. */
const cllm_kernel_table *cllm_kernel_table_best(void);

#endif
