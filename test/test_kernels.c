/* Reduction kernels: every SIMD variant this CPU supports is bitwise equal to
 * the scalar reference (sums, sums of squares, fused sum + AdamW), at
 * unaligned offsets and odd lengths, for 1..8 sources; and the scalar AdamW
 * agrees with the trainer's reference. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "cllm/base/common.h"
#include "cllm/kernels/kernels.h"
#include "cllm/optim/adamw.h"

static const size_t lengths[] = {0, 1, 7, 15, 16, 17, 31, 33, 255, 256, 257, 1000003};
enum { N_LENGTHS = sizeof lengths / sizeof lengths[0], MAX_K = 8, PAD = 32 };
#define MAX_N 1000003

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t next_u64(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Mixed magnitudes and signs, so that the order of additions shows in the
 * last bits and a reordering variant would fail. */
static float random_float(void) {
    uint64_t r = next_u64();
    float mant = (float)((r >> 40) & 0xffffff) / 16777216.0f + 0.5f;
    int exp = (int)((r >> 8) % 24) - 12;
    float x = ldexpf(mant, exp);
    return (r & 1) ? -x : x;
}

typedef struct {
    float *src[MAX_K];
    float *a, *b;              /* destinations: reference and variant */
    float *p[2], *m[2], *v[2]; /* AdamW state: reference and variant */
    double *sq[2];
} buffers;

static buffers B;

static int setup(void **state) {
    (void)state;
    size_t n = MAX_N + PAD;
    for (int j = 0; j < MAX_K; j++) {
        B.src[j] = cllm_alloc(n * sizeof(float));
        for (size_t i = 0; i < n; i++) B.src[j][i] = random_float();
    }
    B.a = cllm_alloc(n * sizeof(float));
    B.b = cllm_alloc(n * sizeof(float));
    for (int r = 0; r < 2; r++) {
        B.p[r] = cllm_alloc(n * sizeof(float));
        B.m[r] = cllm_alloc(n * sizeof(float));
        B.v[r] = cllm_alloc(n * sizeof(float));
        B.sq[r] = cllm_alloc((cllm_sq_chunks(n) + 1) * sizeof(double));
    }
    return 0;
}

static int teardown(void **state) {
    (void)state;
    for (int j = 0; j < MAX_K; j++) cllm_free(B.src[j]);
    cllm_free(B.a);
    cllm_free(B.b);
    for (int r = 0; r < 2; r++) {
        cllm_free(B.p[r]);
        cllm_free(B.m[r]);
        cllm_free(B.v[r]);
        cllm_free(B.sq[r]);
    }
    return 0;
}

static void offset_sources(const float **out, int k, size_t off) {
    for (int j = 0; j < k; j++) out[j] = B.src[j] + off + (size_t)j % 3; /* sources misaligned differently */
}

/* Both the supported variants and the ones skipped, so a log shows coverage. */
static int for_each_variant(void (*check)(const cllm_kernel_table *ref, const cllm_kernel_table *var)) {
    const cllm_kernel_table *ref = cllm_kernel_table_for(CLLM_SIMD_SCALAR);
    int tested = 0;
    for (int s = CLLM_SIMD_OMP; s <= CLLM_SIMD_AVX512; s++) {
        const cllm_kernel_table *var = cllm_kernel_table_for((cllm_simd)s);
        if (!var) {
            printf("  %s: not supported on this CPU, skipped\n", cllm_simd_name((cllm_simd)s));
            continue;
        }
        check(ref, var);
        tested++;
    }
    return tested;
}

static void check_sum(const cllm_kernel_table *ref, const cllm_kernel_table *var) {
    for (int li = 0; li < N_LENGTHS; li++) {
        size_t n = lengths[li];
        for (int k = 1; k <= MAX_K; k++) {
            /* Large lengths only at a few (k, offset) pairs: the suite stays quick. */
            int offsets = n > 1000 ? 2 : 15;
            for (int o = 1; o <= offsets; o++) {
                if (n > 1000 && k % 3 != 1) continue;
                const float *srcs[MAX_K];
                offset_sources(srcs, k, (size_t)o);
                memset(B.a, 0xff, (n + PAD) * sizeof(float));
                memset(B.b, 0xff, (n + PAD) * sizeof(float));
                ref->sum(B.a + o, srcs, k, n);
                var->sum(B.b + o, srcs, k, n);
                /* bitwise, including the untouched guard after the range */
                if (memcmp(B.a, B.b, (n + PAD) * sizeof(float)) != 0)
                    fail_msg("%s sum differs: n=%zu k=%d offset=%d", cllm_simd_name(var->isa), n, k, o);
            }
        }
    }
}

