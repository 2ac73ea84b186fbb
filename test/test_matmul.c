/* The matrix product: every SIMD path this CPU supports against the plain
 * reference, on odd shapes, all transposes, alpha/beta cases, padded leading
 * dimensions, and from several threads at once. */
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cllm/model/matmul.h"
#include "cllm/parallel/simd.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void) { /* xorshift64*: reproducible, no shared state with cllm */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545f4914f6cdd1dull) >> 32);
}
static float rnd_uniform(void) { return (float)rnd() / 4294967296.0f * 2.0f - 1.0f; }
static float rnd_small_int(void) { return (float)((int)(rnd() % 7) - 3); }

static const int odd_sizes[] = {1, 2, 3, 5, 7, 13, 17, 31, 33, 65, 127, 255, 257};
static int pick_size(void) { return odd_sizes[rnd() % (sizeof odd_sizes / sizeof odd_sizes[0])]; }

typedef struct {
    int ta, tb, M, N, K, lda, ldb, ldc;
    float alpha, beta;
    float *A, *B, *C0; /* C0: C before the product */
} problem;

static float *alloc_filled(size_t n, int integers) {
    float *p = malloc(n * sizeof(float));
    assert_non_null(p);
    for (size_t i = 0; i < n; i++) p[i] = integers ? rnd_small_int() : rnd_uniform();
    return p;
}

/* Stored shapes follow the transposes; leading dimensions get random padding
 * so that a kernel assuming ld == width reads the wrong elements. */
static problem make_problem(int ta, int tb, int M, int N, int K, float alpha, float beta, int integers) {
    problem p = {ta, tb, M, N, K, 0, 0, 0, alpha, beta, NULL, NULL, NULL};
    int a_rows = ta ? K : M, a_cols = ta ? M : K;
    int b_rows = tb ? N : K, b_cols = tb ? K : N;
    p.lda = a_cols + (int)(rnd() % 5);
    p.ldb = b_cols + (int)(rnd() % 5);
    p.ldc = N + (int)(rnd() % 5);
    p.A = alloc_filled((size_t)a_rows * p.lda, integers);
    p.B = alloc_filled((size_t)b_rows * p.ldb, integers);
    p.C0 = alloc_filled((size_t)M * p.ldc, integers);
    return p;
}

static void free_problem(problem *p) {
    free(p->A), free(p->B), free(p->C0);
}

static float *run_path(const problem *p, int path) {
    float *C = malloc((size_t)p->M * p->ldc * sizeof(float));
    assert_non_null(C);
    memcpy(C, p->C0, (size_t)p->M * p->ldc * sizeof(float));
    if (path < 0)
        cllm_sgemm_ref(p->ta, p->tb, p->M, p->N, p->K, p->alpha, p->A, p->lda, p->B, p->ldb, p->beta, C, p->ldc);
    else
        cllm_sgemm_path((cllm_simd)path, p->ta, p->tb, p->M, p->N, p->K, p->alpha, p->A, p->lda, p->B, p->ldb,
                        p->beta, C, p->ldc);
    return C;
}

static float op_a(const problem *p, int i, int k) {
    return p->ta ? p->A[(size_t)k * p->lda + i] : p->A[(size_t)i * p->lda + k];
}
static float op_b(const problem *p, int k, int j) {
    return p->tb ? p->B[(size_t)j * p->ldb + k] : p->B[(size_t)k * p->ldb + j];
}

/* Tolerance. Summing K products in float in any order has error at most
 * gamma_K * sum|a||b| with gamma_K ~ K u (u = FLT_EPSILON / 2, Higham 3.1);
 * the reference and the blocked kernel each carry such an error, in
 * different orders and with FMA vs separate rounding, so their difference is
 * bounded by ~2 K u sum|a||b| = K eps sum|a||b|, plus a few roundings for
 * alpha, beta and the final add. The bound is therefore
 *   (K + 4) * FLT_EPSILON * (|alpha| sum_k |a_ik b_kj| + |beta c_ij|),
 * tight enough that a missing or doubled term of the sum, a wrong transpose
 * or a stale beta would exceed it by orders of magnitude. */
