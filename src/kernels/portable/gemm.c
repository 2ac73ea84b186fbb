/* The blocked matrix product of the omp, avx2 and avx512 tables (see
 * include/cllm/kernels/kernels.h), and the portable micro-kernel.
 *
 * Goto/BLIS structure: for each nc-wide panel of op(B) and kc-deep slice of
 * K, op(B) is packed once into NR-column slivers; for each mc-tall block of
 * op(A), op(A) is packed into MR-row slivers; then the micro-kernel sweeps
 * the MR x NR tiles. Packing makes every transpose combination look the same
 * to the micro-kernel (unit stride, aligned, zero-padded edges), so one
 * kernel per ISA serves NN, NT, TN and TT. */
#include <stddef.h>

#include "../gemm_internal.h"

/* Packing buffers sized for the largest blocks of any kernel, one set per
 * thread: the engine runs independent products on every thread at once. */
static _Thread_local float pack_a[CLLM_SGEMM_MAX_MC * CLLM_SGEMM_MAX_KC + CLLM_SGEMM_PACK_SLACK]
    __attribute__((aligned(64)));
static _Thread_local float pack_b[CLLM_SGEMM_MAX_KC * CLLM_SGEMM_MAX_NC + CLLM_SGEMM_PACK_SLACK]
    __attribute__((aligned(64)));

static inline int min_int(int a, int b) { return a < b ? a : b; }

/* op(A)[i0 .. i0+mb) x [p0 .. p0+kb) into MR-row slivers, k-major. */
static void pack_a_block(const cllm_sgemm_kernel *kern, int trans_a, const float *A, int lda, int i0, int p0,
                         int mb, int kb, float *dst) {
    const int mr = kern->mr;
    if (trans_a && kern->pack_a_cols) {
        kern->pack_a_cols(A + (size_t)p0 * lda + i0, lda, mb, kb, dst);
        return;
    }
    if (trans_a) {
        /* op(A)(i,k) = A[k][i]: k outer, so each row of A is read once,
         * sequentially, across all slivers of the block. */
        for (int k = 0; k < kb; k++) {
            const float *src = A + (size_t)(p0 + k) * lda + i0;
            for (int ir = 0; ir < mb; ir += mr) {
                int m = min_int(mr, mb - ir);
                float *d = dst + (size_t)ir * kb + (size_t)k * mr;
                for (int r = 0; r < m; r++) d[r] = src[ir + r];
                for (int r = m; r < mr; r++) d[r] = 0.0f;
            }
        }
        return;
    }
    for (int ir = 0; ir < mb; ir += mr) {
        int m = min_int(mr, mb - ir);
        float *d = dst + (size_t)ir * kb;
        if (kern->pack_a_rows) {
            kern->pack_a_rows(A + (size_t)(i0 + ir) * lda + p0, lda, m, kb, d);
            continue;
        }
        /* op(A)(i,k) = A[i][k]: read each row once, scatter by mr. */
        for (int r = 0; r < m; r++) {
            const float *src = A + (size_t)(i0 + ir + r) * lda + p0;
            for (int k = 0; k < kb; k++) d[(size_t)k * mr + r] = src[k];
        }
        for (int r = m; r < mr; r++)
            for (int k = 0; k < kb; k++) d[(size_t)k * mr + r] = 0.0f;
    }
}

/* op(B)[p0 .. p0+kb) x [j0 .. j0+nb) into NR-column slivers, k-major. */
static void pack_b_panel(const cllm_sgemm_kernel *kern, int trans_b, const float *B, int ldb, int p0, int j0,
                         int kb, int nb, float *dst) {
    const int nr = kern->nr;
    if (!trans_b && kern->pack_b_rows) {
        kern->pack_b_rows(B + (size_t)p0 * ldb + j0, ldb, kb, nb, dst);
        return;
    }
    if (!trans_b) {
        /* op(B)(k,j) = B[k][j]: k outer, each row of B read once, sequentially. */
        for (int k = 0; k < kb; k++) {
            const float *src = B + (size_t)(p0 + k) * ldb + j0;
            for (int jr = 0; jr < nb; jr += nr) {
                int n = min_int(nr, nb - jr);
                float *d = dst + (size_t)jr * kb + (size_t)k * nr;
                for (int c = 0; c < n; c++) d[c] = src[jr + c];
                for (int c = n; c < nr; c++) d[c] = 0.0f;
            }
        }
        return;
    }
    for (int jr = 0; jr < nb; jr += nr) {
        int n = min_int(nr, nb - jr);
        float *d = dst + (size_t)jr * kb;
        if (kern->pack_b_cols) {
            kern->pack_b_cols(B + (size_t)(j0 + jr) * ldb + p0, ldb, n, kb, d);
            continue;
        }
        /* op(B)(k,j) = B[j][k]: read each row of B once, scatter by nr. */
        for (int c = 0; c < n; c++) {
            const float *src = B + (size_t)(j0 + jr + c) * ldb + p0;
            for (int k = 0; k < kb; k++) d[(size_t)k * nr + c] = src[k];
        }
        for (int c = n; c < nr; c++)
            for (int k = 0; k < kb; k++) d[(size_t)k * nr + c] = 0.0f;
    }
}