static void check_sum_in_place(const cllm_kernel_table *ref, const cllm_kernel_table *var) {
    /* dst aliasing srcs[0], as the engine's tree merge does */
    size_t n = 4099;
    for (int o = 1; o <= 15; o++) {
        memcpy(B.a, B.src[0], (n + PAD) * sizeof(float));
        memcpy(B.b, B.src[0], (n + PAD) * sizeof(float));
        const float *ra[2] = {B.a + o, B.src[1] + o}, *rb[2] = {B.b + o, B.src[1] + o};
        ref->sum(B.a + o, ra, 2, n);
        var->sum(B.b + o, rb, 2, n);
        if (memcmp(B.a, B.b, (n + PAD) * sizeof(float)) != 0)
            fail_msg("%s in-place sum differs at offset %d", cllm_simd_name(var->isa), o);
    }
}

static void check_sum_sq(const cllm_kernel_table *ref, const cllm_kernel_table *var) {
    for (int li = 0; li < N_LENGTHS; li++) {
        size_t n = lengths[li];
        for (int k = 1; k <= MAX_K; k += (n > 1000 ? 3 : 1)) {
            for (int o = 1; o <= 15; o += (n > 1000 ? 7 : 1)) {
                const float *srcs[MAX_K];
                offset_sources(srcs, k, (size_t)o);
                size_t chunks = cllm_sq_chunks(n);
                memset(B.sq[0], 0, (chunks + 1) * sizeof(double));
                memset(B.sq[1], 0, (chunks + 1) * sizeof(double));
                ref->sum_sq(B.a + o, srcs, k, n, B.sq[0]);
                var->sum_sq(B.b + o, srcs, k, n, B.sq[1]);
                if (memcmp(B.a + o, B.b + o, n * sizeof(float)) != 0)
                    fail_msg("%s sum_sq sums differ: n=%zu k=%d offset=%d", cllm_simd_name(var->isa), n, k, o);
                if (memcmp(B.sq[0], B.sq[1], (chunks + 1) * sizeof(double)) != 0)
                    fail_msg("%s sum_sq squares differ: n=%zu k=%d offset=%d", cllm_simd_name(var->isa), n, k, o);
            }
        }
    }
}

static cllm_adamw_step test_step(void) {
    cllm_adamw_config cfg = cllm_adamw_defaults();
    return cllm_adamw_step_make(&cfg, 3e-3, 7);
}

static void init_adamw_state(size_t n) {
    for (size_t i = 0; i < n; i++) {
        B.p[0][i] = B.p[1][i] = random_float();
        B.m[0][i] = B.m[1][i] = 0.01f * random_float();
        float vv = 1e-4f * random_float();
        B.v[0][i] = B.v[1][i] = vv < 0 ? -vv : vv;
    }
}

static void check_adamw(const cllm_kernel_table *ref, const cllm_kernel_table *var) {
    cllm_adamw_step h = test_step();
    for (int li = 0; li < N_LENGTHS; li++) {
        size_t n = lengths[li];
        for (int k = 1; k <= MAX_K; k += (n > 1000 ? 4 : 1)) {
            for (int o = 1; o <= 15; o += (n > 1000 ? 7 : 2)) {
                const float *srcs[MAX_K];
                offset_sources(srcs, k, (size_t)o);
                init_adamw_state(n + PAD);
                int decay = (k + o) % 2;
                float scale = (o % 3) ? 0.75f : 1.0f;
                ref->sum_adamw(B.p[0] + o, B.m[0] + o, B.v[0] + o, srcs, k, scale, n, &h, decay);
                var->sum_adamw(B.p[1] + o, B.m[1] + o, B.v[1] + o, srcs, k, scale, n, &h, decay);
                /* Stated bound: 0 ulp (no FMA; sqrt and division correctly rounded). */
                if (memcmp(B.p[0], B.p[1], (n + PAD) * sizeof(float)) != 0 ||
                    memcmp(B.m[0], B.m[1], (n + PAD) * sizeof(float)) != 0 ||
                    memcmp(B.v[0], B.v[1], (n + PAD) * sizeof(float)) != 0)
                    fail_msg("%s AdamW differs: n=%zu k=%d offset=%d", cllm_simd_name(var->isa), n, k, o);
            }
        }
    }
}

