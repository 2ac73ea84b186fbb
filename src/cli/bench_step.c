/* `cllm bench step`: tokens/s of a whole training step (forward, backward,
 * gradient reduction, global-norm clipping, AdamW) at 1, 2, ... threads, and
 * optionally PyTorch's speed on the same model measured in the same run.
 *
 * The step is the trainer's own (cllm_step_run): the data-parallel engine,
 * one sequence per micro-batch, the owned spans and fused sum + AdamW
 * kernels, clipping. Random tokens: speed does not depend on the data. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cllm/base/build_config.h"
#include "cllm/cli/commands.h"
#include "cllm/cli/env.h"
#include "cllm/cli/flags.h"
#include "cllm/cli/ranks.h"
#include "cllm/base/common.h"
#include "cllm/models/gpt2.h"
#include "cllm/dist/engine.h"
#include "cllm/kernels/kernels.h"
#include "cllm/train/step.h"
#include "cllm/report/peak.h"

#define BENCH_BATCH 8
#define BENCH_SEQ 256
#define BENCH_CLIP 1.0
#define BENCH_MAX_THREADS 256

/* The benchmark's stream: BENCH_BATCH fixed random sequences, repeated. */
typedef struct {
    const int32_t *tokens; /* BENCH_BATCH sequences of BENCH_SEQ + 1 tokens */
} bench_data;

static void bench_window(void *ctx, uint64_t index, int32_t *inputs, int32_t *targets) {
    const bench_data *d = ctx;
    const int32_t *seq = d->tokens + (size_t)(index % BENCH_BATCH) * (BENCH_SEQ + 1);
    memcpy(inputs, seq, BENCH_SEQ * sizeof(int32_t));
    memcpy(targets, seq + 1, BENCH_SEQ * sizeof(int32_t));
}

typedef struct {
    int threads;
    double tokens_per_s, step_s, exposed_share, update_share, utilisation, mfu, efficiency, loss;
    double comm_share, wait_share, comm_bytes; /* under mpirun: rank 0's exchanges and waits (shares of the step),
                                                  bytes sent */
} step_result;


/* The trainer's own step (src/train/step.c): the same engine, spans, kernels
 * and clipping, one sequence per micro-batch. */
static cllm_status run_threads(gpt2_model *model, const int32_t *tokens, int threads, int repeats,
                               step_result *out) {
    omp_set_num_threads(threads);
    bench_data data = {tokens};
    cllm_step_config sc = {
        .model = model, .micro = 1, .n_micro = BENCH_BATCH, .clip = BENCH_CLIP,
        .weight_decay = 0.1, .window = bench_window, .window_ctx = &data,
        .segments_per_thread = cllm_env_segments(), .streaming = cllm_env_streaming(),
        .buffer_window = cllm_env_grad_window(), .comm = cllm_ranks_comm(),
    };
    cllm_env_team(&sc.teams, &sc.team_threads);
    cllm_step *step = NULL;
    cllm_status st = cllm_step_create(&sc, &step);
    if (st != CLLM_OK) return st;
    int nt = cllm_step_threads(step) * cllm_step_team_threads(step); /* all the threads, in teams or not */
    double *wall = calloc((size_t)repeats, sizeof(double)), *exposed = calloc((size_t)repeats, sizeof(double));
    double *util = calloc((size_t)repeats, sizeof(double)), *update = calloc((size_t)repeats, sizeof(double));
    double *comm = calloc((size_t)repeats, sizeof(double)), *wait = calloc((size_t)repeats, sizeof(double));
    int ok = wall && exposed && util && update && comm && wait;
    if (!ok) st = cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
    double loss = 0.0;
    /* Step 0 warms caches, page tables and the thread team; not timed. */
    for (int r = -1; ok && r < repeats; r++) {
        cllm_step_result res;
        double t0 = cllm_now();
        st = cllm_step_run(step, r + 2, 1e-4, 0, &res);
        double dt = cllm_now() - t0;
        if (st != CLLM_OK) ok = 0;
        if (!ok || r < 0) continue;
        wall[r] = dt;
        exposed[r] = res.engine.exposed_share;
        update[r] = res.engine.update_share;
        util[r] = res.engine.utilisation;
        comm[r] = res.engine.comm_share;
        wait[r] = res.engine.rank_wait_share;
        out->comm_bytes = (double)res.engine.comm_bytes; /* the same every step */
        loss = res.loss;
    }
    if (ok) {
        double step_s = cllm_median(wall, repeats);
        out->threads = nt;
        out->step_s = step_s;
        out->tokens_per_s = BENCH_BATCH * BENCH_SEQ / step_s;
        out->exposed_share = cllm_median(exposed, repeats);
        out->update_share = cllm_median(update, repeats);
        out->utilisation = cllm_median(util, repeats);
        out->comm_share = cllm_median(comm, repeats);
        out->wait_share = cllm_median(wait, repeats);
        out->loss = loss;
        out->mfu = out->tokens_per_s * gpt2_flops_per_token(&model->cfg) /
                   (nt * cllm_ranks_comm()->size * cllm_peak_gflops_per_core(cllm_env_peak_gflops()) * 1e9);
    }
    free(wall), free(exposed), free(util), free(update), free(comm), free(wait);
    cllm_step_free(step);
    if (!ok) return cllm_fail(st == CLLM_OK ? CLLM_ERR_INTERNAL : st, "bench step: %s", cllm_last_error());
    return CLLM_OK;
}

