/* Matrix products used by every linear layer, behind one entry point.
 *
 * Row-major single-precision GEMM:  C = alpha * op(A) * op(B) + beta * C
 * with op(X) = X or X^T. op(A) is M x K, op(B) is K x N, C is M x N.
 * The layers need three shapes of it:
 *   forward   Y  = X  · W      (W in Hugging Face Conv1D layout [in, out])
 *   backward  dX += dY · W^T
 *             dW += X^T · dY
 * and the tied LM head uses W^T in the forward and the mirrored products.
 *
 * cllm_sgemm dispatches on cllm_simd_active(); cllm_sgemm_ref is the plain
 * reference every variant is tested against.
 *
 * The fast paths are cache-blocked and register-tiled: panels of op(A) and
 * op(B) are packed into thread-local buffers (no allocation per call, safe to
 * call from many threads at once; no OpenMP inside: callers parallelise).
 * Leading dimensions are in floats and may exceed the row width. beta == 0
 * means C is not read (it may hold garbage), as in BLAS. */
#ifndef CLLM_MODEL_MATMUL_H
#define CLLM_MODEL_MATMUL_H

#include <stddef.h>

#include "cllm/parallel/simd.h"

void cllm_sgemm(int trans_a, int trans_b, int M, int N, int K, float alpha,
                const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);

void cllm_sgemm_ref(int trans_a, int trans_b, int M, int N, int K, float alpha,
                    const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* One path explicitly, whatever cllm_simd_active() says (tests, benchmarks).
 * A path the CPU does not support falls back to the portable one. */
void cllm_sgemm_path(cllm_simd path, int trans_a, int trans_b, int M, int N, int K, float alpha,
                     const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* Pre-packed B operand, for a product whose B (a weight) is reused by many
 * calls: the packing the blocked driver would redo on every call is done once
 * into caller-owned storage, and the product then reads that pack.
 *
 * A pack holds op(B) (K x N) cut exactly as cllm_sgemm_path(path, ...) cuts
 * it: nc-wide panels, K in the same equal kc slices, NR-column zero-padded
 * slivers. So cllm_sgemm_with_packed_b gives exactly the bits cllm_sgemm_path
 * gives for the same operands on the same path (same kernel, same slicing,
 * same summation order).
 *
 * The pack is a copy: it does not follow later changes of B. Whoever writes
 * B must pack again before the next packed product (the model ties its packs
 * to a parameter version, see gpt2_pack_weights).
 *
 * The scalar path does not pack (its size is 0): callers use cllm_sgemm there. */
typedef struct {
    float *data;    /* cllm_sgemm_packed_b_size(path, K, N) floats, 64-byte aligned, caller-owned */
    int K, N;       /* op(B) is K x N */
    cllm_simd path; /* the kernel whose blocking the pack follows; CLLM_SIMD_SCALAR: no pack */
} cllm_packed_b;

/* Floats a pack of a K x N op(B) needs on `path` (0 for the scalar path).
 * Independent of the cache blocking: K * N rounded up to the register tile
 * width, plus the packers' slack. */
size_t cllm_sgemm_packed_b_size(cllm_simd path, int K, int N);

/* Largest size over every path this CPU runs: storage that fits whatever
 * path is active when it is packed. */
size_t cllm_sgemm_packed_b_size_any(int K, int N);

/* Packs op(B) (trans_b as in cllm_sgemm, ldb its leading dimension) into
 * dst->data for `path` and records K, N and the path in *dst. A path the CPU
 * does not support packs for the portable kernel, as cllm_sgemm_path runs it.
 * Single-threaded; packs of different B may be made on different threads. */
void cllm_sgemm_pack_b(cllm_simd path, int trans_b, int K, int N, const float *B, int ldb, cllm_packed_b *dst);

/* C = alpha * op(A) * op(B) + beta * C with op(B) read from the pack: bitwise
 * cllm_sgemm_path(pb->path, trans_a, ...) of the B that was packed. pb's K and N
 * must be those of this product. */
void cllm_sgemm_with_packed_b(int trans_a, int M, int N, int K, float alpha, const float *A, int lda,
                              const cllm_packed_b *pb, float beta, float *C, int ldc);

#endif