static void test_sum_variants_equal_reference(void **state) {
    (void)state;
    assert_true(for_each_variant(check_sum) >= 1); /* omp at least, on any CPU */
}

static void test_sum_in_place_variants_equal_reference(void **state) {
    (void)state;
    assert_true(for_each_variant(check_sum_in_place) >= 1);
}

static void test_sum_sq_variants_equal_reference(void **state) {
    (void)state;
    assert_true(for_each_variant(check_sum_sq) >= 1);
}

static void test_adamw_variants_equal_reference(void **state) {
    (void)state;
    assert_true(for_each_variant(check_adamw) >= 1);
}

/* The reference really is a sum in source order and a chunked double norm. */
static void test_reference_semantics(void **state) {
    (void)state;
    const cllm_kernel_table *ref = cllm_kernel_table_for(CLLM_SIMD_SCALAR);
    float x[3] = {1e8f, -1e8f, 1.0f}, y[3] = {1.0f, 1.0f, 1e-8f}, z[3] = {-1e8f, 1e8f, 0.0f}, out[3];
    const float *srcs[3] = {x, y, z};
    ref->sum(out, srcs, 3, 3);
    /* (1e8 + 1) rounds to 1e8, then - 1e8 gives 0: order matters and is kept. */
    assert_true(out[0] == 0.0f);
    assert_true(out[1] == 0.0f);
    assert_true(out[2] == 1.0f);

    enum { N = 600 };
    static float ones[N], dst[N];
    for (int i = 0; i < N; i++) ones[i] = (float)(i % 5) - 2.0f;
    const float *one[1] = {ones};
    double sq[3];
    ref->sum_sq(dst, one, 1, N, sq);
    double expect[3] = {0, 0, 0};
    for (int i = 0; i < N; i++) expect[i / CLLM_SQ_CHUNK] += (double)ones[i] * ones[i];
    for (int c = 0; c < 3; c++) assert_true(sq[c] == expect[c]); /* small integers: exact */
    assert_memory_equal(dst, ones, sizeof ones);
}

/* The engine's fused kernel and the trainer's reference agree exactly. */
static void test_adamw_matches_trainer_reference(void **state) {
    (void)state;
    size_t n = 1037;
    cllm_adamw_step h = test_step();
    init_adamw_state(n);
    const float *srcs[3] = {B.src[0], B.src[1], B.src[2]};
    for (int decay = 0; decay <= 1; decay++) {
        cllm_adamw_update_ref(B.p[0], B.m[0], B.v[0], srcs, 3, 0.5f, n, &h, decay);
        cllm_kernel_table_for(CLLM_SIMD_SCALAR)->sum_adamw(B.p[1], B.m[1], B.v[1], srcs, 3, 0.5f, n, &h, decay);
        assert_memory_equal(B.p[0], B.p[1], n * sizeof(float));
        assert_memory_equal(B.m[0], B.m[1], n * sizeof(float));
        assert_memory_equal(B.v[0], B.v[1], n * sizeof(float));
    }
}

static void test_best_is_supported(void **state) {
    (void)state;
    const cllm_kernel_table *k = cllm_kernel_table_best();
    assert_non_null(k);
    assert_true(cllm_simd_supported(k->isa));
    assert_int_equal(cllm_sq_chunks(0), 0);
    assert_int_equal(cllm_sq_chunks(1), 1);
    assert_int_equal(cllm_sq_chunks(CLLM_SQ_CHUNK), 1);
    assert_int_equal(cllm_sq_chunks(CLLM_SQ_CHUNK + 1), 2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_semantics),
        cmocka_unit_test(test_best_is_supported),
        cmocka_unit_test(test_sum_variants_equal_reference),
        cmocka_unit_test(test_sum_in_place_variants_equal_reference),
        cmocka_unit_test(test_sum_sq_variants_equal_reference),
        cmocka_unit_test(test_adamw_variants_equal_reference),
        cmocka_unit_test(test_adamw_matches_trainer_reference),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
