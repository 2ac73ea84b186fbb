/* The engine's rank path (several ranks sharing a step: src/dist/engine.c,
 * "ranks"), in one process: the R threads of an outer OpenMP team play R
 * ranks, each with its own engine and its own (nested) team, over a
 * communication seam made of shared memory and a barrier (every operation
 * collective, as MPI's are). Nested teams rather than R pthreads of our own:
 * libomp's allocator asserts when root threads come and go. After several steps
 * every rank's parameters must be bitwise those of one engine alone, for
 * R = 2, 3, 4, 5 ranks x 1 and 2 threads per rank, micro-batch counts that
 * cut the tree evenly and not, with and without clipping; each rank must
 * update only its own span; more ranks than micro-batches is refused. This
 * runs the rank code under the sanitizer stages, which the MPI tests
 * (test/mpi, mpirun) cannot. */
#include <math.h>
#include <omp.h>
#include <pthread.h> /* the barrier of the seam */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cllm/base/common.h"
#include "cllm/dist/comm.h"
#include "cllm/dist/engine.h"
#include "cllm/kernels/kernels.h"
#include "cllm/optim/adamw.h"

enum { MAX_RANKS = 8, TENSOR = 2999 };

/* ---- ranks in threads: the shared seam ----------------------------------------- */

typedef struct {
    int size;
    pthread_barrier_t barrier;
    const void *ptr[MAX_RANKS]; /* each rank's published pointer for the operation in progress */
    size_t count[MAX_RANKS];
    int flag[MAX_RANKS];
    uint64_t sent[MAX_RANKS];
} shared_seam;

typedef struct {
    cllm_comm base;
    shared_seam *shared;
} thread_rank;

static shared_seam *seam_of(const cllm_comm *c) { return ((const thread_rank *)c->impl)->shared; }

static void wait_all(const cllm_comm *c) { pthread_barrier_wait(&seam_of(c)->barrier); }

/* Every rank's (ptr, count) published, read after one barrier, the slots
 * free again after a second. */
static void publish(const cllm_comm *c, const void *p, size_t n) {
    seam_of(c)->ptr[c->rank] = p;
    seam_of(c)->count[c->rank] = n;
    wait_all(c);
}

static double seam_norm2(const cllm_comm *c, const double *chunk_sq, size_t n) {
    shared_seam *s = seam_of(c);
    publish(c, chunk_sq, n);
    double sum = 0.0;
    for (int r = 0; r < c->size; r++)
        for (size_t i = 0; i < s->count[r]; i++) sum += ((const double *)s->ptr[r])[i];
    s->sent[c->rank] += (uint64_t)(c->size - 1) * n * sizeof(double);
    wait_all(c);
    return sum;
}

static double seam_mean_loss(const cllm_comm *c, const float *losses, int n) {
    shared_seam *s = seam_of(c);
    publish(c, losses, (size_t)n);
    double sum = 0.0;
    size_t total = 0;
    for (int r = 0; r < c->size; r++) {
        for (size_t i = 0; i < s->count[r]; i++) sum += ((const float *)s->ptr[r])[i];
        total += s->count[r];
    }
    wait_all(c);
    return total ? sum / (double)total : 0.0;
}

static cllm_status seam_params_updated(const cllm_comm *c, float *params, size_t n) {
    shared_seam *s = seam_of(c);
    publish(c, params, n);
    size_t ob, oe;
    cllm_comm_span(c, n, c->rank, &ob, &oe);
    s->sent[c->rank] += (uint64_t)(c->size - 1) * (oe - ob) * sizeof(float);
    for (int r = 0; r < c->size; r++) {
        if (r == c->rank) continue;
        size_t b, e;
        cllm_comm_span(c, n, r, &b, &e);
        memcpy(params + b, (const float *)s->ptr[r] + b, (e - b) * sizeof(float));
    }
    wait_all(c);
    return CLLM_OK;
}

static cllm_status seam_exchange_begin(const cllm_comm *c, size_t n, float *recv) {
    publish(c, recv, n);
    return CLLM_OK;
}

