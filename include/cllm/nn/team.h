/* Intra-op parallelism: the threads of one team computing one micro-batch
 * (or one sampling step) together, above the kernels.
 *
 * A team is nested OpenMP. The caller that runs micro-batches on parallel
 * workers (the engine, evaluation) sets each worker's inner thread count with
 * omp_set_num_threads(team threads); at the top level (sampling) the team is
 * the thread count in force. A layer asks nn_team_size() how many threads it
 * may split its work over, and opens one parallel region of that many
 * threads; nothing inside such a region opens another, so a team is one
 * level deep whatever the runtime's nesting limit.
 *
 * Work is split so that every output element is computed by the same kernel
 * calls in the same order as without a team, which makes the results bitwise
 * identical for any team size:
 *  - a matrix product's output is cut into blocks of whole rows (multiples of
 *    TEAM_ROW_GRAIN) or whole columns (multiples of TEAM_COL_GRAIN), never
 *    along K: each element sums its K products exactly as before. The grains
 *    are multiples of every kernel table's register tile (12 x 32, 6 x 16,
 *    4 x 16), so each block holds the same tiles as the whole product and
 *    even the edge-tile write-outs fall on the same elements;
 *  - attention splits by (sequence, head);
 *  - row-wise layers split by rows, and sums over rows (bias, LayerNorm and
 *    embedding gradients) by columns, each column still summed over the rows
 *    in order. */
#ifndef CLLM_NN_TEAM_H
#define CLLM_NN_TEAM_H

#include "cllm/kernels/kernels.h"

#define TEAM_ROW_GRAIN 12
#define TEAM_COL_GRAIN 32

/* Threads a layer called here may use: omp_get_max_threads(), or 1 inside a
 * parallel region at the runtime's nesting limit (there a new region would
 * get one thread anyway). */
int nn_team_size(void);

/* Threads worth splitting `items` independent pieces of `work` multiply-adds
 * each over: nn_team_size(), at most items, and 1 when the whole job is too
 * small to pay for starting a region. */
int nn_team_threads_for(long items, double work);

/* k->gemm (same arguments and contract) with the output split over the team
 * as described above: the same bits as k->gemm for any team size. */
void team_gemm(const cllm_kernel_table *k, int trans_a, int trans_b, int M, int N, int K, float alpha,
               const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* k->gemm_bf16 (include/cllm/kernels/bf16.h) split the same way: every
 * output is the same sequence of pairs whatever block holds it, so the same
 * bits as k->gemm_bf16 for any team size. */
void team_gemm_bf16(const cllm_kernel_table *k, int M, int N, int K, const cllm_bf16_operand *A,
                    const cllm_bf16_operand *B, float *C, int ldc, int accumulate);

/* k->column_sums(sums, rows, N, n) with the columns split over the team:
 * each column is still the sum of its rows in order, so the same bits. */
void team_column_sums(const cllm_kernel_table *k, float *sums, const float *rows, int N, int n);

/* [*lo, *hi) of `n` items for thread t of `threads`, in contiguous blocks of
 * whole `grain`s (the last block may end short at n). */
void team_block(int n, int grain, int t, int threads, int *lo, int *hi);

#endif
