/* Splitting a layer's work over the team (include/cllm/nn/team.h). */
#include "cllm/nn/team.h"

#include <omp.h>
#include <stddef.h>

/* Multiply-adds below which a job runs on one thread. A top-level region
 * (a team led by the only worker, or sampling) comes from the runtime's
 * thread pool and costs a few microseconds, what one core does in about 1e5
 * multiply-adds. A nested one (teams led by several workers) costs far more
 * under libgomp, which starts and ends its threads for every nested region:
 * there only products of 1e7 multiply-adds and up are split. Any threshold
 * gives the same bits. */
#define TEAM_MIN_WORK 1e5
#define TEAM_MIN_WORK_NESTED 1e7

int nn_team_size(void) {
    if (omp_get_active_level() >= omp_get_max_active_levels()) return 1;
    int n = omp_get_max_threads();
    return n > 1 ? n : 1;
}

int nn_team_threads_for(long items, double work) {
    int n = nn_team_size();
    if (n <= 1 || items <= 1 || work < (omp_get_level() > 0 ? TEAM_MIN_WORK_NESTED : TEAM_MIN_WORK)) return 1;
    return items < n ? (int)items : n;
}

void team_block(int n, int grain, int t, int threads, int *lo, int *hi) {
    long units = ((long)n + grain - 1) / grain;
    long u0 = units * t / threads, u1 = units * (t + 1) / threads;
    long a = u0 * grain, b = u1 * grain;
    *lo = (int)(a < n ? a : n);
    *hi = (int)(b < n ? b : n);
}

/* The larger output dimension is split: each thread packs the whole of the
 * other operand, so the packing overhead per thread is (threads / split
 * length) of the product. */
void team_gemm(const cllm_kernel_table *k, int trans_a, int trans_b, int M, int N, int K, float alpha,
               const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    int by_rows = M >= N;
    int len = by_rows ? M : N, grain = by_rows ? TEAM_ROW_GRAIN : TEAM_COL_GRAIN;
    int threads = nn_team_threads_for((len + grain - 1) / grain, (double)M * N * K);
    if (threads <= 1) {
        k->gemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
#pragma omp parallel num_threads(threads)
    {
        int lo, hi;
        team_block(len, grain, omp_get_thread_num(), omp_get_num_threads(), &lo, &hi);
        if (hi > lo && by_rows) {
            const float *a = trans_a ? A + lo : A + (size_t)lo * lda;
            k->gemm(trans_a, trans_b, hi - lo, N, K, alpha, a, lda, B, ldb, beta, C + (size_t)lo * ldc, ldc);
        } else if (hi > lo) {
            const float *b = trans_b ? B + (size_t)lo * ldb : B + lo;
            k->gemm(trans_a, trans_b, M, hi - lo, K, alpha, A, lda, b, ldb, beta, C + lo, ldc);
        }
    }
}

/* op(X) from row (A) or column (B) `at` on: the operand advanced along its
 * non-K dimension, for either storage and element type. */
static cllm_bf16_operand operand_from(const cllm_bf16_operand *x, int at, int along_rows) {
    cllm_bf16_operand o = *x;
    size_t step = (along_rows ? !x->trans : x->trans) ? (size_t)x->ld * (size_t)at : (size_t)at;
    if (o.f32) o.f32 += step;
    else o.bf16 += step;
    return o;
}

void team_gemm_bf16(const cllm_kernel_table *k, int M, int N, int K, const cllm_bf16_operand *A,
                    const cllm_bf16_operand *B, float *C, int ldc, int accumulate) {
    int by_rows = M >= N;
    int len = by_rows ? M : N, grain = by_rows ? TEAM_ROW_GRAIN : TEAM_COL_GRAIN;
    int threads = nn_team_threads_for((len + grain - 1) / grain, (double)M * N * K);
    if (threads <= 1) {
        k->gemm_bf16(M, N, K, A, B, C, ldc, accumulate);
        return;
    }
#pragma omp parallel num_threads(threads)
    {
        int lo, hi;
        team_block(len, grain, omp_get_thread_num(), omp_get_num_threads(), &lo, &hi);
        if (hi > lo && by_rows) {
            cllm_bf16_operand a = operand_from(A, lo, 1);
            k->gemm_bf16(hi - lo, N, K, &a, B, C + (size_t)lo * ldc, ldc, accumulate);
        } else if (hi > lo) {
            cllm_bf16_operand b = operand_from(B, lo, 0);
            k->gemm_bf16(M, hi - lo, K, A, &b, C + lo, ldc, accumulate);
        }
    }
}

void team_column_sums(const cllm_kernel_table *k, float *sums, const float *rows, int N, int n) {
    int threads = nn_team_threads_for((n + TEAM_COL_GRAIN - 1) / TEAM_COL_GRAIN, (double)N * n);
    if (threads <= 1) {
        k->column_sums(sums, rows, N, n);
        return;
    }
#pragma omp parallel num_threads(threads)
    {
        int lo, hi;
        team_block(n, TEAM_COL_GRAIN, omp_get_thread_num(), omp_get_num_threads(), &lo, &hi);
        for (int i = 0; hi > lo && i < N; i++) k->column_sums(sums + lo, rows + (size_t)i * n + lo, 1, hi - lo);
    }
}