static cllm_status seam_exchange_send(const cllm_comm *c, const float *partial, size_t n, int q, float *recv) {
    shared_seam *s = seam_of(c);
    (void)recv;
    size_t b, e;
    cllm_comm_span(c, n, q, &b, &e);
    float *dst = (float *)s->ptr[q] + (size_t)c->rank * (e - b); /* rank q's receipt of this rank's piece */
    memcpy(dst, partial + b, (e - b) * sizeof(float));
    if (q != c->rank) s->sent[c->rank] += (e - b) * sizeof(float);
    return CLLM_OK;
}

static void seam_exchange_poll(const cllm_comm *c) { (void)c; }

static cllm_status seam_exchange_end(const cllm_comm *c) {
    wait_all(c); /* every piece written; the receipt pointers are not read after this */
    return CLLM_OK;
}

static cllm_status seam_gather(const cllm_comm *c, const float *own, size_t n, float *full) {
    shared_seam *s = seam_of(c);
    publish(c, own, n);
    if (c->rank == 0)
        for (int r = 0; r < c->size; r++) {
            size_t b, e;
            cllm_comm_span(c, n, r, &b, &e);
            memcpy(full + b, s->ptr[r], (e - b) * sizeof(float));
        }
    wait_all(c);
    return CLLM_OK;
}

static int seam_first_flagged(const cllm_comm *c, int flag) {
    shared_seam *s = seam_of(c);
    s->flag[c->rank] = flag != 0;
    wait_all(c);
    int first = -1;
    for (int r = c->size - 1; r >= 0; r--)
        if (s->flag[r]) first = r;
    wait_all(c);
    return first;
}

static uint64_t seam_bytes_sent(const cllm_comm *c) { return seam_of(c)->sent[c->rank]; }

static void seam_init(shared_seam *s, thread_rank *ranks, int R) {
    memset(s, 0, sizeof *s);
    s->size = R;
    pthread_barrier_init(&s->barrier, NULL, (unsigned)R);
    for (int r = 0; r < R; r++) {
        ranks[r].base = (cllm_comm){r,
                                    R,
                                    seam_norm2,
                                    seam_mean_loss,
                                    seam_params_updated,
                                    seam_exchange_begin,
                                    seam_exchange_send,
                                    seam_exchange_poll,
                                    seam_exchange_end,
                                    seam_gather,
                                    seam_first_flagged,
                                    seam_bytes_sent,
                                    &ranks[r]};
        ranks[r].shared = s;
    }
}

/* ---- the job: deterministic gradients of the global micro-batch index --------- */

static uint64_t mix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Mixed magnitudes and signs: a different summation order shows in the last bits. */
static float value(uint64_t base, size_t i) {
    uint64_t r = mix(base ^ (i * 0xd6e8feb86659fd93ull));
    float x = ldexpf((float)((r >> 40) & 0xffffff) / 16777216.0f + 0.5f, (int)((r >> 8) % 24) - 12);
    return (r & 1) ? -x : x;
}

typedef struct {
    size_t P;
    int step, clip;
    float *params, *m, *v;
    size_t own_begin, own_end; /* what update may touch (everything for one engine) */
    int out_of_span;           /* an update outside [own_begin, own_end) */
    int max_index;             /* the largest micro-batch index computed */
    cllm_adamw_step h;
    const cllm_kernel_table *k;
} job_state;

static cllm_status job_compute(void *ctx, int micro, int thread, float *grad, float *loss) {
    job_state *s = ctx;
    (void)thread;
    uint64_t base = mix((uint64_t)s->step * 1000003u + (uint64_t)micro);
    for (size_t i = 0; i < s->P; i++) grad[i] = value(base, i);
    *loss = (float)micro * 0.5f + (float)s->step;
#pragma omp critical(test_ranks_max)
    if (micro > s->max_index) s->max_index = micro;
    return CLLM_OK;
}

static float job_scale(void *ctx, double norm2) {
    (void)ctx;
    double norm = sqrt(norm2);
    return norm > 1.0 ? (float)(1.0 / norm) : 1.0f;
}

