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

#include "cllm/kernels/kernels.h"
#include "../src/kernels/gemm_internal.h" /* the reference and the per-ISA packers, tested directly */

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
    cllm_gemm_fn gemm = path < 0 ? cllm_gemm_ref : cllm_kernel_table_for((cllm_simd)path)->gemm;
    gemm(p->ta, p->tb, p->M, p->N, p->K, p->alpha, p->A, p->lda, p->B, p->ldb, p->beta, C, p->ldc);
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

/* Shapes that cross the cache blocks (K > kc: 256 portable, 384 AVX2 and
 * AVX-512, cut in equal slices, 385 and 800 into uneven ones; M > mc = 144;
 * N > nc = 768 AVX-512, 1536 the others) so that the K-slice accumulation
 * and panel edges run. */
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

/* The engine calls the gemm from every worker at once: each thread's
 * result must be what it computes alone (thread-local packing buffers). */
static void test_concurrent_calls_are_independent(void **state) {
    (void)state;
    enum { JOBS = 8 };
    problem ps[JOBS];
    float *want[JOBS], *got[JOBS];
    cllm_gemm_fn gemm = cllm_kernel_table_best()->gemm;
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
            gemm(p->ta, p->tb, p->M, p->N, p->K, p->alpha, p->A, p->lda, p->B, p->ldb, p->beta, got[j], p->ldc);
    }
    for (int j = 0; j < JOBS; j++) {
        for (int i = 0; i < ps[j].M; i++)
            for (int c = 0; c < ps[j].N; c++)
                assert_true(got[j][(size_t)i * ps[j].ldc + c] == want[j][(size_t)i * ps[j].ldc + c]);
        free(got[j]), free(want[j]);
        free_problem(&ps[j]);
    }
}

/* Each table is the one of its ISA, and the scalar table's gemm is the
 * reference itself (bit for bit, not within a tolerance). */
static void test_tables_name_their_isa_and_scalar_is_the_reference(void **state) {
    (void)state;
    for (int s = CLLM_SIMD_SCALAR; s <= CLLM_SIMD_AVX512; s++) {
        const cllm_kernel_table *k = cllm_kernel_table_for((cllm_simd)s);
        assert_true((k != NULL) == (cllm_simd_supported((cllm_simd)s) != 0));
        if (k) assert_int_equal(k->isa, s), assert_string_equal(k->name, cllm_simd_name((cllm_simd)s));
    }
    assert_int_equal(cllm_kernel_table_best()->isa, cllm_simd_best());
    problem p = make_problem(1, 0, 31, 29, 47, 0.5f, 0.5f, 0);
    float *want = run_path(&p, -1);
    float *got = malloc((size_t)p.M * p.ldc * sizeof(float));
    assert_non_null(got);
    memcpy(got, p.C0, (size_t)p.M * p.ldc * sizeof(float));
    cllm_kernel_table_for(CLLM_SIMD_SCALAR)->gemm(p.ta, p.tb, p.M, p.N, p.K, p.alpha, p.A, p.lda, p.B, p.ldb, p.beta,
                                                   got, p.ldc);
    assert_memory_equal(got, want, (size_t)p.M * p.ldc * sizeof(float));
    free(got), free(want);
    free_problem(&p);
}

/* Packers, each against the layout the micro-kernel contract defines
 * (src/kernels/gemm_internal.h), written here as plain loops. Sources start at an
 * unaligned float and end exactly at the allocation (a sanitizer build flags
 * a read past the rows); destinations are filled with a sentinel, so both a
 * wrong value and a write outside the allowed range fail. */
static const int pack_depths[] = {1, 2, 7, 8, 9, 15, 16, 17, 31, 33, 64, 100, 257};
static const uint32_t SENTINEL = 0x7fc0dead; /* a NaN payload no packer produces */

typedef struct {
    float *base, *src; /* src = base + misalignment */
    int ld;
} pack_source;

static pack_source make_source(int rows, int cols) {
    pack_source s;
    int shift = 1 + (int)(rnd() % 3);
    s.ld = cols + (int)(rnd() % 4);
    size_t n = (size_t)(rows - 1) * s.ld + cols; /* the last row ends at the end */
    s.base = malloc((shift + n) * sizeof(float));
    assert_non_null(s.base);
    s.src = s.base + shift;
    for (size_t i = 0; i < n; i++) s.src[i] = rnd_uniform();
    return s;
}

static float *make_sentinel_dst(size_t n) {
    size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
    float *d = aligned_alloc(64, bytes);
    assert_non_null(d);
    for (size_t i = 0; i < bytes / sizeof(float); i++) memcpy(&d[i], &SENTINEL, sizeof SENTINEL);
    return d;
}

/* dst[0, n) must equal want bit for bit; dst[n + slack, total) untouched. */
static void assert_packed(const float *dst, const float *want, size_t n, size_t slack, size_t total,
                          const char *what, int a, int b) {
    for (size_t i = 0; i < n; i++)
        if (memcmp(&dst[i], &want[i], sizeof(float)) != 0)
            fail_msg("%s (%d, %d): element %zu is %g, want %g", what, a, b, i, dst[i], want[i]);
    for (size_t i = n + slack; i < total; i++)
        if (memcmp(&dst[i], &SENTINEL, sizeof(float)) != 0)
            fail_msg("%s (%d, %d): wrote element %zu past the packed %zu", what, a, b, i, n);
}

