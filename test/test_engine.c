/* The engine on a synthetic job: bitwise-identical parameters for 1..4
 * threads x schedules x streaming on/off, equal to a plain serial evaluation
 * of the same tree; a straggler's slowness hides the other merges; the
 * atomic count follows its formula for two sizes; adversarial schedules with
 * a tight buffer pool finish. */
#include <math.h>
#include <omp.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "cllm/base/common.h"
#include "cllm/dist/engine.h"
#include "cllm/kernels/kernels.h"
#include "cllm/optim/adamw.h"

/* ---- the synthetic job ------------------------------------------------------ */

enum { TENSOR = 3001 }; /* "tensor" boundaries for the decay flag, deliberately unaligned */

typedef struct {
    size_t P;
    int step;
    float *params, *m, *v;
    cllm_adamw_step h;
    const cllm_kernel_table *k;
    int clip;               /* use grad_scale (global-norm clipping to 1) */
    double straggler_s;     /* micro-batch 0 sleeps this long */
    int slow_others_us;     /* every other micro-batch sleeps this long */
    int straggler_index;
    int overwrite;          /* compute writes (=) instead of adding; the engine is told so */
    int saw_leftovers;      /* some compute found a nonzero element on entry */
} synth;

static uint64_t mix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Mixed magnitudes (2^-12 .. 2^11) and signs: any change of summation order
 * shows in the last bits. */
static float grad_value(uint64_t base, size_t i) {
    uint64_t r = mix(base ^ (i * 0xd6e8feb86659fd93ull));
    float mant = (float)((r >> 40) & 0xffffff) / 16777216.0f + 0.5f;
    float x = ldexpf(mant, (int)((r >> 8) % 24) - 12);
    return (r & 1) ? -x : x;
}