static void job_update(void *ctx, int segment, size_t begin, size_t end, const float *const *srcs, int k, float scale) {
    job_state *s = ctx;
    (void)segment;
    if (begin < s->own_begin || end > s->own_end) {
#pragma omp atomic write
        s->out_of_span = 1;
    }
    while (begin < end) {
        size_t t = begin / TENSOR, stop = (t + 1) * TENSOR < end ? (t + 1) * TENSOR : end;
        const float *part[2] = {srcs[0] + begin, k > 1 ? srcs[1] + begin : NULL};
        s->k->sum_adamw(s->params + begin, s->m + begin, s->v + begin, part, k, scale, stop - begin, &s->h, (int)(t % 2));
        begin = stop;
    }
}

static void job_init(job_state *s, size_t P, int clip) {
    memset(s, 0, sizeof *s);
    s->P = P;
    s->clip = clip;
    s->params = cllm_alloc(P * sizeof(float));
    s->m = cllm_alloc(P * sizeof(float));
    s->v = cllm_alloc(P * sizeof(float));
    memset(s->m, 0, P * sizeof(float));
    memset(s->v, 0, P * sizeof(float));
    for (size_t i = 0; i < P; i++) s->params[i] = value(42, i) * 0.01f;
    cllm_adamw_config cfg = cllm_adamw_defaults();
    s->h = cllm_adamw_step_make(&cfg, 1e-2, 1);
    s->k = cllm_kernel_table_best();
    s->own_end = P;
    s->max_index = -1;
}

static void job_free(job_state *s) {
    cllm_free(s->params);
    cllm_free(s->m);
    cllm_free(s->v);
}

static cllm_engine_job job_of(job_state *s) {
    return (cllm_engine_job){s, job_compute, s->clip ? job_scale : NULL, job_update, s->params};
}

/* ---- running -------------------------------------------------------------------- */

enum { STEPS = 3 };

typedef struct {
    const cllm_comm *comm;
    int threads, M, clip;
    size_t P;
    job_state job;
    double loss;
    uint64_t bytes;
    cllm_status status;
    int first_micro, n_micro;
} rank_run;

static void run_rank(rank_run *rr) {
    omp_set_num_threads(rr->threads);
    job_init(&rr->job, rr->P, rr->clip);
    cllm_engine_config cfg = {.n_params = rr->P, .n_micro = rr->M, .segments_per_thread = 1, .streaming = 1,
                              .compute_overwrites = 1, .comm = rr->comm, .kernels = rr->job.k};
    cllm_engine *e = NULL;
    rr->status = cllm_engine_create(&cfg, &e);
    if (rr->status != CLLM_OK) return;
    cllm_engine_owned(e, &rr->job.own_begin, &rr->job.own_end);
    cllm_engine_block(e, &rr->first_micro, &rr->n_micro);
    cllm_engine_job job = job_of(&rr->job);
    for (int st = 0; st < STEPS && rr->status == CLLM_OK; st++) {
        rr->job.step = st;
        cllm_engine_stats stats;
        rr->status = cllm_engine_step(e, &job, &stats);
        rr->loss = stats.loss;
        rr->bytes += stats.comm_bytes;
    }
    cllm_engine_free(e);
}