static void assert_close(const problem *p, const float *got, const float *want, const char *what) {
    for (int i = 0; i < p->M; i++) {
        for (int j = 0; j < p->ldc; j++) {
            size_t at = (size_t)i * p->ldc + j;
            if (j >= p->N) { /* padding beyond the row must be untouched */
                if (memcmp(&got[at], &p->C0[at], sizeof(float)) != 0)
                    fail_msg("%s: wrote C padding at (%d,%d)", what, i, j);
                continue;
            }
            double mag = 0.0;
            for (int k = 0; k < p->K; k++) mag += fabs((double)op_a(p, i, k) * op_b(p, k, j));
            double bound = (p->K + 4) * (double)FLT_EPSILON *
                           (fabs(p->alpha) * mag + (p->beta != 0.0f ? fabs(p->beta * p->C0[at]) : 0.0));
            double diff = fabs((double)got[at] - (double)want[at]);
            if (!(diff <= bound + 1e-30))
                fail_msg("%s ta=%d tb=%d M=%d N=%d K=%d alpha=%g beta=%g: C(%d,%d) = %.9g, reference %.9g "
                         "(|diff| %.3g > bound %.3g)",
                         what, p->ta, p->tb, p->M, p->N, p->K, p->alpha, p->beta, i, j, got[at], want[at], diff,
                         bound);
        }
    }
}

static const float alphas[] = {1.0f, 0.0f, -0.75f};
static const float betas[] = {0.0f, 1.0f, 0.5f};

static void check_all_paths(const problem *p) {
    float *want = run_path(p, -1);
    for (int s = CLLM_SIMD_SCALAR; s <= CLLM_SIMD_AVX512; s++) {
        if (!cllm_simd_supported((cllm_simd)s)) continue;
        float *got = run_path(p, s);
        assert_close(p, got, want, cllm_simd_name((cllm_simd)s));
        free(got);
    }
    free(want);
}

/* Random odd shapes (none a multiple of any tile), every transpose pair and
 * every alpha/beta combination, each checked on every supported path. */
static void test_random_odd_shapes_all_paths(void **state) {
    (void)state;
    for (int trial = 0; trial < 72; trial++) {
        int ta = trial & 1, tb = (trial >> 1) & 1;
        float alpha = alphas[(trial >> 2) % 3], beta = betas[(trial / 12) % 3];
        problem p = make_problem(ta, tb, pick_size(), pick_size(), pick_size(), alpha, beta, 0);
        check_all_paths(&p);
        free_problem(&p);
    }
}

/* Shapes that cross the cache blocks (K > kc: 256 portable and AVX-512, 384
 * AVX2, cut in equal slices, 385 and 800 into uneven ones; M > mc = 144;
 * N > nc = 1536) so that the K-slice accumulation and panel edges run. */
static void test_shapes_crossing_cache_blocks(void **state) {
    (void)state;
    const int shapes[][3] = {{150, 40, 300}, {289, 33, 17}, {7, 1600, 9},  {145, 49, 513},
                             {6, 16, 256},   {145, 49, 385}, {9, 21, 800}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int t = 0; t < 4; t++) {
            problem p = make_problem(t & 1, t >> 1, shapes[s][0], shapes[s][1], shapes[s][2], 1.0f,
                                     t == 3 ? 1.0f : 0.0f, 0);
            check_all_paths(&p);
            free_problem(&p);
        }
}

/* With small integers every product and partial sum is exact in float, so
 * every path must equal the reference bit for bit: no tolerance hides a bug. */
static void test_integer_inputs_are_exact(void **state) {
    (void)state;
    for (int trial = 0; trial < 24; trial++) {
        problem p = make_problem(trial & 1, (trial >> 1) & 1, pick_size(), pick_size(), pick_size(), 1.0f,
                                 (float)(trial % 3), 1);
        float *want = run_path(&p, -1);
        for (int s = CLLM_SIMD_SCALAR; s <= CLLM_SIMD_AVX512; s++) {
            if (!cllm_simd_supported((cllm_simd)s)) continue;
            float *got = run_path(&p, s);
            for (int i = 0; i < p.M; i++)
                for (int j = 0; j < p.N; j++)
                    if (got[(size_t)i * p.ldc + j] != want[(size_t)i * p.ldc + j])
                        fail_msg("%s: (%d,%d) %g != %g", cllm_simd_name((cllm_simd)s), i, j,
                                 got[(size_t)i * p.ldc + j], want[(size_t)i * p.ldc + j]);
            free(got);
        }
        free(want);
        free_problem(&p);
    }
}

/* beta == 0 means C is output only (BLAS semantics): NaN there must vanish. */
static void test_beta_zero_ignores_garbage(void **state) {
    (void)state;
    for (int s = CLLM_SIMD_SCALAR; s <= CLLM_SIMD_AVX512; s++) {
        if (!cllm_simd_supported((cllm_simd)s)) continue;
        for (int t = 0; t < 4; t++) {
            problem p = make_problem(t & 1, t >> 1, 13, 37, 19, 1.0f, 0.0f, 0);
            for (int i = 0; i < p.M; i++)
                for (int j = 0; j < p.N; j++) p.C0[(size_t)i * p.ldc + j] = NAN;
            float *got = run_path(&p, s);
            for (int i = 0; i < p.M; i++)
                for (int j = 0; j < p.N; j++) assert_false(isnan(got[(size_t)i * p.ldc + j]));
            free(got);
            free_problem(&p);
        }
    }
}

