/* `cllm bench reduce`: GB/s of every reduction kernel variant, one thread and
 * all threads (each on its own segment, as the engine's owners are), next to
 * memcpy and a STREAM-style add measured in the same run on the same arrays,
 * and the atomics of a real engine step. Medians of R repeats, because the
 * machine may be shared: ratios are what to read. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cllm/cli/commands.h"
#include "cllm/cli/flags.h"
#include "cllm/base/common.h"
#include "cllm/dist/engine.h"
#include "cllm/cli/env.h"
#include "cllm/kernels/kernels.h"
#include "cllm/dist/segments.h"
#include "cllm/optim/adamw.h"

enum { MAX_SOURCES = 16, MAX_ROWS = 16 };

typedef struct {
    size_t n;
    int k;
    float *src[MAX_SOURCES], *dst, *params, *m, *v;
    cllm_adamw_step h;
} arrays;

typedef enum { OP_MEMCPY, OP_STREAM_ADD, OP_SUM, OP_SUM_IN_PLACE, OP_SUM_ADAMW } op_kind;

typedef struct {
    const char *kernel;
    const char *path;
    double gbs, ratio;
} row;

static size_t op_bytes(op_kind op, const arrays *a) {
    size_t f = a->n * sizeof(float);
    switch (op) {
    case OP_MEMCPY: return 2 * f;
    case OP_STREAM_ADD: return 3 * f;
    case OP_SUM:
    case OP_SUM_IN_PLACE: return ((size_t)a->k + 1) * f;     /* k reads, one write */
    case OP_SUM_ADAMW: return ((size_t)a->k + 6) * f;        /* k reads, params/m/v read and written */
    }
    return 0;
}

static void run_op(op_kind op, const cllm_kernel_table *kern, arrays *a, size_t b, size_t e) {
    size_t len = e - b;
    if (len == 0) return;
    const float *srcs[MAX_SOURCES];
    for (int j = 0; j < a->k; j++) srcs[j] = a->src[j] + b;
    switch (op) {
    case OP_MEMCPY: memcpy(a->dst + b, a->src[0] + b, len * sizeof(float)); break;
    case OP_STREAM_ADD: {
        float *c = a->dst + b;
        const float *x = a->src[0] + b, *y = a->src[1 % a->k] + b;
#pragma omp simd
        for (size_t i = 0; i < len; i++) c[i] = x[i] + y[i];
        break;
    }
    case OP_SUM: kern->sum(a->dst + b, srcs, a->k, len); break;
    case OP_SUM_IN_PLACE: kern->sum(a->src[0] + b, srcs, a->k, len); break;
    case OP_SUM_ADAMW: kern->sum_adamw(a->params + b, a->m + b, a->v + b, srcs, a->k, 1.0f, len, &a->h, 1); break;
    }
}

/* Median GB/s of `repeats` runs of op on `threads` threads, each on its own
 * 64-byte-aligned segment; the clock spans barrier to barrier. */
static double measure(op_kind op, const cllm_kernel_table *kern, arrays *a, int threads, int repeats, cllm_segment *segs,
                      double *times) {
    cllm_segments_split(a->n, threads, 16, segs);
    for (int r = 0; r < repeats; r++) {
        double t0 = 0, t1 = 0;
#pragma omp parallel num_threads(threads)
        {
            int t = omp_get_thread_num();
#pragma omp barrier
#pragma omp master
            t0 = cllm_now();
#pragma omp barrier
            run_op(op, kern, a, segs[t].begin, segs[t].end);
#pragma omp barrier
#pragma omp master
            t1 = cllm_now();
        }
        times[r] = t1 - t0;
    }
    return (double)op_bytes(op, a) / cllm_median(times, repeats) / 1e9;
}

static int alloc_arrays(arrays *a, size_t n, int k, int threads) {
    memset(a, 0, sizeof *a);
    a->n = n;
    a->k = k;
    for (int j = 0; j < k; j++)
        if (!(a->src[j] = cllm_alloc(n * sizeof(float)))) return 0;
    if (!(a->dst = cllm_alloc(n * sizeof(float))) || !(a->params = cllm_alloc(n * sizeof(float))) ||
        !(a->m = cllm_alloc(n * sizeof(float))) || !(a->v = cllm_alloc(n * sizeof(float))))
        return 0;
    /* First touch by the threads that will use each page. */
#pragma omp parallel for schedule(static) num_threads(threads)
    for (size_t i = 0; i < n; i++) {
        for (int j = 0; j < k; j++) a->src[j][i] = 1e-3f * (float)((i + (size_t)j) % 97);
        a->dst[i] = 0.0f;
        a->params[i] = 0.5f;
        a->m[i] = 0.0f;
        a->v[i] = 1e-4f;
    }
    cllm_adamw_config cfg = cllm_adamw_defaults();
    a->h = cllm_adamw_step_make(&cfg, 1e-4, 10);
    return 1;
}

