/* Private to src/kernels: the micro-kernel contract shared by the blocked
 * driver (portable/gemm.c) and the per-ISA kernels (x86/avx2/gemm.c,
 * x86/avx512/gemm.c), which are compiled with target attributes so one binary
 * runs on any x86-64.
 *
 * A micro-kernel computes one MR x NR tile of C from packed panels:
 *   a: op(A) rows, k-major, MR floats per k (rows past m are zero)
 *   b: op(B) columns, k-major, NR floats per k, 64-byte aligned (cols past n zero)
 * and writes  C[0..m, 0..n) = alpha * (a . b) + beta * C  (beta == 0: C is
 * not read, so it may hold garbage). m <= MR, n <= NR. */
#ifndef CLLM_KERNELS_GEMM_INTERNAL_H
#define CLLM_KERNELS_GEMM_INTERNAL_H

typedef void (*cllm_sgemm_ukernel)(int kc, const float *a, const float *b, float *c, int ldc, int m, int n,
                                   float alpha, float beta);

/* Optional ISA-specific packers for the two layouts that need a transpose
 * while packing (generic C scatters one float at a time there):
 *   pack_a_rows: m <= MR rows of A (row stride lda), kb columns, into one
 *                MR-row sliver dst[k * MR + r]; rows past m zero.
 *   pack_b_cols: n <= NR rows of B (row stride ldb) read as columns of op(B),
 *                into one NR-column sliver dst[k * NR + c]; columns past n zero.
 *   pack_a_cols: op(A) = A^T: kb rows of A (row stride lda), mb columns each,
 *                into the mb-row block of MR-row slivers (stride kb * MR).
 *   pack_b_rows: op(B) = B: kb rows of B (row stride ldb), nb columns each,
 *                into the nb-column panel of NR-column slivers (stride kb * NR).
 * The first two may write up to CLLM_SGEMM_PACK_SLACK floats past the sliver. */
typedef void (*cllm_sgemm_packer)(const float *src, int ld, int rows, int kb, float *dst);

typedef struct {
    int mr, nr;         /* register tile */
    int mc, kc, nc;     /* cache blocks: A block mc x kc, B panel kc x nc, one sliver of each in L1;
                           kc is the largest slice of K (K is cut in equal slices up to it) */
    int ir_outer;       /* tile order in a block: 0 = one B sliver stays in L1 while the A slivers of the
                           block stream from L2; 1 = one A sliver stays in L1 while the B slivers of the
                           panel stream from L2 (then the panel, not the A block, must fit in L2) */
    cllm_sgemm_ukernel ukernel;
    cllm_sgemm_packer pack_a_rows, pack_b_cols; /* NULL: generic C packing */
    void (*pack_a_cols)(const float *src, int ld, int mb, int kb, float *dst); /* NULL: generic */
    void (*pack_b_rows)(const float *src, int ld, int kb, int nb, float *dst); /* NULL: generic */
} cllm_sgemm_kernel;

#define CLLM_SGEMM_PACK_SLACK 16

/* Largest blocks any kernel uses: the thread-local packing buffers are sized
 * for them once, so no call allocates. */
#define CLLM_SGEMM_MAX_MC 144
#define CLLM_SGEMM_MAX_KC 384
#define CLLM_SGEMM_MAX_NC 1536
#define CLLM_SGEMM_MAX_MR 16
#define CLLM_SGEMM_MAX_NR 32

/* The reference (the scalar table's gemm) and the portable blocked product. */
void cllm_gemm_ref(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                   const float *B, int ldb, float beta, float *C, int ldc);
void cllm_gemm_omp(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                   const float *B, int ldb, float beta, float *C, int ldc);

/* The blocked product with micro-kernel kern; M or N <= 0 does nothing, and
 * K <= 0 or alpha == 0 only scales C by beta (BLAS semantics). */
void cllm_gemm_blocked(const cllm_sgemm_kernel *kern, int trans_a, int trans_b, int M, int N, int K, float alpha,
                       const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* Defined only where the compiler can target x86 (NULL ukernel otherwise). */
extern const cllm_sgemm_kernel cllm_sgemm_kernel_avx2;
extern const cllm_sgemm_kernel cllm_sgemm_kernel_avx512;

/* Writes an accumulated tile t (row stride nr) into C with alpha/beta: the
 * edge path of every kernel, and the whole write-out of the portable one. */
static inline void cllm_sgemm_store_tile(const float *t, int nr, float *c, int ldc, int m, int n, float alpha,
                                         float beta) {
    for (int i = 0; i < m; i++) {
        float *ci = c + (long)i * ldc;
        const float *ti = t + (long)i * nr;
        if (beta == 0.0f)
            for (int j = 0; j < n; j++) ci[j] = alpha * ti[j];
        else
            for (int j = 0; j < n; j++) ci[j] = alpha * ti[j] + beta * ci[j];
    }
}

#endif