static void sleep_seconds(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static cllm_status synth_compute(void *ctx, int micro, int thread, float *grad, float *loss) {
    synth *s = ctx;
    (void)thread;
    if (micro == s->straggler_index && s->straggler_s > 0) sleep_seconds(s->straggler_s);
    else if (s->slow_others_us > 0) sleep_seconds(s->slow_others_us * 1e-6);
    uint64_t base = mix((uint64_t)s->step * 1000003u + (uint64_t)micro);
    if (grad[0] != 0.0f || grad[s->P - 1] != 0.0f) {
#pragma omp atomic write
        s->saw_leftovers = 1;
    }
    if (s->overwrite) {
        for (size_t i = 0; i < s->P; i++) grad[i] = grad_value(base, i);
    } else {
        for (size_t i = 0; i < s->P; i++) grad[i] += grad_value(base, i);
    }
    *loss = (float)micro * 0.25f + (float)s->step;
    return CLLM_OK;
}

static float synth_grad_scale(void *ctx, double norm2) {
    (void)ctx;
    double norm = sqrt(norm2);
    return norm > 1.0 ? (float)(1.0 / norm) : 1.0f;
}

/* AdamW on [begin, end), split at tensor boundaries with alternating decay,
 * as the trainer's callback does. */
static void synth_update(void *ctx, int segment, size_t begin, size_t end, const float *const *srcs, int k, float scale) {
    synth *s = ctx;
    (void)segment;
    while (begin < end) {
        size_t t = begin / TENSOR, stop = (t + 1) * TENSOR < end ? (t + 1) * TENSOR : end;
        const float *part[2] = {srcs[0] + begin, k > 1 ? srcs[1] + begin : NULL};
        s->k->sum_adamw(s->params + begin, s->m + begin, s->v + begin, part, k, scale, stop - begin, &s->h,
                        (int)(t % 2));
        begin = stop;
    }
}

static void synth_init(synth *s, size_t P, int clip) {
    memset(s, 0, sizeof *s);
    s->P = P;
    s->params = cllm_alloc(P * sizeof(float));
    s->m = cllm_alloc(P * sizeof(float));
    s->v = cllm_alloc(P * sizeof(float));
    for (size_t i = 0; i < P; i++) s->params[i] = grad_value(42, i) * 0.01f;
    cllm_adamw_config cfg = cllm_adamw_defaults();
    s->h = cllm_adamw_step_make(&cfg, 1e-3, 1);
    s->k = cllm_kernel_table_best();
    s->clip = clip;
    s->straggler_index = 0;
}

static void synth_free(synth *s) {
    cllm_free(s->params);
    cllm_free(s->m);
    cllm_free(s->v);
}

static cllm_engine_job synth_job(synth *s) {
    cllm_engine_job job = {s, synth_compute, s->clip ? synth_grad_scale : NULL, synth_update, s->params};
    return job;
}

/* ---- a plain serial evaluation of the same tree ---------------------------------- */

static int largest_pow2_below(int n) {
    int p = 1;
    while (p * 2 < n) p *= 2;
    return p;
}

static void serial_node(float **g, int lo, int hi, size_t P) {
    if (hi - lo < 2) return;
    int mid = lo + largest_pow2_below(hi - lo);
    serial_node(g, lo, mid, P);
    serial_node(g, mid, hi, P);
    for (size_t i = 0; i < P; i++) g[lo][i] = g[lo][i] + g[mid][i];
}

static void serial_steps(synth *s, int M, int steps) {
    float **g = malloc(sizeof(float *) * (size_t)M);
    for (int i = 0; i < M; i++) g[i] = cllm_alloc(s->P * sizeof(float));
    for (int st = 0; st < steps; st++) {
        s->step = st;
        for (int i = 0; i < M; i++) {
            memset(g[i], 0, s->P * sizeof(float));
            float loss;
            synth_compute(s, i, 0, g[i], &loss);
        }
        const float *srcs[2] = {g[0], NULL};
        int k = 1;
        if (M > 1) {
            int mid = largest_pow2_below(M);
            serial_node(g, 0, mid, s->P);
            serial_node(g, mid, M, s->P);
            srcs[1] = g[mid];
            k = 2;
        }
        float scale = 1.0f;
        if (s->clip) {
            /* left += right, then the chunked norm in chunk order */
            double *sq = malloc(sizeof(double) * (cllm_sq_chunks(s->P) + 1));
            if (k == 2)
                for (size_t i = 0; i < s->P; i++) g[0][i] = g[0][i] + srcs[1][i];
            const float *one[1] = {g[0]};
            cllm_kernel_table_for(CLLM_SIMD_SCALAR)->sum_sq(g[0], one, 1, s->P, sq);
            double norm2 = 0;
            for (size_t c = 0; c < cllm_sq_chunks(s->P); c++) norm2 += sq[c];
            scale = synth_grad_scale(s, norm2);
            k = 1;
            free(sq);
        }
        synth_update(s, 0, 0, s->P, srcs, k, scale);
    }
    for (int i = 0; i < M; i++) cllm_free(g[i]);
    free(g);
}

/* ---- running the engine ------------------------------------------------------------ */

typedef struct {
    int threads, streaming, window, spt;
    omp_sched_t sched;
    int chunk;
    int teams, team_threads; /* 0, 0: flat, one worker per thread */
} run_cfg;

static cllm_engine_stats engine_steps(synth *s, int M, int steps, const run_cfg *rc) {
    omp_set_num_threads(rc->threads);
    omp_set_schedule(rc->sched, rc->chunk);
    cllm_engine_config cfg = {s->P, M, rc->spt, rc->streaming, rc->window, s->overwrite, NULL, s->k,
                              rc->teams, rc->team_threads};
    cllm_engine *e = NULL;
    assert_int_equal(cllm_engine_create(&cfg, &e), CLLM_OK);
    assert_int_equal(cllm_engine_threads(e), rc->teams ? rc->teams : rc->threads);
    assert_int_equal(cllm_engine_team_threads(e), rc->team_threads ? rc->team_threads : 1);
    cllm_engine_job job = synth_job(s);
    cllm_engine_stats st;
    for (int i = 0; i < steps; i++) {
        s->step = i;
        assert_int_equal(cllm_engine_step(e, &job, &st), CLLM_OK);
        /* every atomic is either in the formula or accounted as extra */
        assert_int_equal(st.atomics,
                         cllm_engine_atomics_expected(M, cllm_engine_segments(e), st.folded_nodes) + st.atomics_extra);
        assert_true(st.folded_nodes >= 0 && st.folded_nodes <= (M > 1 ? M - 2 : 0));
    }
    cllm_engine_free(e);
    return st;
}

static const struct {
    omp_sched_t kind;
    int chunk;
    const char *name;
} schedules[] = {
    {omp_sched_static, 0, "static"},   {omp_sched_static, 1, "static,1"}, {omp_sched_dynamic, 1, "dynamic"},
    {omp_sched_dynamic, 3, "dynamic,3"}, {omp_sched_guided, 0, "guided"},
};
enum { N_SCHED = sizeof schedules / sizeof schedules[0] };

static void assert_same_params(const synth *a, const synth *b, const char *what) {
    if (memcmp(a->params, b->params, a->P * sizeof(float)) != 0 || memcmp(a->m, b->m, a->P * sizeof(float)) != 0 ||
        memcmp(a->v, b->v, a->P * sizeof(float)) != 0)
        fail_msg("parameters differ from the serial tree: %s", what);
}

static void check_determinism(size_t P, int M, int steps, int clip, int window) {
    synth ref;
    synth_init(&ref, P, clip);
    serial_steps(&ref, M, steps);
    for (int threads = 1; threads <= 4; threads++)
        for (int sc = 0; sc < N_SCHED; sc++)
            for (int streaming = 0; streaming <= 1; streaming++) {
                synth s;
                synth_init(&s, P, clip);
                run_cfg rc = {threads, streaming, window, 1 + threads % 2, schedules[sc].kind, schedules[sc].chunk, 0, 0};
                cllm_engine_stats st = engine_steps(&s, M, steps, &rc);
                char what[160];
                snprintf(what, sizeof what, "P=%zu M=%d threads=%d schedule=%s streaming=%d clip=%d window=%d", P, M,
                         threads, schedules[sc].name, streaming, clip, window);
                assert_same_params(&ref, &s, what);
                /* loss: mean in index order of micro*0.25 + step */
                double expect = 0;
                for (int i = 0; i < M; i++) expect += (float)i * 0.25f + (float)(steps - 1);
                assert_true(st.loss == expect / M);
                assert_int_equal(st.threads, threads);
                if (clip) assert_true(st.grad_norm > 1.0);
                synth_free(&s);
            }
    synth_free(&ref);
}

static void test_bitwise_determinism_across_threads_schedules_streaming(void **state) {
    (void)state;
    check_determinism(20011, 13, 3, 0, 0);
}

/* Team shapes (workers x threads per team, nested OpenMP): the same bits as
 * the serial tree, with and without clipping and streaming. P is large
 * enough that a team splits its merges (segments of >= 65,536 floats) as
 * well as its owned segments' updates; 3 x 2 oversubscribes this machine. */
static void test_bitwise_determinism_across_team_shapes(void **state) {
    (void)state;
    static const int shapes[][2] = {{1, 2}, {2, 1}, {2, 2}, {1, 3}, {3, 2}};
    for (int clip = 0; clip <= 1; clip++) {
        synth ref;
        synth_init(&ref, 300007, clip);
        serial_steps(&ref, 7, 2);
        for (size_t sh = 0; sh < sizeof shapes / sizeof shapes[0]; sh++)
            for (int streaming = 0; streaming <= 1; streaming++) {
                synth s;
                synth_init(&s, 300007, clip);
                run_cfg rc = {shapes[sh][0], streaming, 0, 1, omp_sched_dynamic, 1, shapes[sh][0], shapes[sh][1]};
                cllm_engine_stats st = engine_steps(&s, 7, 2, &rc);
                char what[160];
                snprintf(what, sizeof what, "team shape %dx%d streaming=%d clip=%d", shapes[sh][0], shapes[sh][1],
                         streaming, clip);
                assert_same_params(&ref, &s, what);
                assert_int_equal(st.threads, shapes[sh][0]);
                synth_free(&s);
            }
        synth_free(&ref);
    }
}

static void test_bitwise_determinism_with_clipping(void **state) {
    (void)state;
    check_determinism(9000, 6, 2, 1, 0);
}

/* One thread, in order: when the last micro-batch is computed, every node on
 * its path to the root is left to the owners' fold (log2 M - 1 of them for a
 * power of two), which must give the serial tree's bits with and without
 * clipping. For M = 13 the path is (8,13) alone, but whether the merge of
 * (10,12), spawned before the last compute, runs at once or at the barrier is
 * the runtime's choice, and in the second case (8,12) is folded too. */
static void test_owners_fold_the_last_path(void **state) {
    (void)state;
    const int Ms[3] = {8, 16, 13}, folded_min[3] = {2, 3, 1}, folded_max[3] = {2, 3, 2};
    for (int c = 0; c < 3; c++)
        for (int clip = 0; clip <= 1; clip++) {
            synth ref, s;
            synth_init(&ref, 5000, clip);
            synth_init(&s, 5000, clip);
            s.straggler_index = -1;
            ref.straggler_index = -1;
            serial_steps(&ref, Ms[c], 2);
            run_cfg rc = {1, 1, 0, 2, omp_sched_dynamic, 1, 0, 0};
            cllm_engine_stats st = engine_steps(&s, Ms[c], 2, &rc);
            assert_in_range(st.folded_nodes, folded_min[c], folded_max[c]);
            assert_same_params(&ref, &s, clip ? "owners' fold, clipping" : "owners' fold");
            assert_true(st.exposed_reduction >= 0 && st.exposed_update >= 0);
            assert_true(st.exposed_reduction + st.exposed_update <= st.wall + 1e-9);
            synth_free(&ref);
            synth_free(&s);
        }
}

static void test_single_and_pair_micro_batches(void **state) {
    (void)state;
    check_determinism(777, 1, 2, 0, 0);
    check_determinism(777, 2, 2, 1, 0);
}

/* Tight pool, straggler first, many micro-batches: workers must help merge
 * and respect the index window; the run must finish and stay exact. */
static void on_alarm(int sig) {
    (void)sig;
    static const char msg[] = "test_engine: deadlock (alarm)\n";
    ssize_t w = write(2, msg, sizeof msg - 1);
    (void)w;
    _exit(3);
}

static void test_adversarial_schedules_finish_exact(void **state) {
    (void)state;
    signal(SIGALRM, on_alarm);
    alarm(240);
    const int Ms[] = {5, 17, 64};
    int64_t waits = 0, extra = 0;
    for (int mi = 0; mi < 3; mi++) {
        int M = Ms[mi];
        synth ref;
        synth_init(&ref, 3000, 0);
        serial_steps(&ref, M, 1);
        for (int threads = 1; threads <= 4; threads++)
            for (int sc = 0; sc < N_SCHED; sc++) {
                synth s;
                synth_init(&s, 3000, 0);
                s.straggler_s = 0.004; /* index 0 slow */
                s.slow_others_us = 50;
                run_cfg rc = {threads, sc % 2, 1, 1, schedules[sc].kind, schedules[sc].chunk, 0, 0}; /* window 1: tightest */
                double t = cllm_now();
                cllm_engine_stats st = engine_steps(&s, M, 1, &rc);
                assert_true(cllm_now() - t < 30.0); /* finishes, no live-lock */
                waits += st.waits;
                extra += st.atomics_extra;
                char what[128];
                snprintf(what, sizeof what, "adversarial M=%d threads=%d schedule=%s", M, threads, schedules[sc].name);
                assert_same_params(&ref, &s, what);
                synth_free(&s);
            }
        synth_free(&ref);
    }
    alarm(0);
    /* the starved paths (window, helping merges) really ran */
    printf("  adversarial: %lld waits, %lld extra atomics\n", (long long)waits, (long long)extra);
    assert_true(waits > 0);
    assert_true(extra > 0);
}

static void test_pool_is_bounded(void **state) {
    (void)state;
    omp_set_num_threads(3);
    for (int M = 1; M <= 64; M++) {
        cllm_engine_config cfg = {1000, M, 1, 1, 0, 0, NULL, cllm_kernel_table_best(), 0, 0};
        cllm_engine *e = NULL;
        assert_int_equal(cllm_engine_create(&cfg, &e), CLLM_OK);
        int nb = cllm_engine_buffers(e);
        int log2m = 0;
        while ((1 << log2m) < M) log2m++;
        assert_true(nb <= M);
        assert_true(nb <= 3 + log2m + 2);
        assert_true(nb >= 1);
        assert_int_equal(cllm_engine_buffer_bytes(e), (size_t)nb * 1008 * sizeof(float));
        cllm_engine_free(e);
    }
}

/* Micro-batch 0 is slow: every merge not involving it completes before it
 * finishes computing; after it, only its own path to the root remains. */
static void check_straggler(int threads) {
    const int M = 8;
    synth s;
    synth_init(&s, 1 << 16, 0);
    s.straggler_s = 0.2;
    omp_set_num_threads(threads);
    omp_set_schedule(omp_sched_dynamic, 1);
    cllm_engine_config cfg = {s.P, M, 1, 1, M, 0, NULL, s.k, 0, 0};
    cllm_engine *e = NULL;
    assert_int_equal(cllm_engine_create(&cfg, &e), CLLM_OK);
    cllm_engine_job job = synth_job(&s);
    cllm_engine_stats st;
    assert_int_equal(cllm_engine_step(e, &job, &st), CLLM_OK);
    const cllm_engine_node_trace *nodes;
    int n = cllm_engine_trace_nodes(e, &nodes);
    const double *end = cllm_engine_trace_compute_end(e);
    assert_int_equal(n, M - 1);
    double straggler_end = end[0];
    int after = 0;
    for (int i = 0; i < n - 1; i++) { /* the root is the owners' update */
        if (nodes[i].lo > 0) {
            if (!(nodes[i].done_at < straggler_end))
                fail_msg("merge (%d,%d) done at %.4f s, straggler finished at %.4f s", nodes[i].lo, nodes[i].hi,
                         nodes[i].done_at, straggler_end);
        } else {
            assert_true(nodes[i].ready_at >= straggler_end);
            after++;
        }
    }
    assert_int_equal(after, 2); /* (0,2) and (0,4): the straggler's own path */
    for (int i = 1; i < M; i++) assert_true(end[i] < straggler_end);
    double tail = st.wall - straggler_end;
    printf("  threads=%d: straggler done at %.3f s, step %.3f s, tail %.4f s, exposed share %.3f\n", threads,
           straggler_end, st.wall, tail, st.exposed_share);
    assert_true(tail < 0.1);
    assert_true(st.exposed_reduction <= tail + 1e-9);
    cllm_engine_free(e);
    synth_free(&s);
}

static void test_straggler_hides_other_merges(void **state) {
    (void)state;
    check_straggler(2);
    check_straggler(4);
}

static void test_atomics_formula_independent_of_P(void **state) {
    (void)state;
    const int M = 9;
    int64_t seen[2];
    const size_t sizes[2] = {10000, 300000};
    for (int p = 0; p < 2; p++) {
        synth s;
        synth_init(&s, sizes[p], 0);
        run_cfg rc = {3, 1, M, 2, omp_sched_dynamic, 1, 0, 0}; /* window M: nobody waits */
        cllm_engine_stats st = engine_steps(&s, M, 2, &rc);
        assert_int_equal(st.atomics_extra, 0);
        assert_int_equal(st.waits, 0);
        assert_int_equal(st.atomics, cllm_engine_atomics_expected(M, 3 * 2, st.folded_nodes));
        /* what the step would have spent with every merge a task */
        seen[p] = st.atomics + (int64_t)st.folded_nodes * (3 * 6 + 2);
        synth_free(&s);
    }
    assert_int_equal(seen[0], seen[1]);
    /* 4M - 2 + (M - 2)(3S + 1) */
    assert_int_equal(cllm_engine_atomics_formula(9, 6), 4 * 9 - 2 + 7 * 19);
    assert_int_equal(cllm_engine_atomics_formula(1, 6), 2);
    assert_int_equal(cllm_engine_atomics_formula(2, 6), 6);
}

static void test_stats_are_sane(void **state) {
    (void)state;
    synth s;
    synth_init(&s, 50000, 1);
    s.slow_others_us = 2000;
    s.straggler_index = -1;
    run_cfg rc = {2, 1, 0, 1, omp_sched_dynamic, 1, 0, 0};
    cllm_engine_stats st = engine_steps(&s, 6, 1, &rc);
    assert_true(st.wall > 0);
    assert_true(st.compute_min <= st.compute_median && st.compute_median <= st.compute_max);
    assert_true(st.compute_max <= st.wall);
    assert_true(st.utilisation > 0 && st.utilisation <= 1.0 + 1e-6);
    assert_true(st.exposed_share >= 0 && st.exposed_share <= 1);
    assert_true(st.reduce > 0);
    assert_true(st.grad_norm > 0);
    synth_free(&s);
}

/* A compute that writes its whole buffer, with the engine told so, gives the
 * same bits as the zeroing path (x and 0 + x are the same float), and the
 * engine really skips the zeroing: a later step's compute finds the previous
 * step's values in its buffer. */
static void test_overwriting_compute_skips_zeroing_same_bits(void **state) {
    (void)state;
    for (int threads = 1; threads <= 3; threads++) {
        synth zeroed, written;
        synth_init(&zeroed, 20011, 1);
        synth_init(&written, 20011, 1);
        written.overwrite = 1;
        run_cfg rc = {threads, 1, 0, 2, omp_sched_dynamic, 1, 0, 0};
        engine_steps(&zeroed, 6, 4, &rc);
        engine_steps(&written, 6, 4, &rc);
        assert_same_params(&zeroed, &written, "overwriting compute vs zeroed buffers");
        assert_int_equal(zeroed.saw_leftovers, 0);
        assert_int_equal(written.saw_leftovers, 1);
        synth_free(&zeroed);
        synth_free(&written);
    }
}

static void test_bad_config_is_input_error(void **state) {
    (void)state;
    cllm_engine *e = (cllm_engine *)1;
    cllm_engine_config bad[] = {{0, 4, 1, 1, 0, 0, NULL, NULL, 0, 0}, {100, 0, 1, 1, 0, 0, NULL, NULL, 0, 0}, {100, 4, -1, 1, 0, 0, NULL, NULL, 0, 0}, {100, 4, 1, 1, -3, 0, NULL, NULL, 0, 0}, {100, 4, 1, 1, 0, 0, NULL, NULL, -1, 0}};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(cllm_engine_create(&bad[i], &e), CLLM_ERR_INPUT);
        assert_null(e);
        assert_true(strlen(cllm_last_error()) > 0);
    }
}