static void free_arrays(arrays *a) {
    for (int j = 0; j < a->k; j++) cllm_free(a->src[j]);
    cllm_free(a->dst);
    cllm_free(a->params);
    cllm_free(a->m);
    cllm_free(a->v);
}

/* ---- atomics of a real engine step on a synthetic job ---- */

static cllm_status synthetic_compute(void *ctx, int micro, int thread, float *grad, float *loss) {
    size_t n = *(const size_t *)ctx;
    (void)thread;
    for (size_t i = 0; i < n; i++) grad[i] += (float)(micro + 1) * 1e-3f;
    *loss = 0.0f;
    return CLLM_OK;
}

static void synthetic_update(void *ctx, int segment, size_t begin, size_t end, const float *const *srcs, int k, float scale) {
    (void)ctx, (void)segment, (void)begin, (void)end, (void)srcs, (void)k, (void)scale;
}

static int engine_atomics(int micro, size_t n, int64_t *atomics, int *segments, int *folded) {
    cllm_engine_config cfg = {n, micro, 1, 1, micro, 0, NULL, cllm_kernel_table_for(cllm_env_simd()), 0, 0};
    cllm_engine *e = NULL;
    if (cllm_engine_create(&cfg, &e) != CLLM_OK) return 0;
    cllm_engine_job job = {&n, synthetic_compute, NULL, synthetic_update, NULL};
    cllm_engine_stats st;
    int ok = cllm_engine_step(e, &job, &st) == CLLM_OK;
    *atomics = st.atomics;
    *segments = cllm_engine_segments(e);
    *folded = st.folded_nodes;
    cllm_engine_free(e);
    return ok;
}

/* ---- the command ---- */

static int bench_threads(arrays *a, int threads, int repeats, row *rows, cllm_segment *segs, double *times) {
    int nr = 0;
    double copy = measure(OP_MEMCPY, NULL, a, threads, repeats, segs, times);
    double add = measure(OP_STREAM_ADD, NULL, a, threads, repeats, segs, times);
    rows[nr++] = (row){"memcpy", "-", copy, copy / add};
    rows[nr++] = (row){"stream_add", "-", add, 1.0};
    for (int s = CLLM_SIMD_SCALAR; s <= CLLM_SIMD_AVX512; s++) {
        const cllm_kernel_table *kern = cllm_kernel_table_for((cllm_simd)s);
        if (!kern) continue;
        double sum = measure(OP_SUM, kern, a, threads, repeats, segs, times);
        double inplace = measure(OP_SUM_IN_PLACE, kern, a, threads, repeats, segs, times);
        double adamw = measure(OP_SUM_ADAMW, kern, a, threads, repeats, segs, times);
        rows[nr++] = (row){"sum", cllm_simd_name((cllm_simd)s), sum, sum / add};
        rows[nr++] = (row){"sum_in_place", cllm_simd_name((cllm_simd)s), inplace, inplace / add};
        rows[nr++] = (row){"sum_adamw", cllm_simd_name((cllm_simd)s), adamw, adamw / add};
    }
    return nr;
}