/* pack_a_rows / pack_b_cols: `rows` rows of kb floats into one sliver of
 * width w, dst[k * w + r] (zero for r >= rows), slack allowed past it. */
static void check_transposing_packer(cllm_sgemm_packer pack, int w, const char *what) {
    for (int rows = 1; rows <= w; rows++)
        for (size_t d = 0; d < sizeof pack_depths / sizeof pack_depths[0]; d++) {
            int kb = pack_depths[d];
            pack_source s = make_source(rows, kb);
            size_t n = (size_t)kb * w, total = n + CLLM_SGEMM_PACK_SLACK + 64;
            float *want = malloc(n * sizeof(float)), *dst = make_sentinel_dst(total);
            assert_non_null(want);
            for (int k = 0; k < kb; k++)
                for (int r = 0; r < w; r++) want[(size_t)k * w + r] = r < rows ? s.src[(size_t)r * s.ld + k] : 0.0f;
            pack(s.src, s.ld, rows, kb, dst);
            assert_packed(dst, want, n, CLLM_SGEMM_PACK_SLACK, total, what, rows, kb);
            free(want), free(dst), free(s.base);
        }
}

/* pack_a_cols / pack_b_rows: kb rows of `width` floats (op(X) = the row-major
 * rows read along), into ceil(width / w) slivers of kb * w floats:
 * dst[sliver * kb * w + k * w + c] (zero past width), nothing written past. */
static void check_copying_packer(void (*pack)(const float *, int, int, int, float *), int w, int rows_first,
                                 const char *what) {
    const int widths[] = {1, 3, w - 1, w, w + 1, 2 * w + 5, 144, 150};
    for (size_t wi = 0; wi < sizeof widths / sizeof widths[0]; wi++)
        for (size_t d = 0; d < sizeof pack_depths / sizeof pack_depths[0]; d++) {
            int width = widths[wi], kb = pack_depths[d];
            int slivers = (width + w - 1) / w;
            pack_source s = make_source(kb, width);
            size_t n = (size_t)slivers * kb * w, total = n + 64;
            float *want = malloc(n * sizeof(float)), *dst = make_sentinel_dst(total);
            assert_non_null(want);
            for (int j = 0; j < slivers; j++)
                for (int k = 0; k < kb; k++)
                    for (int c = 0; c < w; c++) {
                        int col = j * w + c;
                        want[(size_t)j * kb * w + (size_t)k * w + c] =
                            col < width ? s.src[(size_t)k * s.ld + col] : 0.0f;
                    }
            /* pack_a_cols takes (mb, kb), pack_b_rows (kb, nb). */
            if (rows_first)
                pack(s.src, s.ld, kb, width, dst);
            else
                pack(s.src, s.ld, width, kb, dst);
            assert_packed(dst, want, n, 0, total, what, width, kb);
            free(want), free(dst), free(s.base);
        }
}

static void check_kernel_packers(const cllm_sgemm_kernel *kern, cllm_simd path) {
    if (!kern->ukernel || !cllm_simd_supported(path)) return;
    printf("# packers of %s: %s%s%s%s\n", cllm_simd_name(path), kern->pack_a_rows ? "a_rows " : "",
           kern->pack_b_cols ? "b_cols " : "", kern->pack_a_cols ? "a_cols " : "", kern->pack_b_rows ? "b_rows" : "");
    if (kern->pack_a_rows) check_transposing_packer(kern->pack_a_rows, kern->mr, "pack_a_rows");
    if (kern->pack_b_cols) check_transposing_packer(kern->pack_b_cols, kern->nr, "pack_b_cols");
    if (kern->pack_a_cols) check_copying_packer(kern->pack_a_cols, kern->mr, 0, "pack_a_cols");
    if (kern->pack_b_rows) check_copying_packer(kern->pack_b_rows, kern->nr, 1, "pack_b_rows");
}

static void test_isa_packers_match_the_contract(void **state) {
    (void)state;
#if defined(__x86_64__) || defined(__i386__)
    check_kernel_packers(&cllm_sgemm_kernel_avx2, CLLM_SIMD_AVX2);
    check_kernel_packers(&cllm_sgemm_kernel_avx512, CLLM_SIMD_AVX512);
#else
    (void)check_kernel_packers;
    print_message("ISA packers: skipped, this build has no x86 kernels\n");
#endif
}

/* Edges of the AVX-512 tile through the whole product: m < 12 (each of the
 * 4-, 8- and 12-row variants), n < 32, and depths around the 16-wide packing
 * transposes, every transpose pair. */
static void test_tile_edges_all_paths(void **state) {
    (void)state;
    const int ms[] = {1, 4, 5, 8, 9, 11, 12, 13, 20, 25}, ns[] = {1, 15, 17, 31, 32, 33}, ks[] = {1, 15, 16, 17, 47};
    for (size_t a = 0; a < sizeof ms / sizeof ms[0]; a++)
        for (size_t b = 0; b < sizeof ns / sizeof ns[0]; b++)
            for (size_t c = 0; c < sizeof ks / sizeof ks[0]; c++) {
                int t = (int)(a + b + c) & 3;
                problem p = make_problem(t & 1, t >> 1, ms[a], ns[b], ks[c], 1.0f, (float)(c & 1), 1);
                check_all_paths(&p);
                free_problem(&p);
            }
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
        cmocka_unit_test(test_tables_name_their_isa_and_scalar_is_the_reference),
        cmocka_unit_test(test_isa_packers_match_the_contract),
        cmocka_unit_test(test_tile_edges_all_paths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