/* A worker whose compute fails: the step returns that worker's status and
 * message (set on its own thread), and no parameter changes, with or
 * without clipping, for any thread count. */
static int failing_micro = -1;

static cllm_status failing_compute(void *ctx, int micro, int thread, float *grad, float *loss) {
    cllm_status st = synth_compute(ctx, micro, thread, grad, loss);
    if (micro == failing_micro) return cllm_fail(CLLM_ERR_INPUT, "micro-batch %d could not be read", micro);
    return st;
}

static void test_failing_compute_reaches_the_caller(void **state) {
    (void)state;
    const size_t P = 3001;
    for (int clip = 0; clip <= 1; clip++) {
        for (int threads = 1; threads <= 3; threads++) {
            omp_set_num_threads(threads);
            synth s;
            synth_init(&s, P, clip);
            float *before = malloc(P * sizeof(float));
            memcpy(before, s.params, P * sizeof(float));
            cllm_engine_config cfg = {.n_params = P, .n_micro = 7, .segments_per_thread = 2, .streaming = 1};
            cllm_engine *e = NULL;
            assert_int_equal(cllm_engine_create(&cfg, &e), CLLM_OK);
            cllm_engine_job job = synth_job(&s);
            job.compute = failing_compute;
            failing_micro = 5;
            cllm_fail(CLLM_OK, "%s", ""); /* the caller's thread has no message of its own */
            assert_int_equal(cllm_engine_step(e, &job, NULL), CLLM_ERR_INPUT);
            assert_string_equal(cllm_last_error(), "micro-batch 5 could not be read");
            assert_memory_equal(before, s.params, P * sizeof(float));
            /* The engine is usable again: the next step updates. */
            failing_micro = -1;
            assert_int_equal(cllm_engine_step(e, &job, NULL), CLLM_OK);
            assert_true(memcmp(before, s.params, P * sizeof(float)) != 0);
            cllm_engine_free(e);
            free(before);
            synth_free(&s);
        }
    }
}