/* K in equal slices of at most kc_max rather than kc_max-deep slices and a
 * remainder: K = 384 runs as one slice, not 256 + 128 with a second pass
 * reading and writing all of C for a third of the work. */
static int k_slice(int kc_max, int K) {
    int slices = (K + kc_max - 1) / kc_max;
    return (K + slices - 1) / slices;
}

/* All MR x NR tiles of one packed mb x nb block of C (pack_a: mb x kb,
 * pack_b: kb x nb). The loop order decides which sliver stays in L1 while
 * the other kind streams from L2: see cllm_sgemm_kernel.ir_outer. */
static void sweep_tiles(const cllm_sgemm_kernel *kern, int kb, int mb, int nb, float alpha, float beta, float *C,
                        int ldc) {
    const int mr = kern->mr, nr = kern->nr;
    if (kern->ir_outer) {
        for (int ir = 0; ir < mb; ir += mr) {
            const float *ap = pack_a + (size_t)ir * kb;
            for (int jr = 0; jr < nb; jr += nr)
                kern->ukernel(kb, ap, pack_b + (size_t)jr * kb, C + (size_t)ir * ldc + jr, ldc, min_int(mr, mb - ir),
                              min_int(nr, nb - jr), alpha, beta);
        }
        return;
    }
    for (int jr = 0; jr < nb; jr += nr) {
        const float *bp = pack_b + (size_t)jr * kb;
        for (int ir = 0; ir < mb; ir += mr)
            kern->ukernel(kb, pack_a + (size_t)ir * kb, bp, C + (size_t)ir * ldc + jr, ldc, min_int(mr, mb - ir),
                          min_int(nr, nb - jr), alpha, beta);
    }
}

static void sgemm_blocked(const cllm_sgemm_kernel *kern, int trans_a, int trans_b, int M, int N, int K,
                          float alpha, const float *A, int lda, const float *B, int ldb, float beta, float *C,
                          int ldc) {
    const int kc = k_slice(kern->kc, K);
    for (int jc = 0; jc < N; jc += kern->nc) {
        int nb = min_int(kern->nc, N - jc);
        for (int pc = 0; pc < K; pc += kc) {
            int kb = min_int(kc, K - pc);
            /* Later K slices add onto what the first one wrote. */
            float beta_k = pc == 0 ? beta : 1.0f;
            pack_b_panel(kern, trans_b, B, ldb, pc, jc, kb, nb, pack_b);
            for (int ic = 0; ic < M; ic += kern->mc) {
                int mb = min_int(kern->mc, M - ic);
                pack_a_block(kern, trans_a, A, lda, ic, pc, mb, kb, pack_a);
                sweep_tiles(kern, kb, mb, nb, alpha, beta_k, C + (size_t)ic * ldc + jc, ldc);
            }
        }
    }
}

/* Portable micro-kernel: the compiler vectorises the NR-wide rows for
 * whatever baseline ISA it targets. */
#define OMP_MR 4
#define OMP_NR 16
static void ukernel_omp(int kc, const float *a, const float *b, float *c, int ldc, int m, int n, float alpha,
                        float beta) {
    float t[OMP_MR * OMP_NR] __attribute__((aligned(64))) = {0};
    for (int k = 0; k < kc; k++) {
        const float *bk = b + (size_t)k * OMP_NR;
        for (int r = 0; r < OMP_MR; r++) {
            float ar = a[(size_t)k * OMP_MR + r];
            float *tr = t + r * OMP_NR;
#pragma omp simd aligned(tr, bk : 64)
            for (int j = 0; j < OMP_NR; j++) tr[j] += ar * bk[j];
        }
    }
    cllm_sgemm_store_tile(t, OMP_NR, c, ldc, m, n, alpha, beta);
}
static const cllm_sgemm_kernel kernel_omp = {OMP_MR, OMP_NR, 144, 256, 1536, 0, ukernel_omp, NULL, NULL, NULL, NULL};

/* Degenerate products (nothing to sum): C = beta * C, BLAS-style. */
static void scale_c(int M, int N, float beta, float *C, int ldc) {
    for (int i = 0; i < M; i++) {
        float *c = C + (size_t)i * ldc;
        if (beta == 0.0f)
            for (int j = 0; j < N; j++) c[j] = 0.0f;
        else if (beta != 1.0f)
            for (int j = 0; j < N; j++) c[j] *= beta;
    }
}

void cllm_gemm_blocked(const cllm_sgemm_kernel *kern, int trans_a, int trans_b, int M, int N, int K, float alpha,
                       const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || alpha == 0.0f) {
        scale_c(M, N, beta, C, ldc);
        return;
    }
    sgemm_blocked(kern, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void cllm_gemm_omp(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                   const float *B, int ldb, float beta, float *C, int ldc) {
    cllm_gemm_blocked(&kernel_omp, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