/* K = 0 or alpha = 0: nothing is summed and C = beta * C. */
static void test_degenerate_products_scale_c(void **state) {
    (void)state;
    for (int s = CLLM_SIMD_SCALAR; s <= CLLM_SIMD_AVX512; s++) {
        if (!cllm_simd_supported((cllm_simd)s)) continue;
        problem p = make_problem(0, 0, 5, 9, 0, 1.0f, 0.5f, 1);
        float *got = run_path(&p, s);
        for (int i = 0; i < p.M; i++)
            for (int j = 0; j < p.N; j++)
                assert_true(got[(size_t)i * p.ldc + j] == 0.5f * p.C0[(size_t)i * p.ldc + j]);
        free(got);
        free_problem(&p);
    }
}

/* The engine calls cllm_sgemm from every worker at once: each thread's
 * result must be what it computes alone (thread-local packing buffers). */
static void test_concurrent_calls_are_independent(void **state) {
    (void)state;
    enum { JOBS = 8 };
    problem ps[JOBS];
    float *want[JOBS], *got[JOBS];
    for (int j = 0; j < JOBS; j++) {
        ps[j] = make_problem(j & 1, (j >> 1) & 1, 70 + 3 * j, 50 + 5 * j, 90 + j, 1.0f, 0.0f, 1);
        want[j] = run_path(&ps[j], -1);
        got[j] = malloc((size_t)ps[j].M * ps[j].ldc * sizeof(float));
        assert_non_null(got[j]);
        memcpy(got[j], ps[j].C0, (size_t)ps[j].M * ps[j].ldc * sizeof(float));
    }
#pragma omp parallel for schedule(dynamic, 1) num_threads(4)
    for (int j = 0; j < JOBS; j++) {
        const problem *p = &ps[j];
        for (int rep = 0; rep < 3; rep++)
            cllm_sgemm(p->ta, p->tb, p->M, p->N, p->K, p->alpha, p->A, p->lda, p->B, p->ldb, p->beta, got[j],
                       p->ldc);
    }
    for (int j = 0; j < JOBS; j++) {
        for (int i = 0; i < ps[j].M; i++)
            for (int c = 0; c < ps[j].N; c++)
                assert_true(got[j][(size_t)i * ps[j].ldc + c] == want[j][(size_t)i * ps[j].ldc + c]);
        free(got[j]), free(want[j]);
        free_problem(&ps[j]);
    }
}

/* cllm_sgemm follows the forced path: scalar is the reference itself. */
static void test_dispatch_follows_forced_path(void **state) {
    (void)state;
    cllm_simd saved = cllm_simd_active();
    problem p = make_problem(1, 0, 31, 29, 47, 0.5f, 0.5f, 0);
    float *want = run_path(&p, -1);
    float *got = malloc((size_t)p.M * p.ldc * sizeof(float));
    assert_non_null(got);
    memcpy(got, p.C0, (size_t)p.M * p.ldc * sizeof(float));
    cllm_simd_force(CLLM_SIMD_SCALAR);
    cllm_sgemm(p.ta, p.tb, p.M, p.N, p.K, p.alpha, p.A, p.lda, p.B, p.ldb, p.beta, got, p.ldc);
    cllm_simd_force(saved);
    assert_memory_equal(got, want, (size_t)p.M * p.ldc * sizeof(float));
    free(got), free(want);
    free_problem(&p);
}

int main(void) {
    for (int s = CLLM_SIMD_SCALAR; s <= CLLM_SIMD_AVX512; s++)
        printf("# path %-6s %s\n", cllm_simd_name((cllm_simd)s),
               cllm_simd_supported((cllm_simd)s) ? "tested" : "not supported by this CPU, skipped");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_odd_shapes_all_paths),
        cmocka_unit_test(test_shapes_crossing_cache_blocks),
        cmocka_unit_test(test_integer_inputs_are_exact),
        cmocka_unit_test(test_beta_zero_ignores_garbage),
        cmocka_unit_test(test_degenerate_products_scale_c),
        cmocka_unit_test(test_concurrent_calls_are_independent),
        cmocka_unit_test(test_dispatch_follows_forced_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