/* The engine's exchanges go through its communication seam: the norm from
 * the chunk partials and the loss from the micro-batch losses (a seam that
 * reports them doubled changes the clip factor and the reported loss), and
 * the parameters once updated, once per step. */
typedef struct {
    cllm_comm base;
    int norm_calls, loss_calls, param_calls;
    size_t chunks;
    float *params;
} recording_comm;

static double doubled_norm2(const cllm_comm *c, const double *sq, size_t n) {
    recording_comm *r = (recording_comm *)c->impl;
    r->norm_calls++;
    r->chunks = n;
    return 4.0 * cllm_comm_single()->norm2(cllm_comm_single(), sq, n);
}

static double doubled_loss(const cllm_comm *c, const float *losses, int n) {
    recording_comm *r = (recording_comm *)c->impl;
    r->loss_calls++;
    return 2.0 * cllm_comm_single()->mean_loss(cllm_comm_single(), losses, n);
}

static cllm_status record_params(const cllm_comm *c, float *params, size_t n) {
    recording_comm *r = (recording_comm *)c->impl;
    r->param_calls++;
    r->params = params;
    (void)n;
    return CLLM_OK;
}

static void test_exchanges_go_through_the_comm_seam(void **state) {
    (void)state;
    const size_t P = 5000;
    omp_set_num_threads(2);
    recording_comm rec = {.base = *cllm_comm_single()}; /* one rank: the exchange and agreement stay local */
    rec.base.norm2 = doubled_norm2;
    rec.base.mean_loss = doubled_loss;
    rec.base.params_updated = record_params;
    rec.base.impl = &rec;
    synth plain, seamed;
    synth_init(&plain, P, 1);
    synth_init(&seamed, P, 1);
    cllm_engine_config cfg = {.n_params = P, .n_micro = 5, .segments_per_thread = 1, .streaming = 1};
    cllm_engine *a = NULL, *b = NULL;
    assert_int_equal(cllm_engine_create(&cfg, &a), CLLM_OK);
    cfg.comm = &rec.base;
    assert_int_equal(cllm_engine_create(&cfg, &b), CLLM_OK);
    cllm_engine_job ja = synth_job(&plain), jb = synth_job(&seamed);
    cllm_engine_stats sa, sb;
    assert_int_equal(cllm_engine_step(a, &ja, &sa), CLLM_OK);
    assert_int_equal(cllm_engine_step(b, &jb, &sb), CLLM_OK);
    assert_int_equal(rec.norm_calls, 1);
    assert_int_equal(rec.loss_calls, 1);
    assert_int_equal(rec.param_calls, 1);
    assert_int_equal(rec.chunks, (P + CLLM_SQ_CHUNK - 1) / CLLM_SQ_CHUNK);
    assert_ptr_equal(rec.params, seamed.params);
    assert_true(fabs(sb.grad_norm - 2.0 * sa.grad_norm) <= 1e-9 * sa.grad_norm);
    assert_true(sb.loss == 2.0 * sa.loss);
    cllm_engine_free(a);
    cllm_engine_free(b);
    synth_free(&plain);
    synth_free(&seamed);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exchanges_go_through_the_comm_seam),
        cmocka_unit_test(test_failing_compute_reaches_the_caller),
        cmocka_unit_test(test_bad_config_is_input_error),
        cmocka_unit_test(test_pool_is_bounded),
        cmocka_unit_test(test_atomics_formula_independent_of_P),
        cmocka_unit_test(test_owners_fold_the_last_path),
        cmocka_unit_test(test_single_and_pair_micro_batches),
        cmocka_unit_test(test_bitwise_determinism_across_threads_schedules_streaming),
        cmocka_unit_test(test_bitwise_determinism_across_team_shapes),
        cmocka_unit_test(test_bitwise_determinism_with_clipping),
        cmocka_unit_test(test_adversarial_schedules_finish_exact),
        cmocka_unit_test(test_straggler_hides_other_merges),
        cmocka_unit_test(test_stats_are_sane),
        cmocka_unit_test(test_overwriting_compute_skips_zeroing_same_bits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