static void check_ranks_equal_one_engine(int R, int threads, int M, int clip) {
    const size_t P = 20011; /* odd: the last span and segment are short */
    rank_run alone = {.comm = NULL, .threads = threads, .M = M, .clip = clip, .P = P};
    run_rank(&alone);
    assert_int_equal(alone.status, CLLM_OK);

    shared_seam seam;
    thread_rank ranks[MAX_RANKS];
    seam_init(&seam, ranks, R);
    rank_run runs[MAX_RANKS];
    for (int r = 0; r < R; r++)
        runs[r] = (rank_run){.comm = &ranks[r].base, .threads = threads, .M = M, .clip = clip, .P = P};
    int team = 0;
    omp_set_max_active_levels(2);
#pragma omp parallel num_threads(R)
    {
#pragma omp single
        team = omp_get_num_threads();
        if (team == R) run_rank(&runs[omp_get_thread_num()]); /* else every rank would wait for the missing ones */
    }
    assert_int_equal(team, R);
    int next = 0;
    for (int r = 0; r < R; r++) {
        rank_run *rr = &runs[r];
        assert_int_equal(rr->status, CLLM_OK);
        /* the blocks tile the step's micro-batches in rank order */
        assert_int_equal(rr->first_micro, next);
        assert_true(rr->n_micro >= 1);
        next += rr->n_micro;
        assert_int_equal(rr->job.max_index, rr->first_micro + rr->n_micro - 1);
        if (memcmp(rr->job.params, alone.job.params, P * sizeof(float)) != 0)
            fail_msg("R=%d threads=%d M=%d clip=%d: rank %d's parameters differ from one engine's", R, threads, M,
                     clip, r);
        assert_false(rr->job.out_of_span);
        /* its own span's moments are one engine's; it never touched the others' */
        size_t b = rr->job.own_begin, e = rr->job.own_end;
        assert_memory_equal(rr->job.m + b, alone.job.m + b, (e - b) * sizeof(float));
        assert_memory_equal(rr->job.v + b, alone.job.v + b, (e - b) * sizeof(float));
        for (size_t i = 0; i < P; i++)
            if (i < b || i >= e) assert_true(rr->job.m[i] == 0.0f && rr->job.v[i] == 0.0f);
        assert_true(rr->loss == alone.loss);
        /* each rank hands over every span but its own, and its own to every other rank */
        assert_true(rr->bytes >= STEPS * ((P - (e - b)) + (e - b) * (size_t)(R - 1)) * sizeof(float));
        job_free(&rr->job);
    }
    assert_int_equal(next, M);
    pthread_barrier_destroy(&seam.barrier);
    job_free(&alone.job);
}

static void test_ranks_are_bitwise_one_engine(void **state) {
    (void)state;
    static const int Ms[] = {8, 7, 5};
    for (int R = 2; R <= 5; R++)
        for (int threads = 1; threads <= 2; threads++)
            for (size_t mi = 0; mi < sizeof Ms / sizeof Ms[0]; mi++)
                for (int clip = 0; clip <= 1; clip++)
                    if (R <= Ms[mi]) check_ranks_equal_one_engine(R, threads, Ms[mi], clip);
}

/* 300 parameters over 4 ranks: two 256-float grains, so two ranks own
 * nothing; they still take part in every exchange. */
static void test_ranks_with_empty_spans(void **state) {
    (void)state;
    const size_t P = 300;
    rank_run alone = {.comm = NULL, .threads = 1, .M = 4, .clip = 1, .P = P};
    run_rank(&alone);
    assert_int_equal(alone.status, CLLM_OK);
    shared_seam seam;
    thread_rank ranks[MAX_RANKS];
    seam_init(&seam, ranks, 4);
    rank_run runs[4];
    for (int r = 0; r < 4; r++) runs[r] = (rank_run){.comm = &ranks[r].base, .threads = 1, .M = 4, .clip = 1, .P = P};
    int team = 0, empty = 0;
    omp_set_max_active_levels(2);
#pragma omp parallel num_threads(4)
    {
#pragma omp single
        team = omp_get_num_threads();
        if (team == 4) run_rank(&runs[omp_get_thread_num()]);
    }
    assert_int_equal(team, 4);
    for (int r = 0; r < 4; r++) {
        assert_int_equal(runs[r].status, CLLM_OK);
        assert_memory_equal(runs[r].job.params, alone.job.params, P * sizeof(float));
        empty += runs[r].job.own_begin == runs[r].job.own_end;
        job_free(&runs[r].job);
    }
    assert_int_equal(empty, 2);
    pthread_barrier_destroy(&seam.barrier);
    job_free(&alone.job);
}

static void test_more_ranks_than_micro_batches_is_refused(void **state) {
    (void)state;
    shared_seam seam;
    thread_rank ranks[MAX_RANKS];
    seam_init(&seam, ranks, 4);
    cllm_engine_config cfg = {.n_params = 1000, .n_micro = 3, .segments_per_thread = 1, .comm = &ranks[1].base};
    cllm_engine *e = NULL;
    assert_int_equal(cllm_engine_create(&cfg, &e), CLLM_ERR_INPUT);
    assert_null(e);
    assert_non_null(strstr(cllm_last_error(), "4 ranks but 3 micro-batches"));
    pthread_barrier_destroy(&seam.barrier);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ranks_are_bitwise_one_engine),
        cmocka_unit_test(test_ranks_with_empty_spans),
        cmocka_unit_test(test_more_ranks_than_micro_batches_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
