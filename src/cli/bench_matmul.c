/* `cllm bench matmul`: our sgemm against OpenBLAS's on the model's real
 * shapes, one thread, both timed alternately in the same run so that noise
 * from other processes hits both alike; medians of the repeats. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cllm/base/build_config.h"
#include "cllm/cli/commands.h"
#include "cllm/cli/flags.h"
#include "cllm/base/common.h"
#include "cllm/cli/env.h"
#include "cllm/kernels/kernels.h"
#include "cllm/report/peak.h"

#if CLLM_HAVE_OPENBLAS
#include <cblas.h>
#endif

typedef struct {
    const char *name; /* which product of the layer */
    int trans_a, trans_b, M, N, K;
    float beta;
} mm_shape;

typedef struct {
    char preset;
    int rows;
    mm_shape shape;
    double ours_gflops, blas_gflops; /* medians; blas 0 when not built in */
} mm_result;

/* The 4 linear layers of a block as (in, out), and for each the forward
 * Y = X.W (NN), dX = dY.W^T (NT) and dW += X^T.dY (TN, accumulating). */
static int layer_shapes(int rows, int C, mm_shape out[12]) {
    static const char *names[4][3] = {
        {"qkv   fwd  X.W", "qkv   dX  dY.Wt", "qkv   dW  Xt.dY"},
        {"proj  fwd  X.W", "proj  dX  dY.Wt", "proj  dW  Xt.dY"},
        {"fc    fwd  X.W", "fc    dX  dY.Wt", "fc    dW  Xt.dY"},
        {"fcprj fwd  X.W", "fcprj dX  dY.Wt", "fcprj dW  Xt.dY"},
    };
    const int io[4][2] = {{C, 3 * C}, {C, C}, {C, 4 * C}, {4 * C, C}};
    int n = 0;
    for (int l = 0; l < 4; l++) {
        int in = io[l][0], o = io[l][1];
        out[n++] = (mm_shape){names[l][0], 0, 0, rows, o, in, 0.0f};
        out[n++] = (mm_shape){names[l][1], 0, 1, rows, in, o, 0.0f};
        out[n++] = (mm_shape){names[l][2], 1, 0, in, o, rows, 1.0f};
    }
    return n;
}


/* Operand sizes as stored (row-major, op applied by the flags). */
static void operand_dims(const mm_shape *s, int *a_rows, int *a_cols, int *b_rows, int *b_cols) {
    *a_rows = s->trans_a ? s->K : s->M;
    *a_cols = s->trans_a ? s->M : s->K;
    *b_rows = s->trans_b ? s->N : s->K;
    *b_cols = s->trans_b ? s->K : s->N;
}

/* The shapes a run times: for each preset asked for (S: C = 256, M: C = 384)
 * and each row count (--rows, or 256 and 2048), the block's 12 products. */
static int planned_shapes(int want_s, int want_m, int rows, mm_result *out) {
    const int row_list[2] = {256, 2048};
    int n = 0;
    for (int p = 0; p < 2; p++) {
        if ((p == 0 && !want_s) || (p == 1 && !want_m)) continue;
        for (int ri = 0; ri < (rows ? 1 : 2); ri++) {
            int nrows = rows ? rows : row_list[ri];
            mm_shape shapes[12];
            int ns = layer_shapes(nrows, p == 0 ? 256 : 384, shapes);
            for (int s = 0; s < ns; s++) out[n++] = (mm_result){p == 0 ? 'S' : 'M', nrows, shapes[s], 0.0, 0.0};
        }
    }
    return n;
}

/* Deterministic operand values in [-0.5, 0.5). */
static void fill_operand(float *x, size_t n, size_t mult) {
    for (size_t i = 0; i < n; i++) x[i] = (float)((i * mult) % 1000) * 1e-3f - 0.5f;
}

static void run_ours(const cllm_kernel_table *k, const mm_shape *s, const float *A, const float *B, float *C) {
    int ar, ac, br, bc;
    operand_dims(s, &ar, &ac, &br, &bc);
    k->gemm(s->trans_a, s->trans_b, s->M, s->N, s->K, 1.0f, A, ac, B, bc, s->beta, C, s->N);
}

#if CLLM_HAVE_OPENBLAS
static void run_blas(const mm_shape *s, const float *A, const float *B, float *C) {
    int ar, ac, br, bc;
    operand_dims(s, &ar, &ac, &br, &bc);
    cblas_sgemm(CblasRowMajor, s->trans_a ? CblasTrans : CblasNoTrans, s->trans_b ? CblasTrans : CblasNoTrans,
                s->M, s->N, s->K, 1.0f, A, ac, B, bc, s->beta, C, s->N);
}
#endif