/* bench/torch_step.py from the working directory, else from the source tree
 * this binary was configured from (next to its default corpus). */
static void torch_script_path(char *out, size_t n) {
    snprintf(out, n, "bench/torch_step.py");
    if (access(out, R_OK) == 0) return;
    const char *corpus = CLLM_DEFAULT_CORPUS_PATH;
    const char *slash = strrchr(corpus, '/');
    int dir_len = slash ? (int)(slash - corpus) : 0;
    snprintf(out, n, "%.*s/../bench/torch_step.py", dir_len, corpus);
}

/* Runs the PyTorch step with torch_threads and OPENBLAS_NUM_THREADS =
 * blas_threads; returns its tokens/s, or 0 when it could not run. */
static double torch_tokens_per_s(const char *script, char preset, int torch_threads, int blas_threads,
                                 int repeats) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "OPENBLAS_NUM_THREADS=%d OMP_NUM_THREADS=%d /usr/bin/python3 '%s' --preset %c --threads %d "
             "--repeats %d",
             blas_threads, torch_threads, script, preset, torch_threads, repeats);
    fflush(stdout);
    FILE *p = popen(cmd, "r");
    if (!p) return 0.0;
    char line[1024];
    double tps = 0.0;
    while (fgets(line, sizeof line, p)) {
        const char *at = strstr(line, "\"tokens_per_s\":");
        if (at) tps = strtod(at + strlen("\"tokens_per_s\":"), NULL);
    }
    int status = pclose(p);
    return status == 0 ? tps : 0.0;
}

static void configure_preset(char preset, gpt2_config *cfg) {
    if (preset == 'S') *cfg = (gpt2_config){4, 4, 256, BENCH_SEQ, 256};
    else *cfg = (gpt2_config){6, 6, 384, BENCH_SEQ, 512};
}