int cllm_bench_reduce(int argc, char **argv) {
    int64_t params = 16 << 20;
    int k = 2, repeats = 7, json = 0, micro = 8;
    const cllm_flag flags[] = {
        {"params", CLLM_FLAG_INT64, &params, "N", "floats per array, choose >> L3 (default 16777216 = 64 MiB)", 1024,
         1e10, NULL},
        {"sources", CLLM_FLAG_INT, &k, "K", "gradient sources summed per element (default 2, the tree's fold)", 2,
         MAX_SOURCES, NULL},
        {"repeats", CLLM_FLAG_INT, &repeats, "R", "runs of each measurement; the median is reported (default 7)", 1,
         1000, NULL},
        {"micro", CLLM_FLAG_INT, &micro, "M", "micro-batches of the engine step whose atomics are counted (default 8)",
         1, 4096, NULL},
        {"json", CLLM_FLAG_BOOL, &json, NULL, "print one JSON object instead of a table", 1, 0, NULL},
    };
    const cllm_command_spec spec = {
        "bench reduce", "",
        "Measures GB/s of each reduction kernel variant (sum of K sources into a new array, the same in place as the "
        "engine's tree merge does, and the fused sum + AdamW), on one thread and on all OMP_NUM_THREADS threads "
        "(each on its own segment), next to memcpy and STREAM-add (c = a + b) measured in the same run on the same "
        "arrays. Bytes counted are those the kernel must move: (K + 1) x N floats for sums, (K + 6) x N for the "
        "fused AdamW. Also runs one engine step on a synthetic job and reports its atomic operations.",
        flags, (int)(sizeof flags / sizeof flags[0]), 0, 0};
    char *pos[1];
    int npos = 0;
    int rc = cllm_flags_exit_code(cllm_flags_parse(&spec, argc, argv, pos, &npos));
    if (rc >= 0) return rc;

    int all = omp_get_max_threads();
    arrays a;
    memset(&a, 0, sizeof a);
    cllm_segment *segs = malloc(sizeof(cllm_segment) * (size_t)all);
    double *times = malloc(sizeof(double) * (size_t)repeats);
    if (!segs || !times || !alloc_arrays(&a, (size_t)params, k, all)) {
        fprintf(stderr, "cllm bench reduce: out of memory for %d arrays of %lld floats\n", k + 4, (long long)params);
        free(segs);
        free(times);
        free_arrays(&a);
        return 1;
    }
    int thread_counts[2] = {1, all}, n_counts = all > 1 ? 2 : 1;
    row rows[2][MAX_ROWS];
    int nrows[2];
    for (int c = 0; c < n_counts; c++) nrows[c] = bench_threads(&a, thread_counts[c], repeats, rows[c], segs, times);
    free_arrays(&a);
    free(segs);
    free(times);

    int64_t atomics = 0;
    int segments = 0, folded = 0;
    if (!engine_atomics(micro, 1 << 20, &atomics, &segments, &folded)) {
        fprintf(stderr, "cllm bench reduce: engine step failed: %s\n", cllm_last_error());
        return 1;
    }
    int64_t formula = cllm_engine_atomics_formula(micro, segments);
    int64_t expected = cllm_engine_atomics_expected(micro, segments, folded);

    if (json) {
        printf("{\"params\":%lld,\"sources\":%d,\"repeats\":%d,\"active_path\":\"%s\",\"runs\":[", (long long)params, k,
               repeats, cllm_simd_name(cllm_env_simd()));
        for (int c = 0; c < n_counts; c++) {
            printf("%s{\"threads\":%d,\"kernels\":[", c ? "," : "", thread_counts[c]);
            for (int r = 0; r < nrows[c]; r++)
                printf("%s{\"kernel\":\"%s\",\"path\":\"%s\",\"gbs\":%.3f,\"vs_stream_add\":%.4f}", r ? "," : "",
                       rows[c][r].kernel, rows[c][r].path, rows[c][r].gbs, rows[c][r].ratio);
            printf("]}");
        }
        printf("],\"engine\":{\"micro_batches\":%d,\"segments\":%d,\"atomics_per_step\":%lld,\"atomics_formula\":%lld,"
               "\"folded_nodes\":%d,\"atomics_expected\":%lld}}\n",
               micro, segments, (long long)atomics, (long long)formula, folded, (long long)expected);
        return 0;
    }
    printf("cllm bench reduce: %lld floats per array (%.0f MiB), K = %d sources, median of %d runs\n",
           (long long)params, (double)params * 4 / (1 << 20), k, repeats);
    printf("active SIMD path: %s; ratio = GB/s / same-run STREAM-add GB/s at the same thread count\n\n",
           cllm_simd_name(cllm_env_simd()));
    printf("%-8s %-14s %-8s %10s %8s\n", "threads", "kernel", "path", "GB/s", "ratio");
    for (int c = 0; c < n_counts; c++)
        for (int r = 0; r < nrows[c]; r++)
            printf("%-8d %-14s %-8s %10.2f %7.0f%%\n", thread_counts[c], rows[c][r].kernel, rows[c][r].path,
                   rows[c][r].gbs, 100.0 * rows[c][r].ratio);
    printf("\nengine step, %d micro-batches, %d segments: %lld atomics (formula 4M-2+(M-2)(3S+1) = %lld, less "
           "(3S+2) for each of the %d nodes the owners folded after the last compute = %lld), independent of the "
           "parameter count\n",
           micro, segments, (long long)atomics, (long long)formula, folded, (long long)expected);
    return 0;
}