/* The machine is often shared: CPU time of this thread measures the kernel's
 * speed while it runs, which wall time under contention does not. */
static int use_wall_clock;
static double timer_now(void) {
    if (use_wall_clock) return cllm_now();
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static cllm_status measure(const cllm_kernel_table *k, const mm_shape *s, int repeats, double *ours, double *blas) {
    int ar, ac, br, bc;
    operand_dims(s, &ar, &ac, &br, &bc);
    float *A = cllm_alloc((size_t)ar * ac * sizeof(float));
    float *B = cllm_alloc((size_t)br * bc * sizeof(float));
    float *C = cllm_alloc((size_t)s->M * s->N * sizeof(float));
    double *t_ours = calloc((size_t)repeats, sizeof(double)), *t_blas = calloc((size_t)repeats, sizeof(double));
    if (!A || !B || !C || !t_ours || !t_blas) {
        cllm_free(A), cllm_free(B), cllm_free(C), free(t_ours), free(t_blas);
        return cllm_fail(CLLM_ERR_INTERNAL, "bench matmul: out of memory");
    }
    fill_operand(A, (size_t)ar * ac, 7919);
    fill_operand(B, (size_t)br * bc, 104729);
    double flops = 2.0 * s->M * s->N * s->K;
    run_ours(k, s, A, B, C); /* warm caches and page tables for both */
#if CLLM_HAVE_OPENBLAS
    run_blas(s, A, B, C);
#endif
    for (int r = 0; r < repeats; r++) {
        double t0 = timer_now();
        run_ours(k, s, A, B, C);
        t_ours[r] = timer_now() - t0;
#if CLLM_HAVE_OPENBLAS
        t0 = timer_now();
        run_blas(s, A, B, C);
        t_blas[r] = timer_now() - t0;
#endif
    }
    *ours = flops / cllm_median(t_ours, repeats) / 1e9;
    *blas = CLLM_HAVE_OPENBLAS ? flops / cllm_median(t_blas, repeats) / 1e9 : 0.0;
    cllm_free(A), cllm_free(B), cllm_free(C), free(t_ours), free(t_blas);
    return CLLM_OK;
}

/* ---- bf16 (--precision bf16): the bf16 product against fp32 ---- */

/* fp32 gemm and gemm_bf16 on one shape, timed alternately, with the
 * operands as bf16 mode hands them over: the forward and dX products read B
 * (the weight) from its bf16 copy, made once per step; dW reads two fp32
 * activations, rounded while packing. */
static cllm_status measure_bf16(const cllm_kernel_table *k, const mm_shape *s, int repeats, double *fp32,
                                double *bf16) {
    int ar, ac, br, bc;
    operand_dims(s, &ar, &ac, &br, &bc);
    float *A = cllm_alloc((size_t)ar * ac * sizeof(float));
    float *B = cllm_alloc((size_t)br * bc * sizeof(float));
    uint16_t *B16 = cllm_alloc((size_t)br * bc * sizeof(uint16_t));
    float *C = cllm_alloc((size_t)s->M * s->N * sizeof(float));
    double *t32 = calloc((size_t)repeats, sizeof(double)), *t16 = calloc((size_t)repeats, sizeof(double));
    if (!A || !B || !B16 || !C || !t32 || !t16) {
        cllm_free(A), cllm_free(B), cllm_free(B16), cllm_free(C), free(t32), free(t16);
        return cllm_fail(CLLM_ERR_INTERNAL, "bench matmul: out of memory");
    }
    fill_operand(A, (size_t)ar * ac, 7919);
    fill_operand(B, (size_t)br * bc, 104729);
    fill_operand(C, (size_t)s->M * s->N, 3);
    k->bf16_round(B16, B, (size_t)br * bc);
    int weight_b = !s->trans_a; /* fwd (NN) and dX (NT) multiply by the weight */
    cllm_bf16_operand a16 = cllm_bf16_op_f32(A, ac, s->trans_a);
    cllm_bf16_operand b16 = weight_b ? cllm_bf16_op_bf16(B16, bc, s->trans_b) : cllm_bf16_op_f32(B, bc, s->trans_b);
    int accumulate = s->beta != 0.0f;
    double flops = 2.0 * s->M * s->N * s->K;
    k->gemm(s->trans_a, s->trans_b, s->M, s->N, s->K, 1.0f, A, ac, B, bc, s->beta, C, s->N); /* warm-up */
    k->gemm_bf16(s->M, s->N, s->K, &a16, &b16, C, s->N, accumulate);
    for (int r = 0; r < repeats; r++) {
        double t0 = timer_now();
        k->gemm(s->trans_a, s->trans_b, s->M, s->N, s->K, 1.0f, A, ac, B, bc, s->beta, C, s->N);
        t32[r] = timer_now() - t0;
        t0 = timer_now();
        k->gemm_bf16(s->M, s->N, s->K, &a16, &b16, C, s->N, accumulate);
        t16[r] = timer_now() - t0;
    }
    *fp32 = flops / cllm_median(t32, repeats) / 1e9;
    *bf16 = flops / cllm_median(t16, repeats) / 1e9;
    cllm_free(A), cllm_free(B), cllm_free(B16), cllm_free(C), free(t32), free(t16);
    return CLLM_OK;
}

/* Only where the CPU has the instruction: elsewhere gemm_bf16 is the
 * portable emulation, and timing it as a speed-up would say nothing. */
static int bench_bf16(const cllm_kernel_table *k, int want_s, int want_m, int rows, int repeats, double peak) {
    if (!k->bf16_fast) {
        printf("bench matmul --precision bf16: the %s table has no fast bf16 product (the CPU has no AVX512_BF16, "
               "or CLLM_SIMD chose another path; bf16 runs on the exact portable emulation there): nothing to time "
               "as a speed-up\n", k->name);
        return 0;
    }
    printf("%-6s %5s  %-16s %5s %5s %5s %9s %9s %7s %8s\n", "preset", "rows", "product", "M", "N", "K", "fp32",
           "bf16", "ratio", "%fp32pk");
    mm_result plan[4 * 12];
    int n = planned_shapes(want_s, want_m, rows, plan);
    for (int i = 0; i < n; i++) {
        const mm_shape *s = &plan[i].shape;
        double g32 = 0, g16 = 0;
        if (measure_bf16(k, s, repeats, &g32, &g16) != CLLM_OK) {
            fprintf(stderr, "cllm bench matmul: %s\n", cllm_last_error());
            return 1;
        }
        printf("%-6c %5d  %-16s %5d %5d %5d %9.1f %9.1f %6.2fx %7.0f%%\n", plan[i].preset, plan[i].rows, s->name, s->M,
               s->N, s->K, g32, g16, g16 / g32, 100.0 * g16 / peak);
    }
    printf("\nGFLOP/s, one thread, medians of %s time, fp32 gemm and gemm_bf16 (VDPBF16PS; the weight from its "
           "bf16 copy in fwd and dX, fp32 activations rounded to bf16 while packing) timed alternately; "
           "%%fp32pk = bf16 / measured fp32 FMA peak (%.1f).\n",
           use_wall_clock ? "wall" : "thread CPU", peak);
    return 0;
}

static void print_table(const mm_result *res, int n, double peak) {
    printf("%-6s %5s  %-16s %5s %5s %5s %9s %9s %7s %7s\n", "preset", "rows", "product", "M", "N", "K",
           "ours", CLLM_HAVE_OPENBLAS ? "OpenBLAS" : "", CLLM_HAVE_OPENBLAS ? "ratio" : "", "%peak");
    double worst = 1e30;
    for (int i = 0; i < n; i++) {
        const mm_result *r = &res[i];
        printf("%-6c %5d  %-16s %5d %5d %5d %9.1f", r->preset, r->rows, r->shape.name, r->shape.M, r->shape.N,
               r->shape.K, r->ours_gflops);
        if (r->blas_gflops > 0) {
            double ratio = r->ours_gflops / r->blas_gflops;
            if (ratio < worst) worst = ratio;
            printf(" %9.1f %7.2f", r->blas_gflops, ratio);
        } else {
            printf(" %9s %7s", "", "");
        }
        printf(" %6.0f%%\n", 100.0 * r->ours_gflops / peak);
    }
    printf("\nGFLOP/s, one thread, medians of %s time; %%peak = ours / measured FMA peak (%.1f GFLOP/s).\n",
           use_wall_clock ? "wall" : "thread CPU", peak);
    if (CLLM_HAVE_OPENBLAS)
        printf("Worst ratio ours/OpenBLAS: %.2f (goal >= 0.90: %s)\n", worst, worst >= 0.9 ? "met" : "NOT met");
    else
        printf("OpenBLAS was not built in (libopenblas-dev not found at configure time): ours only.\n");
}

static void print_json(const mm_result *res, int n, double peak) {
    printf("{\"simd\":\"%s\",\"openblas\":%s,\"peak_gflops\":%.2f,\"results\":[", cllm_simd_name(cllm_env_simd()),
           CLLM_HAVE_OPENBLAS ? "true" : "false", peak);
    for (int i = 0; i < n; i++) {
        const mm_result *r = &res[i];
        printf("%s{\"preset\":\"%c\",\"rows\":%d,\"product\":\"%s\",\"trans_a\":%d,\"trans_b\":%d,\"M\":%d,\"N\":%d,"
               "\"K\":%d,\"ours_gflops\":%.2f,\"openblas_gflops\":%.2f}",
               i ? "," : "", r->preset, r->rows, r->shape.name, r->shape.trans_a, r->shape.trans_b, r->shape.M,
               r->shape.N, r->shape.K, r->ours_gflops, r->blas_gflops);
    }
    printf("]}\n");
}

int cllm_bench_matmul(int argc, char **argv) {
    const char *preset = "all";
    const char *precision = "fp32";
    int rows = 0, repeats = 7, json = 0, bf16 = 0;
    const cllm_flag flags[] = {
        {"preset", CLLM_FLAG_STRING, &preset, "S|M|all", "model preset whose shapes to run (default all)", 1, 0, NULL},
        {"rows", CLLM_FLAG_INT, &rows, "N", "rows of the activations (default: 256 and 2048)", 1, 65536, NULL},
        {"repeats", CLLM_FLAG_INT, &repeats, "R", "timed repeats per shape, median kept (default 7)", 1, 1000, NULL},
        {"json", CLLM_FLAG_BOOL, &json, NULL, "print one JSON object instead of a table", 1, 0, NULL},
        {"precision", CLLM_FLAG_STRING, &precision, "fp32|bf16",
         "bf16: instead, the bf16 product (VDPBF16PS, where the CPU has AVX512_BF16) against the fp32 gemm on the "
         "same shapes (default fp32)", 1, 0, NULL},
        {"bf16", CLLM_FLAG_BOOL, &bf16, NULL, "the same as --precision bf16", 1, 0, NULL},
        {"wall", CLLM_FLAG_BOOL, &use_wall_clock, NULL,
         "time with the wall clock (default: this thread's CPU time, robust on a shared machine)", 1, 0, NULL},
    };
    const cllm_command_spec spec = {
        "bench matmul", "",
        "Times cllm's sgemm (the SIMD path in force, see CLLM_SIMD) against OpenBLAS cblas_sgemm (one thread) on "
        "the model's shapes: rows x C . C x 3C, C x C, C x 4C and rows x 4C . 4C x C, forward (NN) and both "
        "backward products (NT for dX, TN accumulating for dW). S: C = 256, M: C = 384.",
        flags, (int)(sizeof flags / sizeof flags[0]), 0, 0};
    char *pos[1];
    int npos = 0;
    int rc = cllm_flags_exit_code(cllm_flags_parse(&spec, argc, argv, pos, &npos));
    if (rc >= 0) return rc;
    int want_s = strcmp(preset, "S") == 0 || strcmp(preset, "all") == 0;
    int want_m = strcmp(preset, "M") == 0 || strcmp(preset, "all") == 0;
    if (strcmp(precision, "bf16") == 0) bf16 = 1;
    else if (strcmp(precision, "fp32") != 0) {
        fprintf(stderr, "cllm bench matmul: --precision must be fp32 or bf16, not '%s'\n", precision);
        return 2;
    }
    if (!want_s && !want_m) {
        fprintf(stderr, "cllm bench matmul: --preset must be S, M or all, not '%s'\n", preset);
        return 2;
    }
#if CLLM_HAVE_OPENBLAS
    openblas_set_num_threads(1);
#endif
    /* The peak is a best-of on the wall clock: on a shared machine every run
     * of a short probe can be disturbed (it once came out at 67 instead of
     * 103 GFLOP/s, making %peak exceed 100). Probing again after the shapes
     * and keeping the larger gives two chances at a quiet moment. */
    const cllm_kernel_table *ours = cllm_kernel_table_for(cllm_env_simd());
    double peak = cllm_peak_measure_fma(cllm_simd_best(), 0.3);
    if (bf16) return bench_bf16(ours, want_s, want_m, rows, repeats, peak);
    mm_result res[4 * 12];
    int n = planned_shapes(want_s, want_m, rows, res);
    for (int i = 0; i < n; i++) {
        if (measure(ours, &res[i].shape, repeats, &res[i].ours_gflops, &res[i].blas_gflops) != CLLM_OK) {
            fprintf(stderr, "cllm bench matmul: %s\n", cllm_last_error());
            return 1;
        }
    }
    double peak_after = cllm_peak_measure_fma(cllm_simd_best(), 0.3);
    if (peak_after > peak) peak = peak_after;
    if (json) print_json(res, n, peak);
    else print_table(res, n, peak);
    return 0;
}