int cllm_bench_step(int argc, char **argv) {
    const char *preset_name = "S";
    int repeats = 5, json = 0, against_torch = 0;
    const cllm_flag flags[] = {
        {"preset", CLLM_FLAG_STRING, &preset_name, "S|M",
         "S: 4 layers, 256 dims, 4 heads, vocab 256; M: 6 layers, 384 dims, 6 heads, vocab 512 (default S)", 1, 0,
         NULL},
        {"repeats", CLLM_FLAG_INT, &repeats, "R", "timed steps per thread count, median kept (default 5)", 1, 1000,
         NULL},
        {"json", CLLM_FLAG_BOOL, &json, NULL, "print one JSON object instead of a table", 1, 0, NULL},
        {"against-torch", CLLM_FLAG_BOOL, &against_torch, NULL,
         "also time bench/torch_step.py (/usr/bin/python3, torch) and print cllm / PyTorch", 1, 0, NULL},
    };
    const cllm_command_spec spec = {
        "bench step", "",
        "Tokens/s of a full training step (B = 8 random sequences of T = 256 tokens: forward, backward, "
        "reduction, clipping, AdamW) at 1, 2, ... OMP_NUM_THREADS threads: scaling efficiency, model FLOPs "
        "utilisation against the measured FMA peak (CLLM_PEAK_GFLOPS overrides), exposed reduction share and "
        "thread utilisation from the engine (each thread count in the default team shape, flat here: 8 "
        "micro-batches, or in teams of K with CLLM_TEAM=K); under mpirun, the tokens/s of all ranks together, each rank's share of "
        "the step in exchanges and its bytes sent against 2(R-1)/R x 4P. With --against-torch, PyTorch at each thread count with its best "
        "of torch n threads + OPENBLAS_NUM_THREADS=n and torch 1 thread + OPENBLAS_NUM_THREADS=n.",
        flags, (int)(sizeof flags / sizeof flags[0]), 0, 0};
    char *pos[1];
    int npos = 0;
    int rc = cllm_flags_exit_code(cllm_flags_parse(&spec, argc, argv, pos, &npos));
    if (rc >= 0) return rc;
    if (strcmp(preset_name, "S") != 0 && strcmp(preset_name, "M") != 0) {
        fprintf(stderr, "cllm bench step: --preset must be S or M, not '%s'\n", preset_name);
        return 2;
    }
    char preset = preset_name[0];
    char script[1100];
    torch_script_path(script, sizeof script);
    if (against_torch && access(script, R_OK) != 0) {
        fprintf(stderr, "cllm bench step: --against-torch needs bench/torch_step.py (run from the source tree)\n");
        return 2;
    }
    int max_threads = omp_get_max_threads();
    if (max_threads > BENCH_MAX_THREADS) max_threads = BENCH_MAX_THREADS;
    gpt2_config cfg;
    configure_preset(preset, &cfg);
    gpt2_model model;
    int32_t *tokens = malloc(sizeof(int32_t) * BENCH_BATCH * (BENCH_SEQ + 1));
    if (!tokens || gpt2_create(&model, &cfg) != CLLM_OK) {
        fprintf(stderr, "cllm bench step: %s\n", tokens ? cllm_last_error() : "out of memory");
        free(tokens);
        return 1;
    }
    gpt2_use_kernels(&model, cllm_kernel_table_for(cllm_env_simd()));
    gpt2_init_weights(&model, 1);
    uint64_t s = 0x2545f4914f6cdd1dull;
    for (int i = 0; i < BENCH_BATCH * (BENCH_SEQ + 1); i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        tokens[i] = (int32_t)(s % (uint64_t)cfg.vocab_size);
    }
    double peak = cllm_peak_gflops_per_core(cllm_env_peak_gflops());
    step_result res[BENCH_MAX_THREADS];
    double torch_best[BENCH_MAX_THREADS] = {0};
    int n = 0, status = 0;
    for (int t = 1; t <= max_threads; t++, n++) {
        if (run_threads(&model, tokens, t, repeats, &res[n]) != CLLM_OK) {
            fprintf(stderr, "cllm bench step: %s\n", cllm_last_error());
            status = 1;
            break;
        }
        res[n].efficiency = res[n].tokens_per_s / (t * res[0].tokens_per_s);
        if (against_torch) {
            torch_best[n] = torch_tokens_per_s(script, preset, t, t, repeats);
            if (t > 1) {
                double one = torch_tokens_per_s(script, preset, 1, t, repeats);
                if (one > torch_best[n]) torch_best[n] = one;
            }
            if (torch_best[n] <= 0.0) fprintf(stderr, "cllm bench step: PyTorch run failed at %d threads\n", t);
        }
    }
    omp_set_num_threads(max_threads);
    const cllm_comm *job = cllm_ranks_comm();
    int R = job->size;
    /* What a direct reduce-scatter and all-gather of 4-byte floats move per rank. */
    double formula = 2.0 * (R - 1) / R * 4.0 * (double)model.n_params;
    if (job->rank != 0) {
        /* under mpirun, rank 0 reports for the job */
    } else if (status == 0 && json) {
        printf("{\"preset\":\"%c\",\"batch\":%d,\"seq\":%d,\"simd\":\"%s\",\"peak_gflops_per_core\":%.2f,"
               "\"flops_per_token\":%.0f,\"ranks\":%d,\"formula_bytes_per_rank\":%.0f,\"results\":[",
               preset, BENCH_BATCH, BENCH_SEQ, model.kernels->name, peak,
               gpt2_flops_per_token(&cfg), R, formula);
        for (int i = 0; i < n; i++)
            printf("%s{\"threads\":%d,\"tokens_per_s\":%.1f,\"step_s\":%.5f,\"efficiency\":%.4f,\"mfu\":%.4f,"
                   "\"exposed_reduction_share\":%.4f,\"update_share\":%.4f,\"utilisation\":%.4f,"
                   "\"torch_best_tokens_per_s\":%.1f,\"comm_share\":%.4f,\"rank_wait_share\":%.4f,"
                   "\"comm_bytes_per_rank\":%.0f}",
                   i ? "," : "", res[i].threads, res[i].tokens_per_s, res[i].step_s, res[i].efficiency, res[i].mfu,
                   res[i].exposed_share, res[i].update_share, res[i].utilisation, torch_best[i], res[i].comm_share,
                   res[i].wait_share, res[i].comm_bytes);
        printf("]}\n");
    } else if (status == 0) {
        printf("preset %c: B=%d, T=%d, %zu parameters, %.1f MFLOP/token, SIMD %s, peak %.1f GFLOP/s/core\n\n",
               preset, BENCH_BATCH, BENCH_SEQ, gpt2_num_parameters(&model), gpt2_flops_per_token(&cfg) / 1e6,
               model.kernels->name, peak);
        if (R > 1)
            printf("ranks %d (MPI; threads below are per rank), each computing its block of the %d micro-batches; "
                   "2(R-1)/R x 4P = %.1f KiB per rank per step\n\n", R, BENCH_BATCH, formula / 1024.0);
        printf("%7s %10s %9s %8s %6s %9s %8s %7s", "threads", "tokens/s", "step ms", "scaling", "MFU", "exposed",
               "update", "util");
        if (against_torch) printf(" %12s %7s", "PyTorch best", "ratio");
        if (R > 1) printf(" %7s %7s %10s", "wait", "comm", "sent KiB");
        printf("\n");
        for (int i = 0; i < n; i++) {
            printf("%7d %10.0f %9.1f %7.0f%% %5.0f%% %8.2f%% %7.2f%% %6.1f%%", res[i].threads, res[i].tokens_per_s,
                   1e3 * res[i].step_s, 100 * res[i].efficiency, 100 * res[i].mfu, 100 * res[i].exposed_share,
                   100 * res[i].update_share, 100 * res[i].utilisation);
            if (against_torch && torch_best[i] > 0)
                printf(" %12.0f %6.2fx", torch_best[i], res[i].tokens_per_s / torch_best[i]);
            if (R > 1)
                printf(" %6.2f%% %6.2f%% %10.1f", 100 * res[i].wait_share, 100 * res[i].comm_share,
                       res[i].comm_bytes / 1024.0);
            printf("\n");
        }
        printf("\nmedians of %d steps; scaling = tokens/s / (threads x 1-thread tokens/s); MFU against the "
               "measured per-core FMA peak; exposed = reduction left after the last compute (last merges, clipping "
               "norm), update = the AdamW pass after it, each a share of the step.\n",
               repeats);
        if (R > 1)
            printf("rank 0's wait = for the other ranks to finish computing (imbalance, skew), comm = the exchanges "
                   "after it that the fold did not hide (spans, norm, parameters, loss), each a share of the step; "
                   "sent = bytes rank 0 handed over per step.\n");
    }
    gpt2_destroy(&model);
    free(tokens);
    return status;
}
